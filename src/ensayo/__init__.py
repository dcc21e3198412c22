"""ensayo: declarative deep-learning experiments. One YAML recipe to a trained, evaluated, tracked run.

The public functions live in `ensayo.api` and are imported on first use, so that `ensayo --help` and
`import ensayo.training` stay light.
"""

from __future__ import annotations

from ensayo.lazy import exports

__version__ = "0.1.0"  # the only place it is written (pyproject.toml reads it)
DISTRIBUTION = "ensayo-ml"  # the name on PyPI (`ensayo` there is another project); `import ensayo` all the same

_EXPORTS = {
    "run": "ensayo.api",
    "validate": "ensayo.api",
    "load_run": "ensayo.api",
    "predict": "ensayo.api",
    "evaluate": "ensayo.api",
    "generate": "ensayo.api",
    "explore": "ensayo.api",
    "sweep": "ensayo.api",
    "report": "ensayo.api",
    "train_embeddings": "ensayo.api",
    "serve": "ensayo.api",
    "export": "ensayo.api",
    "explain": "ensayo.api",
    "load_recipe": "ensayo.api",
    "SavedRun": "ensayo.api",
    "Recipe": "ensayo.api",
    "RecipeError": "ensayo.api",
    "DataError": "ensayo.api",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports("ensayo", _EXPORTS)
