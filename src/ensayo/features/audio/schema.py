"""What a recipe may say of an audio input: its preprocessing (`preprocessing.AudioPreprocessing`) and its
encoders' options, declared without network code (`ensayo.features.schemas`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ensayo.features.audio.preprocessing import AudioPreprocessing
from ensayo.features.schemas import declare_feature
from ensayo.recipe import Strict


class Cnn2dConfig(Strict):
    type: Literal["cnn2d"]
    channels: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1)
    convs_per_block: int = Field(1, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)


class AudioRnnConfig(Strict):
    type: Literal["rnn"]
    cell: Literal["lstm", "gru"] = "lstm"
    hidden_size: int = Field(128, gt=0)
    layers: int = Field(2, ge=1)
    bidirectional: bool = True
    pooling: Literal["mean_max", "mean", "last"] = "mean_max"
    dropout: float = Field(0.2, ge=0, lt=1)


class CnnRnnConfig(AudioRnnConfig):
    """The recurrent options of `rnn` (one layer by default), after convolution blocks of `channels`."""

    type: Literal["cnn_rnn"]  # type: ignore[assignment]
    channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=1)
    layers: int = Field(1, ge=1)


declare_feature("audio", AudioPreprocessing, {"cnn2d": Cnn2dConfig, "rnn": AudioRnnConfig, "cnn_rnn": CnnRnnConfig},
                module="ensayo.features.audio.feature")
