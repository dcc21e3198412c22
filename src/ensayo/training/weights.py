"""Weights as safetensors: no pickle, so loading runs no code."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from ensayo.store import atomic_path


def save_weights(model: nn.Module, path: Path) -> None:
    """safetensors, tied weights (a language model's input and output embeddings) stored once; written
    atomically."""
    with atomic_path(path) as temporary:
        save_model(model, str(temporary))


def load_weights(model: nn.Module, path: Path, device: str | torch.device = "cpu") -> nn.Module:
    """The weights in `path` into `model`; a damaged file, or weights of another shape than the recipe
    builds, are named."""
    try:
        load_model(model, str(path), strict=True, device=str(device))
    except SafetensorError as exc:
        raise ValueError(f"{path}: damaged, not readable as safetensors ({exc})") from None
    except RuntimeError as exc:  # missing, unexpected or differently shaped tensors
        detail = " ".join(str(exc).split())[:300]
        raise ValueError(f"{path}: the weights do not fit the network its run's recipe builds (was recipe.yaml "
                         f"or features.json edited?): {detail}") from None
    return model
