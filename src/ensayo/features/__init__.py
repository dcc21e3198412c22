"""Feature types: the unit of extension. Each module (or small package) holds one type's preprocessing,
its encoders and its section of the data report, and a module of its recipe schemas that imports no network
code (`text/schema.py`, `category_schema.py`: `ensayo.features.schemas`).

A feature type is a `Feature` subclass registered with `@register_feature("name")` (see `base`); its
encoders are `Encoder` subclasses registered on it with `@Feature.register_encoder("name")`; the schemas of
both are declared with `declare_feature`. Adding a modality is one new module here with its schema module,
and their lines below and in `builtin`.

Importing this package declares every built-in type's schemas (`FEATURE_SCHEMAS`: what reading a recipe
needs) and nothing more; the feature classes and `FEATURES` load torch on first use.
"""

from ensayo.features import (  # noqa: F401  (declares the built-in types' schemas)
    audio,
    category_schema,
    image,
    image_stats_schema,
    number_schema,
    sentence_schema,
    text,
)
from ensayo.features.schemas import FEATURE_SCHEMAS, FeatureSchema, declare_feature
from ensayo.lazy import exports

_HEAVY = ["FEATURES", "IMAGE_FILES", "Encoder", "Feature", "FileColumn", "RunningMoments", "Values", "build_feature",
          "conv_stack", "loading_saved_run", "register_feature", "saved_run_loading"]
__getattr__ = exports(__name__, dict.fromkeys(_HEAVY, "ensayo.features.base"), first="ensayo.features.builtin")

__all__ = ["FEATURE_SCHEMAS", "FeatureSchema", "declare_feature", *_HEAVY]
