"""The built-in feature types' classes, registered in `FEATURES` on import (which loads torch): what
`ensayo.features` imports before it hands out any of its classes."""

from ensayo.features import category, image_stats, number, sentence  # noqa: F401
from ensayo.features.audio import encoders as _audio  # noqa: F401  (each encoders module imports its feature)
from ensayo.features.image import encoders as _image  # noqa: F401
from ensayo.features.text import encoders as _text  # noqa: F401
