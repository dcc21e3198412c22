"""Recipes read and resolved against the declared feature and model types (`ensayo.features.schemas`,
`ensayo.models.schemas`), and the recipe a run was trained with, brought up to the current format: all without
network code, so that `ensayo validate` reads recipes without loading torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ensayo import layout
from ensayo.data import recipe_problems
from ensayo.features import FEATURE_SCHEMAS
from ensayo.models.schemas import MODEL_SCHEMAS
from ensayo.recipe import Recipe, RecipeError, read_raw, validate_schema
from ensayo.recipe.resolve import resolve
from ensayo.store import read_json


def resolve_recipe(recipe: Recipe, label: str = "<recipe>") -> Recipe:
    """Type and check a schema-valid recipe with the declared feature and model types, and its filters and
    expressions as far as they can be without data."""
    resolve(recipe, FEATURE_SCHEMAS, MODEL_SCHEMAS, label)
    problems = recipe_problems(recipe)
    if problems:
        raise RecipeError("\n".join([f"{label}: the recipe is not valid", *(f"  {line}" for line in problems)]))
    return recipe


def load_recipe(source: str | Path | dict[str, Any], overrides: list[str] | None = None,
                label: str = "<recipe>") -> Recipe:
    """Read, override, validate and resolve a recipe; raises RecipeError naming every bad key (and `label`,
    the recipe's origin, when `source` is a mapping)."""
    raw, label = read_raw(source, overrides, label)
    return resolve_recipe(validate_schema(raw, label), label)


def format_version(run_dir: Path) -> int:
    """The run format a run directory was written in; runs from before the format had a version are 1."""
    path = run_dir / layout.FORMAT
    return int(read_json(path)["version"]) if path.is_file() else 1


def is_finished(run_dir: Path) -> bool:
    """Whether a run directory holds a finished run: its metrics are written, which happens after every other
    file of the run, and no file of training is left (a process killed in between left the run unfinished)."""
    return (run_dir / layout.METRICS).is_file() and not any((run_dir / name).exists() for name in layout.TRAINING_ONLY)


def run_recipe(run_dir: Path) -> Recipe:
    """The recipe a run was trained with, brought up to the current format."""
    path = run_dir / layout.RECIPE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a saved ensayo run (needs {layout.RECIPE} and {layout.STATE})")
    raw, label = read_raw(path)
    version = format_version(run_dir)
    if version > layout.FORMAT_VERSION:
        raise RecipeError(f"{run_dir}: run format {version} is newer than this ensayo reads "
                          f"({layout.FORMAT_VERSION}); upgrade ensayo")
    if version == 1:
        raw = _upgrade_from_1(raw)
    return resolve_recipe(validate_schema(raw, label), label)


def _upgrade_from_1(raw: dict[str, Any]) -> dict[str, Any]:
    """Format 1 saved every model type's section (and a `combiner`, always concat) whatever the type: keep
    the type's own sections only."""
    model = dict(raw.get("model") or {})
    kind = model.get("type", "neural")
    own = MODEL_SCHEMAS[kind].sections if kind in MODEL_SCHEMAS else {}
    raw["model"] = {key: value for key, value in model.items() if key == "type" or key in own}
    return raw
