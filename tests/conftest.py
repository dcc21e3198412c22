"""The tests' fixtures: tiny trained runs shared by the session, an empty MLflow store, a live server and a
PostgreSQL server. What tests import lives in `helpers`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from helpers.data import (
    ENSEMBLE_MEMBERS,
    audio_recipe,
    cv_recipe,
    lm_recipe,
    make_clips,
    make_pois,
    make_titles,
    poi_recipe,
    recipe_dict,
    write_challenge_csv,
    write_corpus,
)
from helpers.servers import LiveServer, Postgres


@pytest.fixture
def titles_csv(tmp_path: Path) -> Path:
    return write_challenge_csv(tmp_path / "titles.csv", make_titles())


@pytest.fixture(scope="session")
def _empty_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables and nothing else, made once: MLflow's migrations take seconds."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_db(_empty_mlflow_store: Path, tmp_path: Path) -> Path:
    """A fresh, empty MLflow store of this test, where tracking looks by default (the test's working
    directory): a copy of the session's empty store."""
    path = tmp_path / "mlflow.db"
    shutil.copyfile(_empty_mlflow_store, path)
    return path


@pytest.fixture(autouse=True)
def _small_torch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small finished run of each built-in model type, trained once per session: read them, never
    write into them (copy one first)."""
    import ensayo

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-runs")
    titles = write_challenge_csv(root / "titles.csv", make_titles())
    runs: dict[str, Path] = {}
    neural = recipe_dict(titles)
    runs["neural"] = ensayo.run(neural, output=root / "neural", track=False).path
    linear = {**recipe_dict(titles), "model": ENSEMBLE_MEMBERS["member-tfidf"]}
    runs["tfidf_linear"] = ensayo.run(linear, output=root / "tfidf_linear", track=False).path
    members = []
    for name, model in ENSEMBLE_MEMBERS.items():
        member = {**recipe_dict(titles), "name": name}
        if model["type"] != "neural":
            member["model"] = model
        (root / f"{name}.yaml").write_text(yaml.safe_dump(member))
        members.append(f"{name}.yaml")
    ensemble = {**recipe_dict(titles), "name": "tiny-ensemble", "inputs": [],
                "model": {"type": "ensemble", "ensemble": {"members": members}}}
    (root / "ensemble.yaml").write_text(yaml.safe_dump(ensemble))
    runs["ensemble"] = ensayo.run(root / "ensemble.yaml", output=root / "ensemble", track=False).path
    corpus = write_corpus(root / "news.csv")
    runs["language_model"] = ensayo.run({**lm_recipe(corpus), "train": {"lr": 0.01, "epochs": 1, "batch_size": 16}},
                                        output=root / "language_model", track=False).path
    return runs


@pytest.fixture(scope="session")
def cv_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-fold cross-validated run of the tiny recipe, each fold calibrated by a temperature. Read
    it, never write into it."""
    import ensayo

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cv-run")
    titles = write_challenge_csv(root / "titles.csv", make_titles(rows_per_class=40, seed=5))
    recipe = cv_recipe(titles, calibrate="temperature", epochs=3)
    recipe["name"] = "tiny-cv"
    return ensayo.run(recipe, output=root / "cv", track=False).path


@pytest.fixture(scope="session")
def file_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small finished runs whose inputs are files: tones (audio) and points of interest (a photo beside
    categories and a number). Trained once per session; read them, never write into them."""
    import ensayo

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("file-runs")
    tones = audio_recipe(make_clips(root / "clips"))
    pois = poi_recipe(make_pois(root / "poi"))
    return {"tones": ensayo.run(tones, output=root / "tones", track=False).path,
            "pois": ensayo.run(pois, output=root / "pois", track=False).path,
            "clips": root / "clips", "poi": root / "poi"}


@pytest.fixture(scope="session")
def live_server(tiny_runs: dict[str, Path], file_runs: dict[str, Path]) -> Any:
    """Every tiny run served at once, by name: neural, tfidf_linear, ensemble, language_model, tones, pois."""
    from ensayo.runs import load_run
    from ensayo.serving import ServeOptions, create_app

    names = ["neural", "tfidf_linear", "ensemble", "language_model"]
    runs = {name.replace("_", "-"): load_run(tiny_runs[name]) for name in names}
    runs |= {name: load_run(file_runs[name]) for name in ("tones", "pois")}
    server = LiveServer(create_app(runs, ServeOptions(max_rows=64, max_upload_mb=1.0, batch_wait_ms=20)))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    import tempfile

    missing = [n for n in ("initdb", "pg_ctl", "createdb") if shutil.which(n) is None]
    if missing:
        pytest.skip(f"PostgreSQL's {', '.join(missing)} not found (Debian: apt install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg is in the cluster extra")
    root = Path(tempfile.mkdtemp(prefix="ensayo-postgres-"))  # pytest's folders are closed to other users
    server = Postgres(root)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
