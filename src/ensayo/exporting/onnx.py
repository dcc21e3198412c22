"""`ensayo export RUN --format onnx`: a neural classifier's network as ONNX, beside the run's JSON state, so
that ONNX Runtime predicts what torch predicts (within 1e-4) with ensayo's own preprocessing."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from ensayo import layout
from ensayo.exporting.mlflow import Exported
from ensayo.models import model_type_of
from ensayo.models.neural import NeuralClassifier
from ensayo.models.onnx import ProbabilityNetwork, first_batch, flatten
from ensayo.runs import SavedRun, example_rows, rows_to_table
from ensayo.runs.folds import FoldAverage, fold_dirs
from ensayo.store import atomic_path, write_json

OPSET = 18
RUN_FILES = (layout.FORMAT, layout.RECIPE, layout.STATE)  # what predicting with the ONNX model reads


def onnx_problem(run: SavedRun) -> str | None:
    """Why this run cannot be exported to ONNX, or None when it can."""
    problem = model_type_of(run.recipe).export_problem("onnx")
    if problem:
        return problem
    if isinstance(run.model, FoldAverage):
        problems = (onnx_problem(SavedRun.load(fold)) for fold in fold_dirs(run.path, len(run.model.members)))
        return next((f"a fold model: {p}" for p in problems if p), None)
    assert isinstance(run.model, NeuralClassifier)
    network = run.model.network
    assert network is not None
    for name, encoder in network.encoders.items():
        for part in encoder.modules():  # an encoder, or a module inside it, may say why it cannot be exported
            if getattr(part, "onnx_problem", None):
                return f"input {name!r}: its {type(encoder).__name__} {part.onnx_problem}"
    return None


def export_onnx(run: SavedRun, output: Path | None = None) -> Exported:
    """Write the ONNX network (and, into another folder, the files predicting needs); returns the folder."""
    problem = onnx_problem(run)
    if problem:
        raise ValueError(f"{run.path}: cannot export to ONNX: {problem}")
    target = output or run.path
    target.mkdir(parents=True, exist_ok=True)
    if isinstance(run.model, FoldAverage):  # each fold's network; the ONNX engine averages them as torch does
        for fold in fold_dirs(run.path, len(run.model.members)):
            export_onnx(SavedRun.load(fold), None if output is None else target / layout.FOLDS / fold.name)
        _copy_run_files(run.path, target)
        return Exported(target)
    assert isinstance(run.model, NeuralClassifier) and run.model.network is not None
    with tempfile.TemporaryDirectory(prefix="ensayo-onnx-") as folder:
        small = first_batch(run.model, rows_to_table(run.fields, _rows(run.model, run, 2, True), Path(folder)))
        large = first_batch(run.model, rows_to_table(run.fields, _rows(run.model, run, 5, False), Path(folder)))
    flat, other = flatten(small), flatten(large)
    names = list(flat)
    dynamic = {name: {axis: f"{name}_{axis}" for axis in range(flat[name].dim())
                      if axis == 0 or flat[name].shape[axis] != other[name].shape[axis]} for name in names}
    network = ProbabilityNetwork(run.model.network.eval(), names, run.model.temperature)  # calibrated in the graph
    with atomic_path(target / layout.ONNX_MODEL) as temporary, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, tuple(flat[n] for n in names), str(temporary), input_names=names,
                          output_names=["probabilities"], dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    write_json(target / layout.ONNX_INPUTS, {"inputs": names, "opset": OPSET, "temperature": run.model.temperature})
    _copy_run_files(run.path, target)
    return Exported(target)


def _copy_run_files(run_dir: Path, target: Path) -> None:
    if target != run_dir:
        for name in RUN_FILES:
            shutil.copy2(run_dir / name, target / name)



def _rows(model: NeuralClassifier, run: SavedRun, count: int, short: bool) -> list[dict[str, Any]]:
    """Rows to trace the network with: the features' own values where they have some (a text of known words
    exercises every branch a real one does), any value of the input's kind elsewhere. `short` rows have
    shorter texts, so that comparing two traces tells which tensor dimensions vary."""
    rows = example_rows(run.fields, count, short)
    for feature in model.features:
        values = feature.example_values(count, short)
        if values is not None and feature.column in rows[0]:
            for row, value in zip(rows, values, strict=True):
                row[feature.column] = value
    return rows
