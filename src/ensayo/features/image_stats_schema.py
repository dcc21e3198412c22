"""What a recipe may say of an image statistics input: its preprocessing and its encoders' options, declared without
network code (`ensayo.features.schemas`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ensayo.features.image.preprocessing import ImageFileOptions
from ensayo.features.schemas import declare_feature
from ensayo.recipe import Strict

STATS = ("jpeg_quality", "bytes_per_pixel", "sharpness", "fine_detail", "falloff", "noise", "brightness",
         "contrast", "colourfulness", "width", "height")


class ImageStatsPreprocessing(ImageFileOptions):
    stats: list[Literal[STATS]] = Field(default_factory=lambda: list(STATS),  # type: ignore[valid-type]
                                        min_length=1, description="which statistics, in this order")

    @field_validator("stats")
    @classmethod
    def _unique(cls, stats: list[str]) -> list[str]:
        if len(set(stats)) != len(stats):
            raise ValueError(f"each statistic once; got {stats}")
        return stats


class StatsPassthroughConfig(Strict):
    type: Literal["passthrough"]


class StatsDenseConfig(Strict):
    type: Literal["dense"]
    size: int = Field(16, gt=0)


declare_feature("image_stats", ImageStatsPreprocessing, {"passthrough": StatsPassthroughConfig,
                                                          "dense": StatsDenseConfig},
                module="ensayo.features.image_stats")
