"""The number input's encoders: the scaled number itself, or a small learned projection of it."""

from __future__ import annotations

import torch
from torch import nn

from ensayo.features.networks import Encoder
from ensayo.features.number import NumberFeature
from ensayo.features.number_schema import DenseNumberConfig, PassthroughConfig


@NumberFeature.register_encoder("passthrough")
class PassthroughEncoder(Encoder):
    """The scaled number itself (and, optionally, its missing flag) for the combiner."""

    Config = PassthroughConfig

    def __init__(self, feature: NumberFeature, config: PassthroughConfig) -> None:
        super().__init__()
        self.width = 2 if config.missing_flag else 1
        self.output_dim = self.width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, : self.width]


@NumberFeature.register_encoder("dense")
class DenseNumberEncoder(Encoder):
    """A small learned projection of the number and its missing flag."""

    Config = DenseNumberConfig

    def __init__(self, feature: NumberFeature, config: DenseNumberConfig) -> None:
        super().__init__()
        self.layer = nn.Sequential(nn.Linear(2, config.size), nn.ReLU())
        self.output_dim = config.size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)
