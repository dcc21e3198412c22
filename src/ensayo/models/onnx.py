"""A neural classifier's network as ONNX: its batches flattened to named tensors and the network traced into
`layout.ONNX_MODEL` (`NeuralClassifier.export_onnx`), which the ONNX engine runs instead of torch
(`onnx_engine.OnnxClassifier`, behind `ensayo predict --engine onnx`). The preprocessing stays ensayo's, read from
the run's JSON state; only the network changes engine. The classifier comes in as an argument: this module does
not import it."""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from ensayo import layout
from ensayo.features.rows import example_rows, input_fields, rows_to_table
from ensayo.models.onnx_engine import SEPARATOR, flatten
from ensayo.store import atomic_path, write_json
from ensayo.training import encode_split

OPSET = 18
QUANTIZATIONS = ("int8",)  # `ensayo export --format onnx --quantize`


def unflatten(names: list[str], tensors: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    batch: dict[str, Any] = {}
    for name, tensor in zip(names, tensors, strict=True):
        feature, _, key = name.partition(SEPARATOR)
        if key:
            batch.setdefault(feature, {})[key] = tensor
        else:
            batch[feature] = tensor
    return batch


class ProbabilityNetwork(nn.Module):
    """The network over named tensors, answering class probabilities (divided by the run's calibrated
    temperature before the softmax): what is exported."""

    def __init__(self, network: nn.Module, names: list[str], temperature: float = 1.0) -> None:
        super().__init__()
        self.network, self.names, self.temperature = network, names, temperature

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        logits = self.network(unflatten(self.names, tensors)).float()
        return torch.softmax(logits / self.temperature if self.temperature != 1.0 else logits, dim=-1)


def first_batch(model: Any, table: pl.DataFrame) -> dict[str, Any]:
    split = encode_split(model.features, table, np.zeros(table.height, dtype=np.int64))
    batch, _ = next(iter(split.batches(max(table.height, 1))))
    return batch


def export_network(model: Any, target: Path, quantize: str | None = None) -> None:
    """Trace a neural classifier's network (its temperature in the graph) into `target`/model.onnx, with onnx.json
    naming its input tensors; `quantize`: see `quantize_network`. Two example batches of different sizes tell
    which tensor dimensions vary."""
    assert model.network is not None, "fit or load the model first"
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"--quantize {quantize}: choose {' or '.join(QUANTIZATIONS)}")
    fields = input_fields(model.recipe)
    with tempfile.TemporaryDirectory(prefix="ensayo-onnx-") as folder:
        small = first_batch(model, rows_to_table(fields, _rows(model, fields, 2, True), Path(folder)))
        large = first_batch(model, rows_to_table(fields, _rows(model, fields, 5, False), Path(folder)))
    flat, other = flatten(small), flatten(large)
    names = list(flat)
    dynamic = {name: {axis: f"{name}_{axis}" for axis in range(flat[name].dim())
                      if axis == 0 or flat[name].shape[axis] != other[name].shape[axis]} for name in names}
    network = ProbabilityNetwork(model.network.eval(), names, model.temperature)
    with torch.no_grad():  # tables a network derives for answering (a text's composed word vectors) are made
        network(*(flat[n] for n in names))  # now, and traced as constants rather than as their making
    target.mkdir(parents=True, exist_ok=True)
    with atomic_path(target / layout.ONNX_MODEL) as temporary, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, tuple(flat[n] for n in names), str(temporary), input_names=names,
                          output_names=["probabilities"], dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    described = {"inputs": names, "opset": OPSET, "temperature": model.temperature}
    if quantize is not None:
        quantize_network(target / layout.ONNX_MODEL)
        described["quantized"] = quantize
    write_json(target / layout.ONNX_INPUTS, described)


def quantize_network(path: Path) -> None:
    """Rewrite the network at `path` with its weights in int8 (ONNX Runtime's dynamic quantization: matrix
    products and lookups take int8 weights, activations are quantized per batch as they come). Its answers
    are no longer torch's within 1e-4: `benchmarks/serving.py` measures how far. The weights take 7 bits
    (`reduce_range`): an x86 CPU without VNNI (AVX2 only) multiplies uint8 activations by int8 weights in pairs
    summed into int16, which saturates with 8-bit weights (the tests' small network answered up to 0.185 away
    from fp32 on such a CPU, within 0.05 with 7 bits), and the exported model runs wherever it is served."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = logging.getLogger()  # the quantizer logs advice (a link to run its pre-processing) at WARNING
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with atomic_path(path) as temporary, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(path, temporary, weight_type=QuantType.QInt8, reduce_range=True)
    finally:
        quiet.setLevel(level)


def _rows(model: Any, fields: Any, count: int, short: bool) -> list[dict[str, Any]]:
    """Rows to trace the network with: the features' own values where they have some (a text of known words
    exercises every branch a real one does), any value of the input's kind elsewhere. `short` rows have
    shorter texts, so that comparing two traces tells which tensor dimensions vary."""
    rows = example_rows(fields, count, short)
    for feature in model.features:
        values = feature.example_values(count, short)
        if values is not None and feature.column in rows[0]:
            for row, value in zip(rows, values, strict=True):
                row[feature.column] = value
    return rows
