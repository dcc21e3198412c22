"""The loader of an exported MLflow model (pyfunc's `loader_module` form): the model folder holds the run's
own files, and this module, installed with ensayo, reads them. Nothing is pickled and no code is stored."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ensayo.features.rows import prompts_of, records_of, rows_to_table
from ensayo.runs import answer
from ensayo.runs.saved import SavedRun, load_run


class EnsayoModel:
    """What `mlflow.pyfunc.load_model` returns for an ensayo run: `predict(rows, params)`, answering as
    `ensayo serve` does (`ensayo.runs.answer`).

    A classifier answers a table with one row per input row: `labels` and `probabilities`, best first. A
    generator reads a `prompt` column and answers one text per row (what `ensayo generate` prints for the same
    settings)."""

    def __init__(self, run: SavedRun) -> None:
        self.run = run

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        rows = records_of(model_input)
        settings = {key: value for key, value in (params or {}).items()
                    if key in answer.defaults(self.run.can_predict)}  # MLflow has warned of any other
        if self.run.can_generate:
            sampling = answer.Sampling.checked(**settings)
            return ["".join(self.run.sample(prompt, sampling)) for prompt in prompts_of(rows)]
        ranking = answer.Ranking.checked(**settings)
        with tempfile.TemporaryDirectory(prefix="ensayo-pyfunc-") as folder:
            table = rows_to_table(self.run.fields, rows, Path(folder))
            labels, probabilities = self.run.predict(table, ranking.top_k, ranking.all_classes)
            notes = self.run.notes(table) if self.run.takes_notes else None
        frame = pd.DataFrame(answer.records(labels, probabilities))
        if notes is not None:  # a column of its own, None where a row has nothing to say
            frame["note"] = notes
        return frame


def _load_pyfunc(data_path: str) -> EnsayoModel:
    """MLflow's entry point: `data_path` is the run folder inside the model."""
    return EnsayoModel(load_run(data_path))
