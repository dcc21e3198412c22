"""Runs tracked in MLflow: parameters, per-epoch metrics, artifacts, and where the store is."""

from pathlib import Path

import pytest
from helpers.data import recipe_dict

import ensayo
from ensayo.models import load_recipe


def test_tracking_logs_params_epochs_and_artifacts(titles_csv: Path, tmp_path: Path, mlflow_db: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{mlflow_db}"
    raw = recipe_dict(titles_csv, epochs=3)
    raw["track"] = {"enabled": True, "uri": uri, "experiment": "tests"}
    ensayo.run(load_recipe(raw), output=tmp_path / "run", track=True)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tests")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED"
    assert found.data.params["train.lr"] == "0.02"
    assert found.data.params["model.encoders.title.type"] == "bag"
    assert len(client.get_metric_history(found.info.run_id, "val/balanced_accuracy")) == 4  # 3 epochs + final
    assert found.data.metrics["test/balanced_accuracy"] > 0.5
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"metrics.json", "model.safetensors", "recipe.yaml", "confusion.png"} <= artifacts


def test_tracking_store_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ensayo.recipe import TrackConfig
    from ensayo.tracking import tracking_uri

    assert tracking_uri(TrackConfig()) == f"sqlite:///{tmp_path / 'mlflow.db'}"  # the working directory
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/m.db")
    assert tracking_uri(TrackConfig()) == "sqlite:////elsewhere/m.db"
    assert tracking_uri(TrackConfig(uri="sqlite:////recipe.db")) == "sqlite:////recipe.db"
