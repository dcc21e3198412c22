"""Image augmentation in training: per-image random horizontal flip, shifted crop and brightness / contrast."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ensayo.features.image.preprocessing import ImageAugmentConfig


class ImageAugment(nn.Module):
    """Per-image random horizontal flip, shifted crop and brightness / contrast, in training mode only."""

    def __init__(self, config: ImageAugmentConfig | None) -> None:
        super().__init__()
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        config = self.config
        if not self.training or config is None:
            return x
        batch, _, height, width = x.shape
        if config.flip:
            flipped = torch.rand(batch, device=x.device) < 0.5
            x = torch.where(flipped.view(-1, 1, 1, 1), x.flip(3), x)
        if config.crop_padding:
            pad = config.crop_padding
            padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
            offsets = torch.randint(0, 2 * pad + 1, (batch, 2))
            x = torch.stack([padded[i, :, dy: dy + height, dx: dx + width]
                             for i, (dy, dx) in enumerate(offsets.tolist())])
        if config.jitter:
            scale = 1 + (torch.rand(batch, 1, 1, 1, device=x.device) * 2 - 1) * config.jitter
            shift = (torch.rand(batch, 1, 1, 1, device=x.device) * 2 - 1) * config.jitter
            x = x * scale + shift
        return x
