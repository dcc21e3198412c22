"""Spoken digits benchmark (seed 004, part 1): the three FSDD recipes on the official split, the CNN on a
speaker-independent split, and the trained CNN on clips spoken by espeak-ng, a synthetic voice recorded
at another sample rate and level than FSDD (the seed's authors could not make their own recordings work).

    python benchmarks/spoken_digits.py                    # everything
    python benchmarks/spoken_digits.py --only cnn,espeak  # a part

Needs `espeak-ng` (Debian package) for the own-recording part. Writes benchmarks/out/spoken_digits.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOICES = ["en-us", "en", "en-us+f3", "en+m3", "en-us+f4", "en+m7"]
SPEAKER_SPLIT = ["data.split.method=group", "data.split.group_column=speaker", "data.split.train=0.68",
                 "data.split.validation=0.16", "data.split.test=0.16"]


def train(recipe: str, output: Path, overrides: list[str] | None = None) -> dict:
    import ensayo
    from ensayo.data import load_splits

    saved = ensayo.run(ROOT / "recipes" / recipe, output=output, overrides=overrides or [], track=False)
    metrics = saved.metrics
    test = load_splits(saved.recipe).test
    return {"accuracy": metrics["test/accuracy"], "macro_f1": metrics["test/macro_f1"],
            "test_clips": test.height, "errors": round((1 - metrics["test/accuracy"]) * test.height),
            "test_speakers": sorted(set(test["speaker"].to_list())), "fit_seconds": metrics["fit_seconds"],
            "run": str(output)}


def espeak_clips(folder: Path) -> list[tuple[Path, str]]:
    """Every digit in several voices and speeds, at espeak's 22,050 Hz, at three levels (-6, -20 and
    -35 dBFS peaks), with a second of silence around: nothing like FSDD's 8 kHz close-mic takes."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    rng = np.random.default_rng(0)
    for voice in VOICES:
        for speed in (120, 170):
            for digit, word in enumerate(WORDS):
                raw = folder / f"raw_{voice}_{speed}_{digit}.wav"
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), word], check=True)
                samples, rate = sf.read(raw, dtype="float32")
                raw.unlink()
                peak_db = rng.choice([-6.0, -20.0, -35.0])
                samples = samples / max(np.abs(samples).max(), 1e-6) * 10 ** (peak_db / 20)
                samples = np.r_[np.zeros(rate // 2), samples, np.zeros(rate // 2)].astype(np.float32)
                path = folder / f"{voice}_{speed}_{int(-peak_db)}db_{digit}.wav"
                sf.write(path, samples, rate)
                clips.append((path, str(digit)))
    return clips


def own_recordings(run_dir: Path, work: Path) -> dict:
    from ensayo.runs import SavedRun, predict_rows

    if shutil.which("espeak-ng") is None:
        return {"skipped": "espeak-ng is not installed (apt-get install espeak-ng)"}
    clips = espeak_clips(work / "espeak")
    truth = {path.name: digit for path, digit in clips}
    names, probabilities, _, bad = predict_rows(SavedRun.load(run_dir), work / "espeak")
    classes = SavedRun.load(run_dir).output.classes
    predicted = {name: classes[int(row.argmax())] for name, row in zip(names, probabilities, strict=True)}
    right = [predicted[name] == truth[name] for name in names]
    by_voice = {voice: float(np.mean([r for n, r in zip(names, right, strict=True) if n.startswith(voice + "_")]))
                for voice in VOICES}
    wrong = sorted(f"{n}->{predicted[n]}" for n, r in zip(names, right, strict=True) if not r)
    return {"clips": len(names), "accuracy": float(np.mean(right)), "by_voice": by_voice, "bad_files": bad,
            "wrong": wrong}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="cnn,rnn,cnn-rnn,speakers,espeak")
    args = parser.parse_args()
    parts = args.only.split(",")
    OUT.mkdir(parents=True, exist_ok=True)
    result_file = OUT / "spoken_digits.json"
    results = json.loads(result_file.read_text()) if result_file.is_file() else {}
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        for name in ("cnn", "rnn", "cnn-rnn"):
            if name in parts or (name == "cnn" and "espeak" in parts):
                results[f"official/{name}"] = train(f"spoken-digits-{name}.yaml", work / name)
                print(name, results[f"official/{name}"], flush=True)
        if "speakers" in parts:
            results["speakers/cnn"] = train("spoken-digits-cnn.yaml", work / "speakers", SPEAKER_SPLIT)
            print("speakers", results["speakers/cnn"], flush=True)
        if "espeak" in parts:
            results["espeak/cnn"] = own_recordings(work / "cnn", work)
            print("espeak", json.dumps(results["espeak/cnn"], indent=1), flush=True)
    for value in results.values():
        value.pop("run", None)
    result_file.write_text(json.dumps(results, indent=2) + "\n")
    print(f"-> {result_file}")


if __name__ == "__main__":
    sys.exit(main())
