"""The runs layer: saved runs of any model type, and predicting or scoring new rows with them."""

from ensayo.runs.predict import evaluate_file, predict_file, predict_rows, predict_table
from ensayo.runs.saved import SavedRun, WrongKindOfRun, load_run

__all__ = ["SavedRun", "WrongKindOfRun", "evaluate_file", "load_run", "predict_file", "predict_rows", "predict_table"]
