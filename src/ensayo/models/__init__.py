"""The model layer: the model-type registry and protocol (`base`), the built-in types (one module each, with a
module of its recipe schema that imports no network code: `neural_schema.py`, `language/schema.py`), the fold
average of a cross-validated run (`folds`), recipes resolved against the declared types (`recipes`) and trained
models read back (`registry`). A new model type is one module with a `@register_model_type("name")` class and
its schema module with a `@declare_model_type("name")` class that the first subclasses, and their lines below
and in `builtin`.

Importing this package declares every built-in type's schema and reads recipes (`load_recipe`, `run_recipe`)
without torch. Its other names are imported on first use: the protocol, the fold average, the registry of runs
and a neural run's ONNX engine need no torch; `MODEL_TYPES` and `model_type_of` import every built-in type's
class, and torch with them.
"""

from ensayo.lazy import exports
from ensayo.models import ensemble_schema, language, linear_schema, neural_schema  # noqa: F401  (declares them)
from ensayo.models.recipes import format_version, is_finished, load_recipe, resolve_recipe, run_recipe
from ensayo.models.schemas import (
    MODEL_SCHEMAS,
    ClassifierSchema,
    GeneratorSchema,
    ModelSchema,
    Sections,
    declare_model_type,
)

_LAZY = {
    **dict.fromkeys(["CAPABILITIES", "MODEL_TYPES", "Classifier", "FitContext", "Fitted", "Generator", "ModelType",
                     "TrainMember", "model_type_of", "refusal", "register_model_type"], "ensayo.models.base"),
    **dict.fromkeys(["InputExplanation", "RowExplanation"], "ensayo.models.explanation"),
    **dict.fromkeys(["FoldAverage", "fold_dirs", "is_cross_validated"], "ensayo.models.folds"),
    **dict.fromkeys(["ENGINES", "load_trained", "save_recipe", "write_format"], "ensayo.models.registry"),
}
# the classes are imported where they are defined; `MODEL_TYPES`, the registry, imports every built-in type first
__getattr__ = exports(__name__, _LAZY, first="ensayo.models.builtin", needs_first={"MODEL_TYPES"})

__all__ = ["MODEL_SCHEMAS", "ClassifierSchema", "GeneratorSchema", "ModelSchema", "Sections", "declare_model_type",
           "format_version", "is_finished", "load_recipe", "resolve_recipe", "run_recipe", *_LAZY]
