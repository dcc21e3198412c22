"""What every feature type is: a `Feature` (fit on training values, transform, collate, save state)
with its pydantic `Preprocessing` schema and its `Encoder`s (`networks.Encoder`), and the registry of feature
types, each type's class imported when it is first asked for (`feature_type`). Nothing here needs torch: a
feature's batches are numpy arrays (`arrays`), which `collate` turns into tensors for a torch network."""

from __future__ import annotations

import contextlib
import contextvars
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np
from pydantic import BaseModel

from ensayo.features.schemas import FEATURE_SCHEMAS, declared_encoder, declared_preprocessing

if TYPE_CHECKING:
    import torch

    from ensayo.features.networks import Encoder

FEATURES: dict[str, type[Feature]] = {}
_LOADING_SAVED_RUN: contextvars.ContextVar[bool] = contextvars.ContextVar("loading_saved_run", default=False)


@contextlib.contextmanager
def saved_run_loading() -> Iterator[None]:
    """While a saved run is rebuilt, encoders skip loading pretrained weights: the run's own replace them."""
    token = _LOADING_SAVED_RUN.set(True)
    try:
        yield
    finally:
        _LOADING_SAVED_RUN.reset(token)


def loading_saved_run() -> bool:
    return _LOADING_SAVED_RUN.get()


@dataclass(frozen=True)
class FileColumn:
    """A column of file paths kept as paths (`preprocessing.in_memory: false`): each batch reads and encodes
    its own files when it is collated, in the training DataLoader's worker processes."""

    paths: list[str]
    training: bool = False  # the training split's: augmented as it is read, where the input asks for it

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, index: Any) -> list[str]:
        return [self.paths[int(i)] for i in index]


class RunningMoments:
    """Mean and standard deviation per channel of arrays (or CPU tensors) seen one chunk at a time, in float64: the
    same whether the chunks were kept (in memory) or dropped (read on the fly)."""

    def __init__(self, dims: tuple[int, ...]) -> None:
        self.dims = dims  # the axes reduced over (all but the channel's)
        self.count, self.total, self.squares = 0, 0.0, 0.0

    def add(self, chunk: Any) -> None:
        values = np.asarray(chunk, dtype=np.float64)
        self.count += values.size // max(values.shape[1], 1)
        self.total = self.total + values.sum(axis=self.dims)
        self.squares = self.squares + np.square(values).sum(axis=self.dims)

    def mean_std(self, floor: float) -> tuple[np.ndarray, np.ndarray]:
        if not self.count:
            raise ValueError("no values to fit the statistics on")
        mean = self.total / self.count
        variance = (self.squares - self.count * mean**2) / max(self.count - 1, 1)
        return mean.astype(np.float32), np.maximum(np.sqrt(np.maximum(variance, 0)), floor).astype(np.float32)


@dataclass(frozen=True)
class Values:
    """What one input column holds, as a client of a saved run sends it (the server, its page, the exports):
    text, a number, a category (or a list of them), or a file of a `media` kind given as bytes."""

    kind: Literal["text", "number", "category", "file"]
    multi: bool = False
    media: Literal["audio", "image"] | None = None
    suffixes: tuple[str, ...] = ()  # the file formats it reads, for the file chooser of the page


IMAGE_FILES = Values("file", media="image", suffixes=(".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"))


class Ranks(Protocol):
    """The processes of a distributed run as a feature fitted across them sees them (`fit_transform_shared`)."""

    @property
    def main(self) -> bool:
        """Whether this is rank 0."""
        ...

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's `value`, in rank order, on rank 0 (None on the others)."""
        ...

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank."""
        ...


class Feature:
    """One input column: fit on the training split, transform rows, collate batches, save state."""

    type_name: ClassVar[str]
    Preprocessing: ClassVar[type[BaseModel]]
    encoders: ClassVar[dict[str, type[Encoder]]]
    values: ClassVar[Values] = Values("text")

    @classmethod
    def values_of(cls, preprocessing: BaseModel) -> Values:
        """What a row holds for this input with these options (a list-valued category overrides it)."""
        return cls.values

    def __init__(self, name: str, column: str, preprocessing: BaseModel) -> None:
        self.name = name
        self.column = column
        self.preprocessing = preprocessing

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.encoders = {}

    @classmethod
    def register_encoder(cls, name: str):
        def decorate(encoder: type[Encoder]) -> type[Encoder]:
            declared_encoder(cls.type_name, name, encoder.Config)  # type: ignore[attr-defined]
            cls.encoders[name] = encoder
            return encoder

        return decorate

    @classmethod
    def explore(cls, name: str, values: list[Any], labels: list[str], preprocessing: BaseModel,
                directory: Path) -> list[str]:
        """Markdown lines (and plots written to `directory`) describing raw training values, for
        `ensayo explore`."""
        return ["(this input type has no exploration yet)"]

    # sklearn's vocabulary: fit on training values, transform any values.
    def fit(self, values: list[Any]) -> Feature:
        raise NotImplementedError

    def transform(self, values: list[Any]) -> Any:
        """Encode whole columns once; `collate` then slices them into batches."""
        raise NotImplementedError

    def fit_transform(self, values: list[Any]) -> Any:
        """Fit on the training values and encode them. A type that reads files overrides it to read
        each file once."""
        return self.fit(values).transform(values)

    @property
    def shares_fit(self) -> bool:
        """Whether the ranks of a distributed run can fit this input together, each from its own share of the
        training rows (`fit_transform_shared`). Otherwise rank 0 fits it on the whole column and the other ranks
        take its state."""
        return False

    def fit_transform_shared(self, share: list[Any], ranks: Ranks) -> Any:
        """`fit_transform` with the column split across ranks: `share` is this rank's contiguous part (the parts,
        in rank order, are the column). Fits what one process fits on the whole column and returns this rank's
        share encoded (a type whose `shares_fit` is True)."""
        raise NotImplementedError(f"{type(self).__name__} fits in one process")

    def arrays(self, encoded: Any, index: Any) -> Any:
        """The rows `index` of an encoded column as a network's batch of numpy arrays (an array, or a dict of
        them): what an engine without torch (ONNX Runtime) is given. A type implements this or `collate`; by
        default it is `collate`'s tensors as arrays."""
        if type(self).collate is Feature.collate:
            raise NotImplementedError(f"{type(self).__name__} implements neither arrays nor collate")
        return as_arrays(self.collate(encoded, index))

    def collate(self, encoded: Any, index: Any) -> Any:
        """The rows `index` of an encoded column as model-ready tensors: by default `arrays` as tensors (a type
        whose batches are made with torch, augmented spectrograms say, overrides this instead)."""
        if type(self).arrays is Feature.arrays:
            raise NotImplementedError(f"{type(self).__name__} implements neither arrays nor collate")
        return as_tensors(self.arrays(encoded, index))

    def lengths(self, encoded: Any) -> Any:
        """Per-row sequence lengths of an encoded column (for length-bucketed batches), or None."""
        return None

    def build_encoder(self, config: BaseModel) -> Encoder:
        kind = config.type  # type: ignore[attr-defined]
        if kind not in self.encoders:  # the built-in encoders register as their modules are imported
            importlib.import_module("ensayo.features.builtin")
        return self.encoders[kind](self, config)

    def state(self) -> dict[str, Any]:
        """Everything fitted, as JSON-ready data (never pickled)."""
        raise NotImplementedError

    def load_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """A few fitted facts worth printing (vocabulary size, coverage...)."""
        return {}

    def example_values(self, count: int, short: bool = False) -> list[Any] | None:
        """`count` values this fitted feature knows (texts of its own words), to trace a network with; None:
        any value of the input's kind will do."""
        return None

    def init_tensors(self) -> dict[str, torch.Tensor]:
        """Large fitted arrays (e.g. pretrained vectors) that the encoder starts from."""
        return {}


def register_feature(name: str):
    def decorate(cls: type[Feature]) -> type[Feature]:
        declared_preprocessing(name, cls.Preprocessing)
        cls.type_name = name
        FEATURES[name] = cls
        return cls

    return decorate


def feature_type(name: str) -> type[Feature]:
    """The registered class of feature type `name`; a declared type's module is imported on first use, so that a
    text input loads the text feature and not the audio one (nor, where the type needs none, torch)."""
    if name not in FEATURES and name in FEATURE_SCHEMAS and FEATURE_SCHEMAS[name].module:
        importlib.import_module(FEATURE_SCHEMAS[name].module)
    if name not in FEATURES:
        raise KeyError(f"no feature type {name!r} is registered")
    return FEATURES[name]


def build_feature(type_name: str, name: str, column: str, preprocessing: BaseModel) -> Feature:
    return feature_type(type_name)(name, column, preprocessing)


def as_tensors(batch: Any) -> Any:
    """A batch of numpy arrays (in dicts) as torch tensors sharing their memory."""
    import torch

    if isinstance(batch, dict):
        return {key: as_tensors(value) for key, value in batch.items()}
    return torch.from_numpy(np.ascontiguousarray(batch)) if isinstance(batch, np.ndarray) else batch


def as_arrays(batch: Any) -> Any:
    """A batch of tensors (in dicts) as numpy arrays."""
    if isinstance(batch, dict):
        return {key: as_arrays(value) for key, value in batch.items()}
    return batch.numpy() if hasattr(batch, "numpy") else batch

