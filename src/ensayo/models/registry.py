"""Trained models read back from run directories of any format version (their recipes: `recipes`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ensayo import layout
from ensayo.models.base import Classifier, ModelType, model_type_of, refusal
from ensayo.models.folds import FoldAverage, is_cross_validated
from ensayo.models.recipes import format_version, is_finished, load_recipe, resolve_recipe, run_recipe
from ensayo.models.schemas import MODEL_SCHEMAS
from ensayo.recipe import Recipe, recipe_to_dict
from ensayo.store import write_json, write_yaml

__all__ = ["ENGINES", "format_version", "is_finished", "load_recipe", "load_trained", "on_device",
           "resolve_recipe", "run_recipe", "save_recipe", "write_format"]

ENGINES = ("torch", "onnx")  # torch: the model as trained; onnx: its `load_onnx`, reading what `export_onnx` wrote
DEVICES = ("cpu", "cuda", "auto")  # where a loaded model answers


def load_trained(run_dir: str | Path, recipe: Recipe | None = None, engine: str = "torch",
                 device: str = "cpu") -> tuple[Recipe, ModelType | FoldAverage]:
    """The recipe (read from the run unless given) and the trained model of a run directory: a cross-validated
    run's is its fold models' average. With `engine="onnx"`, the model type's ONNX engine reads the exported
    network instead. `device` (cpu, cuda, auto) is where its networks answer (see `on_device`)."""
    run_dir = Path(run_dir)
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: choose {' or '.join(ENGINES)}")
    if device not in DEVICES:
        raise ValueError(f"device {device!r}: choose {', '.join(DEVICES)}")
    recipe = recipe or run_recipe(run_dir)
    if is_cross_validated(recipe):
        return recipe, FoldAverage.load(run_dir, recipe,
                                        lambda fold: load_trained(fold, engine=engine, device=device)[1])
    if engine == "onnx":
        # the engine its declared schema loads, where it has one: neither the type's class nor torch is imported
        kind: Any = MODEL_SCHEMAS.get(recipe.model.type)
        if not hasattr(kind, "load_onnx"):
            kind = model_type_of(recipe)
            problem = refusal(kind, "onnx")
            if problem:
                raise ValueError(f"{run_dir}: no ONNX engine for this run: {problem}")
        model = kind.load_onnx(run_dir, recipe)
        return recipe, on_device(model, device, f"{run_dir}: the ONNX engine (onnxruntime's CPU build)")
    kind = model_type_of(recipe)
    try:
        model = kind.load(run_dir, recipe)
    except KeyError as missing:  # a state file from another version, or edited by hand
        raise ValueError(f"{run_dir}: damaged run: its {layout.STATE} has no {missing.args[0]!r} (the fitted "
                         "preprocessing cannot be read back); train the run again") from None
    if isinstance(model, Classifier):
        model.load_calibration(run_dir)
    return recipe, on_device(model, device, f"{run_dir}: a {recipe.model.type} run")


def on_device(model: Any, device: str, what: str) -> Any:
    """The model with its networks moved to `device`: cpu; cuda (refused where there is none); auto, cuda where
    there is one. A model that cannot answer on a GPU (it has no `to_device`: no torch network, as under the
    ONNX engine) stays on the CPU under auto and refuses cuda by name."""
    if device == "cpu":
        return model
    from ensayo.training import pick_device

    target = pick_device(device)
    if target.type == "cpu":
        return model
    if not hasattr(model, "to_device"):
        if device == "auto":
            return model
        raise ValueError(f"{what} answers on the CPU only: use --device cpu (or auto)")
    model.to_device(target)
    return model


def write_format(run_dir: Path, recipe: Recipe, trained_at: str | None = None) -> None:
    """The run's format version and model type; once training is done, when it finished."""
    done = {"trained_at": trained_at} if trained_at else {}
    write_json(run_dir / layout.FORMAT, {"version": layout.FORMAT_VERSION, "model_type": recipe.model.type, **done})


def save_recipe(recipe: Recipe, run_dir: Path) -> None:
    """The recipe as run, every key written (defaults included), and the run's format version."""
    write_yaml(run_dir / layout.RECIPE, recipe_to_dict(recipe))
    write_format(run_dir, recipe)
