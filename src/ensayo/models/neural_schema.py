"""What a recipe may say of the `neural` model type (one encoder per input, a head), and what it checks there,
without network code (`ensayo.models.schemas`)."""

from __future__ import annotations

from typing import ClassVar

from ensayo.models.schemas import ClassifierSchema, Sections, declare_model_type
from ensayo.recipe import HeadConfig, Recipe


@declare_model_type("neural")
class NeuralSchema(ClassifierSchema):
    sections: ClassVar[Sections] = {"encoders": None, "head": HeadConfig}
    learns_auxiliary = True
    learns_from_teacher = True
    losses = frozenset({"cross_entropy", "focal"})
    weighs_classes = True

    @classmethod
    def check(cls, recipe: Recipe) -> list[str]:
        problems = super().check(recipe)
        missing = [spec.name for spec in recipe.inputs if spec.name not in recipe.model.encoders]
        if missing:
            problems.append(f"model.encoders has no encoder for inputs {missing}")
        return problems
