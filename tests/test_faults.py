"""Faults that used to end in a silent wrong result or an unclear message, each now refused in one line that names
its culprit: aliases that expand without end, names that lead out of `runs/`, empty files scored as if they were
data, shared-study URLs as the README writes them, a fold killed after its metrics, and flags, outputs and HTTP
requests that were silently changed or blamed on the wrong thing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from helpers.cli import refused
from helpers.data import cv_recipe, make_titles, recipe_dict, write_challenge_csv, write_corpus

import ensayo
from ensayo import layout
from ensayo.pipeline import RunSession
from ensayo.store import locked, write_json

BILLION_LAUGHS = "\n".join(['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
                            *(f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
                              f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
                              f"*{chr(97 + i)}]" for i in range(8)),
                            "name: laughs"])


@pytest.fixture
def titles(tmp_path: Path) -> Path:
    return write_challenge_csv(tmp_path / "titles.csv", make_titles(20))


def recipe_file(tmp_path: Path, raw: dict[str, Any] | str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return path


# ------------------------------------------------------------------------------------- YAML, names, data
def test_a_billion_laughs_is_refused_in_every_yaml_ensayo_reads(tmp_path: Path, titles: Path) -> None:
    laughs = recipe_file(tmp_path, BILLION_LAUGHS, "laughs.yaml")
    refused(["validate", laughs], f"{laughs}: not valid YAML", "aliases expand to more than 100,000 values",
            "line 6, column 4")
    good = recipe_file(tmp_path, recipe_dict(titles))
    bomb = "&a [1,1,1,1,1,1,1,1,1]"
    for name in "bcdefgh":  # one line: 9 ** 7 values
        bomb = f"[{bomb}, &{name} [" + ",".join([f"*{chr(ord(name) - 1)}"] * 9) + "]]"
    refused(["validate", good, f"train.lr={bomb}"], "override 'train.lr=", "aliases expand to more than")
    study = recipe_file(tmp_path, BILLION_LAUGHS.replace("name: laughs", "recipe: recipe.yaml"), "study.yaml")
    refused(["sweep", study, "--no-track"], f"{study}: not valid YAML", "aliases expand")
    refused(["sweep", good, "--grid", "train.lr=0.1,0.2", "--grid", "train.lr=0.3"],
            "--grid train.lr is given twice")


def test_a_name_that_leads_out_of_runs_is_refused(tmp_path: Path, titles: Path) -> None:
    recipe = recipe_file(tmp_path, recipe_dict(titles))
    for name in ("../escaped", str(tmp_path / "anywhere"), "a/b"):
        refused(["run", recipe, f"name={name}", "--no-track"], "name: recipe names are letters, digits",
                f"got {name!r}")
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "anywhere").exists()


def test_a_file_without_usable_rows_is_refused_by_evaluate_and_predict_as_by_run(
        tmp_path: Path, titles: Path, tiny_runs: dict[str, Path]) -> None:
    header_only = tmp_path / "header.csv"
    header_only.write_text("title,label_quality,language,category\n")
    all_bad = tmp_path / "bad.csv"
    all_bad.write_text("title,label_quality,language,category\n,reliable,spanish,TOYS\n,reliable,spanish,BOOKS\n")
    for source, words in ((header_only, "the file has no data rows (a header only)"),
                          (all_bad, "every row of the file is bad (2)")):
        run_said = refused(["run", recipe_file(tmp_path, recipe_dict(source)), "--no-track"], words)
        assert str(source) in run_said
        refused(["evaluate", tiny_runs["neural"], "--input", source, "--output", tmp_path / "m.json"],
                str(source), words)
        refused(["predict", tiny_runs["neural"], "--input", source, "--output", tmp_path / "p.csv"], words)
        refused(["predict", tiny_runs["neural"], "--input", source], words)
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "p.csv").exists()


def test_a_derived_expression_that_spoils_every_row_is_named_not_the_split(tmp_path: Path, titles: Path) -> None:
    raw = recipe_dict(titles)
    raw["derive"] = [{"name": "ratio", "expression": "1 / (len_zero - len_zero)"}]
    raw["data"]["source"] = str(titles)
    table = titles.read_text().splitlines()
    with_number = tmp_path / "numbered.csv"
    with_number.write_text("\n".join([table[0] + ",len_zero", *(line + ",3" for line in table[1:])]) + "\n")
    raw["data"]["source"] = str(with_number)
    raw["inputs"].append({"name": "ratio", "type": "number"})
    raw["model"]["encoders"]["ratio"] = {"type": "passthrough"}
    text = refused(["run", recipe_file(tmp_path, raw), "--no-track"], "every row of the file is bad", "ratio")
    assert "data.split" not in text


# ------------------------------------------------------------------------------------- storage URLs
def test_a_storage_that_cannot_be_opened_is_one_line_naming_the_option(tmp_path: Path, titles: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port on this machine that nothing listens on: a refused connection
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    recipe = recipe_file(tmp_path, recipe_dict(titles))
    for url, why in ((f"postgresql://someone:secret@127.0.0.1:{closed}/optuna", "refused"),
                     (f"postgresql://someone@/optuna?host={tmp_path / 'no-socket-here'}", "No such file"),
                     ("sqlite:////nonexistent-folder/optuna.db", "unable to open database file"),
                     ("notadatabase:/x", "not a database URL")):
        text = refused(["sweep", recipe, "--grid", "train.lr=0.1", "--no-track", "--storage", url,
                        "--output", tmp_path / "study"], "--storage", why)
        assert "secret" not in text
    raw = recipe_dict(titles)
    raw["track"] = {"enabled": True, "uri": f"postgresql://someone:secret@127.0.0.1:{closed}/mlflow"}
    text = refused(["run", recipe_file(tmp_path, raw, "tracked.yaml")], "track.uri", "cannot be reached", "refused")
    assert "secret" not in text


# ------------------------------------------------------------------------------------- a killed fold
@pytest.mark.slow
def test_a_fold_killed_just_after_writing_its_metrics_is_finished_when_the_run_resumes(
        tmp_path: Path, titles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = cv_recipe(titles, folds=2, epochs=2)
    closing = RunSession.close
    killed: list[Path] = []

    def dies_after_its_metrics(self: RunSession, metrics: dict[str, float], step: int = 0, **more: Any) -> None:
        if self.run_dir.name == "fold0" and not killed:
            killed.append(self.run_dir)
            write_json(self.run_dir / layout.METRICS, metrics)  # on disk when the process died
            raise KeyboardInterrupt
        closing(self, metrics, step, **more)

    monkeypatch.setattr(RunSession, "close", dies_after_its_metrics)
    with pytest.raises(KeyboardInterrupt):
        ensayo.run(recipe, output=tmp_path / "cv", track=False)
    fold = killed[0]
    assert (fold / layout.METRICS).is_file() and (fold / layout.CHECKPOINT).is_file()
    resumed = ensayo.run(None, resume=tmp_path / "cv", track=False)
    for directory in (fold, tmp_path / "cv/folds/fold1"):
        assert not any((directory / name).exists() for name in layout.TRAINING_ONLY), directory
        assert (directory / layout.LEARNING_CURVES).is_file() and (directory / layout.WEIGHTS).is_file()
    assert json.loads((fold / layout.FORMAT).read_text()).get("trained_at")
    assert resumed.metrics["cv/balanced_accuracy_fold0"] == json.loads((fold / layout.METRICS).read_text())[
        "test/balanced_accuracy"]


# ------------------------------------------------------------------------------------- flags
def test_flags_are_not_silently_changed(tmp_path: Path, titles: Path) -> None:
    twice = recipe_file(tmp_path, yaml.safe_dump(recipe_dict(titles)) + "train: {epochs: 1}\n", "twice.yaml")
    refused(["validate", twice], f"{twice}: not valid YAML", "the key 'train' is given twice (first on line")
    plain = recipe_file(tmp_path, recipe_dict(titles))
    refused(["sweep", plain, "--grid", "train.lr=0.1", "--repeats", "0"], "Invalid value for '--repeats'")
    refused(["sweep", plain, "--grid", "train.lr=0.1", "--smoke", "--no-track"],
            "--smoke needs the study's smoke section", "a plain recipe")
    refused(["validate", plain, "data.sample=2.5"], "data.sample", "a share of the rows", "got 2.5")
    refused(["validate", plain, "train.epochs=!!python/object/apply:os.system [echo hi]"],
            "override 'train.epochs=!!python/object/apply:os.system [echo hi]': not valid YAML",
            "is not allowed: ensayo builds no objects from YAML tags")


def test_outputs_that_are_the_wrong_kind_of_path_are_named(tmp_path: Path, titles: Path,
                                                           tiny_runs: dict[str, Path]) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    a_folder = tmp_path / "a-folder"
    a_folder.mkdir()
    recipe = recipe_file(tmp_path, recipe_dict(titles))
    refused(["run", recipe, "--no-track", "--output", a_file], f"--output {a_file}: a file is there")
    refused(["predict", tiny_runs["neural"], "--input", titles, "--output", a_folder],
            f"--output {a_folder}: a folder is there")
    refused(["evaluate", tiny_runs["neural"], "--input", titles, "--output", a_folder], "a folder is there")
    refused(["export", tiny_runs["neural"], "--format", "onnx", "--output", a_file], "a file is there")
    assert a_file.read_text() == "x" and not any(a_folder.iterdir())


def test_a_second_writer_is_told_which_live_process_holds_the_folder(tmp_path: Path, titles: Path) -> None:
    recipe = recipe_file(tmp_path, recipe_dict(titles))
    (tmp_path / "run").mkdir()
    write_json(tmp_path / "run" / layout.RECIPE, {})  # what an unfinished run leaves; here, one being written
    with locked(tmp_path / "run", "a run"):
        refused(["run", recipe, "--no-track", "--output", tmp_path / "run"],
                f"a run is being written there by process {os.getpid()} on")


def test_explaining_what_cannot_be_explained_names_why(tmp_path: Path, tiny_runs: dict[str, Path],
                                                       file_runs: dict[str, Path]) -> None:
    corpus = write_corpus(tmp_path / "news.csv", rows=5)
    refused(["explain", tiny_runs["language_model"], "--input", corpus],
            "model type language_model does not explain its answers")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVE not audio")
    refused(["explain", file_runs["tones"], "--input", broken], str(broken), "every row of the file is bad")


def test_a_run_whose_state_lost_its_classes_is_named_damaged(tmp_path: Path, tiny_runs: dict[str, Path]) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_runs["neural"], run)
    state = json.loads((run / layout.STATE).read_text())
    del state["output"]["classes"]
    (run / layout.STATE).write_text(json.dumps(state))
    refused(["predict", run, "--input", run / "nothing.csv"], f"{run}: damaged run", "'classes'")


# ------------------------------------------------------------------------------------- HTTP
@pytest.mark.server
def test_requests_in_the_wrong_shape_are_told_what_is_expected(live_server: Any, file_runs: dict[str, Path]) -> None:
    url = live_server.url
    as_text = requests.post(url + "/v1/models/neural/predict", data=json.dumps({"rows": [{"title": "x"}]}),
                            headers={"content-type": "text/plain"}, timeout=10)
    assert as_text.status_code == 415 and "Content-Type: application/json" in as_text.json()["detail"][0]["msg"]
    as_form = requests.post(url + "/v1/models/neural/predict", data={"title": "x"}, timeout=10)
    assert as_form.status_code == 415 and "it came as application/x-www-form-urlencoded" in as_form.text
    latin = requests.post(url + "/v1/models/neural/predict", data='{"rows": [{"title": "canción"}]}'.encode("latin-1"),
                          headers={"content-type": "application/json"}, timeout=10)
    assert latin.status_code == 400 and "not UTF-8" in latin.json()["detail"][0]["msg"]
    assert requests.head(url + "/health", timeout=10).status_code == 200
    clip = next(Path(file_runs["clips"]).glob("low_*.wav")).read_bytes()
    two = requests.post(url + "/v1/models/tones/predict", files=[("path", ("a.wav", clip)), ("path", ("b.wav", clip))],
                        timeout=10)
    assert two.status_code == 422 and "2 values for one file input" in two.json()["detail"][0]["msg"]
