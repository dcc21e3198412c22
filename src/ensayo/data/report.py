"""What reading the data did: bad rows with their file and line, split sizes, labels seen only in
evaluation; and the error for data that cannot be used."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from ensayo.errors import DataError as DataError  # re-exported: where callers find it

if TYPE_CHECKING:
    from ensayo.data.derive import Bins


@dataclass
class BadRow:
    file: str
    line: int | None  # None for a row that is a whole file (a folder data set)
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}" if self.line is None else f"{self.file}:{self.line}: {self.reason}"


@dataclass
class DataReport:
    """What reading and splitting did to the rows, kept with the run."""

    rows_read: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    rows_filtered_out: int = 0
    split_sizes: dict[str, int] = field(default_factory=dict)
    labels_only_in_eval: dict[str, list[str]] = field(default_factory=dict)
    kept_without_file: list[str] = field(default_factory=list)  # rows kept with a stand-in for a bad file
    read_seconds: float | None = None  # reading, cleaning and splitting, as the run measured it
    ranks: list[dict[str, Any]] = field(default_factory=list)  # a distributed run: each rank's share, and its time

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "bad_rows": len(self.bad_rows),
            "bad_row_examples": [str(b) for b in self.bad_rows[:50]],
            "rows_filtered_out": self.rows_filtered_out,
            "split_sizes": self.split_sizes,
            "labels_only_in_eval": self.labels_only_in_eval,
            "kept_without_file": self.kept_without_file,
        } | ({"ranks": self.ranks} if self.ranks else {})

    def summary_lines(self) -> list[str]:
        lines = [f"read {self.rows_read:,} rows; " + ", ".join(f"{k} {v:,}" for k, v in self.split_sizes.items())]
        if self.bad_rows:
            lines.append(f"skipped {len(self.bad_rows):,} bad rows, e.g. " + "; ".join(map(str, self.bad_rows[:3])))
        if self.rows_filtered_out:
            lines.append(f"filters removed {self.rows_filtered_out:,} rows")
        if self.kept_without_file:
            lines.append(f"kept {len(self.kept_without_file):,} rows whose file is unusable (as the recipe asks), "
                         "e.g. " + "; ".join(self.kept_without_file[:3]))
        for split, labels in self.labels_only_in_eval.items():
            lines.append(f"{len(labels)} label(s) appear in {split} but not in train (always wrong there): "
                         + ", ".join(labels[:10]))
        return lines


@dataclass
class Splits:
    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame
    report: DataReport
    bins: Bins | None = None  # derived bins, fitted on train (saved with the run)

    def items(self) -> Iterator[tuple[str, pl.DataFrame]]:
        yield from (("train", self.train), ("validation", self.validation), ("test", self.test))


