"""The image statistics input's encoders: the standardized statistics as they are, or a learned projection."""

from __future__ import annotations

import torch
from torch import nn

from ensayo.features.image_stats import ImageStatsFeature
from ensayo.features.image_stats_schema import StatsDenseConfig, StatsPassthroughConfig
from ensayo.features.networks import Encoder


@ImageStatsFeature.register_encoder("passthrough")
class StatsPassthroughEncoder(Encoder):
    """The standardized statistics and the missing flag, as they are, for the combiner."""

    Config = StatsPassthroughConfig

    def __init__(self, feature: ImageStatsFeature, config: StatsPassthroughConfig) -> None:
        super().__init__()
        self.output_dim = len(feature.options.stats) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@ImageStatsFeature.register_encoder("dense")
class StatsDenseEncoder(Encoder):
    """A learned projection of the statistics (and the missing flag)."""

    Config = StatsDenseConfig

    def __init__(self, feature: ImageStatsFeature, config: StatsDenseConfig) -> None:
        super().__init__()
        self.layer = nn.Sequential(nn.Linear(len(feature.options.stats) + 1, config.size), nn.ReLU())
        self.output_dim = config.size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)
