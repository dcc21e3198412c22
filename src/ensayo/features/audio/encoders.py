"""Audio encoders over spectrograms: a 2-D CNN, a recurrent network over frames, and both; with
SpecAugment masks and time shifts in training."""

from __future__ import annotations

import torch
from torch import nn

from ensayo.features.audio.feature import AudioFeature
from ensayo.features.audio.preprocessing import AugmentConfig
from ensayo.features.audio.schema import AudioRnnConfig, Cnn2dConfig, CnnRnnConfig
from ensayo.features.networks import Encoder, conv_stack


class Augment(nn.Module):
    """SpecAugment masks and a circular time shift, applied per example in training mode only."""

    def __init__(self, config: AugmentConfig | None, frames_per_second: float) -> None:
        super().__init__()
        self.config = config
        self.max_shift = round(config.time_shift * frames_per_second) if config else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        config = self.config
        if not self.training or config is None:
            return x
        batch, bins, frames = x.shape
        if self.max_shift:
            shifts = torch.randint(-self.max_shift, self.max_shift + 1, (batch, 1, 1), device=x.device)
            positions = (torch.arange(frames, device=x.device).view(1, 1, frames) - shifts) % frames
            x = x.gather(2, positions.expand(batch, bins, frames))
        x = self._mask(x, 2, config.time_masks, config.time_mask_width)
        return self._mask(x, 1, config.freq_masks, config.freq_mask_width)

    @staticmethod
    def _mask(x: torch.Tensor, dim: int, count: int, width: int) -> torch.Tensor:
        size = x.shape[dim]
        if count == 0 or width == 0:
            return x
        widths = torch.randint(0, width + 1, (x.shape[0], count, 1), device=x.device)
        starts = (torch.rand(x.shape[0], count, 1, device=x.device) * (size - widths).clamp_min(0)).long()
        positions = torch.arange(size, device=x.device).view(1, 1, size)
        masked = ((positions >= starts) & (positions < starts + widths)).any(dim=1)  # (batch, size)
        shape = (x.shape[0], 1, size) if dim == 2 else (x.shape[0], size, 1)
        return x.masked_fill(masked.view(shape), 0.0)  # 0 is the training mean after normalization


def _frames_per_second(feature: AudioFeature) -> float:
    return feature.options.sample_rate / feature.options.hop_length


@AudioFeature.register_encoder("cnn2d")
class Cnn2dEncoder(Encoder):
    """The spectrogram as a one-channel image: conv-BN-ReLU blocks with max pooling, then the mean and
    the maximum of each channel over what is left of frequency and time."""

    Config = Cnn2dConfig

    def __init__(self, feature: AudioFeature, config: Cnn2dConfig) -> None:
        super().__init__()
        self.augment = Augment(feature.options.augment, _frames_per_second(feature))
        self.blocks = conv_stack(1, config.channels, config.convs_per_block)
        self.dropout = nn.Dropout(config.dropout)
        self.output_dim = 2 * config.channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.blocks(self.augment(x).unsqueeze(1))
        pooled = torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=-1)
        return self.dropout(pooled)


class FrameRnn(nn.Module):
    """A (bidirectional) LSTM or GRU over (batch, frames, features), pooled over the frames."""

    def __init__(self, config: AudioRnnConfig | CnnRnnConfig, input_size: int, input_dropout: bool) -> None:
        super().__init__()
        self.input_dropout = input_dropout
        cell = nn.LSTM if config.cell == "lstm" else nn.GRU
        self.rnn = cell(input_size, config.hidden_size, num_layers=config.layers, batch_first=True,
                        bidirectional=config.bidirectional, dropout=config.dropout if config.layers > 1 else 0.0)
        self.pooling = config.pooling
        self.bidirectional = config.bidirectional
        self.dropout = nn.Dropout(config.dropout)
        width = config.hidden_size * (2 if config.bidirectional else 1)
        self.output_dim = width * (2 if config.pooling == "mean_max" else 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.rnn(self.dropout(frames) if self.input_dropout else frames)
        if self.pooling == "last":
            if not self.bidirectional:
                pooled = outputs[:, -1]
            else:
                half = outputs.shape[-1] // 2  # the forward direction ends at the last frame, backward at the first
                pooled = torch.cat([outputs[:, -1, :half], outputs[:, 0, half:]], dim=-1)
        else:
            pooled = outputs.mean(dim=1)
            if self.pooling == "mean_max":
                pooled = torch.cat([pooled, outputs.amax(dim=1)], dim=-1)
        return self.dropout(pooled)


@AudioFeature.register_encoder("rnn")
class AudioRnnEncoder(Encoder):
    """A (bidirectional) LSTM or GRU over the spectrogram's frames."""

    Config = AudioRnnConfig

    def __init__(self, feature: AudioFeature, config: AudioRnnConfig) -> None:
        super().__init__()
        self.augment = Augment(feature.options.augment, _frames_per_second(feature))
        self.frames = FrameRnn(config, feature.spectrogram.bins, input_dropout=False)
        self.output_dim = self.frames.output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frames(self.augment(x).transpose(1, 2))


@AudioFeature.register_encoder("cnn_rnn")
class CnnRnnEncoder(Encoder):
    """Convolution blocks that pool frequency and time, then an LSTM over the remaining frames."""

    Config = CnnRnnConfig

    def __init__(self, feature: AudioFeature, config: CnnRnnConfig) -> None:
        super().__init__()
        self.augment = Augment(feature.options.augment, _frames_per_second(feature))
        self.blocks = conv_stack(1, config.channels, 1)
        bins_left = feature.spectrogram.bins // 2 ** len(config.channels)
        if bins_left == 0:
            raise ValueError(f"input {feature.name!r}: {len(config.channels)} pooling blocks leave no frequency "
                             f"bins of {feature.spectrogram.bins}; use fewer channels entries")
        self.frames = FrameRnn(config, config.channels[-1] * bins_left, input_dropout=True)
        self.output_dim = self.frames.output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.blocks(self.augment(x).unsqueeze(1))  # (batch, channels, bins, frames)
        return self.frames(maps.flatten(1, 2).transpose(1, 2))  # frames of channels * bins features


