"""What a recipe may say of a text input: its preprocessing (`preprocessing.TextPreprocessing`) and its encoders'
options, declared without network code (`ensayo.features.schemas`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ensayo.features.schemas import declare_feature
from ensayo.features.text.preprocessing import TextPreprocessing
from ensayo.recipe import Strict


class BagEncoderConfig(Strict):
    type: Literal["bag"]
    embedding_dim: int = Field(100, gt=0)
    pooling: Literal["mean", "mean_max"] = "mean"
    freeze_embeddings: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)


class CnnEncoderConfig(Strict):
    type: Literal["cnn"]
    embedding_dim: int = Field(100, gt=0)
    filter_widths: list[int] = Field(default_factory=lambda: [2, 3, 4], min_length=1)
    filters_count: int = Field(100, gt=0)
    freeze_embeddings: bool = False
    dropout: float = Field(0.1, ge=0, lt=1)


class RnnEncoderConfig(Strict):
    type: Literal["rnn"]
    embedding_dim: int = Field(100, gt=0)
    cell: Literal["lstm", "gru"] = "lstm"
    hidden_size: int = Field(128, gt=0)
    layers: int = Field(1, ge=1)
    bidirectional: bool = True
    pooling: Literal["max", "mean", "last"] = "max"
    freeze_embeddings: bool = False
    dropout: float = Field(0.1, ge=0, lt=1)


declare_feature("text", TextPreprocessing, {"bag": BagEncoderConfig, "cnn": CnnEncoderConfig, "rnn": RnnEncoderConfig},
                module="ensayo.features.text.feature")
