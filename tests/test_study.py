"""Studies: sweeps over recipe keys, repeats with intervals, MLflow parent/child runs, resume, failures."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers.data import recipe_dict
from helpers.training import interrupt_training
from rich.console import Console
from scipy import stats
from typer.testing import CliRunner

from ensayo.cli import app
from ensayo.layout import CHECKPOINT
from ensayo.metrics import interval95
from ensayo.recipe import RecipeError
from ensayo.store import read_json
from ensayo.studies import Study, SweepConfig, TrialPruned, load_study, run_study
from ensayo.studies.schema import Distribution
from ensayo.studies.sweep import configurations
from ensayo.training import EncodedSplit


def write_study(tmp_path: Path, titles_csv: Path, sweep: dict[str, Any], track: bool = False,
                **extra: Any) -> Path:
    recipe = recipe_dict(titles_csv, epochs=2)
    recipe["track"] = {"enabled": track}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(recipe))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny-study", "recipe": "base.yaml", "sweep": sweep, **extra}))
    return path


def trials(directory: Path) -> list[dict[str, Any]]:
    return read_json(directory / "results.json")["trials"]


@pytest.mark.slow
def test_smoke_study_makes_child_runs_and_a_report(tmp_path: Path, titles_csv: Path, mlflow_db: Path) -> None:
    from mlflow.tracking import MlflowClient

    path = write_study(tmp_path, titles_csv, {"method": "grid", "grid": {"train.lr": [0.002, 0.02, 0.2]}},
                       track=True)
    directory = run_study(path, tmp_path / "out")

    done = trials(directory)
    assert [t["status"] for t in done] == ["finished"] * 3
    assert [t["config"] for t in done] == ["lr=0.002", "lr=0.02", "lr=0.2"]
    state = read_json(directory / "study.json")
    client = MlflowClient(state["tracking_uri"])
    parent = client.get_run(state["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["ensayo.best_config"] in {t["config"] for t in done}
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{state['parent_run_id']}'")
    assert sorted(float(c.data.params["train.lr"]) for c in children) == [0.002, 0.02, 0.2]
    assert {c.data.tags["ensayo.config"] for c in children} == {t["config"] for t in done}
    assert all("test/balanced_accuracy" in c.data.metrics for c in children)

    page = (directory / "report.html").read_text()
    assert page.count("<img") == 4 and page.count("data:image/png;base64,") == 4
    table = (directory / "report.md").read_text()
    for trial in done:
        assert f"| {trial['config']} | {trial['settings']['train.lr']} | 1 |" in table


@pytest.mark.slow
def test_repeats_vary_the_seed_and_report_mean_std_and_interval(tmp_path: Path, titles_csv: Path) -> None:
    path = write_study(tmp_path, titles_csv, {"method": "list", "experiments": [{"name": "only"}]}, repeats=3)
    directory = run_study(path, tmp_path / "out", report=False)

    seeds = [yaml.safe_load((directory / t["directory"] / "recipe.yaml").read_text())["train"]["seed"]
             for t in trials(directory)]
    assert seeds == [3, 4, 5]
    values = [t["metrics"]["test/loss"] for t in trials(directory)]
    assert len(set(values)) > 1  # different seeds, different models
    summary = read_json(directory / "results.json")["summary"][0]["metrics"]["test/loss"]
    assert summary["n"] == 3
    assert summary["mean"] == pytest.approx(np.mean(values))
    assert summary["std"] == pytest.approx(np.std(values, ddof=1))
    assert summary["ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3))


def test_interval95_of_known_values() -> None:
    mean, std, half = interval95([1.0, 2.0, 3.0])
    assert (mean, std) == (2.0, 1.0)
    assert half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    single = interval95([0.5])
    assert single[0] == 0.5 and math.isnan(single[1]) and math.isnan(single[2])


def test_interrupted_study_continues_where_it_stopped(tmp_path: Path, titles_csv: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_study(tmp_path, titles_csv, {"method": "grid", "grid": {"train.lr": [0.01, 0.02]}})
    # 11 batches an epoch, 2 epochs a trial: the 30th batch falls in the second trial's first epoch
    restore = interrupt_training(monkeypatch, EncodedSplit, at_batch=30)
    with pytest.raises(KeyboardInterrupt):
        run_study(path, tmp_path / "out", report=False)
    restore()
    first, second = tmp_path / "out/trials/lr=0.01/seed0", tmp_path / "out/trials/lr=0.02/seed0"
    finished_at = (first / "metrics.json").stat().st_mtime_ns
    assert (second / CHECKPOINT).is_file() and not (second / "metrics.json").exists()

    log = io.StringIO()
    run_study(path, tmp_path / "out", report=False, console=Console(file=log, width=200))
    assert (first / "metrics.json").stat().st_mtime_ns == finished_at  # not rerun
    assert "resuming after epoch 0, step 8" in log.getvalue()  # the 30th step was finished before stopping
    assert [t["status"] for t in trials(tmp_path / "out")] == ["finished", "finished"]


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path: Path, titles_csv: Path,
                                                           mlflow_db: Path) -> None:
    from mlflow.tracking import MlflowClient

    sweep = {"method": "list", "experiments": [
        {"name": "broken", "set": {"inputs.0.preprocessing.embeddings": {"path": "missing.vec"}}},
        {"name": "fine"}]}
    path = write_study(tmp_path, titles_csv, sweep, track=True)
    directory = run_study(path, tmp_path / "out")

    broken, fine = trials(directory)
    assert broken["status"] == "failed" and "missing.vec" in broken["error"]
    assert fine["status"] == "finished"
    state = read_json(directory / "study.json")
    client = MlflowClient(state["tracking_uri"])
    parent = client.get_run(state["parent_run_id"])
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    failed = [c for c in children if c.data.tags["ensayo.config"] == "broken"]
    assert len(failed) == 1 and failed[0].info.status == "FAILED"
    assert "missing.vec" in failed[0].data.tags["ensayo.error"]
    assert "broken repeat 0: failed" in (directory / "report.md").read_text()

    log = io.StringIO()  # a rerun keeps the recorded failure instead of failing again
    run_study(path, tmp_path / "out", console=Console(file=log, width=200), report=False)
    assert "broken (repeat" not in log.getvalue()


def test_a_configuration_that_makes_a_bad_recipe_stops_the_study_before_it_starts(
        tmp_path: Path, titles_csv: Path) -> None:
    path = write_study(tmp_path, titles_csv, {"method": "grid", "grid": {"train.learning_rate": [0.1]}})
    expected = r"(?s)configuration 'learning_rate=0.1'.*base.yaml.*train.learning_rate: unknown key"
    with pytest.raises(RecipeError, match=expected):
        run_study(path, tmp_path / "out")
    assert not (tmp_path / "out" / "trials").exists()


@pytest.mark.slow
def test_optuna_study_is_stored_and_continues_with_more_trials(tmp_path: Path, titles_csv: Path) -> None:
    sweep = {"method": "optuna", "trials": 2, "space": {"train.lr": {"low": 0.001, "high": 0.1, "log": True},
                                                        "model.head.hidden": {"choices": [[8], [16]]}}}
    path = write_study(tmp_path, titles_csv, sweep)
    directory = run_study(path, tmp_path / "out", report=False)
    assert (directory / "optuna.db").is_file()
    first = {t["config"]: t for t in trials(directory)}
    assert len(first) == 2 and all(0.001 <= t["settings"]["train.lr"] <= 0.1 for t in first.values())
    stamps = {name: (directory / t["directory"] / "metrics.json").stat().st_mtime_ns for name, t in first.items()}

    sweep["trials"] = 3
    path = write_study(tmp_path, titles_csv, sweep)
    run_study(path, tmp_path / "out", report=False)
    after = {t["config"]: t for t in trials(directory)}
    assert len(after) == 3 and set(first) < set(after)
    for name, stamp in stamps.items():
        assert (directory / after[name]["directory"] / "metrics.json").stat().st_mtime_ns == stamp


def test_random_search_is_reproducible_and_stays_in_its_space() -> None:
    sweep = SweepConfig(method="random", trials=20, seed=7,
                        space={"train.lr": Distribution(low=1e-4, high=1e-1, log=True),
                               "train.batch_size": Distribution(low=16, high=256),
                               "model.head.dropout": Distribution(choices=[0.0, 0.5])})
    drawn = list(configurations(sweep))
    assert drawn == list(configurations(sweep))
    values = [settings for _, settings in drawn]
    assert all(1e-4 <= v["train.lr"] <= 1e-1 for v in values)
    assert all(isinstance(v["train.batch_size"], int) and 16 <= v["train.batch_size"] <= 256 for v in values)
    assert {v["model.head.dropout"] for v in values} == {0.0, 0.5}
    # log-uniform: about half the draws below the geometric middle (1e-2.5)
    assert 5 <= sum(v["train.lr"] < 10 ** -2.5 for v in values) <= 15


def test_grid_configurations_cover_the_product_in_order() -> None:
    sweep = SweepConfig(grid={"train.lr": [0.1, 0.2], "train.batch_size": [8, 16, 32]})
    names = [name for name, _ in configurations(sweep)]
    assert names[:3] == ["lr=0.1,batch_size=8", "lr=0.1,batch_size=16", "lr=0.1,batch_size=32"]
    assert len(set(names)) == 6


@pytest.mark.slow
def test_cli_sweeps_a_plain_recipe_over_a_grid(tmp_path: Path, titles_csv: Path) -> None:
    recipe = tmp_path / "base.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(titles_csv, epochs=1)))
    result = CliRunner().invoke(app, ["sweep", str(recipe), "--grid", "model.head.hidden=[8],[16,16]",
                                      "--no-track", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out" / "trials").iterdir()) == ["hidden=_16_16_", "hidden=_8_"]
    assert (tmp_path / "out" / "report.html").is_file()
    assert "hidden" in (tmp_path / "out" / "report.md").read_text()


def test_smoke_mode_keeps_the_named_experiments_and_their_embeddings(tmp_path: Path, titles_csv: Path) -> None:
    path = write_study(tmp_path, titles_csv, {"method": "list", "experiments": [
        {"name": "a", "set": {"inputs.0.preprocessing.embeddings.path": "${STUDY_DIR}/embeddings/va.vec"}},
        {"name": "b", "set": {"inputs.0.preprocessing.embeddings.path": "${STUDY_DIR}/embeddings/vb.vec"}}]},
        repeats=4, embeddings={"va": {"dim": 16}, "vb": {"dim": 16}},
        smoke={"experiments": ["b"], "set": {"train.epochs": 1}, "embeddings": {"epochs": 1}})
    study, base = load_study(path, smoke=True)
    assert [e.name for e in study.sweep.experiments] == ["b"]
    assert list(study.embeddings) == ["vb"] and study.embeddings["vb"].epochs == 1
    assert study.repeats == 1 and study.set_last == {"train.epochs": 1}
    # the smoke mode's own keys win over an experiment's (which would otherwise train 3 epochs in a smoke test)
    assert Study(study, base, tmp_path / "out").trial_recipe({"train.epochs": 3}, 0).train.epochs == 1
    # run: the kept experiment's word vectors are trained on the training titles first, then it trains on them
    directory = run_study(path, tmp_path / "smoke", smoke=True, report=False)
    assert [(t["config"], t["status"]) for t in trials(directory)] == [("b", "finished")]
    assert sorted(p.name for p in (directory / "embeddings").iterdir()) == ["vb.vec"]
    state = read_json(directory / "trials" / "b" / "seed0" / "features.json")["inputs"]["title"]
    assert state["coverage"]["dimension"] == 16 and state["coverage"]["vocabulary_found"] > 0.5


@pytest.mark.parametrize("name, count", [("grid-seed000", 8), ("encoders-seed001", 10)])
def test_every_configuration_of_the_bundled_studies_is_a_valid_recipe(name: str, count: int, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Each configuration in full (the smoke run above trains three of one study; both run the same code)."""
    monkeypatch.setenv("ENSAYO_DATA", str(tmp_path))  # resolving a recipe reads no data
    config, base = load_study(Path(__file__).resolve().parents[1] / "recipes" / "studies" / f"{name}.yaml")
    assert len(list(configurations(config.sweep))) == count
    Study(config, base, tmp_path / "out", track=False).check_recipes()
    broken = config.model_copy(update={"set": {"model.encoders.title.filters": 3}})
    with pytest.raises(RecipeError, match="model.encoders.title.filters: unknown key"):
        Study(broken, base, tmp_path / "out", track=False).check_recipes()


def test_a_pruned_trial_stops_its_repeats_and_stays_pruned(tmp_path: Path, titles_csv: Path) -> None:
    path = write_study(tmp_path, titles_csv, {"method": "list", "experiments": [{"name": "only"}]}, repeats=2)
    config, base = load_study(path)

    def prune(record: dict[str, float]) -> None:
        raise TrialPruned(f"pruned after epoch {int(record['epoch'])}")

    done = Study(config, base, tmp_path / "out", track=False).run_configuration("only", {}, on_epoch=prune)
    assert [(r.status, r.error) for r in done] == [("pruned", "pruned after epoch 1")]
    again = Study(config, base, tmp_path / "out", track=False).run_configuration("only", {})
    assert [r.status for r in again] == ["pruned"]  # read back, not rerun, and its repeats stay skipped
    assert not (tmp_path / "out/trials/only/seed1").exists()
