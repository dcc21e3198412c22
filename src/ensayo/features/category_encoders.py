"""The category input's encoders: its (multi-)one-hot vector, or a learned vector per value."""

from __future__ import annotations

import torch
from torch import nn

from ensayo.features.category import CategoryFeature
from ensayo.features.category_schema import CategoryEmbeddingConfig, MultiHotConfig
from ensayo.features.networks import Encoder


@CategoryFeature.register_encoder("multi_hot")
class MultiHotEncoder(Encoder):
    """The (multi-)one-hot vector itself, capped at 1 per value."""

    Config = MultiHotConfig

    def __init__(self, feature: CategoryFeature, config: MultiHotConfig) -> None:
        super().__init__()
        self.output_dim = len(feature.values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(max=1.0)


@CategoryFeature.register_encoder("embedding")
class CategoryEmbeddingEncoder(Encoder):
    """A learned vector per value; a list is the mean of its values' vectors."""

    Config = CategoryEmbeddingConfig

    def __init__(self, feature: CategoryFeature, config: CategoryEmbeddingConfig) -> None:
        super().__init__()
        self.table = nn.Linear(len(feature.values), config.dim, bias=False)
        nn.init.normal_(self.table.weight, std=0.1)
        self.dropout = nn.Dropout(config.dropout)
        self.output_dim = config.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.table(x / x.sum(dim=1, keepdim=True).clamp_min(1.0)))
