"""The model layer: the model-type registry and protocol (`base`), the built-in types (one module each), the
fold average of a cross-validated run (`folds`) and recipes resolved against every registry (`registry`). A
new model type is one module with a `@register_model_type("name")` class, and its line below."""

from ensayo.models import ensemble, language, linear, neural  # noqa: F401  (registers the built-in types)
from ensayo.models.attribution import InputExplanation, RowExplanation
from ensayo.models.base import (
    CAPABILITIES,
    MODEL_TYPES,
    Classifier,
    FitContext,
    Fitted,
    Generator,
    ModelType,
    TrainMember,
    model_type_of,
    refusal,
    register_model_type,
)
from ensayo.models.folds import FoldAverage, fold_dirs, is_cross_validated
from ensayo.models.registry import (
    ENGINES,
    format_version,
    load_recipe,
    load_trained,
    resolve_recipe,
    run_recipe,
    save_recipe,
    write_format,
)

__all__ = ["CAPABILITIES", "ENGINES", "MODEL_TYPES", "Classifier", "FitContext", "Fitted", "FoldAverage", "Generator",
           "InputExplanation", "ModelType", "RowExplanation", "TrainMember", "fold_dirs", "format_version",
           "is_cross_validated", "load_recipe", "load_trained", "model_type_of", "refusal", "register_model_type",
           "resolve_recipe", "run_recipe", "save_recipe", "write_format"]
