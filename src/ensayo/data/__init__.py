"""The data layer: recipe -> read -> clean -> derive -> split. `load_splits` is its entry point."""

from ensayo.data.clean import FileInput, parse_filter, required_columns
from ensayo.data.derive import Bins, DeriveError, apply_expressions, leaking_inputs, parse_expression
from ensayo.data.load import (
    Folds,
    data_problems,
    load_folds,
    load_splits,
    read_for_inference,
    recipe_problems,
    stream_for_inference,
)
from ensayo.data.read import FILE, LINE, read_file, read_folder
from ensayo.data.report import BadRow, DataError, DataReport, Splits

__all__ = ["FILE", "LINE", "BadRow", "Bins", "DataError", "DataReport", "DeriveError", "FileInput", "Folds",
           "Splits",
           "apply_expressions", "data_problems", "leaking_inputs", "load_folds", "load_splits", "parse_expression",
           "parse_filter", "read_file", "read_folder", "read_for_inference", "recipe_problems", "required_columns",
           "stream_for_inference"]
