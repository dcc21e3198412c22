"""Waveform augmentation, in training only: each clip of the training split is changed as it is read, as a
new speaker, microphone or room would change it. Pitch shift, coloured noise, background noise clips, gain
and shelf filters are audiomentations' (the `audio` extra); speed perturbation is scipy's polyphase
resampling; reverberation convolves the clip with a synthetic room impulse response.

Every draw comes from one seed per clip (a list of integers), so a run is repeatable.
"""

from __future__ import annotations

import os
import random
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from ensayo.recipe import Strict

COLOR_DECAY = {"white": 0.0, "pink": -3.01, "brown": -6.02}  # dB per octave of the noise's spectrum


class Chance(Strict):
    p: float = Field(0.5, ge=0, le=1, description="the probability that a training clip gets it")


class SpeedConfig(Chance):
    """Resampled by a random factor and played at the original rate: pitch and tempo move together, as from a
    speaker with another vocal tract (Ko et al., 2015)."""

    min_factor: float = Field(0.85, gt=0)
    max_factor: float = Field(1.15, gt=0)


class PitchConfig(Chance):
    min_semitones: float = -3.0
    max_semitones: float = 3.0


class NoiseConfig(Chance):
    """Noise added at a random signal-to-noise ratio: coloured noise made in code, or a clip from `folder`."""

    min_snr_db: float = 5.0
    max_snr_db: float = 30.0
    colors: list[Literal["white", "pink", "brown"]] = Field(default_factory=lambda: ["white", "pink", "brown"])
    folder: str | None = Field(None, description="a folder of noise clips (WAV, FLAC, OGG) used instead")


class GainConfig(Chance):
    min_db: float = -12.0
    max_db: float = 12.0


class ShelfConfig(Chance):
    """A low- or high-shelf filter (either, at random): a microphone or a line that favours one end."""

    min_gain_db: float = -12.0
    max_gain_db: float = 12.0
    min_frequency: float = Field(150.0, gt=0)
    max_frequency: float = Field(2500.0, gt=0)


class ReverbConfig(Chance):
    """A synthetic room: exponentially decaying noise with a reverberation time (RT60) drawn at random."""

    min_rt60: float = Field(0.1, gt=0, description="seconds for the echoes to fall by 60 dB")
    max_rt60: float = Field(0.6, gt=0)
    wet: float = Field(0.6, ge=0, le=1, description="the share of the reverberant signal in the mix")


class WaveAugmentConfig(Strict):
    speed: SpeedConfig | None = None
    pitch: PitchConfig | None = None
    reverb: ReverbConfig | None = None
    shelf: ShelfConfig | None = None
    gain: GainConfig | None = None
    noise: NoiseConfig | None = None

    @model_validator(mode="after")
    def _ranges(self) -> WaveAugmentConfig:
        pairs = {"speed": ("min_factor", "max_factor"), "pitch": ("min_semitones", "max_semitones"),
                 "reverb": ("min_rt60", "max_rt60"), "shelf": ("min_gain_db", "max_gain_db"),
                 "gain": ("min_db", "max_db"), "noise": ("min_snr_db", "max_snr_db")}
        for name, (low, high) in pairs.items():
            part = getattr(self, name)
            if part is not None and getattr(part, low) > getattr(part, high):
                raise ValueError(f"{name}: {low} is above {high}")
        return self

    @property
    def active(self) -> bool:
        return any(getattr(self, name) is not None for name in WaveAugmentConfig.model_fields)


def speed_perturb(samples: np.ndarray, factor: float) -> np.ndarray:
    """The clip `factor` times faster (shorter, higher): resampled by 1/factor, played at the same rate."""
    import scipy.signal

    ratio = Fraction(1 / factor).limit_denominator(100)
    return scipy.signal.resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32)


def room_impulse(rt60: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise decaying by 60 dB in `rt60` seconds, after a unit direct path; unit energy."""
    length = max(int(rt60 * sample_rate), 2)
    time = np.arange(length) / sample_rate
    impulse = rng.standard_normal(length) * np.exp(-6.9078 * time / rt60)  # ln(1000): 60 dB of amplitude
    impulse[0] = 1.0
    return (impulse / np.sqrt(np.square(impulse).sum())).astype(np.float32)


def reverberate(samples: np.ndarray, impulse: np.ndarray, wet: float) -> np.ndarray:
    """The clip in the room (the tail cut at the clip's length), mixed with the dry clip, at its RMS."""
    import scipy.signal

    room = scipy.signal.fftconvolve(samples, impulse)[: len(samples)]
    mixed = (1 - wet) * samples + wet * room
    before, after = np.sqrt(np.mean(np.square(samples))), np.sqrt(np.mean(np.square(mixed)))
    return (mixed * (before / after if after > 1e-9 else 1.0)).astype(np.float32)


class WaveAugmenter:
    """The configured augmentations in the order a recording meets them: the speaker (speed, pitch), the room,
    the microphone (shelf, gain), the background (noise)."""

    def __init__(self, config: WaveAugmentConfig, sample_rate: int) -> None:
        self.config = config
        self.sample_rate = sample_rate
        self._library: dict[str, Any] | None = None  # audiomentations' transforms, made on first use

    def _transforms(self) -> dict[str, Any]:
        if self._library is not None:
            return self._library
        try:
            import audiomentations as am
        except ImportError:
            raise ImportError("audio augmentation needs audiomentations: pip install 'ensayo-ml[audio]'") from None
        config, made = self.config, {}
        if config.pitch:
            made["pitch"] = am.PitchShift(min_semitones=config.pitch.min_semitones,
                                          max_semitones=config.pitch.max_semitones, p=1.0)
        if config.gain:
            made["gain"] = am.Gain(min_gain_db=config.gain.min_db, max_gain_db=config.gain.max_db, p=1.0)
        if config.shelf:
            shelf = config.shelf
            options = {"min_center_freq": shelf.min_frequency,
                       "max_center_freq": min(shelf.max_frequency, self.sample_rate / 2 * 0.9),
                       "min_gain_db": shelf.min_gain_db, "max_gain_db": shelf.max_gain_db, "p": 1.0}
            made["shelf"] = [am.LowShelfFilter(**options), am.HighShelfFilter(**options)]
        if config.noise:
            noise = config.noise
            if noise.folder:
                folder = Path(os.path.expandvars(noise.folder))
                made["noise"] = [am.AddBackgroundNoise(sounds_path=str(folder), min_snr_db=noise.min_snr_db,
                                                       max_snr_db=noise.max_snr_db, p=1.0)]
            else:
                made["noise"] = [am.AddColorNoise(min_snr_db=noise.min_snr_db, max_snr_db=noise.max_snr_db,
                                                  min_f_decay=COLOR_DECAY[color], max_f_decay=COLOR_DECAY[color],
                                                  p=1.0) for color in noise.colors]
        self._library = made
        return made

    def _seed(self, seed: list[int]) -> np.random.Generator:
        """A generator for this clip; audiomentations draws from Python's and NumPy's global ones, seeded too."""
        rng = np.random.default_rng(seed)
        random.seed(int(rng.integers(2**32)))
        np.random.seed(int(rng.integers(2**32)))
        return rng

    def speaker(self, samples: np.ndarray, seed: list[int]) -> np.ndarray:
        """The changes a clip gets before it is levelled and cut to length: speed, pitch, room, shelf."""
        rng, config = self._seed(seed), self.config
        transforms = self._transforms()
        if config.speed and rng.random() < config.speed.p:
            samples = speed_perturb(samples, rng.uniform(config.speed.min_factor, config.speed.max_factor))
        if config.pitch and rng.random() < config.pitch.p:
            samples = transforms["pitch"](samples, sample_rate=self.sample_rate)
        if config.reverb and rng.random() < config.reverb.p:
            impulse = room_impulse(rng.uniform(config.reverb.min_rt60, config.reverb.max_rt60), self.sample_rate, rng)
            samples = reverberate(samples, impulse, config.reverb.wet)
        if config.shelf and rng.random() < config.shelf.p:
            samples = transforms["shelf"][int(rng.integers(2))](samples, sample_rate=self.sample_rate)
        return samples.astype(np.float32)

    def surroundings(self, samples: np.ndarray, seed: list[int]) -> np.ndarray:
        """The changes to the levelled clip of its final length: gain, then noise over all of it."""
        rng, config = self._seed([*seed, 1]), self.config
        transforms = self._transforms()
        if config.gain and rng.random() < config.gain.p:
            samples = transforms["gain"](samples, sample_rate=self.sample_rate)
        if config.noise and rng.random() < config.noise.p:
            noises = transforms["noise"]
            samples = noises[int(rng.integers(len(noises)))](samples, sample_rate=self.sample_rate)
        return np.clip(samples, -1.0, 1.0).astype(np.float32)
