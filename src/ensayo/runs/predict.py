"""Saved run -> predictions and scores of new rows: files (streamed in batches) and in-memory rows."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl
from rich.progress import Progress

from ensayo.data import FILE, LINE, DataReport, apply_expressions, read_for_inference, stream_for_inference
from ensayo.metrics import ROW, score_rows, summarise
from ensayo.runs import answer
from ensayo.runs.saved import SavedRun
from ensayo.store import atomic_path


def predict_file(run: SavedRun, source: Path, destination: Path, top_k: int = answer.TOP_K, batch_size: int = 4096,
                 progress: Progress | None = None, all_classes: bool = False,
                 keep: list[str] | None = None) -> dict[str, Any]:
    """Write the top-k labels with probabilities of every row of `source` to the CSV `destination`, each row
    named by its line (or file) and the columns of `keep`, with a `note` column for inputs that say how they read
    a row (a recording with more speech than the model hears)."""
    run.require("predict")  # before the file is read: a generator's run is refused by its type
    report = DataReport()
    k = answer.labels_per_row(top_k, all_classes, len(run.output))
    by_file = run.recipe.data.format == "folder"
    keep = list(keep or [])
    header = ["file" if by_file else "line", *keep] + [f"{kind}_{i}" for i in range(1, k + 1)
                                                      for kind in ("label", "probability")]
    header += ["note"] if run.takes_notes else []
    destination.parent.mkdir(parents=True, exist_ok=True)
    task = progress.add_task(f"predicting {source.name}", total=None) if progress else None
    written = 0
    with atomic_path(destination) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for table in stream_for_inference(source, run.recipe, report):  # any size: a chunk in memory at a time
            missing = [column for column in keep if column not in table.columns]
            if missing:
                shown = ", ".join(c for c in table.columns if not c.startswith("__"))
                raise ValueError(f"--keep: {source} has no column {missing[0]!r} (columns: {shown})")
            for start in range(0, table.height, batch_size):
                chunk = table.slice(start, batch_size)
                labels, probabilities = run.predict(chunk, top_k=k)
                names = chunk.select(FILE if by_file else LINE, *keep).rows()
                notes = [[note or ""] for note in run.notes(chunk)] if run.takes_notes else [[]] * chunk.height
                for name, classes, values, note in zip(names, labels, answer.rounded(probabilities), notes,
                                                       strict=True):
                    writer.writerow([*name] + [x for pair in zip(classes, values, strict=True) for x in pair] + note)
                written += chunk.height
                if progress is not None and task is not None:
                    progress.advance(task, chunk.height)
    return {"rows": written, "bad_rows": [str(b) for b in report.bad_rows]}


class RowPredictions(NamedTuple):
    """The answers for a file's rows: each row's name (its line, or its file for folder recipes), every
    class's probability, what a person should know of how the row was read (None: nothing), and the rows
    left out and why."""

    names: list[str]
    probabilities: np.ndarray
    notes: list[str | None]
    bad_rows: list[str]


def predict_rows(run: SavedRun, source: Path) -> RowPredictions:
    """Every class's probability for each usable row of `source` (for a folder recipe: one file or a
    folder of files), in memory."""
    run.require("predict")
    table, report = read_for_inference(source, run.recipe, need_label=False)
    if run.recipe.data.format == "folder":
        names = [Path(f).name for f in table[FILE].to_list()]
    else:
        names = [f"line {n}" for n in table[LINE].to_list()]
    probabilities = run.predict_proba(table) if table.height else np.zeros((0, len(run.output)))
    notes = run.notes(table) if run.takes_notes else [None] * table.height
    return RowPredictions(names, probabilities, notes, [str(b) for b in report.bad_rows])


def evaluate_file(run: SavedRun, source: Path, batch_size: int = 4096) -> tuple[dict[str, float], list[str]]:
    """Score a labelled file in the recipe's format with the same metrics as a run."""
    run.require("predict")
    table, report = read_for_inference(source, run.recipe, need_label=True, bins=run.bins)
    true = table[run.recipe.output.column].cast(pl.String).to_list()
    labels = run.output.transform(true)
    chunks = [summarise(run.predict_proba(table.slice(start, batch_size)), labels[start: start + batch_size])
              for start in range(0, table.height, batch_size)]
    metrics = score_rows(np.concatenate(chunks) if chunks else np.empty(0, dtype=ROW), true, run.output)
    metrics["rows"] = float(table.height)
    unseen = sorted(set(true) - set(run.output.classes))
    notes = [str(b) for b in report.bad_rows]
    if unseen:
        notes.append(f"{len(unseen)} label(s) not seen in training, always wrong: {', '.join(unseen[:10])}")
    return metrics, notes


def predict_table(run: SavedRun, rows: pl.DataFrame | list[dict[str, Any]], top_k: int = answer.TOP_K,
                  all_classes: bool = False) -> tuple[list[list[str]], np.ndarray]:
    """The top-k labels and probabilities of in-memory rows (a polars table or a list of mappings), each
    holding the recipe's input columns."""
    table = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(rows)
    table = apply_expressions(table, run.recipe, only_possible=True)  # inputs that are derived columns
    needed = [run.recipe.column_of(spec) for spec in run.recipe.inputs]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"the rows lack the input column(s) {missing} (inputs: {needed})")
    return run.predict(table, top_k, all_classes)
