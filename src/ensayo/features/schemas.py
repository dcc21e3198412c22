"""What a recipe may say of each feature type: its `preprocessing` schema and its encoders' schemas, by name.

Each type declares them in a module of its own that imports no network code (`text/schema.py`,
`category_schema.py`, ...), so that a recipe is read, resolved and validated without loading torch; the type's
`Feature` and `Encoder` classes take the same schemas (`register_feature` and `register_encoder` refuse a
class whose schema is not the declared one). A type registered without a declaration (a test's) declares
itself when it registers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel


@dataclass
class FeatureSchema:
    """A feature type as a recipe sees it: `inputs.N.preprocessing` and `model.encoders.<input>` by `type`."""

    name: str
    Preprocessing: type[BaseModel]
    encoders: dict[str, type[BaseModel]] = field(default_factory=dict)  # encoder name -> its schema
    module: str | None = None  # the module that registers the type's `Feature` class, imported on first use
    by_registration: bool = False  # declared by registering its class: its encoders declare themselves too


FEATURE_SCHEMAS: dict[str, FeatureSchema] = {}


def declare_feature(name: str, preprocessing: type[BaseModel], encoders: Mapping[str, type[BaseModel]],
                    module: str | None = None) -> None:
    """Declare feature type `name`'s schemas (its module's own line, where the type is built in), and the `module`
    that registers its class."""
    FEATURE_SCHEMAS[name] = FeatureSchema(name, preprocessing, dict(encoders), module=module)


def declared_preprocessing(name: str, preprocessing: type[BaseModel]) -> None:
    """Check the `Preprocessing` of feature type `name`'s class against its declaration (or declare the type
    with it when it was not declared)."""
    schema = FEATURE_SCHEMAS.get(name)
    if schema is None:
        FEATURE_SCHEMAS[name] = FeatureSchema(name, preprocessing, by_registration=True)
    elif schema.Preprocessing is not preprocessing:
        raise TypeError(f"feature type {name}: its Preprocessing is {preprocessing.__name__}, but "
                        f"{schema.Preprocessing.__name__} is declared")


def declared_encoder(feature: str, name: str, config: type[BaseModel]) -> None:
    """Check encoder `name` of `feature` against its declaration (or declare it, for a type declared by
    registering its class)."""
    schema = FEATURE_SCHEMAS[feature]
    if schema.by_registration:
        schema.encoders.setdefault(name, config)
    declared = schema.encoders.get(name)
    if declared is None:
        raise TypeError(f"encoder {name} of feature type {feature} is not declared with the type's schemas")
    if declared is not config:
        raise TypeError(f"encoder {name} of feature type {feature}: its Config is {config.__name__}, but "
                        f"{declared.__name__} is declared")
