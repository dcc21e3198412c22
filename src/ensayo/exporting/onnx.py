"""`ensayo export RUN --format onnx`: the run's network as ONNX (the model type's `export_onnx`), beside the run's
JSON state, so that its ONNX engine predicts what torch predicts (within 1e-4) with ensayo's own preprocessing."""

from __future__ import annotations

import shutil
from pathlib import Path

from ensayo import layout
from ensayo.exporting.mlflow import Exported
from ensayo.models import fold_dirs, is_cross_validated, refusal
from ensayo.runs.saved import SavedRun

RUN_FILES = (layout.FORMAT, layout.RECIPE, layout.STATE)  # what predicting with the ONNX model reads


def onnx_problem(run: SavedRun) -> str | None:
    """Why this run cannot be exported to ONNX, or None when it can."""
    return refusal(run.model, "onnx")


def export_onnx(run: SavedRun, output: Path | None = None, quantize: str | None = None) -> Exported:
    """Write the ONNX network (and, into another folder, the files predicting needs); returns the folder.
    `quantize="int8"` stores its weights in int8 (ONNX Runtime's dynamic quantization)."""
    problem = onnx_problem(run)
    if problem:
        raise ValueError(f"{run.path}: cannot export to ONNX: {problem}")
    target = output or run.path
    target.mkdir(parents=True, exist_ok=True)
    run.model.export_onnx(target, quantize)  # type: ignore[union-attr]
    if target != run.path:
        _copy_run_files(run.path, target)
        if is_cross_validated(run.recipe):  # each fold's network, read by the fold's own run files
            folds = run.recipe.data.split.folds or 0
            for source, copy in zip(fold_dirs(run.path, folds), fold_dirs(target, folds), strict=True):
                _copy_run_files(source, copy)
    return Exported(target)


def _copy_run_files(run_dir: Path, target: Path) -> None:
    for name in RUN_FILES:
        shutil.copy2(run_dir / name, target / name)
