"""The audio feature: a column of audio file paths -> normalized (bins, frames) spectrograms."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ensayo.features.audio.augment import WaveAugmenter
from ensayo.features.audio.preprocessing import AudioPreprocessing, prepare_clip
from ensayo.features.audio.spectrogram import Spectrogram
from ensayo.features.base import Feature, FileColumn, RunningMoments, Values, register_feature


@register_feature("audio")
class AudioFeature(Feature):
    """A column of audio file paths; each clip becomes a normalized (bins, frames) spectrogram."""

    Preprocessing = AudioPreprocessing
    values = Values("file", media="audio", suffixes=(".wav", ".flac", ".ogg"))

    def __init__(self, name: str, column: str, preprocessing: AudioPreprocessing) -> None:
        super().__init__(name, column, preprocessing)
        self.spectrogram = Spectrogram(preprocessing)
        self.mean = np.zeros(self.spectrogram.bins, dtype=np.float32)
        self.std = np.ones(self.spectrogram.bins, dtype=np.float32)
        self.clips = 0
        augment = preprocessing.augment
        self.augmenter = WaveAugmenter(augment, preprocessing.sample_rate) if augment and augment.active else None

    @property
    def options(self) -> AudioPreprocessing:
        return self.preprocessing  # type: ignore[return-value]

    @classmethod
    def explore(cls, name: str, values: list[str], labels: list[str], preprocessing: Any,
                directory: Path) -> list[str]:
        from ensayo.features.audio.explore import explore_clips

        return explore_clips(name, values, labels, preprocessing, directory)

    def spectrograms(self, paths: list[str], batch: int = 256) -> torch.Tensor:
        """Un-normalized (rows, bins, frames) spectrograms of the clips."""
        chunks = list(self._chunks(paths, batch))
        if not chunks:
            return torch.zeros(0, self.spectrogram.bins, self.frames)
        return torch.cat(chunks)

    def _chunks(self, paths: list[str], batch: int = 256) -> Iterator[torch.Tensor]:
        for start in range(0, len(paths), batch):
            clips = np.stack([prepare_clip(p, self.options) for p in paths[start: start + batch]])
            yield self.spectrogram(torch.from_numpy(clips))

    @property
    def frames(self) -> int:
        return round(self.options.duration * self.options.sample_rate) // self.options.hop_length + 1

    def fit(self, values: list[str]) -> AudioFeature:
        moments = RunningMoments((0, 2))
        for chunk in self._chunks(values):  # one chunk of clips in memory at a time
            moments.add(chunk)
        self._fit_moments(moments, len(values))
        return self

    def transform(self, values: list[str]) -> torch.Tensor | FileColumn:
        if not self.options.in_memory:
            return FileColumn(list(values))
        return self._normalized(self.spectrograms(values))

    def fit_transform(self, values: list[str]) -> torch.Tensor | FileColumn:
        if not self.options.in_memory:
            return self.fit(values).transform(values)
        moments, chunks = RunningMoments((0, 2)), []
        for chunk in self._chunks(values):
            moments.add(chunk)
            chunks.append(chunk)
        self._fit_moments(moments, len(values))
        features = torch.cat(chunks) if chunks else torch.zeros(0, self.spectrogram.bins, self.frames)
        return self._normalized(features)

    def _fit_moments(self, moments: RunningMoments, clips: int) -> None:
        self.mean, self.std = moments.mean_std(floor=1e-5)
        self.clips = clips

    def _normalized(self, features: torch.Tensor) -> torch.Tensor:
        if self.options.normalize == "utterance":  # each clip's bins by its own mean and spread over time
            mean = features.mean(dim=2, keepdim=True)
            return (features - mean) / features.std(dim=2, keepdim=True).clamp_min(1e-5)
        return (features - torch.from_numpy(self.mean)[:, None]) / torch.from_numpy(self.std)[:, None]

    def collate(self, encoded: torch.Tensor | FileColumn, index: np.ndarray) -> torch.Tensor:
        if not isinstance(encoded, FileColumn):
            return encoded[torch.from_numpy(np.asarray(index))]
        paths = encoded.take(index)
        if not (encoded.training and self.augmenter):  # read and encoded now, the same tensors as in memory
            return self._normalized(self.spectrograms(paths))
        # one draw per batch from torch's generator (seeded by train.seed; each DataLoader worker's by the
        # epoch's), then one seed per clip from it and the clip's row
        batch_seed = int(torch.randint(0, 2**31 - 1, (1,)))
        clips = np.stack([prepare_clip(path, self.options, self.augmenter, [batch_seed, int(row)])
                          for path, row in zip(paths, index, strict=True)])
        return self._normalized(self.spectrogram(torch.from_numpy(clips)))

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "clips": self.clips}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean = np.asarray(state["mean"], dtype=np.float32)
        self.std = np.asarray(state["std"], dtype=np.float32)
        self.clips = state["clips"]

    def describe(self) -> dict[str, Any]:
        return {"clips": self.clips, "spectrogram": f"{self.spectrogram.bins} bins x {self.frames} frames"}


