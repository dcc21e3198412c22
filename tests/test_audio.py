"""Audio: a folder of WAV files whose names carry the labels, to a classifier that hears any recording."""

import itertools
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf
import torch
from helpers.data import RATE, SPEAKERS, audio_recipe, make_clips, tone
from helpers.training import explore_report
from typer.testing import CliRunner

import ensayo
from ensayo.cli import app
from ensayo.data import DataError, load_splits
from ensayo.features.audio import (
    AudioFeature,
    AudioPreprocessing,
    Augment,
    AugmentConfig,
    level,
    prepare_clip,
    read_audio,
    trim_silence,
)
from ensayo.models import load_recipe
from ensayo.runs import SavedRun


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    return make_clips(tmp_path / "clips")


def test_folder_table_carries_the_name_fields_and_the_official_split(clips: Path) -> None:
    splits = load_splits(load_recipe(audio_recipe(clips)))
    assert splits.test["take"].cast(pl.Int64).max() == 1
    assert splits.train["take"].cast(pl.Int64).min() >= 2
    assert set(splits.train["speaker"].to_list()) == set(SPEAKERS)
    assert splits.train.height + splits.validation.height + splits.test.height == 3 * 3 * 12
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in splits.train["path"].to_list())


def test_speaker_split_keeps_each_speaker_on_one_side(clips: Path) -> None:
    split = {"method": "group", "group_column": "speaker", "train": 0.34, "validation": 0.33, "test": 0.33}
    splits = load_splits(load_recipe(audio_recipe(clips, data={"split": split})))
    sides = [set(part["speaker"].to_list()) for _, part in splits.items()]
    assert all(len(side) == 1 for side in sides)
    assert len(set.union(*sides)) == 3


def test_bad_files_are_named_and_skipped_or_fail_the_run(clips: Path) -> None:
    good = (clips / "low_ana_3.wav").read_bytes()
    (clips / "low_ana_90.wav").write_bytes(good[: len(good) // 2])  # truncated
    (clips / "high_ana_91.wav").write_bytes(b"")  # empty
    (clips / "high_bo_92.wav").write_text("just some text, not audio" * 10)  # not audio
    sf.write(clips / "sweep_bo_93.wav", np.zeros(0, dtype=np.float32), RATE)  # a valid file with no samples
    (clips / "sweep-cy-94.wav").write_bytes(good)  # a name the pattern does not match

    splits = load_splits(load_recipe(audio_recipe(clips)))
    reasons = {Path(b.file).name: b.reason for b in splits.report.bad_rows}
    assert set(reasons) == {"low_ana_90.wav", "high_ana_91.wav", "high_bo_92.wav", "sweep_bo_93.wav",
                            "sweep-cy-94.wav"}
    assert "truncated" in reasons["low_ana_90.wav"]
    assert "not readable as audio" in reasons["high_bo_92.wav"]
    assert "empty" in reasons["sweep_bo_93.wav"]
    assert "pattern" in reasons["sweep-cy-94.wav"]
    assert splits.train.height + splits.validation.height + splits.test.height == 3 * 3 * 12

    with pytest.raises(DataError, match="high_bo_92.wav"):
        load_splits(load_recipe(audio_recipe(clips, data={"bad_rows": "fail"})))


def test_any_rate_channels_and_level_give_the_same_clip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    clip = tone("sweep", rng, gain=0.5)
    sf.write(tmp_path / "base.wav", clip, RATE)
    fast = np.interp(np.arange(len(clip) * 2) / 2, np.arange(len(clip)), clip)  # the same sound at 16 kHz
    sf.write(tmp_path / "loud_stereo_16k.wav", np.stack([fast, fast], axis=1) * 1.8, 2 * RATE, subtype="FLOAT")
    options = AudioPreprocessing(duration=0.5)
    assert read_audio(str(tmp_path / "loud_stereo_16k.wav"), RATE).shape == (len(clip),)
    a = prepare_clip(str(tmp_path / "base.wav"), options)
    b = prepare_clip(str(tmp_path / "loud_stereo_16k.wav"), options)
    assert a.shape == b.shape == (4000,)
    assert np.corrcoef(a, b)[0, 1] > 0.98
    assert abs(np.sqrt(np.mean(a**2)) - np.sqrt(np.mean(b**2))) < 0.01


def test_trimming_and_levelling() -> None:
    sound = np.concatenate([np.zeros(800), 0.5 * np.ones(1600), np.zeros(1600)]).astype(np.float32)
    trimmed = trim_silence(sound, 30, 80)
    assert len(trimmed) == 1600 and np.all(trimmed == 0.5)
    levelled = level(trimmed * 0.01, "rms", -20)
    assert 20 * np.log10(np.sqrt(np.mean(levelled**2))) == pytest.approx(-20, abs=0.01)
    assert np.abs(level(np.r_[np.ones(1), np.zeros(999)].astype(np.float32), "rms", -6)).max() <= 1.0


def test_normalization_statistics_come_from_the_training_clips(clips: Path) -> None:
    options = AudioPreprocessing(duration=0.5, n_mels=16)
    train = sorted(str(p) for p in clips.glob("low_*.wav"))
    feature = AudioFeature("clip", "path", options).fit(train)
    encoded = feature.transform(train)
    assert encoded.shape == (len(train), 16, feature.frames)
    torch.testing.assert_close(encoded.mean(dim=(0, 2)), torch.zeros(16), atol=1e-4, rtol=0)
    once = AudioFeature("clip", "path", options)
    torch.testing.assert_close(once.fit_transform(train), encoded, atol=0, rtol=0)  # one read, same encoding
    np.testing.assert_array_equal(once.mean, feature.mean)
    other = feature.transform(sorted(str(p) for p in clips.glob("high_*.wav")))
    assert other.mean(dim=(0, 2)).abs().max() > 0.1  # other clips are scaled by the low tones' statistics


def test_augmentation_acts_in_training_only() -> None:
    augment = Augment(AugmentConfig(time_masks=2, time_mask_width=4, freq_masks=1, freq_mask_width=3,
                                    time_shift=0.05), frames_per_second=100)
    x = torch.randn(8, 16, 40)
    augment.eval()
    assert torch.equal(augment(x), x)
    augment.train()
    torch.manual_seed(0)
    changed = augment(x)
    assert changed.shape == x.shape and not torch.equal(changed, x)
    assert (changed == 0).any()


@pytest.mark.parametrize("encoder", [
    {"type": "cnn2d", "channels": [8, 16]},
    {"type": "rnn", "hidden_size": 16, "layers": 1},
    {"type": "cnn_rnn", "channels": [8], "hidden_size": 16},
])
@pytest.mark.slow
def test_each_audio_encoder_learns_and_predicts_a_foreign_recording(clips: Path, tmp_path: Path,
                                                                   encoder: dict) -> None:
    run_dir = tmp_path / "run"
    ensayo.run(load_recipe(audio_recipe(clips, encoder, train={"epochs": 15})), output=run_dir, track=False)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/accuracy"] >= 0.9
    assert {"test/weighted_f1", "test/macro_precision", "test/weighted_recall"} <= set(metrics)
    assert (run_dir / "confusion.png").is_file() and "sweep" in (run_dir / "confusion.txt").read_text()

    # a recording unlike the training set: 16 kHz, stereo, ten times quieter, longer silences
    rng = np.random.default_rng(7)
    mine = tmp_path / "mine"
    mine.mkdir()
    for label in ("low", "high", "sweep"):
        clip = np.r_[np.zeros(4000), tone(label, rng, gain=0.5) / 10, np.zeros(6000)]
        wide = np.interp(np.arange(len(clip) * 2) / 2, np.arange(len(clip)), clip)
        sf.write(mine / f"my_{label}.wav", np.stack([wide, wide], axis=1), 2 * RATE)
    saved = SavedRun.load(run_dir)
    result = CliRunner().invoke(app, ["predict", str(run_dir), "--input", str(mine)])
    assert result.exit_code == 0, result.output
    for label in ("low", "high", "sweep"):
        row = next(line for line in result.stdout.splitlines() if f"my_{label}.wav" in line)
        assert row.split("│")[2].split()[0] == label, row
    single = CliRunner().invoke(app, ["predict", str(run_dir), "--input", str(mine / "my_sweep.wav")])
    assert single.exit_code == 0 and "my_sweep.wav" in single.stdout
    assert saved.output.classes == ["high", "low", "sweep"]
    written = CliRunner().invoke(app, ["predict", str(run_dir), "--input", str(mine), "-o", str(tmp_path / "p.csv")])
    assert written.exit_code == 0, written.output
    table = pl.read_csv(tmp_path / "p.csv")
    assert table.columns[:3] == ["file", "label_1", "probability_1"] and table.height == 3


def test_explore_writes_an_audio_report(clips: Path, tmp_path: Path) -> None:
    report = explore_report(audio_recipe(clips), tmp_path)
    assert "| sweep |" in report and "duration (s)" in report and "dBFS" in report
    for plot in ("class_balance.png", "clip_durations.png", "clip_examples.png"):
        assert (tmp_path / "report" / plot).stat().st_size > 1000, plot


def test_clips_read_on_the_fly_give_the_tensors_kept_in_memory(clips: Path) -> None:
    paths = sorted(str(p) for p in clips.glob("*.wav"))
    kept = AudioFeature("clip", "path", AudioPreprocessing(duration=0.5, n_mels=16))
    streamed = AudioFeature("clip", "path", AudioPreprocessing(duration=0.5, n_mels=16, in_memory=False))
    encoded, lazy = kept.fit_transform(paths), streamed.fit_transform(paths)
    assert isinstance(encoded, torch.Tensor) and lazy.paths == paths  # only the paths are held
    assert kept.state() == streamed.state()
    index = np.array([5, 0, 17, 3])
    torch.testing.assert_close(streamed.collate(lazy, index), kept.collate(encoded, index), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_a_recipe_reading_its_clips_on_the_fly_trains_as_one_holding_them(clips: Path, tmp_path: Path) -> None:
    """Batches read by two DataLoader worker processes: the same model as batches sliced from memory."""
    from safetensors.torch import load_file

    encoder = {"type": "rnn", "cell": "gru", "hidden_size": 8, "layers": 1, "dropout": 0.0}
    weights = []
    for in_memory in (True, False):
        raw = audio_recipe(clips, encoder, preprocessing={"augment": None, "in_memory": in_memory},
                           train={"epochs": 2, "loader_workers": 2})
        saved = ensayo.run(load_recipe(raw), output=tmp_path / f"in_memory_{in_memory}", track=False)
        weights.append(load_file(str(saved.path / "model.safetensors")))
    for key in weights[0]:
        torch.testing.assert_close(weights[1][key], weights[0][key], rtol=0, atol=1e-5)


@pytest.mark.parametrize("convs", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_conv_blocks_pool_before_their_last_relu_with_the_same_values_gradients_and_weights(
        convs: int, dtype: torch.dtype) -> None:
    """The spectrogram and image encoders' blocks pool before their last ReLU (a quarter of the elements): the
    outputs, input and weight gradients and batch statistics of ReLU-then-pool, to the bit, and a run saved with
    the old order loads (the weights keep their places)."""
    from torch import nn

    from ensayo.features.networks import conv_stack

    torch.manual_seed(0)
    now = conv_stack(1, [8, 16], convs)
    assert [type(module) for module in now[0]][-2:] == [nn.MaxPool2d, nn.ReLU]
    before = _relu_then_pool(1, [8, 16], convs)
    before.load_state_dict(now.state_dict())  # strict: every weight and statistic where a saved run has it
    spectrograms = torch.randn(6, 1, 20, 33)  # odd sizes: the pooling drops the last row and column either way
    results = []
    for network in (before, now):
        inputs = spectrograms.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            maps = network(inputs)
        (maps.float() * torch.linspace(-1, 1, maps.shape[-1])).sum().backward()
        results.append([maps, inputs.grad, *(p.grad for p in network.parameters()), *network.buffers()])
    assert maps.dtype == dtype and (maps > 0).any() and (maps == 0).any()
    for got, expected in zip(results[1], results[0], strict=True):
        assert torch.equal(got, expected)


def _relu_then_pool(channels_in: int, channels: list[int], convs: int) -> torch.nn.Sequential:
    """`conv_stack` before da918ee: each convolution's ReLU, then the block's pooling."""
    from torch import nn

    blocks = []
    for block_in, block_out in itertools.pairwise([channels_in, *channels]):
        layers: list[nn.Module] = []
        for index in range(convs):
            layers += [nn.Conv2d(block_in if index == 0 else block_out, block_out, 3, padding=1, bias=False),
                       nn.BatchNorm2d(block_out), nn.ReLU(inplace=True)]
        blocks.append(nn.Sequential(*layers, nn.MaxPool2d(2)))
    return nn.Sequential(*blocks).to(memory_format=torch.channels_last)
