"""A neural classifier's network as ONNX: its batches flattened to named tensors, and the network run by
ONNX Runtime instead of torch (`ensayo predict --engine onnx`). The preprocessing stays ensayo's, read
from the run's JSON state; only the network changes engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from ensayo import layout
from ensayo.models.neural import NeuralClassifier
from ensayo.recipe import Recipe
from ensayo.training import encode_split

SEPARATOR = "."  # an input's tensor names: "title.ids", "photo.pixels"; a lone tensor is named as its input


def flatten(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A network's batch (per input, a tensor or a dict of tensors) as named tensors, in a fixed order."""
    flat: dict[str, torch.Tensor] = {}
    for name, value in batch.items():
        if isinstance(value, dict):
            flat.update({f"{name}{SEPARATOR}{key}": tensor for key, tensor in value.items()})
        else:
            flat[name] = value
    return flat


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


def first_batch(model: NeuralClassifier, table: pl.DataFrame) -> dict[str, Any]:
    split = encode_split(model.features, table, np.zeros(table.height, dtype=np.int64))
    batch, _ = next(iter(split.batches(max(table.height, 1))))
    return batch


class OnnxNeuralClassifier(NeuralClassifier):
    """A neural run whose network runs in ONNX Runtime (`layout.ONNX_MODEL`, written by `ensayo export`)."""

    session: Any  # onnxruntime.InferenceSession
    names: list[str]  # its input tensors

    @classmethod
    def load(cls, run_dir: Path, recipe: Recipe, device: str = "cpu") -> OnnxNeuralClassifier:
        import onnxruntime

        model = cls.with_state(run_dir, recipe)
        path = run_dir / layout.ONNX_MODEL
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no ONNX model; write it with `ensayo export {run_dir} --format onnx`")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        model.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        model.names = [tensor.name for tensor in model.session.get_inputs()]  # the exporter drops unused ones
        return model

    def _predict_proba(self, table: pl.DataFrame, batch_size: int | None = None) -> np.ndarray:
        split = encode_split(self.features, table, np.zeros(table.height, dtype=np.int64))
        chunks = []
        for batch, _ in split.batches(batch_size or self.recipe.train.eval_batch_size):
            flat = flatten(batch)
            feeds = {name: flat[name].numpy() for name in self.names}
            chunks.append(self.session.run(["probabilities"], feeds)[0])
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.classes)), dtype=np.float32)
