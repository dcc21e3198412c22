"""Data-parallel training: `ensayo run --nproc 2` (torchrun, gloo on CPU) against one process."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from helpers.data import audio_recipe, make_clips, recipe_dict
from safetensors.torch import load_file
from typer.testing import CliRunner

import ensayo
from ensayo.api import launch_run
from ensayo.cli import app
from ensayo.data import load_splits
from ensayo.layout import CHECKPOINT, STATE
from ensayo.models import load_recipe
from ensayo.training.distributed import World, rank_batches, steps_per_epoch

pytestmark = [pytest.mark.distributed, pytest.mark.subprocess]

STEPS = 20


def cli(*arguments: str, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ensayo.cli", *arguments], capture_output=True, text=True,
                          timeout=180, **kwargs)


def batch_for_steps(raw: dict[str, Any], steps: int) -> int:
    """A batch size that makes one epoch of this recipe `steps` steps or more, with a last batch of 2 rows or more
    (and so a share on each rank)."""
    rows = load_splits(load_recipe(raw)).train.height
    size = rows // steps
    while rows % size == 1:
        size -= 1
    assert math.ceil(rows / size) >= steps
    return size


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def rank_processes(launcher: int) -> list[int]:
    """The ranks a launcher started: the children of its fork server (`ensayo run --nproc` starts ranks so)."""
    server = next(pid for pid in children(launcher) if b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes())
    return children(server)


def weights_gap(first: Path, second: Path) -> float:
    one, two = load_file(str(first / "model.safetensors")), load_file(str(second / "model.safetensors"))
    assert one.keys() == two.keys()
    return max(float((one[k].double() - two[k].double()).abs().max()) for k in one)


def single_and_distributed(raw: dict[str, Any], tmp_path: Path) -> tuple[Path, Path]:
    ensayo.run(load_recipe(raw), output=tmp_path / "single", track=False)
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(raw))
    done = cli("run", str(recipe_file), "--nproc", "2", "--no-track", "--output", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training on 2 processes (gloo)" in done.stderr
    assert done.stdout.strip() == str(tmp_path / "two")
    return tmp_path / "single", tmp_path / "two"


def test_each_rank_takes_a_disjoint_share_of_every_global_batch() -> None:
    order = np.random.default_rng(0).permutation(103)
    shares = [rank_batches(order, 10, World(rank, 2)) for rank in range(2)]
    assert len(shares[0]) == len(shares[1]) == steps_per_epoch(103, 10, World(1, 2)) == 11
    for (first, weight_first), (second, weight_second), start in zip(*shares, range(0, 110, 10), strict=True):
        batch = order[start: start + 10]
        assert not set(first) & set(second) and set(first) | set(second) == set(batch)
        # each rank's mean loss is weighted so that, averaged over the ranks, every row of the batch counts 1 / rows
        for share, weight in ((first, weight_first), (second, weight_second)):
            assert weight / (2 * len(share)) == pytest.approx(1 / len(batch))
    # a last batch of one row cannot be shared by two ranks: it is left out on both
    assert len(rank_batches(np.arange(21), 10, World(0, 2))) == 2 == steps_per_epoch(21, 10, World(0, 2))


def test_ranks_holding_a_share_of_the_rows_take_the_rows_of_each_batch_they_hold() -> None:
    order = np.random.default_rng(0).permutation(103)
    holds = [(0, 52), (52, 103)]
    shares = [rank_batches(order, 10, World(rank, 2), held) for rank, held in enumerate(holds)]
    assert len(shares[0]) == len(shares[1]) == steps_per_epoch(103, 10, World(1, 2)) == 11
    for (first, weight_first), (second, weight_second), start in zip(*shares, range(0, 110, 10), strict=True):
        batch = order[start: start + 10]
        rows = [set((first + holds[0][0]).tolist()), set((second + holds[1][0]).tolist())]
        assert not rows[0] & rows[1] and rows[0] | rows[1] == set(batch.tolist())
        assert all(holds[k][0] <= row < holds[k][1] for k in range(2) for row in rows[k])
        for share, weight in ((first, weight_first), (second, weight_second)):
            assert weight / (2 * len(share)) == pytest.approx(1 / len(batch))
    # a batch of rows that rank 1 does not hold: it takes its row 0 at weight 0 (a step that adds nothing)
    first, second = (rank_batches(np.arange(20), 10, World(rank, 2), held)[0] for rank, held in
                     enumerate([(0, 10), (10, 20)]))
    assert first[0].tolist() == list(range(10)) and first[1] == 2.0
    assert second[0].tolist() == [0] and second[1] == 0.0


def test_two_processes_fit_the_preprocessing_from_their_shares_as_one_process_fits(titles_csv: Path,
                                                                                    tmp_path: Path) -> None:
    """Each rank tokenizes and encodes only its half of the training rows (and of the validation and test rows
    it scores); the fitted vocabularies are one process's. Two titles a batch: in about half the steps one rank
    holds neither title and steps at weight 0, and the weights are still one process's."""
    raw = recipe_dict(titles_csv, epochs=2, lr=0.05)
    raw["inputs"][0]["preprocessing"] |= {"char_ngrams": [2, 3], "max_vocab": 40}
    raw["train"]["batch_size"] = 2
    single, two = single_and_distributed(raw, tmp_path)
    assert json.loads((two / STATE).read_text()) == json.loads((single / STATE).read_text())
    report = json.loads((two / "data_report.json").read_text())
    sizes, ranks = report["split_sizes"], report["ranks"]
    assert [rank["rank"] for rank in ranks] == [0, 1]
    for split in ("train", "validation", "test"):
        held = [rank[f"{split}_rows"] for rank in ranks]
        assert sum(held) == sizes[split] and max(held) - min(held) <= 1, (split, held)
    assert weights_gap(single, two) < 1e-4
    one, other = (json.loads((path / "metrics.json").read_text()) for path in (single, two))
    assert one["test/balanced_accuracy"] == other["test/balanced_accuracy"]


def test_two_processes_distil_a_teacher_as_one_process_does(titles_csv: Path, tmp_path: Path) -> None:
    """Each rank learns from the teacher's probabilities of the training rows it holds (rank 0 reads them and
    hands them over): the same weights as one process."""
    teacher = {**recipe_dict(titles_csv), "name": "teacher",
               "model": {"type": "tfidf_linear", "linear": {"word_ngrams": [1, 1], "char_ngrams": [2, 3]}}}
    teacher["data"]["split"] = {"method": "stratified", "train": 0.6, "validation": 0.2, "test": 0.2, "folds": 3,
                                "seed": 1, "hold_out_test": True}
    ensayo.run(teacher, output=tmp_path / "teacher", track=False)
    raw = recipe_dict(titles_csv, epochs=2, lr=0.05)
    raw["train"]["teacher"] = {"run": str(tmp_path / "teacher"), "weight": 0.6, "temperature": 2.0}
    raw["train"]["batch_size"] = batch_for_steps(raw, STEPS // 2)
    single, two = single_and_distributed(raw, tmp_path)
    assert weights_gap(single, two) < 1e-4
    with np.load(single / "teacher.npz") as one, np.load(two / "teacher.npz") as other:
        assert one.files == other.files
        for name in one.files:
            np.testing.assert_array_equal(one[name], other[name])


def test_two_processes_train_the_audio_model_one_process_trains(tmp_path: Path) -> None:
    raw = audio_recipe(make_clips(tmp_path / "clips", takes=8), {"type": "rnn", "cell": "gru", "hidden_size": 12,
                                                                 "layers": 1, "dropout": 0.0},
                       preprocessing={"augment": None}, train={"epochs": 2, "lr": 0.02})
    raw["train"]["batch_size"] = batch_for_steps(raw, STEPS // 2)
    single, two = single_and_distributed(raw, tmp_path)
    assert weights_gap(single, two) < 1e-4
    assert json.loads((two / STATE).read_text()) == json.loads((single / STATE).read_text())  # fitted by rank 0
    one, other = (json.loads((path / "metrics.json").read_text()) for path in (single, two))
    assert one["test/accuracy"] == other["test/accuracy"]


def test_two_processes_train_the_text_model_one_process_trains_through_a_killed_rank(titles_csv: Path,
                                                                                     tmp_path: Path) -> None:
    """A bag of words (sparse embedding tables, gathered across ranks; a dense head under DDP) on 2 processes,
    one of them killed after the first epoch, the run resumed: the same weights and scores as one process."""
    raw = recipe_dict(titles_csv, epochs=3, lr=0.05)
    raw["train"]["batch_size"] = batch_for_steps(raw, STEPS)
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(raw))
    run_dir = tmp_path / "two"
    environment = {**os.environ, "ENSAYO_CHECKPOINT_SECONDS": "0", "ENSAYO_COLLECTIVE_TIMEOUT": "60"}
    launcher = subprocess.Popen([sys.executable, "-m", "ensayo.cli", "run", str(recipe_file), "--nproc", "2",
                                 "--no-track", "--output", str(run_dir)], env=environment, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (run_dir / CHECKPOINT).is_file() or torch.load(run_dir / CHECKPOINT, weights_only=True)[
            "state"]["epoch"] < 1:
        assert launcher.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    ranks = rank_processes(launcher.pid)
    assert len(ranks) == 2
    os.kill(ranks[1], signal.SIGKILL)
    started = time.monotonic()
    _, stderr = launcher.communicate(timeout=90)
    assert launcher.returncode != 0
    assert time.monotonic() - started < 60  # the other rank was stopped, not left waiting on a collective
    assert re.search(r"rank [01] of 2 stopped with exit code -9", stderr), stderr[-2000:]
    assert not (run_dir / "metrics.json").exists()

    done = cli("run", "--resume", str(run_dir), "--nproc", "2", "--no-track")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming after epoch" in done.stderr
    single = tmp_path / "single"
    ensayo.run(load_recipe(raw), output=single, track=False)
    assert weights_gap(run_dir, single) < 1e-4
    one, other = (json.loads((path / "metrics.json").read_text()) for path in (single, run_dir))
    for key in ("val/balanced_accuracy", "test/balanced_accuracy", "test/accuracy", "val/macro_f1"):
        assert one[key] == other[key], key  # scored across ranks, on the whole splits
    assert other["test/loss"] == pytest.approx(one["test/loss"], abs=1e-5)
    histories = [json.loads((path / "history.json").read_text()) for path in (single, run_dir)]
    assert len(histories[1]) == 3
    for first, second in zip(*histories, strict=True):
        assert second["train/loss"] == pytest.approx(first["train/loss"], abs=1e-5)  # summed over the ranks


def test_model_types_that_train_in_one_process_refuse_nproc_before_any_work(titles_csv: Path,
                                                                             tmp_path: Path) -> None:
    raw = recipe_dict(titles_csv)
    raw["model"] = {"type": "tfidf_linear"}
    recipe_file = tmp_path / "linear.yaml"
    recipe_file.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="model.type tfidf_linear cannot train on several processes: a scikit-learn "
                                         "linear classifier fits in one process"):
        launch_run(2, recipe_file, output=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_more_processes_than_rows_in_a_batch_are_refused_before_any_work(titles_csv: Path, tmp_path: Path) -> None:
    recipe_file = tmp_path / "tiny.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe_dict(titles_csv, batch_size=16)))
    done = CliRunner().invoke(app, ["run", str(recipe_file), "--nproc", "32", "--no-track", "--output",
                                    str(tmp_path / "out")])  # refused before any process starts
    said = " ".join(done.output.split())
    assert done.exit_code == 2 and "32 processes share each batch of train.batch_size 16 rows" in said
    assert "use at most 16 processes, or train.batch_size=32 or more" in said
    assert "warning: 32 processes on" in said and not (tmp_path / "out").exists()


RANK_THAT_NEVER_ARRIVES = '''
import os, sys, time
from ensayo.training import distributed

def entry():
    if os.environ["RANK"] == "1":
        time.sleep(120)  # never reaches the rendezvous in time
    distributed.start("cpu")
    distributed.stop()
    return "formed"

if __name__ == "__main__":
    try:
        print(distributed.launch(2, entry, start_method="fork"))  # this process runs no thread: fork is safe
    except distributed.LaunchFailed as error:
        print(f"failed: {error}")
        sys.exit(3)
'''


@pytest.mark.slow
def test_a_launch_says_which_ranks_it_waits_for_and_names_those_that_never_arrive(tmp_path: Path) -> None:
    script = tmp_path / "launch.py"
    script.write_text(RANK_THAT_NEVER_ARRIVES)
    environment = {**os.environ, "ENSAYO_COLLECTIVE_TIMEOUT": "7", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=environment,
                          cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr[-2000:]
    assert "waiting for the ranks to form the process group: 1 of 2 arrived" in done.stderr
    assert "waiting for ranks 1;" in done.stderr
    assert "ranks 1 had not arrived to form the process group" in done.stdout
