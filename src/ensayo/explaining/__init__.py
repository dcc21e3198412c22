"""`ensayo explain`: why a saved run answered as it did (the model type's `explain`), as one HTML page."""

from __future__ import annotations

from pathlib import Path

from ensayo.data import read_for_inference
from ensayo.explaining.page import write_page
from ensayo.models import InputExplanation, RowExplanation
from ensayo.runs.saved import SavedRun

EXPLANATION = "explanation.html"


def explain_file(run: SavedRun, source: Path, rows: int = 5, output: Path | None = None,
                 label: str | None = None) -> Path:
    """Explain the first `rows` readable rows of `source` (a file in the recipe's format, or a clip or
    folder for a folder recipe), for their predicted class or for `label`; writes the page (default:
    explanation.html in the run) and returns its path."""
    run.require("explain")  # before reading: a language model's run is refused by name, not by its data
    table, _ = read_for_inference(source, run.recipe, need_label=False)  # no usable row: named, with why
    table = table.head(rows)
    explained = run.explain(table, label)
    truth = run.recipe.output.column
    if truth and truth in table.columns:
        for row, value in zip(explained, table[truth].cast(str).to_list(), strict=True):
            row.true = value
    delta = max((abs(r.delta) for r in explained), default=0.0)
    note = (f"Run {run.path} ({run.model_type}). Integrated gradients ({len(explained)} rows) against a neutral "
            f"baseline: each input's share of the predicted class's probability, and within it what pushed the "
            f"answer (red) or pulled against it (blue). Largest approximation error: {delta:.2g}.")
    return write_page(explained, output or run.path / EXPLANATION, f"Why {run.name} answered as it did", note)


__all__ = ["EXPLANATION", "InputExplanation", "RowExplanation", "explain_file"]
