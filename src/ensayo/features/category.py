"""The category input feature: single values or lists, embedded or multi-hot; unknown values to a bucket."""

from __future__ import annotations

import ast
from collections import Counter
from typing import Any

import numpy as np

from ensayo.features.base import Feature, Values, register_feature
from ensayo.features.category_schema import CategoryPreprocessing


def parse_values(value: Any, multi: bool, lowercase: bool) -> list[str]:
    """One cell as a list of category strings (empty for a missing cell or an empty list)."""
    if value is None:
        return []
    if not multi:
        text = str(value).strip()
        return [text.lower() if lowercase else text] if text else []
    if isinstance(value, list):
        items = value
    else:
        text = str(value).strip()
        try:
            items = ast.literal_eval(text) if text.startswith("[") else [text]
        except (ValueError, SyntaxError):
            items = [part for part in text.strip("[]").split(",")]
    cleaned = [str(item).strip().strip("'\"").strip() for item in items]
    return [c.lower() if lowercase else c for c in cleaned if c]


@register_feature("category")
class CategoryFeature(Feature):
    """A categorical column (one value, or a list of values per row). Index 0 is the unknown bucket:
    values unseen in training (or too rare) map to it at prediction time."""

    Preprocessing = CategoryPreprocessing
    values = Values("category")

    @classmethod
    def values_of(cls, preprocessing: CategoryPreprocessing) -> Values:  # type: ignore[override]
        return Values("category", multi=preprocessing.multi)

    def __init__(self, name: str, column: str, preprocessing: CategoryPreprocessing) -> None:
        super().__init__(name, column, preprocessing)
        self.values: list[str] = ["<unknown>"]
        self.index: dict[str, int] = {}

    @property
    def options(self) -> CategoryPreprocessing:
        return self.preprocessing  # type: ignore[return-value]

    def _parse(self, values: list[Any]) -> list[list[str]]:
        return [parse_values(v, self.options.multi, self.options.lowercase) for v in values]

    def fit(self, values: list[Any]) -> CategoryFeature:
        counts = Counter(item for row in self._parse(values) for item in row)
        kept = [v for v, n in counts.most_common(self.options.max_values) if n >= self.options.min_count]
        self.values = ["<unknown>", *sorted(kept)]
        self.index = {v: i for i, v in enumerate(self.values)}
        return self

    def transform(self, values: list[Any]) -> np.ndarray:
        """(rows, values) multi-hot counts (float32); column 0 counts unknown values."""
        encoded = np.zeros((len(values), len(self.values)), dtype=np.float32)
        for row, items in enumerate(self._parse(values)):
            for item in items:
                encoded[row, self.index.get(item, 0)] += 1.0
        return encoded

    def arrays(self, encoded: np.ndarray, index: np.ndarray) -> np.ndarray:
        return encoded[np.asarray(index)]

    def state(self) -> dict[str, Any]:
        return {"values": self.values}

    def load_state(self, state: dict[str, Any]) -> None:
        self.values = list(state["values"])
        self.index = {v: i for i, v in enumerate(self.values)}

    def describe(self) -> dict[str, Any]:
        return {"values": len(self.values) - 1}

    @classmethod
    def explore(cls, name: str, values: list[Any], labels: list[str], preprocessing: Any, directory: Any) -> list[str]:
        rows = [parse_values(v, preprocessing.multi, preprocessing.lowercase) for v in values]
        counts = Counter(item for row in rows for item in row)
        sizes = Counter(len(row) for row in rows)
        return [f"{len(counts):,} distinct values; values per row: "
                + ", ".join(f"{k}: {v:,}" for k, v in sorted(sizes.items())),
                "", "Most frequent: " + ", ".join(f"`{v}` {n:,}" for v, n in counts.most_common(20))]
