"""Feature types: the unit of extension. Each module (or small package) holds one type's preprocessing,
its encoders and its section of the data report.

A feature type is a `Feature` subclass registered with `@register_feature("name")` (see `base`); its
encoders are `Encoder` subclasses registered on it with `@Feature.register_encoder("name")`. Adding a
modality is one new module here plus its line below.
"""

from ensayo.features import audio, category, image, image_stats, number, sentence, text  # noqa: F401  (registers the built-in types)
from ensayo.features.base import (
    FEATURES,
    IMAGE_FILES,
    Encoder,
    Feature,
    FileColumn,
    RunningMoments,
    Values,
    build_feature,
    conv_stack,
    loading_saved_run,
    register_feature,
    saved_run_loading,
)

__all__ = [
    "FEATURES",
    "IMAGE_FILES",
    "Encoder",
    "Feature",
    "FileColumn",
    "RunningMoments",
    "Values",
    "build_feature",
    "conv_stack",
    "loading_saved_run",
    "register_feature",
    "saved_run_loading",
]
