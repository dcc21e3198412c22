"""Audio feature: WAV/FLAC/OGG clips read with soundfile, mixed to mono, resampled, trimmed, levelled and
cut to a fixed length, then log-mel spectrograms or MFCCs computed in torch; and the audio encoders
(a 2-D CNN over the spectrogram, a bidirectional LSTM over its frames, and a CNN front end feeding an LSTM)."""

from __future__ import annotations

import wave
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.fft
import scipy.signal
import soundfile as sf
import torch
from pydantic import Field
from torch import nn

from ensayo.config import Strict
from ensayo.features import Encoder, Feature, conv_stack, register_feature


class AugmentConfig(Strict):
    """Training-time only: SpecAugment masks and a random shift in time."""

    time_masks: int = Field(2, ge=0)
    time_mask_width: int = Field(8, ge=0, description="frames, at most")
    freq_masks: int = Field(2, ge=0)
    freq_mask_width: int = Field(5, ge=0, description="bins, at most")
    time_shift: float = Field(0.1, ge=0, description="seconds, at most, either way")


class AudioPreprocessing(Strict):
    root: str | None = Field(None, description="folder that relative paths start from (default: the data file's)")
    sample_rate: int = Field(8000, gt=0)
    duration: float = Field(1.0, gt=0, description="seconds; clips are centred and padded or cropped to it")
    trim_db: float | None = Field(30.0, gt=0, description="trim edges quieter than the loudest frame by this")
    loudness: Literal["rms", "peak", "none"] = "rms"
    target_db: float = Field(-20.0, le=0, description="level that `loudness` brings every clip to, in dBFS")
    representation: Literal["log_mel", "mfcc"] = "log_mel"
    n_fft: int = Field(256, gt=0)
    hop_length: int = Field(80, gt=0)
    n_mels: int = Field(40, gt=0)
    n_mfcc: int = Field(20, gt=0)
    f_min: float = Field(20.0, ge=0)
    f_max: float | None = Field(None, gt=0)
    top_db: float = Field(80.0, gt=0, description="floor of the log spectrogram below its peak")
    augment: AugmentConfig | None = Field(default_factory=AugmentConfig)


# ------------------------------------------------------------------------------------------ reading
def read_audio(path: str, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at `sample_rate`, whatever the file's rate and channels."""
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if rate != sample_rate:
        ratio = Fraction(sample_rate, rate)
        mono = scipy.signal.resample_poly(mono, ratio.numerator, ratio.denominator).astype(np.float32)
    return mono


def audio_problem(path: str) -> str | None:
    """Why a file cannot be used as a clip, or None when it can."""
    try:
        info = sf.info(path)
        samples, _ = sf.read(path, dtype="float32", always_2d=True)
    except FileNotFoundError:
        return "file not found"
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        return f"not readable as audio ({exc})".replace(f"'{path}'", "").replace("  ", " ")
    if len(samples) == 0:
        return "empty: no samples"
    declared = _declared_wav_frames(path) if info.format == "WAV" else None
    if declared is not None and declared > info.frames:
        return f"truncated: the header declares {declared} samples, the file holds {info.frames}"
    if not np.isfinite(samples).all():
        return "holds NaN or infinite samples"
    return None


def _declared_wav_frames(path: str) -> int | None:
    """The sample count a PCM WAV header promises (libsndfile reads a cut file without complaint)."""
    try:
        with wave.open(path, "rb") as handle:
            return handle.getnframes()
    except (wave.Error, EOFError, OSError):
        return None


def trim_silence(samples: np.ndarray, top_db: float, frame: int) -> np.ndarray:
    """Drop leading and trailing frames quieter than the loudest frame by more than `top_db`."""
    count = len(samples) // frame
    if count < 2:
        return samples
    power = np.square(samples[: count * frame].reshape(count, frame)).mean(axis=1)
    level = 10 * np.log10(np.maximum(power, 1e-12))
    loud = np.flatnonzero(level > level.max() - top_db)
    return samples[loud[0] * frame: (loud[-1] + 1) * frame]


def level(samples: np.ndarray, mode: str, target_db: float) -> np.ndarray:
    """Bring a clip to `target_db` dBFS by its RMS or its peak; clipping is avoided."""
    if mode == "none":
        return samples
    measure = np.sqrt(np.mean(np.square(samples))) if mode == "rms" else np.abs(samples).max()
    if measure <= 1e-8:
        return samples
    gain = 10 ** (target_db / 20) / measure
    peak = np.abs(samples).max() * gain
    return (samples * (gain / max(peak, 1.0))).astype(np.float32)


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Centre a clip in `length` samples: zeros on both sides, or its middle kept."""
    if len(samples) >= length:
        start = (len(samples) - length) // 2
        return samples[start: start + length]
    before = (length - len(samples)) // 2
    return np.pad(samples, (before, length - len(samples) - before))


def prepare_clip(path: str, options: AudioPreprocessing) -> np.ndarray:
    samples = read_audio(path, options.sample_rate)
    if options.trim_db is not None:
        samples = trim_silence(samples, options.trim_db, options.hop_length)
    samples = level(samples, options.loudness, options.target_db)
    return fit_length(samples, round(options.duration * options.sample_rate))


# ------------------------------------------------------------------------------------- spectrograms
def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, sample_rate: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters evenly spaced on the HTK mel scale."""
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(f_min)), hz_to_mel(np.array(f_max)), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - bins[None, :]) / np.maximum(upper - centre, 1e-9)
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0, None).astype(np.float32))


class Spectrogram:
    """Fixed-length clips (batch, samples) -> (batch, bins, frames) log-mel spectrograms or MFCCs."""

    def __init__(self, options: AudioPreprocessing) -> None:
        self.options = options
        f_max = options.f_max or options.sample_rate / 2
        self.filters = mel_filterbank(options.n_fft, options.sample_rate, options.n_mels, options.f_min, f_max)
        self.window = torch.hann_window(options.n_fft)
        self.dct = None
        if options.representation == "mfcc":
            basis = scipy.fft.dct(np.eye(options.n_mels), type=2, norm="ortho", axis=0)[: options.n_mfcc]
            self.dct = torch.from_numpy(basis.astype(np.float32))

    @property
    def bins(self) -> int:
        return self.options.n_mfcc if self.options.representation == "mfcc" else self.options.n_mels

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        options = self.options
        spectrum = torch.stft(clips, options.n_fft, options.hop_length, window=self.window, center=True,
                              return_complex=True).abs().square()
        decibels = 10 * torch.log10((self.filters @ spectrum).clamp_min(1e-10))
        # a floor below each clip's peak, so that the zeros of padding do not dominate the statistics
        peak = decibels.amax(dim=(1, 2), keepdim=True)
        decibels = torch.maximum(decibels, peak - options.top_db)
        return decibels if self.dct is None else self.dct @ decibels


# ------------------------------------------------------------------------------------------ feature
@register_feature("audio")
class AudioFeature(Feature):
    """A column of audio file paths; each clip becomes a normalized (bins, frames) spectrogram."""

    Preprocessing = AudioPreprocessing
    reads_files = True

    def __init__(self, name: str, column: str, preprocessing: AudioPreprocessing) -> None:
        super().__init__(name, column, preprocessing)
        self.spectrogram = Spectrogram(preprocessing)
        self.mean = np.zeros(self.spectrogram.bins, dtype=np.float32)
        self.std = np.ones(self.spectrogram.bins, dtype=np.float32)
        self.clips = 0

    @property
    def options(self) -> AudioPreprocessing:
        return self.preprocessing  # type: ignore[return-value]

    @classmethod
    def check_files(cls, paths: list[str], preprocessing: Any) -> dict[int, str]:
        problems = {}
        for index, path in enumerate(paths):
            reason = audio_problem(path)
            if reason:
                problems[index] = reason
        return problems

    @classmethod
    def explore(cls, name: str, values: list[str], labels: list[str], preprocessing: Any,
                directory: Path) -> list[str]:
        return explore_clips(name, values, labels, preprocessing, directory)

    def spectrograms(self, paths: list[str], batch: int = 256) -> torch.Tensor:
        """Un-normalized (rows, bins, frames) spectrograms of the clips."""
        chunks = []
        for start in range(0, len(paths), batch):
            clips = np.stack([prepare_clip(p, self.options) for p in paths[start: start + batch]])
            chunks.append(self.spectrogram(torch.from_numpy(clips)))
        if not chunks:
            return torch.zeros(0, self.spectrogram.bins, self.frames)
        return torch.cat(chunks)

    @property
    def frames(self) -> int:
        return round(self.options.duration * self.options.sample_rate) // self.options.hop_length + 1

    def fit(self, values: list[str]) -> AudioFeature:
        self._fit_spectrograms(self.spectrograms(values))
        return self

    def transform(self, values: list[str]) -> torch.Tensor:
        return self._normalized(self.spectrograms(values))

    def fit_transform(self, values: list[str]) -> torch.Tensor:
        features = self.spectrograms(values)
        self._fit_spectrograms(features)
        return self._normalized(features)

    def _fit_spectrograms(self, features: torch.Tensor) -> None:
        self.mean = features.mean(dim=(0, 2)).numpy()
        self.std = features.std(dim=(0, 2)).clamp_min(1e-5).numpy()
        self.clips = features.shape[0]

    def _normalized(self, features: torch.Tensor) -> torch.Tensor:
        return (features - torch.from_numpy(self.mean)[:, None]) / torch.from_numpy(self.std)[:, None]

    def collate(self, encoded: torch.Tensor, index: np.ndarray) -> torch.Tensor:
        return encoded[torch.from_numpy(np.asarray(index))]

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "clips": self.clips}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean = np.asarray(state["mean"], dtype=np.float32)
        self.std = np.asarray(state["std"], dtype=np.float32)
        self.clips = state["clips"]

    def describe(self) -> dict[str, Any]:
        return {"clips": self.clips, "spectrogram": f"{self.spectrogram.bins} bins x {self.frames} frames"}


# ----------------------------------------------------------------------------------------- encoders
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


class Cnn2dConfig(Strict):
    type: Literal["cnn2d"]
    channels: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1)
    convs_per_block: int = Field(1, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)


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


class AudioRnnConfig(Strict):
    type: Literal["rnn"]
    cell: Literal["lstm", "gru"] = "lstm"
    hidden_size: int = Field(128, gt=0)
    layers: int = Field(2, ge=1)
    bidirectional: bool = True
    pooling: Literal["mean_max", "mean", "last"] = "mean_max"
    dropout: float = Field(0.2, ge=0, lt=1)


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


class CnnRnnConfig(AudioRnnConfig):
    """The recurrent options of `rnn` (one layer by default), after convolution blocks of `channels`."""

    type: Literal["cnn_rnn"]  # type: ignore[assignment]
    channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=1)
    layers: int = Field(1, ge=1)


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


# ------------------------------------------------------------------------------------------ explore
def explore_clips(name: str, paths: list[str], labels: list[str], options: AudioPreprocessing,
                   directory: Path) -> list[str]:
    import matplotlib.pyplot as plt

    from ensayo.explore import markdown_table

    infos = [sf.info(p) for p in paths]
    seconds = np.array([i.frames / i.samplerate for i in infos])
    rates = Counter(i.samplerate for i in infos)
    channels = Counter(i.channels for i in infos)
    peaks, levels = [], []
    low, high = np.inf, -np.inf
    for path in paths:
        samples, _ = sf.read(path, dtype="float32", always_2d=True)
        low, high = min(low, float(samples.min())), max(high, float(samples.max()))
        peaks.append(float(np.abs(samples).max()))
        levels.append(float(10 * np.log10(max(np.mean(np.square(samples)), 1e-12))))
    quantiles = np.percentile(seconds, [0, 5, 50, 95, 100])
    longer = float((seconds > options.duration).mean())
    lines = [
        f"{len(paths):,} clips; sample rates {dict(rates)}; channels {dict(channels)}.",
        "",
        *markdown_table(["duration (s)", "min", "5%", "median", "95%", "max"],
                        [["", *(f"{q:.3f}" for q in quantiles)]]),
        "",
        f"{longer:.1%} of the clips are longer than the recipe's {options.duration} s before trimming silence.",
        f"Sample values range from {low:.4f} to {high:.4f}; peak level median {np.median(peaks):.3f}, "
        f"RMS level median {np.median(levels):.1f} dBFS (5%-95%: {np.percentile(levels, 5):.1f} to "
        f"{np.percentile(levels, 95):.1f}).",
        "",
    ]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.hist(seconds, bins=40, color="tab:blue")
    left.axvline(options.duration, color="tab:red", linestyle="--", label=f"recipe duration {options.duration} s")
    left.set(xlabel="seconds", ylabel="clips", title="clip durations")
    left.legend()
    right.hist(levels, bins=40, color="tab:green")
    right.set(xlabel="RMS level (dBFS)", title="loudness")
    figure.tight_layout()
    figure.savefig(directory / f"{name}_durations.png", dpi=110)
    plt.close(figure)
    lines += [f"![durations and loudness]({name}_durations.png)", ""]

    examples = {}
    for path, label in zip(paths, labels, strict=True):
        examples.setdefault(label, path)
    shown = sorted(examples)[:12]
    spectrogram = Spectrogram(options)
    figure, axes = plt.subplots(2, len(shown), figsize=(2.2 * len(shown), 4.5), squeeze=False)
    for column, label in enumerate(shown):
        raw = read_audio(examples[label], options.sample_rate)
        axes[0, column].plot(np.arange(len(raw)) / options.sample_rate, raw, linewidth=0.5)
        axes[0, column].set_title(label)
        clip = torch.from_numpy(prepare_clip(examples[label], options))[None]
        axes[1, column].imshow(spectrogram(clip)[0].numpy(), origin="lower", aspect="auto", cmap="magma")
        axes[1, column].set_xticks([])
        axes[1, column].set_yticks([])
    axes[0, 0].set_ylabel("waveform")
    axes[1, 0].set_ylabel(f"{options.representation} (after trim, level, length)")
    figure.tight_layout()
    figure.savefig(directory / f"{name}_examples.png", dpi=100)
    plt.close(figure)
    return [*lines, f"![one example per class: waveform and spectrogram]({name}_examples.png)"]

