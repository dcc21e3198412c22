"""Fit time and quality of bundled recipes under each `train.precision`, side by side (issue 30): each recipe and
precision trained in its own process, one after another, on the real data that ENSAYO_DATA points at.

    ENSAYO_DATA=../shared/data python benchmarks/training_speed.py
    ENSAYO_DATA=../shared/data python benchmarks/training_speed.py --recipes spoken-digits-cnn --precisions fp32,bf16

Prints a table (the test figure each recipe is judged by, with its bootstrap interval where the run has one, the
fit's seconds, the best epoch, and each precision's fit against the first's) and writes
benchmarks/out/training_speed.json. Run with nothing else on the machine: the seconds are the point.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
# the test figure a recipe is judged by in benchmarks/README.md (balanced accuracy for the others)
FIGURES = {"spoken-digits": "test/accuracy", "news-char": "test/bits_per_char", "news-word": "test/bits_per_char"}


def child(recipe: str, precision: str, output: Path) -> dict:
    import ensayo

    overrides = [] if precision == "recipe" else [f"train.precision={precision}"]  # "recipe": as the recipe says
    saved = ensayo.run(ROOT / "recipes" / f"{recipe}.yaml", output=output, track=False, force=True,
                       overrides=overrides)
    metrics = saved.metrics
    figure = next((f for prefix, f in FIGURES.items() if recipe.startswith(prefix)), "test/balanced_accuracy")
    low, high = metrics.get(f"{figure}_low"), metrics.get(f"{figure}_high")
    return {"figure": figure, "value": metrics[figure], "interval": [low, high] if low is not None else None,
            "fit_seconds": metrics["fit_seconds"], "best_epoch": metrics.get("best_epoch")}


def run_child(recipe: str, precision: str) -> dict:
    output = OUT / "training_speed" / f"{recipe}-{precision}"
    result = subprocess.run([sys.executable, __file__, "--child", recipe, precision, str(output)],
                            capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if result.returncode != 0:
        raise RuntimeError(f"{recipe} at {precision} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(results: dict[str, dict[str, dict]]) -> str:
    rows = ["| recipe | precision | test figure | value | interval | fit s | best epoch | fit / first |",
            "|" + "---|" * 8]
    for recipe, by_precision in results.items():
        first = next(iter(by_precision.values()))["fit_seconds"]
        for precision, r in by_precision.items():
            interval = f"[{r['interval'][0]:.4f}, {r['interval'][1]:.4f}]" if r["interval"] else "-"
            rows.append(f"| {recipe} | {precision} | {r['figure']} | {r['value']:.4f} | {interval} | "
                        f"{r['fit_seconds']:.1f} | {r['best_epoch'] or '-'} | {r['fit_seconds'] / first:.2f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default="product-titles-cnn,spoken-digits-cnn,news-char-transformer")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated; `recipe`: no override")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        recipe, precision, output = args.child
        print(json.dumps(child(recipe, precision, Path(output))))
        return
    results: dict[str, dict[str, dict]] = {}
    for recipe in args.recipes.split(","):
        for precision in args.precisions.split(","):
            results.setdefault(recipe, {})[precision] = run_child(recipe, precision)
            print(f"{recipe} {precision}: {json.dumps(results[recipe][precision])}", flush=True)
    print(table(results))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "training_speed.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
