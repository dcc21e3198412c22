"""Waveform augmentation of training clips: each kind seeded, changing what it should, and applied to the
training split only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch
from helpers.data import RATE, audio_recipe, make_clips

import ensayo
from ensayo.features.audio import AudioFeature, AudioPreprocessing
from ensayo.features.audio.augment import (
    WaveAugmentConfig,
    WaveAugmenter,
    reverberate,
    room_impulse,
    speed_perturb,
)
from ensayo.features.base import FileColumn
from ensayo.recipe import RecipeError

pytest.importorskip("audiomentations", reason="audiomentations is in the audio extra")


def vowel(seconds: float = 0.6, pitch: float = 220.0) -> np.ndarray:
    """A voiced sound: a 220 Hz fundamental and its harmonics."""
    t = np.arange(int(seconds * RATE)) / RATE
    wave = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 6))
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def fundamental(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)), 8 * len(samples)))
    frequencies = np.fft.rfftfreq(8 * len(samples), 1 / RATE)
    band = (frequencies > 100) & (frequencies < 600)
    return float(frequencies[band][spectrum[band].argmax()])


def augmenter(**parts: dict) -> WaveAugmenter:
    return WaveAugmenter(WaveAugmentConfig(**{name: {"p": 1.0, **options} for name, options in parts.items()}), RATE)


def test_each_augmentation_is_repeatable_from_its_seed_and_differs_across_seeds() -> None:
    clip = vowel()
    for name, options in (("speed", {}), ("pitch", {}), ("reverb", {}), ("shelf", {}), ("gain", {}),
                          ("noise", {})):
        changer = augmenter(**{name: options})
        step = changer.speaker if name in ("speed", "pitch", "reverb", "shelf") else changer.surroundings
        first, again, other = step(clip, [1, 2]), step(clip, [1, 2]), step(clip, [1, 3])
        assert np.array_equal(first, again), name
        assert not np.array_equal(first, clip), name
        assert first.shape != other.shape or not np.allclose(first, other), name


def test_speed_moves_pitch_and_length_a_pitch_shift_keeps_the_length() -> None:
    clip = vowel()
    faster = speed_perturb(clip, 1.25)
    assert len(faster) == pytest.approx(len(clip) / 1.25, abs=2)
    assert fundamental(faster) == pytest.approx(220 * 1.25, rel=0.03)
    shifted = augmenter(pitch={"min_semitones": 4, "max_semitones": 4}).speaker(clip, [0])
    assert len(shifted) == len(clip)
    assert fundamental(shifted) == pytest.approx(220 * 2 ** (4 / 12), rel=0.03)


def test_noise_lands_at_its_signal_to_noise_ratio_in_its_colour() -> None:
    clip = vowel(1.0)
    for colour, low_to_high in (("white", (0.5, 2.0)), ("brown", (20.0, None))):
        noisy = augmenter(noise={"min_snr_db": 10, "max_snr_db": 10, "colors": [colour]}).surroundings(clip, [5])
        noise = noisy - clip
        snr = 10 * np.log10(np.mean(clip**2) / np.mean(noise**2))
        assert snr == pytest.approx(10, abs=0.5), colour
        frequencies, power = scipy.signal.welch(noise, RATE, nperseg=512)
        ratio = power[(frequencies > 50) & (frequencies < 500)].mean() / power[frequencies > 2000].mean()
        assert ratio > low_to_high[0] and (low_to_high[1] is None or ratio < low_to_high[1]), (colour, ratio)


@pytest.mark.slow
def test_noise_clips_from_a_folder_are_mixed_in_at_the_ratio(tmp_path: Path) -> None:
    import soundfile as sf

    hum = 0.2 * np.sin(2 * np.pi * 310 * np.arange(RATE) / RATE).astype(np.float32)  # a whine at 310 Hz
    sf.write(tmp_path / "hum.wav", hum, RATE)
    clip = vowel(1.0)
    noisy = augmenter(noise={"min_snr_db": 6, "max_snr_db": 6, "folder": str(tmp_path)}).surroundings(clip, [2])
    noise = noisy - clip
    assert 10 * np.log10(np.mean(clip**2) / np.mean(noise**2)) == pytest.approx(6, abs=0.5)
    assert fundamental(noise) == pytest.approx(310, abs=5)  # it is the whine that was added


def test_gain_shelf_and_room_change_level_spectrum_and_decay() -> None:
    clip = vowel(1.0)
    louder = augmenter(gain={"min_db": 6, "max_db": 6}).surroundings(clip, [0])
    assert 20 * np.log10(np.abs(louder).max() / np.abs(clip).max()) == pytest.approx(6, abs=0.1)
    noise = np.random.default_rng(0).normal(0, 0.1, RATE).astype(np.float32)
    shelved = augmenter(shelf={"min_gain_db": 12, "max_gain_db": 12, "min_frequency": 1000,
                               "max_frequency": 1000}).speaker(noise, [0])
    f, before = scipy.signal.welch(noise, RATE, nperseg=512)
    _, after = scipy.signal.welch(shelved, RATE, nperseg=512)
    change = 10 * np.log10(after / before)
    low, high = change[f < 300].mean(), change[f > 3000].mean()
    assert abs(high - low) > 8  # one end raised by about 12 dB against the other (low or high shelf)
    impulse = room_impulse(0.5, RATE, np.random.default_rng(0))
    assert np.square(impulse).sum() == pytest.approx(1.0)
    tail = slice(int(0.4 * RATE), int(0.5 * RATE))
    assert 10 * np.log10(np.square(impulse[tail]).mean() / np.square(impulse[1:800]).mean()) < -30
    click = np.zeros(RATE, dtype=np.float32)
    click[100] = 1.0
    wet = reverberate(click, impulse, 1.0)
    assert np.abs(wet[2000:3000]).max() > 1e-3 and np.abs(click[2000:3000]).max() == 0  # it rings on


def test_waveform_augmentation_needs_clips_read_on_the_fly() -> None:
    with pytest.raises(ValueError, match="augment.speed: waveform augmentation .* set in_memory: false"):
        AudioPreprocessing(augment={"speed": {"p": 0.5}})
    with pytest.raises(ValueError, match="speed: min_factor is above max_factor"):
        WaveAugmentConfig(speed={"min_factor": 1.2, "max_factor": 0.9})


@pytest.mark.slow
def test_only_training_rows_are_augmented_and_training_with_them_learns(tmp_path: Path) -> None:
    folder = make_clips(tmp_path / "clips")
    paths = sorted(str(p) for p in folder.glob("*.wav"))[:6]
    options = AudioPreprocessing(duration=0.5, n_mels=16, n_fft=256, hop_length=128, in_memory=False,
                                 augment={"speed": {"p": 1.0}, "noise": {"p": 1.0}})
    feature = AudioFeature("clip", "path", options).fit(paths)
    index = np.arange(6)
    held_out = feature.collate(FileColumn(paths), index)
    assert torch.equal(held_out, feature.collate(FileColumn(paths), index))  # validation and test: as read
    torch.manual_seed(0)
    trained = feature.collate(FileColumn(paths, training=True), index)
    torch.manual_seed(0)
    assert torch.equal(trained, feature.collate(FileColumn(paths, training=True), index))  # seeded
    assert trained.shape == held_out.shape and not torch.allclose(trained, held_out)

    utterance = AudioFeature("clip", "path", options.model_copy(update={"normalize": "utterance"})).fit(paths)
    normalized = utterance.collate(FileColumn(paths), index)
    assert normalized.mean(dim=2).abs().max() < 1e-4
    assert normalized.std(dim=2).sub(1).abs().max() < 1e-3

    recipe = audio_recipe(folder, preprocessing={"in_memory": False, "augment": {
        "speed": {"p": 0.5, "min_factor": 0.9, "max_factor": 1.1}, "gain": {"p": 0.5},
        "noise": {"p": 0.5, "min_snr_db": 20, "max_snr_db": 30}}})
    recipe["train"] |= {"loader_workers": 0}
    run = ensayo.run(recipe, output=tmp_path / "run", track=False)
    assert run.metrics["test/accuracy"] > 0.8
    with pytest.raises(RecipeError, match="augment.pitch: waveform augmentation"):
        ensayo.run(audio_recipe(folder, preprocessing={"augment": {"pitch": {}}}), output=tmp_path / "x",
                   track=False)
