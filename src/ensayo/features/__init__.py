"""Feature types: the unit of extension. Each module (or small package) holds one type's preprocessing,
its encoders and its section of the data report, and a module of its recipe schemas that imports no network
code (`text/schema.py`, `category_schema.py`: `ensayo.features.schemas`).

A feature type is a `Feature` subclass registered with `@register_feature("name")` (see `base`); its
encoders are `Encoder` subclasses registered on it with `@Feature.register_encoder("name")`; the schemas of
both are declared with `declare_feature`. Adding a modality is one new module here with its schema module,
and their lines below and in `builtin`.

Importing this package declares every built-in type's schemas (`FEATURE_SCHEMAS`: what reading a recipe
needs) and nothing more. A type's `Feature` class is imported when it is first built (`feature_type`): the text,
category and number features encode rows without torch, so that an ONNX engine answers without it; their encoders
(`Encoder`, torch) are imported when a network is built, and `FEATURES` imports every built-in type.
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

_BASE = ["FEATURES", "IMAGE_FILES", "Feature", "FileColumn", "RunningMoments", "Values", "as_arrays", "as_tensors",
         "build_feature", "feature_type", "loading_saved_run", "register_feature", "saved_run_loading"]
_NETWORKS = ["Encoder", "conv_stack"]
# a feature type's class is imported when it is first built (`feature_type`); `FEATURES`, the registry of them
# all, imports every built-in type and its encoders first
__getattr__ = exports(__name__, {**dict.fromkeys(_BASE, "ensayo.features.base"),
                                 **dict.fromkeys(_NETWORKS, "ensayo.features.networks")},
                      first="ensayo.features.builtin", needs_first={"FEATURES"})

__all__ = ["FEATURE_SCHEMAS", "FeatureSchema", "declare_feature", *_BASE, *_NETWORKS]
