"""The built-in model types' classes, registered in `MODEL_TYPES` on import (which loads torch): what
`ensayo.models` imports before it hands out any of its classes."""

from ensayo.models import ensemble, linear, neural  # noqa: F401
from ensayo.models.language import model as _language  # noqa: F401
