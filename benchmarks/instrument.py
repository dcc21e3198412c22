"""What the benchmarks that time the trainer share: a training split whose batches pass through a wrapper on their
way to the training loop (to label or to time the wait for each batch)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


class WrappedSplit:
    """`split` as the trainer sees it, but `iterate` yields through `wrap` (an iterator of batches to another)."""

    def __init__(self, split: Any, wrap: Callable[[Iterator[Any]], Iterator[Any]]) -> None:
        self.split, self.wrap = split, wrap

    def __getattr__(self, name: str) -> Any:
        return getattr(self.split, name)

    def __len__(self) -> int:
        return len(self.split)

    def iterate(self, indices: list[Any], device: Any) -> Iterator[Any]:
        return self.wrap(iter(self.split.iterate(indices, device)))
