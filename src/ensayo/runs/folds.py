"""A cross-validated run (`data.split.folds: K`): K fold runs in `folds/fold<k>`, each a complete run trained
on its own training part, and the recipe's run above them. It predicts by averaging its fold models'
probabilities (`ensayo.models.FoldAverage`); its metrics are the folds' (mean, spread and a Student-t
interval) and those of the out-of-fold predictions, each row predicted by the one model that never saw it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ensayo import layout
from ensayo import metrics as ev
from ensayo.data import FILE, Folds, Splits
from ensayo.data.read import LINE
from ensayo.models import Classifier, FoldAverage
from ensayo.outputs.category import CategoryOutput
from ensayo.recipe import Recipe
from ensayo.store import atomic_path, write_json

CV_METRICS = (*ev.QUALITY, "ece")  # each fold's test figures summarized over the folds
TEACHER_TOP = 32  # the out-of-fold probabilities kept per row: a student learns from the teacher's likely classes


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


def file_digest(path: str | Path) -> str:
    """The SHA-256 of a file's bytes: which data a teacher's lines are lines of."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def write_out_of_fold_probabilities(path: Path, probabilities: np.ndarray, true: list[str], table: pl.DataFrame,
                                    classes: CategoryOutput, source: str) -> None:
    """Each row's `TEACHER_TOP` likeliest classes and their out-of-fold probabilities, its line and label, by
    line, with the classes and the source file's digest (arrays only: read back without unpickling)."""
    order = np.argsort(table["line"].to_numpy(), kind="stable")  # by line, as the table is saved
    probabilities, table = probabilities[order], table[order]
    true = [true[i] for i in order]
    top = min(TEACHER_TOP, probabilities.shape[1])
    best = np.argpartition(-probabilities, top - 1, axis=1)[:, :top] if top < probabilities.shape[1] \
        else np.tile(np.arange(top), (len(probabilities), 1))
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        np.savez_compressed(file, lines=table["line"].to_numpy().astype(np.int64),
                            labels=np.array(true, dtype=str), classes=np.array(classes.classes, dtype=str),
                            top_classes=best.astype(np.int32),
                            top_probabilities=np.take_along_axis(probabilities, best, axis=1).astype(np.float32),
                            source=np.array(source), source_digest=np.array(file_digest(source)))


def write_cross_validation(run_dir: Path, recipe: Recipe, folds: Folds | list[Splits], members: list[Classifier],
                           fold_metrics: list[dict[str, Any]]) -> tuple[dict[str, float], FoldAverage]:
    """The run above the folds: its state (the folds and the union of their classes), the out-of-fold
    predictions (the top ones in a table, their probabilities for a student), their confusion and reliability,
    the fold average's scores on the held-out rows (`hold_out_test`), and its metrics (returned, not written)."""
    average = FoldAverage(recipe, members)
    write_json(run_dir / layout.STATE, {"folds": len(members), "output": average.classes.state()})
    probabilities, true, table = out_of_fold(folds, members, average.classes)
    with atomic_path(run_dir / layout.OUT_OF_FOLD) as temporary:
        table.sort("line").write_csv(temporary)
    if FILE in folds[0].train.columns and folds[0].train.height:
        write_out_of_fold_probabilities(run_dir / layout.OUT_OF_FOLD_PROBABILITIES, probabilities, true, table,
                                        average.classes, folds[0].train[FILE][0])
    evaluate = recipe.evaluate
    rows = ev.summarise(probabilities, average.classes.transform(true))
    metrics = ev.score_rows(rows, true, average.classes, "test/")
    metrics["test/ece"] = ev.calibration_error(*ev.reliability_points(rows))
    metrics |= ev.bootstrap_intervals(true, rows, average.classes, "test/", evaluate.bootstrap, evaluate.seed,
                                      evaluate.confidence)
    metrics |= fold_summary(fold_metrics, evaluate.confidence)
    held_out = getattr(folds, "held_out", None)
    if held_out is not None and held_out.height:
        metrics |= held_out_scores(average, held_out, recipe)
    metrics["fit_seconds"] = float(sum(m.get("fit_seconds", 0.0) for m in fold_metrics))
    ev.write_test_report(run_dir, true, table["predicted"].to_list())
    ev.plot_reliability({"out of fold": ev.reliability_points(rows)}, run_dir / layout.RELIABILITY)
    return metrics, average


def held_out_scores(average: FoldAverage, table: pl.DataFrame, recipe: Recipe) -> dict[str, float]:
    """`held_out/<metric>` (with bootstrap intervals): the fold average on the rows that no fold trained on, the
    test rows of a single split with the same seed (`data.split.hold_out_test`)."""
    true = average.members[0].labels(table)
    rows = ev.summarise(average.predict_proba(table), average.classes.transform(true))
    evaluate = recipe.evaluate
    metrics = ev.score_rows(rows, true, average.classes, "held_out/")
    metrics["held_out/ece"] = ev.calibration_error(*ev.reliability_points(rows))
    return metrics | ev.bootstrap_intervals(true, rows, average.classes, "held_out/", evaluate.bootstrap,
                                            evaluate.seed, evaluate.confidence)
