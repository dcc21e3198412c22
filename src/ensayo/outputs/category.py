"""The category output: the label column's classes, fitted on the training labels."""

from __future__ import annotations

from typing import Any

import numpy as np

UNKNOWN = -1


class CategoryOutput:
    """Fit on the training labels; a label never seen in training encodes to UNKNOWN (-1)."""

    def __init__(self, column: str) -> None:
        self.column = column
        self.classes: list[str] = []
        self.index: dict[str, int] = {}

    def fit(self, labels: list[Any]) -> CategoryOutput:
        self.classes = sorted({str(v) for v in labels})
        self.index = {c: i for i, c in enumerate(self.classes)}
        return self

    def transform(self, labels: list[Any]) -> np.ndarray:
        get = self.index.get
        return np.array([get(str(v), UNKNOWN) for v in labels], dtype=np.int64)

    def inverse(self, indices: np.ndarray) -> list[str]:
        return [self.classes[i] for i in indices]

    def __len__(self) -> int:
        return len(self.classes)

    def state(self) -> dict[str, Any]:
        return {"column": self.column, "classes": self.classes}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CategoryOutput:
        output = cls(state["column"])
        output.classes = list(state["classes"])
        output.index = {c: i for i, c in enumerate(output.classes)}
        return output
