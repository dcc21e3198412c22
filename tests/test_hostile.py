"""A careless or hostile user: bad recipes, bad data, damaged runs, taken folders, failing stores. Each case
asserts the exit code, that the message names the culprit (file and line, key or field), and that no
traceback reaches the user. Runs are the session's tiny ones, copied before they are damaged."""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import soundfile as sf
import torch
import yaml
from helpers.cli import refused
from helpers.data import make_titles, recipe_dict, write_challenge_csv
from PIL import Image

import ensayo
from ensayo import layout
from ensayo.data import load_splits
from ensayo.models import load_recipe
from ensayo.store import locked


def recipe_file(tmp_path: Path, raw: dict[str, Any], name: str = "hostile.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


@pytest.fixture
def titles(tmp_path: Path) -> Path:
    return write_challenge_csv(tmp_path / "titles.csv", make_titles(20))


def quick(source: Path, **changes: Any) -> dict[str, Any]:
    raw = recipe_dict(source, epochs=1)
    raw["data"]["bad_rows"] = "fail"
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            raw.setdefault(section, {})[field] = value
        else:
            raw[section] = value
    return raw


# ----------------------------------------------------------------------------------------------- recipes
@pytest.mark.parametrize("overrides, expected", [
    (["traim.epochs=3"], ["traim: unknown key", "did you mean 'train'"]),
    (["train.epocs=3"], ["train.epocs: unknown key", "did you mean 'epochs'"]),
    (["train.lr=inf"], ["train.lr: Input should be a finite number"]),
    (["train.lr=.nan"], ["train.lr: Input should be a finite number"]),
    (["train.lr=-1"], ["train.lr: Input should be greater than 0"]),
    (["train.epochs=0"], ["train.epochs: Input should be greater than or equal to 1"]),
    (["train.seed=-3"], ["train.seed: Input should be greater than or equal to 0"]),
    (["data.sample=-5"], ["data.sample: Input should be greater than 0"]),
    (["data.split.seed=-1"], ["data.split.seed: Input should be greater than or equal to 0"]),
    (["data.split.seed=99999999999"], ["data.split.seed: Input should be less than or equal to"]),
    (["data.split.train=0.9"], ["add up to 1"]),
    (["model.type=nueral"], ["model.type: unknown model type 'nueral'", "did you mean 'neural'"]),
    (["inputs.0.type=txt"], ["inputs.0.type: unknown input type 'txt'", "did you mean 'text'"]),
    (["model.encoders.title.type=cnnn"], ["model.encoders.title.type: unknown text encoder 'cnnn'",
                                          "did you mean 'cnn'"]),
    (["model.encoders.title.embedding_dim=0"], ["model.encoders.title.embedding_dim"]),
    (["inputs.0.preprocessing.numbers=zeros"], ["inputs.0.preprocessing.numbers"]),
    (["model.linear={C: 2}"], ["model.linear: unknown key for model type 'neural'"]),
    (["data.filters=['language === spanish']"], ["data.filters.0: cannot read 'language === spanish'"]),
    (["data.filters=['language spanish']"], ["data.filters.0: cannot read 'language spanish'"]),
    (["derive=[{name: x, expression: \"__import__('os')\"}]"], ["derive.0 (x)", "is not allowed"]),
    (["derive=[{name: x, expression: 'title +'}]"], ["derive.0 (x): cannot parse 'title +'"]),
    (["derive=[{name: x, expression: 'a', join: [a, b]}]"], ["derive.0", "exactly one of expression, bin or join"]),
    (["data.split={method: filter, test_filter: 'index <'}"], ["data.split.test_filter: cannot read 'index <'"]),
    (["output.auxiliary=[{column: price}]", "model={type: tfidf_linear}"],
     ["output.auxiliary: model.type tfidf_linear has no shared layers"]),
    (["output={type: text, columns: [title]}"], ["model.type: neural gives a category output, but output.type "
                                                 "is 'text'"]),
    (["inputs=[{name: title, type: text}, {name: title, type: text}]"], ["input names must be unique"]),
    (["train.lr"], ["override 'train.lr' is not of the form key.path=value"]),
    (["inputs.5.name=x"], ["inputs.5.name: '5' is not an index of a list of 1"]),
    (["model={type: ensemble, ensemble: {members: [one.yaml]}}", "inputs=[]"],
     ["model.ensemble.members: an ensemble needs two or more member recipes"]),
])
def test_validate_names_the_bad_key(overrides: list[str], expected: list[str], tmp_path: Path, titles: Path) -> None:
    refused(["validate", recipe_file(tmp_path, recipe_dict(titles)), *overrides], *expected)


def test_a_deeply_nested_expression_is_refused_not_a_recursion_error(tmp_path: Path, titles: Path) -> None:
    raw = recipe_dict(titles)
    raw["derive"] = [{"name": "deep", "expression": "(" * 95 + "1" + ")" * 95 + " + " + "-" * 400 + "1"}]
    refused(["validate", recipe_file(tmp_path, raw)], "derive.0 (deep)", "nested")


@pytest.mark.parametrize("content, expected", [
    (None, ["recipe file not found"]),
    ("name: [unclosed", ["not valid YAML"]),
    ("- a list\n- of things\n", ["a recipe must be a mapping of sections, got list"]),
])
def test_recipe_files_that_cannot_be_read(content: str | None, expected: list[str], tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    if content is not None:
        path.write_text(content)
    refused(["validate", path], str(path), *expected)


def test_ensemble_members_that_cannot_be_read_are_named(tmp_path: Path, titles: Path) -> None:
    raw = {**recipe_dict(titles), "inputs": [],
           "model": {"type": "ensemble", "ensemble": {"members": ["absent.yaml", "other.yaml"]}}}
    refused(["validate", recipe_file(tmp_path, raw)], "model.ensemble.members.0 (absent.yaml)",
            "recipe file not found")


# -------------------------------------------------------------------------------------------------- data
def test_a_missing_variable_in_a_path_is_named(tmp_path: Path, titles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    raw = quick(titles)
    raw["data"]["source"] = "${NOT_SET_ANYWHERE}/titles.csv"
    refused(["run", recipe_file(tmp_path, raw), "--no-track"], "${NOT_SET_ANYWHERE}", "not set in the environment")


@pytest.mark.parametrize("content, expected", [
    ("", ["the file is empty, expected a header line"]),
    ("title,label_quality,language,category\n", ["the file has no data rows (a header only)"]),
    ("title,label_quality,language,category\na,b\nc,d\n", ["every row of the file is bad (2)",
                                                           ":2: 2 fields, expected 4"]),
])
def test_files_without_usable_rows_say_why(content: str, expected: list[str], tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    source.write_text(content)
    refused(["run", recipe_file(tmp_path, quick(source)), "--no-track"], str(source), *expected)
    assert not (tmp_path / "runs").exists()


def test_a_latin1_file_is_named_with_its_line(tmp_path: Path) -> None:
    source = tmp_path / "latin.csv"
    rows = "title,label_quality,language,category\nTaladro,reliable,spanish,DRILLS\nMuñeca,reliable,spanish,TOYS\n"
    source.write_bytes(rows.encode("latin-1"))
    refused(["run", recipe_file(tmp_path, quick(source)), "--no-track"], f"{source}:3: not UTF-8 text")


def test_a_truncated_gzip_file_is_named_instead_of_aborted(tmp_path: Path, titles: Path) -> None:
    whole = gzip.compress(titles.read_bytes())
    source = tmp_path / "cut.csv.gz"
    source.write_bytes(whole[: len(whole) // 2])
    text = refused(["run", recipe_file(tmp_path, quick(source)), "--no-track"], str(source),
                   "the compressed file is cut short or damaged")
    assert "Aborted" not in text


def test_a_corrupt_parquet_file_is_named(tmp_path: Path) -> None:
    source = tmp_path / "broken.parquet"
    source.write_bytes(b"PAR1" + os.urandom(200))
    refused(["run", recipe_file(tmp_path, quick(source)), "--no-track"], str(source), "not a readable Parquet file")


def test_a_jsonl_field_of_the_wrong_kind_is_a_bad_row(tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    rows = [{"title": t, "language": "spanish", "category": c} for t, c in make_titles(10)]
    rows[1]["title"] = ["not", "a", "title"]
    rows[4] = {"title": 12345, "language": "spanish", "category": rows[4]["category"]}  # a number reads as text
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    refused(["run", recipe_file(tmp_path, quick(source)), "--no-track"], "2 bad row(s) and data.bad_rows is 'fail'",
            f"{source}:2: field 'title' is a list, in other rows a plain value", f"{source}:51: not valid JSON")


def test_a_byte_order_mark_leaves_no_invisible_character_in_a_column_name(tmp_path: Path, titles: Path) -> None:
    source = tmp_path / "bom.csv"
    source.write_bytes(b"\xef\xbb\xbf" + titles.read_bytes())
    assert load_splits(load_recipe(quick(source))).train.columns[0] == "title"


def test_a_filter_that_keeps_nothing_is_named_with_what_the_column_holds(tmp_path: Path, titles: Path) -> None:
    raw = quick(titles, data__filters=["language == spanis"])
    refused(["run", recipe_file(tmp_path, raw), "--no-track"], "data.filters.0: 'language == spanis' leaves no row",
            "'language' holds 'spanish', 'portuguese'")


def test_a_filter_on_a_missing_column_is_named(tmp_path: Path, titles: Path) -> None:
    raw = quick(titles, data__filters=["lang == spanish"])
    refused(["run", recipe_file(tmp_path, raw), "--no-track"],
            "data.filters.0: column 'lang' is not in the data; did you mean 'language'?")


def test_a_training_split_of_one_class_is_refused_before_training(tmp_path: Path, titles: Path) -> None:
    raw = quick(titles, data__filters=["category == BOOKS"])
    refused(["run", recipe_file(tmp_path, raw), "--no-track"], "output.column 'category'",
            "the training split holds one class only ('BOOKS'")
    assert not (tmp_path / "runs").exists()


def test_a_missing_group_column_and_an_unsplittable_share_are_named(tmp_path: Path, titles: Path) -> None:
    grouped = quick(titles, data__split={"method": "group", "group_column": "seller", "train": 0.8, "test": 0.2})
    refused(["run", recipe_file(tmp_path, grouped), "--no-track"], "data.split.group_column: column 'seller'")
    one_group = quick(titles, data__split={"method": "group", "group_column": "language", "train": 0.8, "test": 0.2})
    refused(["run", recipe_file(tmp_path, one_group), "--no-track"], "data.split: cannot hold out a 0.2 share of 1 "
            "groups", "train set will be empty")


def test_a_label_with_one_row_is_not_reported_under_an_internal_name(tmp_path: Path) -> None:
    source = write_challenge_csv(tmp_path / "rare.csv", [*make_titles(10), ("Guitarra criolla", "GUITARS")])
    splits = load_splits(load_recipe(quick(source)))
    assert sum(part.height for _, part in splits.items()) == 46
    assert "\0rare" not in str(splits.report.to_dict())


def test_a_division_by_zero_is_a_bad_row_named_as_such(tmp_path: Path) -> None:
    source = tmp_path / "numbers.csv"
    pl.DataFrame({"a": [1.0, 2.0, 3.0, 4.0] * 5, "b": [1.0, 0.0, 2.0, 4.0] * 5,
                  "label": ["x", "y"] * 10}).write_csv(source)
    raw = {"data": {"source": str(source), "bad_rows": "fail", "split": {"train": 0.5, "test": 0.5, "seed": 1}},
           "derive": [{"name": "ratio", "expression": "a / b"}], "inputs": [{"name": "ratio", "type": "number"}],
           "output": {"column": "label"}, "model": {"encoders": {"ratio": {"type": "passthrough"}}},
           "track": {"enabled": False}}
    refused(["run", recipe_file(tmp_path, raw), "--no-track"], f"{source}:3: ratio is not a finite number")


def test_an_image_over_the_decompression_limit_is_a_bad_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for index in range(8):
        Image.new("RGB", (40 if index == 3 else 8, 40 if index == 3 else 8), (index * 30, 0, 0)).save(
            tmp_path / f"{index}.png")
    pl.DataFrame({"photo": [f"{i}.png" for i in range(8)], "label": ["a", "b"] * 4}).write_csv(tmp_path / "p.csv")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 40 x 40 is over twice the limit: a bomb
    raw = {"data": {"source": str(tmp_path / "p.csv"), "split": {"train": 0.5, "test": 0.5, "seed": 1}},
           "inputs": [{"name": "photo", "type": "image", "preprocessing": {"size": 8}}], "output": {"column": "label"},
           "model": {"encoders": {"photo": {"type": "cnn", "channels": [4]}}}}
    splits = load_splits(load_recipe(raw))
    (bomb,) = splits.report.bad_rows
    assert bomb.line == 5 and "3.png" in bomb.reason and "DecompressionBombError" in bomb.reason


def test_links_and_folders_named_like_clips_are_bad_rows(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    for index, digit in enumerate([0, 1, 0, 1]):
        sf.write(clips / f"{digit}_x_{index}.wav", np.sin(np.arange(800) * (0.1 + digit)).astype(np.float32), 8000)
    (clips / "1_x_9.wav").symlink_to(tmp_path / "gone.wav")
    (clips / "0_x_8.wav").mkdir()
    raw = {"data": {"source": str(clips), "format": "folder", "pattern": "{digit}_{speaker}_{index}.wav",
                    "split": {"method": "random", "train": 1.0, "test": 0.0, "seed": 0}},
           "inputs": [{"name": "audio", "type": "audio", "column": "path"}], "output": {"column": "digit"},
           "model": {"encoders": {"audio": {"type": "cnn2d"}}}}
    reasons = {Path(b.file).name: b.reason for b in load_splits(load_recipe(raw)).report.bad_rows}
    assert reasons == {"0_x_8.wav": "a folder, not a file", "1_x_9.wav": "a link to nothing"}


# ---------------------------------------------------------------------------------------- damaged runs
def damaged(tiny_runs: dict[str, Path], kind: str, tmp_path: Path) -> Path:
    copy = tmp_path / f"damaged-{kind}"
    shutil.copytree(tiny_runs[kind], copy)
    return copy


@pytest.fixture
def new_titles(tmp_path: Path) -> Path:
    return write_challenge_csv(tmp_path / "new.csv", make_titles(2, seed=4))


@pytest.mark.parametrize("kind, damage, expected", [
    ("neural", lambda run: (run / layout.STATE).write_text('{"inputs": {'), ["features.json: damaged, not valid JSON"]),
    ("neural", lambda run: (run / layout.WEIGHTS).write_bytes((run / layout.WEIGHTS).read_bytes()[:100]),
     ["model.safetensors: damaged, not readable as safetensors"]),
    ("neural", lambda run: (run / layout.RECIPE).write_text((run / layout.RECIPE).read_text().replace(
        "embedding_dim: 16", "embedding_dim: 24")), ["model.safetensors: the weights do not fit the network"]),
    ("neural", lambda run: (run / layout.RECIPE).unlink(), ["not a saved ensayo run"]),
    ("tfidf_linear", lambda run: (run / layout.LINEAR_WEIGHTS).write_bytes(b"\0" * 50),
     ["linear.safetensors"]),
    ("neural", lambda run: (run / layout.FORMAT).write_text('{"version": 99, "model_type": "neural"}'),
     ["run format 99 is newer than this ensayo reads"]),
    ("ensemble", lambda run: shutil.rmtree(run / layout.MEMBERS / "member-bag"),
     ["member-bag", "not a saved ensayo run"]),
])
def test_a_damaged_run_is_named_when_it_predicts(kind: str, damage: Any, expected: list[str],
                                                 tiny_runs: dict[str, Path], tmp_path: Path, new_titles: Path) -> None:
    run = damaged(tiny_runs, kind, tmp_path)
    damage(run)
    refused(["predict", run, "--input", new_titles, "--output", tmp_path / "p.csv"], *expected)
    assert not (tmp_path / "p.csv").exists()


def test_a_run_refuses_what_its_type_cannot_do(tiny_runs: dict[str, Path], new_titles: Path) -> None:
    refused(["predict", tiny_runs["language_model"], "--input", new_titles], "does not predict classes")
    refused(["generate", tiny_runs["neural"], "--prompt", "x"], "model type neural does not generate text")


@pytest.mark.parametrize("args, expected", [
    (["--top-k", "0"], ["Invalid value for '--top-k'"]),
    (["--batch-size", "0"], ["Invalid value for '--batch-size'"]),
])
def test_prediction_options_out_of_range_are_usage_errors(args: list[str], expected: list[str],
                                                          tiny_runs: dict[str, Path], new_titles: Path,
                                                          tmp_path: Path) -> None:
    refused(["predict", tiny_runs["neural"], "--input", new_titles, "--output", tmp_path / "p.csv", *args],
            *expected, code=2)
    assert not (tmp_path / "p.csv").exists()


def test_prediction_input_that_cannot_be_used_is_named(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    refused(["predict", tiny_runs["neural"], "--input", tmp_path / "absent.csv"], "absent.csv: data file not found")
    names = tmp_path / "names.csv"
    pl.DataFrame({"name": ["Taladro"]}).write_csv(names)
    refused(["predict", tiny_runs["neural"], "--input", names], "column(s) ['title'] named by the recipe are not in")
    refused(["evaluate", tiny_runs["neural"], "--input", names], "column(s) ['title', 'category']")


def test_resuming_what_cannot_be_resumed_is_named(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    refused(["run", "--resume", tiny_runs["neural"], "--no-track"], "this run has finished")
    refused(["run", "--resume", tmp_path, "--no-track"], f"{tmp_path}: no recipe.yaml")
    run = damaged(tiny_runs, "neural", tmp_path)
    (run / layout.METRICS).unlink()
    (run / layout.CHECKPOINT).write_bytes(b"PK\x03\x04 not a whole checkpoint")
    refused(["run", "--resume", run, "--no-track"], "checkpoint.pt: the last checkpoint is damaged and was not read")


# --------------------------------------------------------------------------------- folders and locks
def test_an_output_that_holds_something_is_refused_unless_forced(tiny_runs: dict[str, Path], tmp_path: Path,
                                                               titles: Path) -> None:
    recipe = recipe_file(tmp_path, quick(titles))
    finished = damaged(tiny_runs, "neural", tmp_path)
    refused(["run", recipe, "--no-track", "--output", finished], "holds a finished run", "--force")
    unfinished = damaged(tiny_runs, "tfidf_linear", tmp_path)
    (unfinished / layout.METRICS).unlink()
    refused(["run", recipe, "--no-track", "--output", unfinished], "holds an unfinished run",
            f"ensayo run --resume {unfinished}")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    refused(["run", recipe, "--no-track", "--output", other], "not empty and not a run (it holds notes.txt)")
    assert (other / "notes.txt").read_text() == "mine"
    refused(["run", recipe, "--no-track", "--output", finished, "--force"], code=0)
    assert ensayo.load_run(finished).recipe.train.epochs == 1


def test_a_folder_another_process_writes_is_refused_naming_it(tmp_path: Path, titles: Path) -> None:
    recipe = recipe_file(tmp_path, quick(titles))
    with locked(tmp_path / "busy", "a run"):
        refused(["run", recipe, "--no-track", "--output", tmp_path / "busy"], "a run is being written there by process",
                str(os.getpid()))
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "s", "recipe": recipe.name, "sweep": {"method": "grid",
                                                                                 "grid": {"train.lr": [0.01]}}}))
    with locked(tmp_path / "studies", "a study"):
        refused(["sweep", study, "--no-track", "--output", tmp_path / "studies"], "a study is being written there")


@pytest.mark.subprocess
def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
                               "from ensayo.store import locked\nwith locked(Path(sys.argv[1]), 'a run'):\n"
                               "    print('held', flush=True)\n    time.sleep(60)\n", str(tmp_path / "run")],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    with locked(tmp_path / "run", "a run"):  # freed by the system when its holder died
        assert (tmp_path / "run" / layout.LOCK_HOLDER).is_file()


# ------------------------------------------------------------------------------------- training faults
def test_a_loss_that_stops_being_a_number_stops_training_naming_where(tmp_path: Path, titles: Path) -> None:
    raw = quick(titles, train={"lr": 1.0e30, "epochs": 2, "batch_size": 16, "seed": 3})
    refused(["run", recipe_file(tmp_path, raw), "--no-track", "--output", tmp_path / "run"],
            "the training loss became", "at epoch 1, step")
    assert not (tmp_path / "run" / layout.METRICS).exists()


def test_a_tracking_server_that_does_not_answer_fails_fast_or_is_skipped(tmp_path: Path, titles: Path) -> None:
    raw = quick(titles, track={"uri": "http://127.0.0.1:9", "required": True})
    started = time.monotonic()
    refused(["run", recipe_file(tmp_path, raw), "--output", tmp_path / "run"], "track.uri http://127.0.0.1:9",
            "cannot be reached", "track.required: false")
    assert time.monotonic() - started < 30 and not (tmp_path / "run").exists()
    raw["track"]["required"] = False
    text = refused(["run", recipe_file(tmp_path, raw), "--output", tmp_path / "run"], code=0)
    assert text.count("cannot be reached") == 1 and (tmp_path / "run" / layout.METRICS).is_file()


def test_a_tracking_store_that_fails_mid_run_does_not_lose_the_run(tmp_path: Path, titles: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  mlflow_db: Path) -> None:
    from mlflow.tracking import MlflowClient

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the tracking server went away")

    monkeypatch.setattr(MlflowClient, "log_artifact", unreachable)
    raw = quick(titles, track={"uri": f"sqlite:///{mlflow_db}"})
    text = refused(["run", recipe_file(tmp_path, raw), "--output", tmp_path / "run"], code=0)
    assert text.count("the tracking server went away") == 1 and "the run goes on untracked" in text
    assert {layout.METRICS, layout.WEIGHTS, layout.CONFUSION} <= set(os.listdir(tmp_path / "run"))
    assert "the tracking server went away" in json.loads((tmp_path / "run" / layout.TRACKING).read_text())["failure"]


def test_a_full_disk_fails_the_run_and_leaves_the_last_checkpoint_readable(tmp_path: Path, titles: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    real_save, calls = torch.save, {"count": 0}

    def filling(payload: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        calls["count"] += 1
        if calls["count"] == 2:  # the disk fills while the second checkpoint is written
            Path(path).write_bytes(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_save(payload, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", filling)
    raw = quick(titles, train={"lr": 0.02, "epochs": 3, "batch_size": 16, "seed": 3})
    refused(["run", recipe_file(tmp_path, raw), "--no-track", "--output", tmp_path / "run"],
            "No space left on device", ".checkpoint.")
    checkpoint = torch.load(tmp_path / "run" / layout.CHECKPOINT, weights_only=True)
    assert checkpoint["state"]["epoch"] == 1  # the first epoch's, whole
    assert not [p for p in os.listdir(tmp_path / "run") if ".tmp" in p]
