"""The built-in model types with their training and network code, registered (`MODEL_TYPES`), and what the rest
of ensayo takes from the model layer beside them: importing this loads torch."""

from ensayo.models import ensemble, linear, neural  # noqa: F401  (registers the built-in types)
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
from ensayo.models.language import model as _language  # noqa: F401
from ensayo.models.registry import ENGINES, load_trained, save_recipe, write_format

__all__ = ["CAPABILITIES", "ENGINES", "MODEL_TYPES", "Classifier", "FitContext", "Fitted", "FoldAverage", "Generator",
           "InputExplanation", "ModelType", "RowExplanation", "TrainMember", "fold_dirs", "is_cross_validated",
           "load_trained", "model_type_of", "refusal", "register_model_type", "save_recipe", "write_format"]
