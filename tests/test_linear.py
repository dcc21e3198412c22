"""The tfidf_linear model type."""

from pathlib import Path

import numpy as np
import polars as pl
from helpers.data import recipe_dict

import ensayo
from ensayo.models import load_recipe
from ensayo.runs import SavedRun

REQUIRED_METRICS = {"test/balanced_accuracy", "test/accuracy", "test/macro_f1", "train/loss", "fit_seconds",
                    "test/macro_precision", "test/macro_recall", "test/loss", "test/weighted_f1"}


def test_tfidf_linear_run_saves_without_pickle(titles_csv: Path, tmp_path: Path) -> None:
    raw = recipe_dict(titles_csv)
    raw["model"] = {"type": "tfidf_linear", "linear": {"classifier": "logistic_regression", "C": 5.0}}
    saved = ensayo.run(load_recipe(raw), output=tmp_path / "run", track=False)
    metrics = saved.metrics
    assert metrics["test/balanced_accuracy"] >= 0.9
    assert set(metrics) >= REQUIRED_METRICS
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert "linear.safetensors" in files
    assert not any(name.endswith((".pkl", ".joblib", ".pickle")) for name in files)
    table = pl.DataFrame({"title": ["Zapatillas Nike running talle 42", "Lego bloques juguete"]})
    np.testing.assert_allclose(SavedRun.load(tmp_path / "run").predict_proba(table), saved.predict_proba(table),
                               rtol=1e-5)
    assert [r[0] for r in saved.predict(table)[0]] == ["SHOES", "TOYS"]
