"""Spectrograms of fixed-length clips: log-mel or MFCC, computed with torch (`preprocessing` reads and
prepares the clips without it)."""

from __future__ import annotations

import numpy as np
import torch

from ensayo.features.audio.preprocessing import AudioPreprocessing


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
            import scipy.fft

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
