"""What a recipe may say of a category input: its preprocessing and its encoders' options, declared without
network code (`ensayo.features.schemas`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ensayo.features.schemas import declare_feature
from ensayo.recipe import Strict


class CategoryPreprocessing(Strict):
    multi: bool = Field(False, description="values are lists, written as JSON or Python lists: \"['a', 'b']\"")
    lowercase: bool = False
    min_count: int = Field(1, ge=1, description="rarer values go to the unknown bucket")
    max_values: int | None = Field(None, gt=0, description="keep the most frequent values only")


class MultiHotConfig(Strict):
    type: Literal["multi_hot"]


class CategoryEmbeddingConfig(Strict):
    type: Literal["embedding"]
    dim: int = Field(16, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)


declare_feature("category", CategoryPreprocessing, {"multi_hot": MultiHotConfig, "embedding": CategoryEmbeddingConfig},
                module="ensayo.features.category")
