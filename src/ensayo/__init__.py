"""ensayo: declarative deep-learning experiments. One YAML recipe to a trained, evaluated, tracked run."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Imported on first use, so that `ensayo --help` and `import ensayo.trainer` stay light.
_EXPORTS = {
    "run": "ensayo.pipeline",
    "load_run": "ensayo.runs",
    "SavedRun": "ensayo.runs",
    "load_recipe": "ensayo.config",
    "Recipe": "ensayo.config",
    "RecipeError": "ensayo.config",
    "DataError": "ensayo.data",
    "GeneratorRun": "ensayo.language",
    "generate": "ensayo.language",
    "explore": "ensayo.explore",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ensayo' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
