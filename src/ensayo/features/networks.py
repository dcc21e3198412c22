"""What a feature's network side is made of, in torch: the `Encoder` base class, the 2-D convolution blocks the
spectrogram and image encoders share, and running channel statistics over tensors. The features themselves
(`base.Feature`) encode rows without torch, so that a network run elsewhere (ONNX Runtime) needs none."""

from __future__ import annotations

import itertools
from typing import ClassVar

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn


class RunningMoments:
    """Mean and standard deviation per channel of tensors seen one chunk at a time, in float64: the same
    whether the chunks were kept (in memory) or dropped (read on the fly)."""

    def __init__(self, dims: tuple[int, ...]) -> None:
        self.dims = dims  # the dimensions reduced over (all but the channel's)
        self.count, self.total, self.squares = 0, 0.0, 0.0

    def add(self, chunk: torch.Tensor) -> None:
        values = chunk.double()
        self.count += values.numel() // max(values.shape[1], 1)
        self.total = self.total + values.sum(dim=self.dims)
        self.squares = self.squares + values.square().sum(dim=self.dims)

    def mean_std(self, floor: float) -> tuple[np.ndarray, np.ndarray]:
        if not self.count:
            raise ValueError("no values to fit the statistics on")
        mean = self.total / self.count
        variance = (self.squares - self.count * mean**2) / max(self.count - 1, 1)
        return mean.float().numpy(), variance.clamp_min(0).sqrt().clamp_min(floor).float().numpy()


class Encoder(nn.Module):
    """Turns a batch of one feature into a (batch, output_dim) tensor. `onnx_problem` says why a network
    with this encoder cannot be exported to ONNX (None: it can)."""

    Config: ClassVar[type[BaseModel]]
    output_dim: int
    onnx_problem: ClassVar[str | None] = None


def conv_stack(channels_in: int, channels: list[int], convs: int) -> nn.Sequential:
    """2-D convolution blocks shared by the spectrogram and image encoders: per entry of `channels`,
    `convs` x (3x3 conv, batch norm, ReLU), then 2x2 max pooling."""
    blocks = []
    for block_in, block_out in itertools.pairwise([channels_in, *channels]):
        layers: list[nn.Module] = []
        for index in range(convs):
            layers += [nn.Conv2d(block_in if index == 0 else block_out, block_out, 3, padding=1, bias=False),
                       nn.BatchNorm2d(block_out), nn.ReLU(inplace=True)]
        blocks.append(nn.Sequential(*layers, nn.MaxPool2d(2)))
    # channels-last weights make oneDNN run the convolutions and the pooling channels-last: the same arithmetic,
    # the digits' blocks 1.7x faster in bf16 (max pooling with indices over NCHW was a fifth of their epoch)
    return nn.Sequential(*blocks).to(memory_format=torch.channels_last)


