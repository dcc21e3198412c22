"""The model layer: the model-type registry and protocol (`base`), the built-in types (one module each)
and recipes resolved against every registry (`registry`). A new model type is one module with a
`@register_model_type("name")` class, and its line below."""

from ensayo.models import ensemble, language, linear, neural  # noqa: F401  (registers the built-in types)
from ensayo.models.base import (
    MODEL_TYPES,
    Classifier,
    FitContext,
    Fitted,
    Generator,
    ModelType,
    TrainMember,
    model_type_of,
    register_model_type,
)
from ensayo.models.registry import format_version, load_recipe, load_trained, resolve_recipe, save_recipe

__all__ = ["MODEL_TYPES", "Classifier", "FitContext", "Fitted", "Generator", "ModelType", "TrainMember",
           "format_version", "load_recipe", "load_trained", "model_type_of", "register_model_type",
           "resolve_recipe", "save_recipe"]
