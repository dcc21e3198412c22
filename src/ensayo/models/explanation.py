"""What a model type's `explain` answers, row by row: each input's share of the answer and, by kind, what inside
it mattered (made by `attribution` for a network, by the linear type for its own weights; read without torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class InputExplanation:
    """One input of one row: its share of the answer and, by kind, what inside it mattered."""

    name: str
    kind: str  # "tokens", "spectrogram", "image" or "value"
    total: float  # the input's attribution to the predicted class's probability
    tokens: list[tuple[str, float, float]] = field(default_factory=list)  # (token, word part, subword part)
    # the text as typed: (word, what the model read of it, its tokens' share), when the two line up
    typed: list[tuple[str, str, float]] = field(default_factory=list)
    map: np.ndarray | None = None  # (bins, frames) or (height, width) attribution
    background: np.ndarray | None = None  # the spectrogram or the photo the map lies over
    value: str = ""  # the row's value of a number or category input


@dataclass
class RowExplanation:
    """One row: the label explained (the predicted one unless another was asked for) and its probability, and
    each input's part in it."""

    predicted: str
    probability: float  # of the label explained
    inputs: list[InputExplanation]
    true: str | None = None
    delta: float = 0.0  # Captum's convergence delta: how far the attributions miss their sum
    explained: str = ""  # the label the attributions are for; empty: the predicted one

    @property
    def label(self) -> str:
        return self.explained or self.predicted
