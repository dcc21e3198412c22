"""The built-in feature types with their network code, registered (`FEATURES`): importing this loads torch."""

from ensayo.features import audio, category, image, image_stats, number, sentence, text  # noqa: F401
from ensayo.features.audio import encoders as _audio_encoders  # noqa: F401  (registers the types' classes)
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
from ensayo.features.image import encoders as _image_encoders  # noqa: F401
from ensayo.features.text import encoders as _text_encoders  # noqa: F401

__all__ = ["FEATURES", "IMAGE_FILES", "Encoder", "Feature", "FileColumn", "RunningMoments", "Values", "build_feature",
           "conv_stack", "loading_saved_run", "register_feature", "saved_run_loading"]
