"""What a recipe may say of a sentence input: its preprocessing and its encoders' options, declared without
network code (`ensayo.features.schemas`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ensayo.features.schemas import declare_feature
from ensayo.recipe import Strict


class SentencePreprocessing(Strict):
    model: Literal["minilm", "use"] = "minilm"
    fine_tune: bool = Field(False, description="minilm only: train the encoder's weights with the task")
    max_length: int = Field(64, gt=0, description="word pieces per text (minilm)")
    batch_size: int = Field(128, gt=0, description="texts per encoder call while caching vectors")
    cache: bool = True

    @model_validator(mode="after")
    def _check(self) -> SentencePreprocessing:
        if self.fine_tune and self.model != "minilm":
            raise ValueError(f"fine_tune: {self.model!r} is an ONNX model and is used frozen; use model 'minilm'")
        return self


class SentenceMlpConfig(Strict):
    type: Literal["mlp"]
    hidden: list[int] = Field(default_factory=list, description="dense layers over the sentence vector")
    dropout: float = Field(0.1, ge=0, lt=1)


declare_feature("sentence", SentencePreprocessing, {"mlp": SentenceMlpConfig},
                module="ensayo.features.sentence")
