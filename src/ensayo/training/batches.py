"""Encoded splits and their batches: each feature encodes a split once, batches are slices of it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from ensayo.features import Feature, FileColumn
from ensayo.outputs.auxiliary import AUXILIARY
from ensayo.outputs.teacher import TEACHER


class Batches(Protocol):
    """What the trainer trains on: an encoded split (classification) or token windows (language models).
    `held`: the rows (start, stop) this process holds when it holds only its share (`RankRows`), else None."""

    held: tuple[int, int] | None

    def __len__(self) -> int: ...

    def lengths(self) -> np.ndarray | None: ...

    def batches(self, size: int, order: np.ndarray | None = None, skip: int = 0,
                device: torch.device | None = None) -> Iterator[tuple[Any, torch.Tensor]]: ...

    def iterate(self, indices: list[np.ndarray], device: torch.device) -> Iterator[tuple[Any, torch.Tensor]]:
        """(batch, labels) of each array of row indices, in order."""
        ...


@dataclass
class EncodedSplit:
    """One split, each feature encoded once; batches are slices of it."""

    features: list[Feature]
    columns: dict[str, Any]
    labels: np.ndarray  # class indices, -1 for a label unseen in training
    targets: np.ndarray | None = None  # (rows, auxiliary targets), standardized; NaN where missing
    teacher: np.ndarray | None = None  # (rows, top, 2): the teacher's classes and probabilities (train.teacher)
    workers: int = 0  # DataLoader worker processes that read the files of inputs kept as paths
    held: ClassVar[None] = None  # this process holds every row of the split

    @property
    def reads_files(self) -> bool:
        """Whether some input reads its files as its batches are made (`preprocessing.in_memory: false`)."""
        return any(isinstance(column, FileColumn) for column in self.columns.values())

    def __len__(self) -> int:
        return len(self.labels)

    def lengths(self) -> np.ndarray | None:
        """The longest sequence of each row over its features, or None when no feature has lengths."""
        found = [f.lengths(self.columns[f.name]) for f in self.features]
        found = [x for x in found if x is not None]
        return np.max(np.stack(found), axis=0) if found else None

    def batch(self, index: np.ndarray, device: torch.device) -> dict[str, Any]:
        batch = {f.name: to_device(f.collate(self.columns[f.name], index), device) for f in self.features}
        if self.targets is not None:
            batch[AUXILIARY] = to_device(torch.from_numpy(self.targets[index]), device)
        if self.teacher is not None:
            batch[TEACHER] = to_device(torch.from_numpy(self.teacher[index]), device)
        return batch

    def batches(self, size: int, order: np.ndarray | None = None, skip: int = 0,
                device: torch.device | None = None) -> Iterator[tuple[dict[str, Any], torch.Tensor]]:
        order = np.arange(len(self)) if order is None else order
        yield from self.iterate([order[start: start + size] for start in range(skip * size, len(order), size)],
                                device or torch.device("cpu"))

    def iterate(self, indices: list[np.ndarray], device: torch.device) -> Iterator[tuple[dict[str, Any], torch.Tensor]]:
        if self.workers and self.reads_files and len(indices) > 1:
            # worker processes read and encode the next batches while the model trains on this one
            from torch.utils.data import DataLoader

            loader = DataLoader(_SplitRows(self), sampler=indices, batch_size=None, num_workers=self.workers,
                                collate_fn=_as_is, prefetch_factor=2, pin_memory=device.type == "cuda")
            for batch, labels in loader:
                yield to_device(batch, device), to_device(labels, device)
            return
        for index in indices:
            yield self.batch(index, device), to_device(torch.from_numpy(self.labels[index]), device)


@dataclass
class RankRows:
    """One rank's contiguous share of a training split, encoded by that rank alone (a distributed run encodes
    no row twice): rows `start` to `start + len(split)` of `total`. The trainer orders all `total` rows as
    one process does (`lengths` are every row's, gathered from the ranks) and this rank takes the rows of
    each batch that it holds."""

    split: EncodedSplit
    start: int
    total: int
    all_lengths: np.ndarray | None

    @property
    def held(self) -> tuple[int, int]:
        return self.start, self.start + len(self.split)

    def __len__(self) -> int:
        return self.total

    def lengths(self) -> np.ndarray | None:
        return self.all_lengths

    def batches(self, size: int, order: np.ndarray | None = None, skip: int = 0,
                device: torch.device | None = None) -> Iterator[tuple[dict[str, Any], torch.Tensor]]:
        """This rank's rows, numbered from `start` (as `rank_batches` gives them with `held`)."""
        yield from self.split.batches(size, order, skip, device)

    def iterate(self, indices: list[np.ndarray], device: torch.device) -> Iterator[tuple[dict[str, Any], torch.Tensor]]:
        return self.split.iterate(indices, device)


class _SplitRows:
    """A split as a map-style dataset whose items are whole batches: `rows[index]` collates those rows."""

    def __init__(self, split: EncodedSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: np.ndarray) -> tuple[dict[str, Any], torch.Tensor]:
        return self.split.batch(index, torch.device("cpu")), torch.from_numpy(self.split.labels[index])


def _as_is(item: Any) -> Any:
    return item


def encode_split(features: list[Feature], table: Any, labels: np.ndarray,
                 targets: np.ndarray | None = None, columns: dict[str, Any] | None = None) -> EncodedSplit:
    """`columns`: the features' encodings of `table` where they are known already (from fit_transform)."""
    columns = columns or {f.name: f.transform(table[f.column].to_list()) for f in features}
    return EncodedSplit(features, columns, labels, targets)


def bucketed_order(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, pool: int = 50) -> np.ndarray:
    """A shuffled order whose batches hold rows of similar length, so little compute goes to padding:
    shuffle, sort each pool of `pool` batches by length, cut into batches, shuffle the batches."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * pool
    pieces = []
    for start in range(0, len(order), chunk):
        part = order[start: start + chunk]
        pieces.append(part[np.argsort(lengths[part], kind="stable")])
    ordered = np.concatenate(pieces) if pieces else order
    batches = [ordered[i: i + batch_size] for i in range(0, len(ordered), batch_size)]
    return np.concatenate([batches[i] for i in rng.permutation(len(batches))]) if batches else ordered


def to_device(value: Any, device: torch.device) -> Any:
    """Tensors (in a batch's dicts) to `device`; to a GPU from pinned memory, so that the copy does not wait."""
    if isinstance(value, torch.Tensor):
        if device.type == "cuda" and value.device.type == "cpu":
            value = value.pin_memory()
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


