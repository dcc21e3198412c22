"""The built-in feature types' classes and their encoders, registered in `FEATURES` on import (which loads torch):
what `ensayo.features` imports before it hands out `FEATURES`, and what building an encoder imports when its
type's encoders are not registered yet. A type's class alone is imported by `base.feature_type`."""

from ensayo.features import category_encoders, image_stats_encoders, number_encoders, sentence  # noqa: F401
from ensayo.features.audio import encoders as _audio  # noqa: F401  (each encoders module imports its feature)
from ensayo.features.image import encoders as _image  # noqa: F401
from ensayo.features.text import encoders as _text  # noqa: F401
