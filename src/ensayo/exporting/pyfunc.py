"""The loader of an exported MLflow model (pyfunc's `loader_module` form): the model folder holds the run's
own files, and this module, installed with ensayo, reads them. Nothing is pickled and no code is stored."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ensayo.runs import SavedRun, load_run, records_of, rows_to_table

CLASSIFIER_PARAMS = {"top_k": 3, "all_classes": False}
GENERATOR_PARAMS = {"length": 200, "temperature": 0.8, "top_k": 0, "top_p": 1.0, "seed": 0}


class EnsayoModel:
    """What `mlflow.pyfunc.load_model` returns for an ensayo run: `predict(rows, params)`.

    A classifier answers a table with one row per input row: `labels` and `probabilities`, best first (what
    `ensayo serve` answers). A generator reads a `prompt` column and answers one text per row (what
    `ensayo generate` prints for the same seed)."""

    def __init__(self, run: SavedRun) -> None:
        self.run = run

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd

        rows = records_of(model_input)
        if self.run.can_generate:
            return self._generate(rows, {**GENERATOR_PARAMS, **(params or {})})
        options = {**CLASSIFIER_PARAMS, **(params or {})}
        with tempfile.TemporaryDirectory(prefix="ensayo-pyfunc-") as folder:
            table = rows_to_table(self.run.fields, rows, Path(folder))
            k = len(self.run.output) if options["all_classes"] else int(options["top_k"])
            labels, probabilities = self.run.predict(table, max(1, k))
        return pd.DataFrame({"labels": labels, "probabilities": [[round(float(p), 6) for p in row]
                                                                  for row in probabilities]})

    def _generate(self, rows: list[Any], options: dict[str, Any]) -> list[str]:
        texts = []
        for row in rows:
            prompt = row.get("prompt", "") if isinstance(row, dict) else str(row)
            pieces = self.run.generate(str(prompt or ""), int(options["length"]), float(options["temperature"]),
                                       int(options["top_k"]) or None, float(options["top_p"]) if
                                       float(options["top_p"]) < 1 else None, int(options["seed"]))
            texts.append("".join(pieces))
        return texts


def _load_pyfunc(data_path: str) -> EnsayoModel:
    """MLflow's entry point: `data_path` is the run folder inside the model."""
    return EnsayoModel(load_run(data_path))
