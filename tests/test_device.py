"""`--device cpu|cuda|auto` where a saved run answers: predict, evaluate, serve, explain and `load_run`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from helpers.cli import refused
from helpers.data import make_titles, write_challenge_csv

import ensayo


@pytest.fixture
def few_titles(tmp_path: Path) -> Path:
    return write_challenge_csv(tmp_path / "few.csv", make_titles(2, seed=7))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: nothing to refuse")
@pytest.mark.parametrize("command", ["predict", "evaluate", "explain"])
def test_cuda_on_a_machine_without_it_is_refused_in_one_line(command: str, tiny_runs: dict[str, Path],
                                                             few_titles: Path) -> None:
    refused([command, tiny_runs["neural"], "--input", few_titles, "--device", "cuda"], "device 'cuda'",
            "no CUDA device", "cpu or auto")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: nothing to refuse")
def test_serve_refuses_cuda_before_it_listens(tiny_runs: dict[str, Path]) -> None:
    refused(["serve", tiny_runs["neural"], "--port", "1", "--device", "cuda"], "device 'cuda'", "no CUDA device")


def test_an_unknown_device_is_refused_with_the_choices(tiny_runs: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="device 'gpu': choose cpu, cuda, auto"):
        ensayo.load_run(tiny_runs["neural"], device="gpu")


@pytest.mark.parametrize("kind", ["neural", "tfidf_linear", "ensemble"])
def test_auto_answers_as_cpu_does_here(kind: str, tiny_runs: dict[str, Path]) -> None:
    rows = pl.DataFrame({"title": [title for title, _ in make_titles(1, seed=11)]})
    answers = {device: ensayo.load_run(tiny_runs[kind], device=device).predict_proba(rows)
               for device in ("cpu", "auto")}
    assert np.array_equal(answers["cpu"], answers["auto"])


def test_a_model_that_answers_on_the_cpu_only_refuses_cuda_and_stays_under_auto(
        tiny_runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine: nothing is moved
    with pytest.raises(ValueError, match="a tfidf_linear run answers on the CPU only: use --device cpu"):
        ensayo.load_run(tiny_runs["tfidf_linear"], device="cuda")
    rows = pl.DataFrame({"title": [title for title, _ in make_titles(1, seed=11)]})
    assert ensayo.load_run(tiny_runs["tfidf_linear"], device="auto").predict_proba(rows).shape[0] == rows.height


def test_a_model_without_a_torch_network_stays_on_the_cpu(tiny_runs: dict[str, Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from ensayo.models import run_recipe
    from ensayo.models.neural import NeuralClassifier
    from ensayo.models.registry import on_device

    # as under the ONNX engine: the fitted preprocessing, no torch network to move
    model = NeuralClassifier.with_state(tiny_runs["neural"], run_recipe(tiny_runs["neural"]))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ValueError, match="the ONNX engine answers on the CPU only"):
        on_device(model, "cuda", "the ONNX engine")
    assert on_device(model, "auto", "the ONNX engine") is model
