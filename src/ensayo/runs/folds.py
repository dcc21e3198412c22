"""A cross-validated run (`data.split.folds: K`): K fold runs in `folds/fold<k>`, each a complete run trained
on its own training part, and the recipe's run above them. It predicts by averaging its fold models'
probabilities (`ensayo.models.FoldAverage`); its metrics are the folds' (mean, spread and a Student-t
interval) and those of the out-of-fold predictions, each row predicted by the one model that never saw it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ensayo import layout
from ensayo import metrics as ev
from ensayo.data import Splits
from ensayo.data.read import LINE
from ensayo.models import Classifier, FoldAverage
from ensayo.outputs.category import CategoryOutput
from ensayo.recipe import Recipe
from ensayo.store import atomic_path, write_json

CV_METRICS = (*ev.QUALITY, "ece")  # each fold's test figures summarized over the folds


def out_of_fold(folds: list[Splits], members: list[Classifier],
                classes: CategoryOutput) -> tuple[np.ndarray, list[str], pl.DataFrame]:
    """Every row's probabilities (over `classes`) from the fold model that held it out, its true label, and
    the table to save (the row's line in the data, fold, true and predicted label, confidence)."""
    parts, true, frames = [], [], []
    for fold, (splits, member) in enumerate(zip(folds, members, strict=True)):
        probabilities = np.zeros((splits.test.height, len(classes)), dtype=np.float32)
        columns = [classes.index[label] for label in member.classes.classes]
        probabilities[:, columns] = member.predict_proba(splits.test)
        labels = member.labels(splits.test)
        predicted = classes.inverse(probabilities.argmax(axis=1))
        lines = splits.test[LINE] if LINE in splits.test.columns else pl.Series(range(splits.test.height))
        frames.append(pl.DataFrame({"line": lines.cast(pl.Int64), "fold": [fold] * splits.test.height,
                                    "true": labels, "predicted": predicted,
                                    "confidence": probabilities.max(axis=1)}))
        parts.append(probabilities)
        true += labels
    return np.concatenate(parts), true, pl.concat(frames)


def fold_summary(fold_metrics: list[dict[str, Any]], confidence: float = 0.95) -> dict[str, float]:
    """`cv/<metric>_mean`, `_std`, `_low`, `_high` (a Student-t interval over the folds) and `_fold<k>`, for
    each test quality metric the fold runs have."""
    summary: dict[str, float] = {}
    for name in CV_METRICS:
        values = [metrics.get(f"test/{name}") for metrics in fold_metrics]
        if any(v is None for v in values):
            continue
        mean, std, half = ev.interval95(values, confidence)
        summary |= {f"cv/{name}_mean": mean, f"cv/{name}_std": std, f"cv/{name}_low": mean - half,
                    f"cv/{name}_high": mean + half}
        summary |= {f"cv/{name}_fold{k}": float(v) for k, v in enumerate(values)}
    return summary


def write_cross_validation(run_dir: Path, recipe: Recipe, folds: list[Splits], members: list[Classifier],
                           fold_metrics: list[dict[str, Any]]) -> tuple[dict[str, float], FoldAverage]:
    """The run above the folds: its state (the folds and the union of their classes), the out-of-fold
    predictions, their confusion and reliability, and its metrics (returned, not written)."""
    average = FoldAverage(recipe, members)
    write_json(run_dir / layout.STATE, {"folds": len(members), "output": average.classes.state()})
    probabilities, true, table = out_of_fold(folds, members, average.classes)
    with atomic_path(run_dir / layout.OUT_OF_FOLD) as temporary:
        table.sort("line").write_csv(temporary)
    evaluate = recipe.evaluate
    rows = ev.summarise(probabilities, average.classes.transform(true))
    metrics = ev.score_rows(rows, true, average.classes, "test/")
    metrics["test/ece"] = ev.calibration_error(*ev.reliability_points(rows))
    metrics |= ev.bootstrap_intervals(true, rows, average.classes, "test/", evaluate.bootstrap, evaluate.seed,
                                      evaluate.confidence)
    metrics |= fold_summary(fold_metrics, evaluate.confidence)
    metrics["fit_seconds"] = float(sum(m.get("fit_seconds", 0.0) for m in fold_metrics))
    ev.write_test_report(run_dir, true, table["predicted"].to_list())
    ev.plot_reliability({"out of fold": ev.reliability_points(rows)}, run_dir / layout.RELIABILITY)
    return metrics, average
