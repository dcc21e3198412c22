"""What a recipe may say of the `ensemble` model type (its member recipes), what it checks there, and the recipe
as it runs (with its members' inputs), without network code (`ensayo.models.schemas`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from ensayo.models.recipes import load_recipe
from ensayo.models.schemas import MODEL_SCHEMAS, ClassifierSchema, Sections, declare_model_type
from ensayo.recipe import InputConfig, Recipe, RecipeError, Strict, expand_path


class EnsembleConfig(Strict):
    """Member recipes (paths, relative to this recipe's folder) trained on this recipe's data and split;
    their log-probabilities are summed with one weight per member, the weights fitted together on the
    validation split."""

    members: list[str] = Field(default_factory=list, description="classifier recipes, two or more")


def member_recipes(recipe: Recipe, base: Path | None) -> list[Recipe]:
    """The members' recipes, read from their files and given the ensemble's data and output."""
    members = []
    for index, path in enumerate(recipe.model.ensemble.members):
        where = f"model.ensemble.members.{index} ({path})"
        try:
            member = load_recipe(expand_path(path, base))
        except (OSError, RecipeError) as exc:
            raise RecipeError(f"{where}: {exc}") from None
        kind = MODEL_SCHEMAS[member.model.type]
        if not issubclass(kind, ClassifierSchema) or issubclass(kind, EnsembleSchema):
            raise RecipeError(f"{where}: a member is a classifier that is not an ensemble, not {member.model.type!r}")
        # the same label; each member may learn its own auxiliary targets beside it
        if (member.output.type, member.output.column) != (recipe.output.type, recipe.output.column):
            raise RecipeError(f"{where}: its output ({member.output.column!r}) is not the ensemble's "
                              f"({recipe.output.column!r})")
        # the ensemble's derived columns (its target's bins, say), then those the member's inputs need
        derive = list({d.name: d for d in [*member.derive, *recipe.derive]}.values())
        member = member.model_copy(update={"data": recipe.data, "derive": derive})
        member.track.enabled = False
        members.append(member)
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise RecipeError(f"model.ensemble.members: member names must differ (each names its run folder), "
                          f"got {names}")
    return members


def with_members(recipe: Recipe, base: Path | None) -> Recipe:
    """The ensemble recipe with the union of its members' inputs (the columns every row needs) and its
    members' paths made absolute (a resumed run finds them from anywhere)."""
    inputs: dict[str, InputConfig] = {}
    derived = {spec.name: spec for spec in recipe.derive}
    for member in member_recipes(recipe, base):
        inputs |= {spec.name: spec for spec in member.inputs if spec.name not in inputs}
        derived |= {made.name: made for made in member.derive if made.name not in derived}
    paths = [str(expand_path(path, base).resolve()) for path in recipe.model.ensemble.members]
    model = recipe.model.model_copy(update={"ensemble": EnsembleConfig(members=paths)})
    return recipe.model_copy(update={"inputs": list(inputs.values()), "model": model,
                                     "derive": list(derived.values())})


@declare_model_type("ensemble")
class EnsembleSchema(ClassifierSchema):
    sections: ClassVar[Sections] = {"ensemble": EnsembleConfig}
    inputs_of_its_own = False

    @classmethod
    def check(cls, recipe: Recipe) -> list[str]:
        problems = super().check(recipe)
        if len(recipe.model.ensemble.members) < 2:
            problems.append("model.ensemble.members: an ensemble needs two or more member recipes")
        split = recipe.data.split
        if (split.files or {}).get("validation") is None and (split.method == "files" or split.validation == 0):
            problems.append("data.split: an ensemble fits its members' weights on a validation split; give one")
        return problems

    @classmethod
    def prepare(cls, recipe: Recipe, base: Path | None) -> Recipe:
        return with_members(recipe, base)
