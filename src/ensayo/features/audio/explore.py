"""The audio section of `ensayo explore`: durations, rates, levels, one waveform and spectrogram per class."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ensayo import figures
from ensayo.features.audio.preprocessing import AudioPreprocessing, prepare_clip, read_audio
from ensayo.features.audio.spectrogram import Spectrogram
from ensayo.features.report import markdown_table


def explore_clips(name: str, paths: list[str], labels: list[str], options: AudioPreprocessing,
                   directory: Path) -> list[str]:

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
    figure = figures.figure(figsize=(10, 3.5), layout="tight")
    (left, right) = figure.subplots(1, 2)
    left.hist(seconds, bins=40, color="tab:blue")
    left.axvline(options.duration, color="tab:red", linestyle="--", label=f"recipe duration {options.duration} s")
    left.set(xlabel="seconds", ylabel="clips", title="clip durations")
    left.legend()
    right.hist(levels, bins=40, color="tab:green")
    right.set(xlabel="RMS level (dBFS)", title="loudness")
    figures.save(figure, directory / f"{name}_durations.png", dpi=110)
    lines += [f"![durations and loudness]({name}_durations.png)", ""]

    examples = {}
    for path, label in zip(paths, labels, strict=True):
        examples.setdefault(label, path)
    shown = sorted(examples)[:12]
    spectrogram = Spectrogram(options)
    figure = figures.figure(figsize=(2.2 * len(shown), 4.5), layout="tight")
    axes = figure.subplots(2, len(shown), squeeze=False)
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
    figures.save(figure, directory / f"{name}_examples.png", dpi=100)
    return [*lines, f"![one example per class: waveform and spectrogram]({name}_examples.png)"]

