"""The recipe layer: its schema, reading it (YAML, overrides, errors) and the resolve step that the
registered feature and model types complete. It imports nothing else of ensayo."""

from ensayo.recipe.load import (
    apply_overrides,
    default_data_dir,
    error_lines,
    expand_path,
    flatten,
    read_raw,
    recipe_to_dict,
    set_key,
    validate_schema,
)
from ensayo.recipe.schema import (
    AuxiliaryConfig,
    BinConfig,
    DataConfig,
    DeriveConfig,
    EvaluateConfig,
    HeadConfig,
    InputConfig,
    ModelConfig,
    OutputConfig,
    Recipe,
    RecipeError,
    SplitConfig,
    Strict,
    TeacherConfig,
    TrackConfig,
    TrainConfig,
)

__all__ = [
    "AuxiliaryConfig", "BinConfig", "DataConfig", "DeriveConfig", "EvaluateConfig", "HeadConfig", "InputConfig",
    "ModelConfig", "OutputConfig", "Recipe", "RecipeError", "SplitConfig", "Strict", "TeacherConfig", "TrackConfig",
    "TrainConfig",
    "apply_overrides", "default_data_dir", "error_lines", "expand_path", "flatten", "read_raw",
    "recipe_to_dict", "set_key", "validate_schema",
]
