"""Weights as safetensors: no pickle, so loading runs no code."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from ensayo.store import atomic_path


def save_weights(model: nn.Module, path: Path) -> None:
    """safetensors, tied weights (a language model's input and output embeddings) stored once; written
    atomically."""
    with atomic_path(path) as temporary:
        save_model(model, str(temporary))


def load_weights(model: nn.Module, path: Path, device: str | torch.device = "cpu") -> nn.Module:
    load_model(model, str(path), strict=True, device=str(device))
    return model
