"""The real data sets that ensayo's bundled recipes use, found under ENSAYO_DATA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ensayo.recipe import default_data_dir


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    probe: str  # a file that must exist for the data set to count as present
    description: str


KNOWN = [
    DatasetInfo("meli", "meli/spanish.csv.gz", "MeLi 2019 Spanish product titles, 632 categories"),
    DatasetInfo("ag_news", "ag_news/test.csv", "AG News test split, 7,600 articles, 4 topics"),
    DatasetInfo("fsdd", "fsdd/recordings", "Free Spoken Digit Dataset, 3,000 WAV clips"),
    DatasetInfo("poi", "poi/poi_dataset.csv", "tourist points of interest with one photo each"),
]


def list_datasets(root: Path | None = None) -> list[tuple[DatasetInfo, Path | None]]:
    """Each known data set with its path, or None when it is not present."""
    root = root or default_data_dir()
    found = []
    for info in KNOWN:
        path = root / info.probe if root else None
        found.append((info, path if path is not None and path.exists() else None))
    return found
