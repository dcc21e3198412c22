"""The image feature type: files (checking, reading, resizing: `preprocessing`), the feature (`feature`), training
augmentation (`augment`), its encoders (a CNN, EfficientNet-Lite0: `encoders`) and its section of the data
report (`explore`)."""

from ensayo.features.image.augment import ImageAugment
from ensayo.features.image.encoders import (
    EfficientNetConfig,
    EfficientNetLite0Encoder,
    ImageCnnConfig,
    ImageCnnEncoder,
    lite0_weights_path,
)
from ensayo.features.image.explore import explore_images
from ensayo.features.image.feature import ImageFeature
from ensayo.features.image.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageAugmentConfig,
    ImageFileOptions,
    ImagePreprocessing,
    image_problem,
    read_image,
)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "EfficientNetConfig", "EfficientNetLite0Encoder", "ImageAugment",
           "ImageAugmentConfig", "ImageCnnConfig", "ImageCnnEncoder", "ImageFeature", "ImageFileOptions",
           "ImagePreprocessing", "explore_images", "image_problem", "lite0_weights_path", "read_image"]
