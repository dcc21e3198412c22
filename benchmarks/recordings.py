"""Spoken digits as a person records them (issue 29): Record, wait, speak, wait, Stop. Each of FSDD's official
test clips (takes 0-4 of every speaker and digit: 300 clips) is put in `--takes` takes of 2-4 s at 48 kHz:

- the digit at a random offset, its level drawn between -26 and -14 dBFS (RMS of the clip);
- a noise floor of pink noise at -55 dBFS RMS (a quiet room and a laptop's microphone);
- a second sound that is not a digit, 0.1-0.5 s before or after it: a click (a 4 ms decaying impulse,
  peak -6 to -1 dBFS), a breath (0.25-0.45 s of band-passed noise with a smooth envelope, -40 to -30 dBFS)
  or a cough-like burst (0.15-0.3 s of low band-passed noise, sharp attack and decay, -24 to -14 dBFS).

The takes are drawn from a committed seed. spoken-digits-cnn is trained twice on FSDD's official split: as
bundled (`preprocessing.speech`, Silero's voice activity detector, hears the longest stretch of speech) and
without the detector (what the page heard before: the 1 s around the middle of what `trim_db` kept). Both
predict the clips as they are and the takes, through `predict_rows`, the path `ensayo predict` and the
server take.

    ENSAYO_DATA=../shared/data python benchmarks/recordings.py     # 2 takes per clip: 600 takes
    python benchmarks/recordings.py --takes 1 --seed 7

Runs are kept under benchmarks/out/recordings/ and reused. Writes benchmarks/out/recordings.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, resample_poly, sosfilt

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
RUNS = OUT / "recordings"
RATE = 48000
NOISE_FLOOR_DB = -55.0
SOUNDS = ("click", "breath", "cough")
WITHOUT_DETECTOR = ["inputs.0.preprocessing.speech=null"]


def decibels(value: float) -> float:
    return 10 ** (value / 20)


def pink_noise(length: int, rng: np.random.Generator) -> np.ndarray:
    """Noise whose power falls as 1/f, at unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    noise = np.fft.irfft(spectrum, length)
    return noise / np.sqrt(np.mean(noise**2))


def band_noise(length: int, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    noise = sosfilt(butter(4, [low, high], btype="band", fs=RATE, output="sos"), rng.standard_normal(length))
    return noise / np.sqrt(np.mean(noise**2))


def other_sound(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A click, a breath or a cough-like burst, at its level."""
    if kind == "click":
        length = int(0.004 * RATE)
        click = rng.standard_normal(length) * np.exp(-np.arange(length) / (0.0008 * RATE))
        return click / np.abs(click).max() * decibels(rng.uniform(-6, -1))
    if kind == "breath":
        length = int(rng.uniform(0.25, 0.45) * RATE)
        return band_noise(length, 400, 3000, rng) * np.hanning(length) * decibels(rng.uniform(-40, -30)) * np.sqrt(2)
    length = int(rng.uniform(0.15, 0.3) * RATE)
    envelope = np.minimum(np.arange(length) / (0.01 * RATE), 1) * np.exp(-np.arange(length) / (0.06 * RATE))
    burst = band_noise(length, 150, 1500, rng) * envelope
    return burst / np.sqrt(np.mean(burst**2)) * decibels(rng.uniform(-24, -14))


def take(clip: np.ndarray, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The clip in a 2-4 s take at 48 kHz with a noise floor and another sound near it."""
    digit = resample_poly(clip, RATE, rate)
    digit = digit / np.sqrt(np.mean(digit**2)) * decibels(rng.uniform(-26, -14))
    kind = SOUNDS[int(rng.integers(len(SOUNDS)))]
    sound = other_sound(kind, rng)
    gap = int(rng.uniform(0.1, 0.5) * RATE)
    length = int(rng.uniform(2.0, 4.0) * RATE)
    length = max(length, len(digit) + gap + len(sound) + RATE // 10)
    before = rng.random() < 0.5  # the other sound before the digit, or after it
    span = len(digit) + gap + len(sound)
    start = int(rng.integers(0, length - span + 1))
    signal = pink_noise(length, rng) * decibels(NOISE_FLOOR_DB)
    sound_at, digit_at = (start, start + len(sound) + gap) if before else (start + len(digit) + gap, start)
    signal[digit_at: digit_at + len(digit)] += digit
    signal[sound_at: sound_at + len(sound)] += sound
    return np.clip(signal, -1, 1).astype(np.float32), {"sound": kind, "seconds": round(length / RATE, 2),
                                                        "digit_at": round(digit_at / RATE, 2)}


def make_takes(clips: list[Path], folder: Path, per_clip: int, seed: int) -> dict[str, dict]:
    """The takes as 16-bit WAV files in `folder` (file name -> the clip's digit and how its take was made)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng, made = np.random.default_rng(seed), {}
    for clip_path in clips:
        clip, rate = sf.read(clip_path, dtype="float32")
        for n in range(per_clip):
            samples, how = take(clip, rate, rng)
            name = f"{clip_path.stem}_take{n}.wav"
            sf.write(folder / name, samples, RATE, subtype="PCM_16")
            made[name] = {"digit": clip_path.name.split("_")[0]} | how
    return made


def trained(name: str, overrides: list[str]):
    import ensayo
    from ensayo import layout
    from ensayo.runs import SavedRun

    folder = RUNS / name
    if (folder / layout.METRICS).is_file():
        return SavedRun.load(folder)
    shutil.rmtree(folder, ignore_errors=True)
    return ensayo.run(ROOT / "recipes" / "spoken-digits-cnn.yaml", output=folder, overrides=overrides, track=False)


def accuracy(run, folder: Path, truth: dict[str, str], kinds: dict[str, str] | None = None) -> dict:
    """Accuracy over every file of `folder`; a file refused (no speech heard) counts as wrong."""
    from ensayo.runs import predict_rows

    names, probabilities, notes, bad = predict_rows(run, folder)
    classes = run.output.classes
    right = {name: classes[int(row.argmax())] == truth[name] for name, row in zip(names, probabilities, strict=True)}
    right |= {name: False for name in truth if name not in right}
    result = {"files": len(truth), "accuracy": round(float(np.mean(list(right.values()))), 4),
              "refused": len(bad), "noted": sum(1 for note in notes if note), "refusals": bad[:5]}
    if kinds:
        result["by_sound"] = {kind: round(float(np.mean([right[n] for n in right if kinds[n] == kind])), 4)
                              for kind in SOUNDS}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--takes", type=int, default=2, help="takes per test clip")
    parser.add_argument("--seed", type=int, default=2029)
    arguments = parser.parse_args()
    os.environ.setdefault("ENSAYO_DATA", str((ROOT.parent / "shared" / "data").resolve()))
    recordings = Path(os.environ["ENSAYO_DATA"]) / "fsdd" / "recordings"
    clips = sorted(p for p in recordings.glob("*.wav") if int(p.stem.split("_")[2]) < 5)
    RUNS.mkdir(parents=True, exist_ok=True)
    as_they_are = RUNS / "clips"
    shutil.rmtree(as_they_are, ignore_errors=True)
    as_they_are.mkdir()
    for clip in clips:
        (as_they_are / clip.name).symlink_to(clip.resolve())
    made = make_takes(clips, RUNS / "takes", arguments.takes, arguments.seed)
    clip_truth = {clip.name: clip.name.split("_")[0] for clip in clips}
    take_truth = {name: how["digit"] for name, how in made.items()}
    kinds = {name: how["sound"] for name, how in made.items()}
    results = {"takes": len(made), "seed": arguments.seed, "noise_floor_dbfs": NOISE_FLOOR_DB,
               "take_seconds": [min(h["seconds"] for h in made.values()), max(h["seconds"] for h in made.values())]}
    for name, overrides in (("with the detector", []), ("without it", WITHOUT_DETECTOR)):
        run = trained("cnn" if not overrides else "cnn-no-detector", overrides)
        results[name] = {"test_accuracy": round(run.metrics["test/accuracy"], 4),
                         "clips": accuracy(run, as_they_are, clip_truth),
                         "takes": accuracy(run, RUNS / "takes", take_truth, kinds)}
        print(name, json.dumps(results[name], indent=1), flush=True)
    (OUT / "recordings.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"-> {OUT / 'recordings.json'}")


if __name__ == "__main__":
    main()
