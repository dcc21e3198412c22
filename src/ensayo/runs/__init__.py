"""The runs layer: saved runs of any model type, one way to answer with them (`answer`), and predicting or
scoring new rows of files. Its names are imported on first use, so that the CLI reads `answer`'s defaults
without loading a model."""

from __future__ import annotations

from ensayo.lazy import exports

_EXPORTS = {
    "InputError": "ensayo.features.rows",
    "InputField": "ensayo.features.rows",
    "example_rows": "ensayo.features.rows",
    "input_fields": "ensayo.features.rows",
    "records_of": "ensayo.features.rows",
    "rows_to_table": "ensayo.features.rows",
    "evaluate_file": "ensayo.runs.predict",
    "predict_file": "ensayo.runs.predict",
    "predict_rows": "ensayo.runs.predict",
    "predict_table": "ensayo.runs.predict",
    "SavedRun": "ensayo.runs.saved",
    "WrongKindOfRun": "ensayo.runs.saved",
    "load_run": "ensayo.runs.saved",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports("ensayo.runs", _EXPORTS)
