"""The resolve step: a schema-valid recipe checked and typed by the declared feature and model types.

The declarations are passed in (`ensayo.models.load_recipe` passes the feature and model types' schemas), so
that the recipe layer imports none of them. Each input's `preprocessing` becomes its feature type's schema, each
of the model type's sections (`encoders`, `linear`, ...) its own schema, each encoder its encoder's schema;
then the model type checks the recipe as a whole. Every problem is reported at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from ensayo.recipe.load import choice_error, error_lines
from ensayo.recipe.schema import Recipe, RecipeError

ENCODERS = "encoders"  # the model section that holds one encoder per input, typed by the inputs' feature types


class FeatureType(Protocol):
    Preprocessing: type[BaseModel]
    encoders: dict[str, type[BaseModel]]  # encoder name -> its schema


class ModelType(Protocol):
    sections: Mapping[str, type[BaseModel] | None]  # model.<key> -> schema (None: the encoders)

    @classmethod
    def check(cls, recipe: Recipe) -> list[str]: ...


def resolve(recipe: Recipe, feature_types: Mapping[str, FeatureType], model_types: Mapping[str, ModelType],
            label: str = "<recipe>") -> Recipe:
    """Type and check `recipe` in place with the registered types; raises RecipeError listing every problem.
    Resolving a resolved recipe changes nothing."""
    problems = _resolve_inputs(recipe, feature_types)
    model_type = model_types.get(recipe.model.type)
    if model_type is None:
        problems.append(choice_error("model.type", "model type", recipe.model.type, list(model_types)))
    else:
        problems += _resolve_sections(recipe, model_type, feature_types)
        if not problems:
            problems += [f"  {line}" for line in model_type.check(recipe)]
    if problems:
        raise RecipeError("\n".join([f"{label}: the recipe is not valid", *problems]))
    return recipe


def _resolve_inputs(recipe: Recipe, feature_types: Mapping[str, FeatureType]) -> list[str]:
    problems: list[str] = []
    for index, spec in enumerate(recipe.inputs):
        feature = feature_types.get(spec.type)
        if feature is None:
            problems.append(choice_error(f"inputs.{index}.type", "input type", spec.type, list(feature_types)))
            continue
        if isinstance(spec.preprocessing, feature.Preprocessing):
            continue
        try:
            spec.preprocessing = feature.Preprocessing.model_validate(spec.preprocessing or {})
        except ValidationError as exc:
            problems += error_lines(exc, feature.Preprocessing, ("inputs", index, "preprocessing"))
    return problems


def _resolve_sections(recipe: Recipe, model_type: ModelType,
                      feature_types: Mapping[str, FeatureType]) -> list[str]:
    """Each section of model.<key> by the model type's schema for it; keys it has no section for are named."""
    problems: list[str] = []
    sections = recipe.model.__pydantic_extra__
    assert sections is not None
    valid = ["type", *model_type.sections]
    for key in list(sections):
        if key not in model_type.sections:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(f"  model.{key}: unknown key for model type {recipe.model.type!r}{hint} "
                            f"(valid keys: {', '.join(valid)})")
    for key, schema in model_type.sections.items():
        if schema is None:
            sections[key] = sections.get(key) or {}
            problems += _resolve_encoders(recipe, sections[key], feature_types)
            continue
        value = sections.get(key)
        if isinstance(value, schema):
            continue
        try:
            sections[key] = schema.model_validate(value or {})
        except ValidationError as exc:
            problems += error_lines(exc, schema, ("model", key))
    return problems


def _resolve_encoders(recipe: Recipe, encoders: dict[str, Any], feature_types: Mapping[str, FeatureType]) -> list[str]:
    """One encoder per input, each validated by its input's feature type (its `type` key picks the encoder)."""
    problems: list[str] = []
    names = [spec.name for spec in recipe.inputs]
    unknown = sorted(set(encoders) - set(names))
    if unknown:
        problems.append(f"  model.{ENCODERS}: names unknown inputs {unknown}; inputs are {names}")
    for spec in recipe.inputs:
        feature = feature_types.get(spec.type)
        encoder = encoders.get(spec.name)
        if feature is None or encoder is None or isinstance(encoder, BaseModel):
            continue
        kind = encoder.get("type") if isinstance(encoder, dict) else None
        if kind not in feature.encoders:
            problems.append(choice_error(f"model.{ENCODERS}.{spec.name}.type", f"{spec.type} encoder",
                                         kind, list(feature.encoders)))
            continue
        schema = feature.encoders[kind]
        try:
            encoders[spec.name] = schema.model_validate(encoder)
        except ValidationError as exc:
            problems += error_lines(exc, schema, ("model", ENCODERS, spec.name))
    return problems
