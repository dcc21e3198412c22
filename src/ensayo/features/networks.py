"""What a feature's network side is made of, in torch: the `Encoder` base class, a `Dropout` for large inputs and
the 2-D convolution blocks the spectrogram and image encoders share. The features themselves (`base.Feature`)
encode rows without torch where they can, so that a network run elsewhere (ONNX Runtime) needs none."""

from __future__ import annotations

import itertools
from typing import ClassVar

import torch
from pydantic import BaseModel
from torch import nn


class Encoder(nn.Module):
    """Turns a batch of one feature into a (batch, output_dim) tensor. `onnx_problem` says why a network
    with this encoder cannot be exported to ONNX (None: it can)."""

    Config: ClassVar[type[BaseModel]]
    output_dim: int
    onnx_problem: ClassVar[str | None] = None


# a dropout mask is drawn as 16-bit numbers, four from each 64-bit draw: the probability is rounded to 1/65,536
_MASK_LEVELS = 1 << 16


class Dropout(nn.Dropout):
    """`nn.Dropout`, with its mask drawn at a sixth of torch's cost on a CPU. There torch draws one Bernoulli number
    per element (`bernoulli_`: 12 ms for the embeddings of a demo batch, 512 x 24 x 128, on 2 cores; 2.7 s of a
    29.0 s profiled epoch of 165,600 titles); here one 64-bit draw gives four 16-bit uniform numbers, each compared
    with the drop probability rounded to 1/65,536 (0.2 becomes 0.199997), and the kept elements are scaled by the
    exact inverse of their share: 1.8 ms for the same mask, 4.3 against 13.7 ms forward and backward. On other
    devices, and evaluating, it is torch's.

    The text encoders use it, where dropout covers every token's embedding; the encoders whose dropout acts on one
    pooled vector per example keep torch's, whose draws their recipes' figures were measured with (spoken digits
    gave 0.9867 with this mask against 0.9933, two clips of 300: the spread between seeds, for no time saved)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dropped = round(self.p * _MASK_LEVELS)
        if not self.training or x.device.type != "cpu" or self.inplace or not 0 < dropped < _MASK_LEVELS:
            return super().forward(x)
        draws = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(torch.iinfo(torch.int64).min, None)
        kept = draws.view(torch.int16)[: x.numel()].view(x.shape) >= dropped - _MASK_LEVELS // 2
        return x * kept.to(x.dtype).mul_(_MASK_LEVELS / (_MASK_LEVELS - dropped))


def conv_stack(channels_in: int, channels: list[int], convs: int) -> nn.Sequential:
    """2-D convolution blocks shared by the spectrogram and image encoders: per entry of `channels`,
    `convs` x (3x3 conv, batch norm, ReLU) with 2x2 max pooling before the block's last ReLU."""
    blocks = []
    for block_in, block_out in itertools.pairwise([channels_in, *channels]):
        layers: list[nn.Module] = []
        for index in range(convs):
            layers += [nn.Conv2d(block_in if index == 0 else block_out, block_out, 3, padding=1, bias=False),
                       nn.BatchNorm2d(block_out)]
            if index < convs - 1:
                layers.append(nn.ReLU(inplace=True))
        # relu(max) is max(relu), values and gradients, on a quarter of the elements: the digits' first block 0.65-0.75x
        # forward and backward. The weights keep their places in the block (a saved run loads as it did)
        blocks.append(nn.Sequential(*layers, nn.MaxPool2d(2), nn.ReLU(inplace=True)))
    # channels-last weights make oneDNN run the convolutions and the pooling channels-last: the same arithmetic,
    # the digits' blocks 1.7x faster in bf16 (max pooling with indices over NCHW was a fifth of their epoch)
    return nn.Sequential(*blocks).to(memory_format=torch.channels_last)
