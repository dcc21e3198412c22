"""What a recipe may say of the `neural` model type (one encoder per input, a head), and what it checks there,
without network code (`ensayo.models.schemas`); and its ONNX engine, which answers without torch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ensayo.models.schemas import ClassifierSchema, Sections, declare_model_type
from ensayo.recipe import HeadConfig, Recipe

if TYPE_CHECKING:
    from ensayo.models.onnx_engine import OnnxClassifier


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

    @classmethod
    def load_onnx(cls, run_dir: Path, recipe: Recipe) -> OnnxClassifier:
        """The run answering with the network that `export_onnx` wrote, in ONNX Runtime (its graph holds the
        temperature): declared here, so that loading it imports neither the torch classifier nor torch."""
        from ensayo.models.onnx_engine import OnnxClassifier

        return OnnxClassifier.load(run_dir, recipe)
