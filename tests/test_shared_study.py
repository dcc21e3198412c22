"""One study, several `ensayo sweep` workers, on a real PostgreSQL server: Optuna claims the trials, MLflow
tracks them in its own database."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from helpers.data import recipe_dict
from helpers.servers import Postgres

from ensayo.layout import CHECKPOINT
from ensayo.store import read_json


def worker(study: Path, output: Path, storage: str, log: Path) -> subprocess.Popen:
    environment = {**os.environ, "ENSAYO_HEARTBEAT_SECONDS": "1", "ENSAYO_CHECKPOINT_SECONDS": "0",
                   "ENSAYO_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "ensayo.cli", "sweep", str(study), "--storage", storage,
                             "--output", str(output)], env=environment, stdout=subprocess.DEVNULL,
                            stderr=log.open("w"))


def epochs_done(checkpoint: Path) -> int:
    try:
        return torch.load(checkpoint, weights_only=True)["state"]["epoch"]
    except (FileNotFoundError, RuntimeError):  # the trial ended and its checkpoint went meanwhile
        return 0


def current_trial(log: Path, output: Path) -> Path:
    """The folder of the trial a worker's log says it started last (its rule line: `lr=0.01 (repeat 1/2)`)."""
    started = re.findall(r"(lr=[\d.]+) \(repeat (\d)/\d\)", " ".join(log.read_text().split()))
    if not started:
        return output / "none"
    config, repeat = started[-1]
    return output / "trials" / config / f"seed{int(repeat) - 1}"


@pytest.mark.postgres
@pytest.mark.subprocess
@pytest.mark.slow
def test_workers_share_a_study_through_postgresql_and_take_up_a_killed_workers_trial(
        postgres: Postgres, tmp_path: Path, titles_csv: Path) -> None:
    import optuna
    from mlflow.tracking import MlflowClient

    recipe = recipe_dict(titles_csv, epochs=3)
    recipe["track"] = {"enabled": True, "uri": postgres.url("mlflow"), "artifacts": str(tmp_path / "artifacts")}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(recipe))
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "shared", "recipe": "base.yaml", "repeats": 2,
                                     "sweep": {"method": "grid", "grid": {"train.lr": [0.01, 0.05]}}}))
    storage, output = postgres.url("optuna"), tmp_path / "study"

    # two workers start together; one is killed (kill -9: no chance to say so) in the middle of a trial
    logs = [tmp_path / f"worker{k}.log" for k in range(2)]
    killed, survivor = (worker(study, output, storage, log) for log in logs)
    deadline = time.monotonic() + 120
    while epochs_done(current_trial(logs[0], output) / CHECKPOINT) < 1:  # the killed worker's own trial
        assert killed.poll() is None and time.monotonic() < deadline, logs[0].read_text()[-2000:]
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)

    # the other one finishes the study, the killed worker's trial included (resumed from its checkpoint)
    assert survivor.wait(timeout=240) == 0, logs[1].read_text()[-3000:]
    texts = [log.read_text() for log in logs]
    assert all("repeat" in text for text in texts), "both workers ran trials"
    assert "resuming after epoch" in texts[1]

    # in the database: each (configuration, repeat) ran to the end once; the killed one was failed and retried
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    ran = Counter((t.user_attrs["ensayo.config"], t.user_attrs["ensayo.repeat"]) for t in done)
    assert len(ran) == 4 and set(ran.values()) == {1}
    stale = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(stale) == 1 and len(trials) == 5
    retried = [t for t in done if t.system_attrs.get("failed_trial") == stale[0].number]
    config, repeat = stale[0].user_attrs["ensayo.config"], stale[0].user_attrs["ensayo.repeat"]
    assert len(retried) == 1 and (retried[0].user_attrs["ensayo.config"], retried[0].user_attrs["ensayo.repeat"]) \
        == (config, repeat)
    assert f"{config} (repeat {repeat + 1}/2)" in " ".join(texts[0].split())  # the killed worker's trial...
    assert (output / "trials" / config / f"seed{repeat}" / "metrics.json").is_file()  # ...finished by the other

    # every trial in the results and the report, whichever worker ran it
    results = read_json(output / "results.json")
    assert sorted((t["config"], t["repeat"]) for t in results["trials"]) == sorted(ran)
    assert all(t["status"] == "finished" for t in results["trials"])
    assert "postgres@" in results["storage"] and (output / "report.html").is_file()
    report = (output / "report.md").read_text()
    assert all(f"lr={lr}" in report for lr in ("0.01", "0.05"))

    # MLflow in its own database on the same server: the parent run and its four finished children together
    client = MlflowClient(postgres.url("mlflow"))
    parent_id = read_json(output / "study.json")["parent_run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert len(finished) == 4
    assert all(c.info.artifact_uri.startswith((tmp_path / "artifacts").as_uri()) for c in children)
    assert (tmp_path / "artifacts").is_dir()


@pytest.mark.postgres
def test_workers_opening_an_empty_database_together_all_get_the_study_storage(postgres: Postgres) -> None:
    import threading

    from ensayo.studies.shared import storage_for

    url, workers = postgres.create("racing"), 4
    start, opened, failures = threading.Barrier(workers), [], []

    def open_storage() -> None:
        start.wait()
        try:
            opened.append(storage_for(url))
        except Exception as error:
            failures.append(repr(error))

    threads = [threading.Thread(target=open_storage) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures and len(opened) == workers
    assert opened[0].get_all_studies() == []


@pytest.mark.postgres
def test_the_same_trials_make_the_same_optuna_study_locally_and_on_postgresql(
        postgres: Postgres, tmp_path: Path, titles_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each repeat's objective, as the trials give it: a NaN beside a value, two runs without the objective (as a
    generator's have no accuracy), two values. Optuna must be told the same, whichever scheduler ran them."""
    import optuna

    from ensayo.studies import Study, run_study
    from ensayo.studies.sweep import TrialResult

    outcomes = [[math.nan, 0.5], [None, None], [0.6, 0.8]]
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(recipe_dict(titles_csv)))
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump({
        "name": "told", "recipe": "base.yaml", "repeats": 2,
        "sweep": {"method": "optuna", "trials": 3, "objective": "val/accuracy", "pruning": False,
                  "space": {"train.lr": {"choices": [0.01, 0.02, 0.03]}}}}))

    def scheduled(storage: str | None, output: Path) -> list[tuple[str, float | None]]:
        told = iter(value for trial in outcomes for value in trial)

        def canned(self: Study, name: str, settings: dict, repeat: int, on_epoch: object = None) -> TrialResult:
            value = next(told)
            return TrialResult(name, repeat, f"trials/{name}/seed{repeat}", "finished", settings,
                               {} if value is None else {"val/accuracy": value})

        monkeypatch.setattr(Study, "run_trial", canned)
        run_study(study_file, output, track=False, report=False, storage=storage)
        url = storage or f"sqlite:///{output / 'optuna.db'}"
        trials = optuna.load_study(study_name="told", storage=url).get_trials()
        return [(trial.state.name, trial.value) for trial in trials]

    locally = scheduled(None, tmp_path / "local")
    shared = scheduled(postgres.create("told"), tmp_path / "shared")
    assert locally == shared == [("COMPLETE", 0.5), ("FAIL", None), ("COMPLETE", pytest.approx(0.7))]
