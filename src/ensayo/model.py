"""Features -> network: one encoder per input, a concatenating combiner, and an MLP head (plus, with
`output.auxiliary`, a linear side head on the head's last hidden layer that regresses number targets)."""

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
                 num_classes: int, auxiliary_weights: list[float] | None = None) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict({f.name: f.build_encoder(encoders[f.name]) for f in features})
        combined = sum(encoder.output_dim for encoder in self.encoders.values())
        self.head = mlp(combined, head.hidden, num_classes, head.dropout)
        self.auxiliary: nn.Linear | None = None
        if auxiliary_weights:
            shared = head.hidden[-1] if head.hidden else combined
            self.auxiliary = nn.Linear(shared, len(auxiliary_weights))
            self.register_buffer("auxiliary_weights", torch.tensor(auxiliary_weights), persistent=False)

    def forward(self, batch: dict[str, Any],
                auxiliary: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Class logits; with `auxiliary`, (logits, the auxiliary targets' predictions)."""
        combined = torch.cat([encoder(batch[name]) for name, encoder in self.encoders.items()], dim=-1)
        if not auxiliary:
            return self.head(combined)
        assert self.auxiliary is not None, "this model has no auxiliary targets"
        shared = self.head[:-1](combined)  # the head's last hidden layer, which both heads read
        return self.head[-1](shared), self.auxiliary(shared)

    def auxiliary_loss(self, predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Weighted mean squared error of each standardized target over the rows that have a value."""
        known = ~torch.isnan(targets)
        squared = torch.where(known, predicted - targets.nan_to_num(), 0.0) ** 2
        per_target = squared.sum(0) / known.sum(0).clamp(min=1)
        return (per_target * self.auxiliary_weights).sum()


def build_model(recipe: Recipe, features: list[Feature], num_classes: int) -> EnsayoModel:
    weights = [target.weight for target in recipe.output.auxiliary]
    return EnsayoModel(features, recipe.model.encoders, recipe.model.head, num_classes, weights)


def count_parameters(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}
