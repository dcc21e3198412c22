"""Feature types: the unit of extension. Each module holds one type's preprocessing and its encoders.

A feature type is a `Feature` subclass registered with `@register_feature("name")`; its encoders are
`Encoder` subclasses registered on it with `@Feature.register_encoder("name")`. Adding a modality is
one new module here plus its import below.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

FEATURES: dict[str, type[Feature]] = {}


class Encoder(nn.Module):
    """Turns a batch of one feature into a (batch, output_dim) tensor."""

    Config: ClassVar[type[BaseModel]]
    output_dim: int


class Feature:
    """One input column: fit on the training split, transform rows, collate batches, save state."""

    type_name: ClassVar[str]
    Preprocessing: ClassVar[type[BaseModel]]
    encoders: ClassVar[dict[str, type[Encoder]]]

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
            cls.encoders[name] = encoder
            return encoder

        return decorate

    # sklearn's vocabulary: fit on training values, transform any values.
    def fit(self, values: list[Any]) -> Feature:
        raise NotImplementedError

    def transform(self, values: list[Any]) -> Any:
        """Encode whole columns once; `collate` then slices them into batches."""
        raise NotImplementedError

    def collate(self, encoded: Any, index: Any) -> Any:
        """The rows `index` of an encoded column as model-ready tensors."""
        raise NotImplementedError

    def lengths(self, encoded: Any) -> Any:
        """Per-row sequence lengths of an encoded column (for length-bucketed batches), or None."""
        return None

    def build_encoder(self, config: BaseModel) -> Encoder:
        return self.encoders[config.type](self, config)  # type: ignore[attr-defined]

    def state(self) -> dict[str, Any]:
        """Everything fitted, as JSON-ready data (never pickled)."""
        raise NotImplementedError

    def load_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """A few fitted facts worth printing (vocabulary size, coverage...)."""
        return {}

    def init_tensors(self) -> dict[str, torch.Tensor]:
        """Large fitted arrays (e.g. pretrained vectors) that the encoder starts from."""
        return {}


def register_feature(name: str):
    def decorate(cls: type[Feature]) -> type[Feature]:
        cls.type_name = name
        FEATURES[name] = cls
        return cls

    return decorate


def build_feature(type_name: str, name: str, column: str, preprocessing: BaseModel) -> Feature:
    return FEATURES[type_name](name, column, preprocessing)


from ensayo.features import text  # noqa: E402, F401  (registers the built-in feature types)
