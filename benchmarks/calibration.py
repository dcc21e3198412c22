"""Calibration of the bundled recipes: each classifier recipe trained as bundled (`train.calibrate: auto`, the
default) gives its test ECE before its temperature (`test/ece_uncalibrated`, the same weights) and after it.
A recipe without a validation split (the TF-IDF ones) holds out a tenth of its training rows to fit the
temperature: it is trained once more with `train.calibrate=none`, on all its training rows, to show what
holding them out costs in balanced accuracy and fit time.

    python benchmarks/calibration.py                                   # the default set below
    python benchmarks/calibration.py --recipes product-titles-cnn,spoken-digits-cnn

Writes benchmarks/out/calibration.json after each recipe (a recipe measured again replaces its row) and prints
a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
RECIPES = ["product-titles-cnn", "product-titles-bag", "product-titles-tfidf", "news-topics-cnn", "news-topics-tfidf",
           "spoken-digits-cnn", "poi-engagement-cnn"]


def train(recipe: str, folder: Path, overrides: list[str]) -> dict[str, float]:
    import ensayo

    metrics = ensayo.run(ROOT / "recipes" / f"{recipe}.yaml", output=folder, overrides=overrides, track=False).metrics
    return {key: metrics[key] for key in ("test/balanced_accuracy", "test/balanced_accuracy_low",
                                          "test/balanced_accuracy_high", "test/ece", "fit_seconds")
            if key in metrics} | {"temperature": metrics.get("temperature", 1.0),
                                  "test/ece_uncalibrated": metrics.get("test/ece_uncalibrated", metrics["test/ece"])}


def measure(recipe: str, scratch: Path) -> dict[str, object]:
    from ensayo.models import load_recipe

    loaded = load_recipe(ROOT / "recipes" / f"{recipe}.yaml")
    row: dict[str, object] = {"recipe": recipe, "held_out": loaded.calibration_share > 0,
                              "calibrated": train(recipe, scratch / f"{recipe}-auto", [])}
    if row["held_out"]:  # all training rows, no temperature: what holding out a tenth costs
        row["uncalibrated"] = train(recipe, scratch / f"{recipe}-none", ["train.calibrate=none"])
    return row


def table(rows: list[dict]) -> str:
    lines = ["| recipe | ECE before | ECE after | temperature | balanced accuracy | its cost (all rows, no "
             "temperature) |", "|---|---|---|---|---|---|"]
    for row in rows:
        after = row["calibrated"]
        before = row.get("uncalibrated", after)
        score = (f"{after['test/balanced_accuracy']:.4f} [{after['test/balanced_accuracy_low']:.4f}, "
                 f"{after['test/balanced_accuracy_high']:.4f}]")
        cost = "-" if "uncalibrated" not in row else (
            f"{before['test/balanced_accuracy']:.4f}; fit {before['fit_seconds']:.0f} s against "
            f"{after['fit_seconds']:.0f} s")
        ece_before = before["test/ece"] if "uncalibrated" in row else after["test/ece_uncalibrated"]
        lines.append(f"| {row['recipe']} | {ece_before:.4f} | {after['test/ece']:.4f} | {after['temperature']:.3f} "
                     f"| {score} | {cost} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    arguments = parser.parse_args()
    result = OUT / "calibration.json"
    rows = {row["recipe"]: row for row in json.loads(result.read_text())} if result.is_file() else {}
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ensayo-calibration-") as scratch:
        for recipe in arguments.recipes.split(","):
            rows[recipe] = measure(recipe, Path(scratch))
            print(table([rows[recipe]]), flush=True)
            result.write_text(json.dumps(list(rows.values()), indent=2))
    print(table(list(rows.values())))


if __name__ == "__main__":
    main()
