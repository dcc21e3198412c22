"""ensayo: declarative deep-learning experiments. One YAML recipe to a trained, evaluated, tracked run."""

from ensayo.config import Recipe, RecipeError, load_recipe
from ensayo.data import DataError
from ensayo.pipeline import run
from ensayo.runs import SavedRun, load_run

__all__ = ["DataError", "Recipe", "RecipeError", "SavedRun", "load_recipe", "load_run", "run"]
__version__ = "0.1.0"
