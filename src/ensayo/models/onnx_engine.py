"""The ONNX engine of a `neural` run (`ensayo predict|serve --engine onnx`): the run's fitted inputs encode rows
into numpy batches (`Feature.arrays`) and ONNX Runtime runs the network that `ensayo export --format onnx` wrote
(`onnx.export_network`), its calibrated temperature in the graph. Nothing here imports torch, so a run whose
inputs encode without it (text, category, number, image, image_stats: not audio) answers without loading it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import polars as pl

from ensayo import layout
from ensayo.models.neural_inputs import NeuralInputs
from ensayo.recipe import Recipe

SEPARATOR = "."  # an input's tensor names: "title.ids", "photo.pixels"; a lone tensor is named as its input
NO_TORCH_NETWORK = ("its network runs in ONNX Runtime (`--engine onnx`), which keeps no gradients or weights to "
                    "export; load the run with the torch engine")


def flatten(batch: dict[str, Any]) -> dict[str, Any]:
    """A network's batch (per input, an array or a dict of arrays; tensors alike) as named arrays, in a fixed
    order."""
    flat: dict[str, Any] = {}
    for name, value in batch.items():
        if isinstance(value, dict):
            flat.update({f"{name}{SEPARATOR}{key}": array for key, array in value.items()})
        else:
            flat[name] = value
    return flat


class OnnxNetwork:
    """The exported network in an ONNX Runtime session: named arrays in, class probabilities out."""

    def __init__(self, run_dir: Path) -> None:
        import onnxruntime

        path = run_dir / layout.ONNX_MODEL
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no ONNX model; write it with `ensayo export {run_dir} --format onnx`")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        # its threads sleep between calls instead of spinning: a server's event loop shares the cores (serving
        # 64-title requests from 32 clients, int8: 6,400 rows/s spinning, 7,900-8,300 not)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.names = [tensor.name for tensor in self.session.get_inputs()]  # the exporter drops unused ones

    def __call__(self, batch: dict[str, Any]) -> np.ndarray:
        flat = flatten(batch)
        return self.session.run(["probabilities"], {name: flat[name] for name in self.names})[0]


class OnnxClassifier(NeuralInputs):
    """A `neural` run answering with its exported network in ONNX Runtime: what `NeuralSchema.load_onnx` gives."""

    name = "neural"

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        self.network: OnnxNetwork | None = None

    @classmethod
    def load(cls, run_dir: Path, recipe: Recipe) -> OnnxClassifier:
        model = cls.with_state(run_dir, recipe)
        model.network = OnnxNetwork(run_dir)
        return model

    def fit(self, splits: Any, context: Any) -> NoReturn:
        raise TypeError("the ONNX engine answers with a trained run's network; train with the torch engine")

    def blocker(self, capability: str) -> str | None:
        return NO_TORCH_NETWORK if capability in ("onnx", "explain") else None

    def _predict_proba(self, table: pl.DataFrame, batch_size: int | None = None) -> np.ndarray:
        assert self.network is not None, "load the run first"
        columns = {feature.name: feature.transform(table[feature.column].to_list()) for feature in self.features}
        size = batch_size or self.recipe.train.eval_batch_size
        parts = []
        for start in range(0, table.height, size):
            rows = np.arange(start, min(start + size, table.height))
            parts.append(self.network({feature.name: feature.arrays(columns[feature.name], rows)
                                       for feature in self.features}))
        return np.concatenate(parts) if parts else np.zeros((0, len(self.classes)), dtype=np.float32)
