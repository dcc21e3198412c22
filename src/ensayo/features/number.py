"""Number feature: one numeric column, imputed and scaled with statistics of the training split; and number
columns as auxiliary training targets (`output.auxiliary`), standardized the same way."""

from __future__ import annotations

from typing import Any

import numpy as np

from ensayo.features.base import Feature, Values, register_feature
from ensayo.features.number_schema import NumberPreprocessing


def to_numbers(values: list[Any]) -> np.ndarray:
    """Floats, NaN for what is missing or not a number."""
    out = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        try:
            out[i] = float(value)
        except (TypeError, ValueError):
            continue
    out[~np.isfinite(out)] = np.nan
    return out


@register_feature("number")
class NumberFeature(Feature):
    Preprocessing = NumberPreprocessing
    values = Values("number")

    def __init__(self, name: str, column: str, preprocessing: NumberPreprocessing) -> None:
        super().__init__(name, column, preprocessing)
        self.fill = 0.0
        self.center = 0.0
        self.scale = 1.0
        self.missing_share = 0.0

    @property
    def options(self) -> NumberPreprocessing:
        return self.preprocessing  # type: ignore[return-value]

    def _shape(self, x: np.ndarray) -> np.ndarray:
        return np.sign(x) * np.log1p(np.abs(x)) if self.options.scaling == "log" else x

    def fit(self, values: list[Any]) -> NumberFeature:
        x = to_numbers(values)
        known = x[~np.isnan(x)]
        if len(known) == 0:
            raise ValueError(f"input {self.name!r}: column {self.column!r} has no numbers in the training split")
        self.missing_share = float(np.isnan(x).mean())
        self.fill = {"mean": float(known.mean()), "median": float(np.median(known)), "zero": 0.0}[self.options.impute]
        shaped = self._shape(np.where(np.isnan(x), self.fill, x))
        if self.options.scaling == "minmax":
            self.center, self.scale = float(shaped.min()), float(shaped.max() - shaped.min()) or 1.0
        elif self.options.scaling in ("standard", "log"):
            self.center, self.scale = float(shaped.mean()), float(shaped.std()) or 1.0
        return self

    def transform(self, values: list[Any]) -> np.ndarray:
        """(rows, 2) float32: the scaled number (the fill where it is missing) and whether it was missing."""
        x = to_numbers(values)
        scaled = (self._shape(np.where(np.isnan(x), self.fill, x)) - self.center) / self.scale
        if self.options.clip and self.options.scaling in ("standard", "log"):
            scaled = np.clip(scaled, -self.options.clip, self.options.clip)
        return np.stack([scaled, np.isnan(x)], axis=1).astype(np.float32)

    def arrays(self, encoded: np.ndarray, index: np.ndarray) -> np.ndarray:
        return encoded[np.asarray(index)]

    def state(self) -> dict[str, Any]:
        return {"fill": self.fill, "center": self.center, "scale": self.scale, "missing_share": self.missing_share}

    def load_state(self, state: dict[str, Any]) -> None:
        self.fill, self.center, self.scale = state["fill"], state["center"], state["scale"]
        self.missing_share = state["missing_share"]

    def describe(self) -> dict[str, Any]:
        return {"fill": round(self.fill, 4), "missing": f"{self.missing_share:.1%}"}

    @classmethod
    def explore(cls, name: str, values: list[Any], labels: list[str], preprocessing: Any, directory: Any) -> list[str]:
        x = to_numbers(values)
        known = x[~np.isnan(x)]
        if len(known) == 0:
            return ["no numbers"]
        q = np.percentile(known, [0, 25, 50, 75, 100])
        return [f"{len(known):,} numbers, {np.isnan(x).sum():,} missing; min {q[0]:.4g}, quartiles {q[1]:.4g} / "
                f"{q[2]:.4g} / {q[3]:.4g}, max {q[4]:.4g}; mean {known.mean():.4g}, std {known.std():.4g}"]
