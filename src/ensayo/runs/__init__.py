"""The runs layer: saved runs of any model type, and predicting or scoring new rows with them."""

from ensayo.runs.inputs import InputError, InputField, example_rows, input_fields, records_of, rows_to_table
from ensayo.runs.predict import evaluate_file, predict_file, predict_rows, predict_table
from ensayo.runs.saved import SavedRun, WrongKindOfRun, load_run

__all__ = ["InputError", "InputField", "SavedRun", "WrongKindOfRun", "evaluate_file", "example_rows", "input_fields",
           "load_run", "predict_file", "predict_rows", "predict_table", "records_of", "rows_to_table"]
