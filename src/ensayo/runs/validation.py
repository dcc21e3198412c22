"""`ensayo validate`: a recipe checked without training, reading no more than each data file's header, and without
loading torch (the feature and model types' schemas are declared apart from their network code)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ensayo import layout
from ensayo.data import data_problems, leaking_inputs
from ensayo.models import MODEL_SCHEMAS, load_recipe
from ensayo.recipe import Recipe, RecipeError
from ensayo.runs.teacher import how_to_make, teacher_dir, teacher_problems, teacher_warnings


@dataclass
class Validation:
    """A recipe that passed every check that needs no data, as it will run, and what deserves a warning."""

    recipe: Recipe
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        recipe = self.recipe
        side = [target.column for target in recipe.output.auxiliary]
        learning = f"; auxiliary targets {', '.join(side)}" if side else ""
        return (f"valid ({recipe.model.type} model, {len(recipe.inputs)} input(s), output {recipe.output.type} "
                f"{', '.join(recipe.output.source_columns)}{learning})")


def validate(recipe: str | Path, overrides: list[str] | None = None) -> Validation:
    """Check a recipe reading no more than each data file's header: the schema, the declared types, the model
    type's own checks (an ensemble's member recipes too), that the data is there with the columns the recipe
    names; warn about inputs that feed the target through `derive`."""
    path = Path(recipe)
    base = path.resolve().parent
    loaded = load_recipe(path, overrides or [])
    loaded = MODEL_SCHEMAS[loaded.model.type].prepare(loaded, base)
    problems = data_problems(loaded, base)
    if problems:
        raise RecipeError("\n".join([f"{path}: the recipe does not fit its data", *(f"  {p}" for p in problems)]))
    warnings = [f"input {name!r} feeds the target {loaded.output.column!r} through `derive`: the model can learn "
                "the formula instead of the task" for name in leaking_inputs(loaded)]
    if loaded.train.teacher is not None:
        warnings += _teacher_warnings(path, base, loaded)
    return Validation(loaded, warnings)


def _teacher_warnings(path: Path, base: Path, recipe: Recipe) -> list[str]:
    """A teacher that cannot teach is refused; one that is not made yet is a warning (the recipe is sound, and
    `ensayo run` refuses to start without it), saying how to make it."""
    if not (teacher_dir(recipe, base) / layout.RECIPE).is_file():
        return [f"train.teacher.run: {teacher_dir(recipe, base)} is not made yet; {how_to_make(recipe, base)} "
                "before running this recipe"]
    problems = teacher_problems(recipe, base)
    if problems:
        raise RecipeError("\n".join([f"{path}: the recipe's teacher cannot teach it", *(f"  {p}" for p in problems)]))
    return teacher_warnings(recipe, base)
