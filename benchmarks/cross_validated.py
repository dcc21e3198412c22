"""Figures with intervals (the trust issue): recipes under K-fold cross-validation, each fold a run of its own,
with peers scored on the very same folds and the paired interval of each difference.

- poi:  the five POI recipes under grouped 5-fold cross-validation (by POI id), and the input-cells rule of
        benchmarks/poi_ceiling.py fitted and scored on the same folds.
- news: AG News, 5 folds: the cnn, tfidf and ensemble recipes and fastText.
- meli: MeLi 2019 Spanish titles, 3 folds: the same three.
- calibration: the MeLi CNN recipe (official-size split) with train.calibrate: temperature: expected
        calibration error before and after.

    python benchmarks/cross_validated.py --only poi            # about an hour and a half on 2 cores
    python benchmarks/cross_validated.py --only poi --poi-recipes poi-engagement-photo-stats.yaml,...
    python benchmarks/cross_validated.py --only news,meli      # many hours: run it where there are cores
    python benchmarks/cross_validated.py --only news --text-recipes news-topics-ensemble.yaml   # about 10 minutes

Runs live in benchmarks/out/cross_validated/ and are resumed where they stopped when the command is run
again (a cross-validated run keeps its finished folds). Writes benchmarks/out/cross_validated.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from peers import fasttext_labels, fasttext_lines, fasttext_predicted, train_fasttext

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
RUNS = OUT / "cross_validated"
POI = ["poi-engagement-cnn.yaml", "poi-engagement-pretrained.yaml", "poi-engagement-photo-stats.yaml",
       "poi-engagement-image-only.yaml", "poi-engagement-metadata-only.yaml"]
TEXT = {"news": (["news-topics-cnn.yaml", "news-topics-tfidf.yaml", "news-topics-ensemble.yaml"], 5),
        "meli": (["product-titles-cnn.yaml", "product-titles-tfidf.yaml"], 3)}


def folds_of(recipe: str, folds: int, grouped_by: str | None = None) -> list[str]:
    split = ["data.split.method=group", f"data.split.group_column={grouped_by}"] if grouped_by else \
        ["data.split.method=stratified"]
    return [*split, f"data.split.folds={folds}", "data.split.validation=0.1"]


def trained(recipe: str, name: str, overrides: list[str]):
    """The run `name`: loaded when finished, resumed when interrupted, else trained."""
    import ensayo
    from ensayo import layout
    from ensayo.runs import SavedRun

    folder = RUNS / name
    if (folder / layout.METRICS).is_file():
        return SavedRun.load(folder)
    if (folder / layout.RECIPE).is_file():
        return ensayo.run(None, resume=folder, track=False)
    return ensayo.run(ROOT / "recipes" / recipe, output=folder, overrides=overrides, track=False)


def summary(values: list[float]) -> dict:
    from ensayo.metrics import interval95

    mean, std, half = interval95(values)
    return {"mean": mean, "sd": std, "interval95": [mean - half, mean + half], "folds": values}


def fold_values(run, metric: str = "balanced_accuracy") -> list[float]:
    return [run.metrics[f"cv/{metric}_fold{k}"] for k in range(run.recipe.data.split.folds)]


def paired(a: list[float], b: list[float]) -> dict:
    from ensayo.metrics import interval95

    mean, _, half = interval95([x - y for x, y in zip(a, b, strict=True)])
    return {"mean_difference": mean, "interval95": [mean - half, mean + half]}


# ---------------------------------------------------------------------------------------------- POI
def input_cells_rule(recipe_name: str, folds: int) -> list[float]:
    """poi_ceiling.py's input-cells rule (what the inputs show of the outcome cluster, x tier; the most common
    class of the training rows per cell), fitted on each fold's training rows and scored on its test rows."""
    import polars as pl
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import accuracy_score

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from poi_ceiling import most_common_class, outcome_clusters

    from ensayo.data import load_folds
    from ensayo.features.image_stats import STATS, image_statistics
    from ensayo.models import load_recipe

    recipe = load_recipe(ROOT / "recipes" / recipe_name, folds_of(recipe_name, folds, "id"))
    scores = []
    for splits in load_folds(recipe):
        train = pl.concat([splits.train, splits.validation], how="diagonal")
        rows = pl.concat([train, splits.test], how="diagonal")
        cluster, means = outcome_clusters(rows)
        statistics = np.array([[image_statistics(p)[s] for s in STATS] for p in rows["main_image_path"].to_list()])
        sculpture = rows["categories"].str.contains("Escultura").to_numpy()
        low_quality = statistics[:, STATS.index("jpeg_quality")] <= 70
        sharp = means[cluster, 0] > 8.5
        is_train = np.arange(rows.height) < train.height
        fit = is_train & ~sculpture & ~low_quality
        reader = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, random_state=0)
        looks_sharp = reader.fit(statistics[fit], sharp[fit]).predict(statistics)
        cells = [("sculpture" if s else "quality 60" if q else "sharp" if h else "blurred", t) for s, q, h, t in
                 zip(sculpture, low_quality, looks_sharp, rows["tier"].cast(pl.String).to_list(), strict=True)]
        labels = rows["engagement_level"].to_list()
        answer = most_common_class([c for c, m in zip(cells, is_train, strict=True) if m],
                                   [y for y, m in zip(labels, is_train, strict=True) if m])
        common = max(set(labels), key=labels.count)
        test = [i for i in range(rows.height) if not is_train[i]]
        scores.append(accuracy_score([labels[i] for i in test], [answer.get(cells[i], common) for i in test]))
    return scores


def poi(recipes: list[str]) -> dict:
    results = {}
    for recipe in recipes:
        run = trained(recipe, f"poi-{recipe.removesuffix('.yaml')}", folds_of(recipe, 5, "id"))
        results[recipe] = summary(fold_values(run, "accuracy")) | {"balanced_accuracy": summary(fold_values(run))}
        print(recipe, json.dumps(results[recipe]), flush=True)
    rule = input_cells_rule(POI[0], 5)
    results["input-cells rule"] = summary(rule)
    best = max(recipes, key=lambda r: results[r]["mean"])
    results["best_vs_rule"] = {"recipe": best, **paired(results[best]["folds"], rule)}
    if POI[0] in recipes and POI[1] in recipes:
        results["pretrained_vs_cnn"] = paired(results[POI[1]]["folds"], results[POI[0]]["folds"])
    return results


# --------------------------------------------------------------------------------------------- text
def fasttext_on_folds(run, epochs: int = 25) -> list[float]:
    """fastText on each fold's training and test rows of a cross-validated run, with its normalization."""
    from sklearn.metrics import balanced_accuracy_score

    from ensayo.data import load_folds

    scores = []
    for splits in load_folds(run.recipe):
        model, _ = train_fasttext(run.recipe, splits.train, epochs)
        predicted = fasttext_predicted(model, fasttext_lines(run.recipe, splits.test))
        scores.append(balanced_accuracy_score(fasttext_labels(run.recipe, splits.test), predicted))
    return scores


def text(dataset: str, only: list[str] | None = None) -> dict:
    """The data set's recipes (or those of `only`) under K-fold cross-validation, and fastText on the same folds
    (those of the first recipe's run: every recipe here splits the same file with the same seed and K)."""
    recipes, folds = TEXT[dataset]
    results, runs = {}, {}
    for recipe in only or recipes:
        runs[recipe] = trained(recipe, f"{dataset}-{recipe.removesuffix('.yaml')}", folds_of(recipe, folds))
        results[recipe] = summary(fold_values(runs[recipe]))
    peer = fasttext_on_folds(next(iter(runs.values())))
    results["fasttext"] = summary(peer)
    for recipe in runs:
        results[f"{recipe} - fasttext"] = paired(results[recipe]["folds"], peer)
    return results


def calibration() -> dict:
    run = trained("product-titles-cnn.yaml", "meli-cnn-calibrated", ["train.calibrate=temperature"])
    metrics = run.metrics
    return {"temperature": metrics["temperature"], "test_ece_before": metrics["test/ece_uncalibrated"],
            "test_ece_after": metrics["test/ece"], "test_loss_after": metrics["test/loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="poi,news,meli,calibration")
    parser.add_argument("--poi-recipes", default=",".join(POI), help="which POI recipes (all five by default)")
    parser.add_argument("--text-recipes", default=None, help="which news or meli recipes (all of them by default)")
    arguments = parser.parse_args()
    parts, poi_recipes = arguments.only.split(","), arguments.poi_recipes.split(",")
    text_recipes = arguments.text_recipes.split(",") if arguments.text_recipes else None
    RUNS.mkdir(parents=True, exist_ok=True)
    result_file = OUT / "cross_validated.json"
    results = json.loads(result_file.read_text()) if result_file.is_file() else {}
    for part, compute in (("poi", lambda: poi(poi_recipes)), ("news", lambda: text("news", text_recipes)),
                          ("meli", lambda: text("meli", text_recipes)), ("calibration", calibration)):
        if part in parts:
            results[part] = compute()
            print(part, json.dumps(results[part], indent=1), flush=True)
            result_file.write_text(json.dumps(results, indent=2) + "\n")
    print(f"-> {result_file}")


if __name__ == "__main__":
    sys.exit(main())
