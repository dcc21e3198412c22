"""The image feature: pixels read (in memory, or as batches are made), normalized with training-split or
ImageNet statistics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ensayo.features.base import IMAGE_FILES, Feature, FileColumn, RunningMoments, register_feature
from ensayo.features.image.explore import explore_images
from ensayo.features.image.preprocessing import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocessing, read_image


@register_feature("image")
class ImageFeature(Feature):
    Preprocessing = ImagePreprocessing
    values = IMAGE_FILES

    def __init__(self, name: str, column: str, preprocessing: ImagePreprocessing) -> None:
        super().__init__(name, column, preprocessing)
        self.mean = list(IMAGENET_MEAN)
        self.std = list(IMAGENET_STD)
        self.images = 0

    @property
    def options(self) -> ImagePreprocessing:
        return self.preprocessing  # type: ignore[return-value]

    def _pixels(self, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
        size = self.options.size
        pixels = np.zeros((len(paths), 3, size, size), dtype=np.uint8)
        missing = np.zeros(len(paths), dtype=np.float32)
        for i, path in enumerate(paths):
            try:
                pixels[i] = read_image(path, size)
            except (FileNotFoundError, UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
                missing[i] = 1.0  # only with missing: zero; otherwise the row was dropped when read
        return pixels, missing

    def _pixel_chunks(self, paths: list[str], batch: int = 512) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(paths), batch):
            yield self._pixels(paths[start: start + batch])

    def fit(self, values: list[str]) -> ImageFeature:
        self.images = len(values)
        if self.options.normalize == "dataset":
            moments = RunningMoments((0, 2, 3))
            for pixels, missing in self._pixel_chunks(values):  # one chunk of images in memory at a time
                moments.add(pixels[missing == 0].astype(np.float32) / 255)
            self._fit_moments(moments)
        return self

    def transform(self, values: list[str]) -> dict[str, np.ndarray] | FileColumn:
        if not self.options.in_memory:
            return FileColumn(list(values))
        pixels, missing = self._pixels(values)
        return {"pixels": pixels, "missing": missing}

    def fit_transform(self, values: list[str]) -> dict[str, np.ndarray] | FileColumn:
        if not self.options.in_memory or self.options.normalize != "dataset":
            return self.fit(values).transform(values)
        self.images = len(values)
        moments, chunks = RunningMoments((0, 2, 3)), []
        for pixels, missing in self._pixel_chunks(values):
            moments.add(pixels[missing == 0].astype(np.float32) / 255)
            chunks.append((pixels, missing))
        self._fit_moments(moments)
        if not chunks:
            return {"pixels": np.zeros((0, 3, self.options.size, self.options.size), dtype=np.uint8),
                    "missing": np.zeros(0, dtype=np.float32)}
        return {"pixels": np.concatenate([c[0] for c in chunks]), "missing": np.concatenate([c[1] for c in chunks])}

    def _fit_moments(self, moments: RunningMoments) -> None:
        mean, std = moments.mean_std(floor=1e-3)
        self.mean, self.std = mean.tolist(), std.tolist()

    def arrays(self, encoded: dict[str, np.ndarray] | FileColumn, index: np.ndarray) -> dict[str, np.ndarray]:
        if isinstance(encoded, FileColumn):  # read now: the same pixels as in memory
            pixels, missing = self._pixels(encoded.take(index))
        else:
            rows = np.asarray(index)
            pixels, missing = encoded["pixels"][rows], encoded["missing"][rows]
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, 3, 1, 1)
        pixels = (pixels.astype(np.float32) / np.float32(255) - mean) / std
        pixels[missing > 0] = 0.0
        return {"pixels": pixels, "missing": missing}

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "images": self.images}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std, self.images = list(state["mean"]), list(state["std"]), state["images"]

    def describe(self) -> dict[str, Any]:
        return {"images": self.images, "mean": [round(m, 3) for m in self.mean]}

    @classmethod
    def explore(cls, name: str, values: list[str], labels: list[str], preprocessing: Any, directory: Path) -> list[str]:
        return explore_images(name, values, labels, preprocessing, directory)
