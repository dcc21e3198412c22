"""`benchmarks/gpu.py --smoke`: the GPU benchmark's measurement, run on the CPU on tiny made-up data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers.benchmarks import benchmark

from ensayo.training.trainer import has_bf16

gpu = benchmark("gpu")


@pytest.mark.slow
def test_the_gpu_benchmark_measures_each_recipe_and_precision_on_the_cpu(tmp_path: Path, capsys) -> None:
    results = gpu.main(["--smoke", "--output", str(tmp_path / "gpu.json")])
    precisions = ["fp32", "bf16"] if has_bf16(torch.device("cpu")) else ["fp32"]
    assert list(results) == ["product-titles-cnn", "news-char-transformer"]
    for recipe, by_precision in results.items():
        assert list(by_precision) == precisions, recipe
        for measured in by_precision.values():
            assert measured["device"] == "cpu" and measured["epochs"] == 1
            assert measured["seconds_per_epoch"] > 0 and measured["examples_per_second"] > 0
            assert 0 < measured["data_wait_share"] < 1
            assert measured["peak_gpu_mb"] is None
            assert math.isfinite(measured["value"])
    assert json.loads((tmp_path / "gpu.json").read_text()) == results
    printed = capsys.readouterr().out
    assert "| product-titles-cnn | fp32 | cpu |" in printed and "waiting on data" in printed
