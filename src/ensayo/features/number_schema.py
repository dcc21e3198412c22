"""What a recipe may say of a number input: its preprocessing and its encoders' options, declared without
network code (`ensayo.features.schemas`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ensayo.features.schemas import declare_feature
from ensayo.recipe import Strict


class NumberPreprocessing(Strict):
    impute: Literal["mean", "median", "zero"] = "median"
    scaling: Literal["standard", "minmax", "log", "none"] = Field(
        "standard", description="log: sign(x) * log1p(|x|), then standardized")
    clip: float | None = Field(5.0, gt=0, description="clip scaled values to +- this (standard and log)")


class PassthroughConfig(Strict):
    type: Literal["passthrough"]
    missing_flag: bool = Field(False, description="also pass a 0/1 column saying the value was imputed")


class DenseNumberConfig(Strict):
    type: Literal["dense"]
    size: int = Field(8, gt=0)


declare_feature("number", NumberPreprocessing, {"passthrough": PassthroughConfig, "dense": DenseNumberConfig},
                module="ensayo.features.number")
