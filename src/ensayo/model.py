"""Features -> network: one encoder per input, a concatenating combiner, and an MLP head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ensayo.config import HeadConfig, Recipe
from ensayo.features import Feature


def mlp(in_dim: int, hidden: list[int], out_dim: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class EnsayoModel(nn.Module):
    def __init__(self, features: list[Feature], encoders: dict[str, Any], head: HeadConfig,
                 num_classes: int) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict({f.name: f.build_encoder(encoders[f.name]) for f in features})
        combined = sum(encoder.output_dim for encoder in self.encoders.values())
        self.head = mlp(combined, head.hidden, num_classes, head.dropout)

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        encoded = [encoder(batch[name]) for name, encoder in self.encoders.items()]
        return self.head(torch.cat(encoded, dim=-1))


def build_model(recipe: Recipe, features: list[Feature], num_classes: int) -> EnsayoModel:
    return EnsayoModel(features, recipe.model.encoders, recipe.model.head, num_classes)


def count_parameters(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}
