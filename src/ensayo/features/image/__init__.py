"""The image feature type: files (checking, reading, resizing: `preprocessing`), the feature (`feature`), training
augmentation (`augment`), its encoders (a CNN, EfficientNet-Lite0: `encoders`), their recipe schemas (`schema`)
and its section of the data report (`explore`). The schemas are declared on import; what needs torch loads on
first use."""

from ensayo.features.image.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageAugmentConfig,
    ImageFileOptions,
    ImagePreprocessing,
    image_problem,
    read_image,
)
from ensayo.features.image.schema import EfficientNetConfig, ImageCnnConfig
from ensayo.lazy import exports

_ENCODERS = "ensayo.features.image.encoders"
_EXPORTS = {"ImageAugment": "ensayo.features.image.augment", "EfficientNetLite0Encoder": _ENCODERS,
            "ImageCnnEncoder": _ENCODERS, "lite0_weights_path": _ENCODERS,
            "explore_images": "ensayo.features.image.explore", "ImageFeature": "ensayo.features.image.feature"}
__getattr__ = exports(__name__, _EXPORTS)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "EfficientNetConfig", "EfficientNetLite0Encoder", "ImageAugment",
           "ImageAugmentConfig", "ImageCnnConfig", "ImageCnnEncoder", "ImageFeature", "ImageFileOptions",
           "ImagePreprocessing", "explore_images", "image_problem", "lite0_weights_path", "read_image"]
