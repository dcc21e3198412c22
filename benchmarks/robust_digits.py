"""Spoken digits on voices the model never heard (the trust issue): the plain CNN and the robust recipe
(waveform augmentation, per-utterance normalization) under leave-one-speaker-out cross-validation (6 folds,
FSDD's 6 speakers), the robust recipe on FSDD's official split, and that model on clips of espeak-ng's
synthetic voices (8 voices x 3 speeds x 3 sample rates, clean and mixed with noise at 10 dB SNR).

    python benchmarks/robust_digits.py                       # everything (hours on 2 cores)
    python benchmarks/robust_digits.py --only official,espeak
    python benchmarks/robust_digits.py --only loso-cnn,loso-robust

Every run is kept under benchmarks/out/robust_digits/ and resumed where it stopped when the command is run
again (a cross-validated run keeps its finished folds). Needs espeak-ng (Debian package) for the espeak part.
Writes benchmarks/out/robust_digits.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
RUNS = OUT / "robust_digits"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOICES = ["en-us", "en", "en-us+f3", "en+m3", "en-us+f4", "en+m7", "en-gb-x-rp+f2", "en-us+m5"]
SPEEDS = (110, 150, 200)  # words per minute
RATES = (8000, 16000, 22050)
LOSO = ["data.split.method=group", "data.split.group_column=speaker", "data.split.folds=6",
        "data.split.validation=0.1"]


def trained(recipe: str, name: str, overrides: list[str] | None = None):
    """The run `name`: loaded when finished, resumed when interrupted, else trained."""
    import ensayo
    from ensayo import layout
    from ensayo.runs import SavedRun

    folder = RUNS / name
    if (folder / layout.METRICS).is_file():
        return SavedRun.load(folder)
    if (folder / layout.RECIPE).is_file():
        return ensayo.run(None, resume=folder, track=False)
    return ensayo.run(ROOT / "recipes" / recipe, output=folder, overrides=overrides or [], track=False)


def loso_figures(run) -> dict:
    metrics = run.metrics
    return {"mean_accuracy": metrics["cv/accuracy_mean"], "sd": metrics["cv/accuracy_std"],
            "interval95": [metrics["cv/accuracy_low"], metrics["cv/accuracy_high"]],
            "by_held_out_speaker": {speaker: metrics[f"cv/accuracy_fold{k}"]
                                    for k, speaker in enumerate(held_out_speakers(run))},
            "out_of_fold_accuracy": metrics["test/accuracy"], "fit_seconds": metrics["fit_seconds"]}


def held_out_speakers(run) -> list[str]:
    from ensayo.data import load_splits
    from ensayo.models import fold_dirs
    from ensayo.models.registry import run_recipe

    return ["+".join(sorted(set(load_splits(run_recipe(folder)).test["speaker"].to_list())))
            for folder in fold_dirs(run.path, run.recipe.data.split.folds)]


def espeak_clips(folder: Path, noise_db: float | None) -> dict[str, str]:
    """Every digit in each voice, speed and sample rate (file name -> digit); with `noise_db`, the same clip
    mixed with white noise at that signal-to-noise ratio."""
    folder.mkdir(parents=True, exist_ok=True)
    truth, rng = {}, np.random.default_rng(0)
    for voice in VOICES:
        for speed in SPEEDS:
            for digit, word in enumerate(WORDS):
                raw = folder / "raw.wav"
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), word], check=True)
                samples, rate = sf.read(raw, dtype="float32")
                for target in RATES:
                    clip = resample_poly(samples, target, rate).astype(np.float32) if target != rate else samples
                    clip = np.r_[np.zeros(target // 4), clip, np.zeros(target // 4)].astype(np.float32)
                    if noise_db is not None:
                        speech = np.mean(np.square(clip[np.abs(clip) > 1e-4]))
                        clip = clip + rng.normal(0, np.sqrt(speech / 10 ** (noise_db / 10)), len(clip))
                    clip = (0.5 * clip / max(np.abs(clip).max(), 1e-6)).astype(np.float32)
                    name = f"{voice.replace('+', '-')}_{speed}_{target}_{digit}.wav"
                    sf.write(folder / name, clip, target)
                    truth[name] = str(digit)
    (folder / "raw.wav").unlink(missing_ok=True)
    return truth


def espeak_accuracy(run, noise_db: float | None) -> dict:
    from ensayo.runs import predict_rows

    folder = RUNS / ("espeak-noisy" if noise_db is not None else "espeak-clean")
    shutil.rmtree(folder, ignore_errors=True)
    truth = espeak_clips(folder, noise_db)
    names, probabilities, _, bad = predict_rows(run, folder)
    classes = run.output.classes
    right = {name: classes[int(row.argmax())] == truth[name] for name, row in zip(names, probabilities, strict=True)}
    by = {key: float(np.mean([r for n, r in right.items() if n.split("_")[position] == key]))
          for position, keys in ((1, [str(s) for s in SPEEDS]), (2, [str(r) for r in RATES])) for key in keys}
    return {"clips": len(names), "accuracy": float(np.mean(list(right.values()))), "by_speed_and_rate": by,
            "bad_files": bad}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="official,espeak,loso-cnn,loso-robust")
    parts = parser.parse_args().only.split(",")
    RUNS.mkdir(parents=True, exist_ok=True)
    result_file = OUT / "robust_digits.json"
    results = json.loads(result_file.read_text()) if result_file.is_file() else {}

    def save(key: str, value: dict) -> None:
        results[key] = value
        print(key, json.dumps(value, indent=1), flush=True)
        result_file.write_text(json.dumps(results, indent=2) + "\n")

    for name, recipe in (("cnn", "spoken-digits-cnn.yaml"), ("robust", "spoken-digits-robust.yaml")):
        if f"loso-{name}" in parts:
            save(f"loso/{name}", loso_figures(trained(recipe, f"loso-{name}", LOSO)))
    if "official" in parts or "espeak" in parts:
        official = trained("spoken-digits-robust.yaml", "official-robust")
        save("official/robust", {"accuracy": official.metrics["test/accuracy"],
                                 "interval95": [official.metrics["test/accuracy_low"],
                                                official.metrics["test/accuracy_high"]],
                                 "fit_seconds": official.metrics["fit_seconds"]})
        if "espeak" in parts:
            if shutil.which("espeak-ng") is None:
                save("espeak/robust", {"skipped": "espeak-ng is not installed (apt-get install espeak-ng)"})
            else:
                save("espeak/robust", {"clean": espeak_accuracy(official, None),
                                       "noisy_10db": espeak_accuracy(official, 10.0)})
    print(f"-> {result_file}")


if __name__ == "__main__":
    sys.exit(main())
