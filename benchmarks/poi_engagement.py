"""POI engagement benchmark (seed 002): the five POI recipes on the same grouped split (seed 42), each
trained with five seeds; mean and standard deviation of test accuracy and balanced accuracy, and fit time.

    python benchmarks/poi_engagement.py
    python benchmarks/poi_engagement.py --only metadata-only,pretrained --seeds 0,1,2,3,4

Writes benchmarks/out/poi_engagement.json (merged with earlier runs of other recipes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
RECIPES = ["metadata-only", "photo-stats", "image-only", "cnn", "pretrained"]
RESULT_FILE = OUT / "poi_engagement.json"


def read_results() -> dict:
    """Read afresh each time: another process of this script may have added a recipe meanwhile."""
    return json.loads(RESULT_FILE.read_text()) if RESULT_FILE.is_file() else {}


def main() -> None:
    import ensayo

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(RECIPES))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as temporary:
        for name in args.only.split(","):
            runs = []
            for seed in seeds:
                run = ensayo.run(ROOT / "recipes" / f"poi-engagement-{name}.yaml",
                                 output=Path(temporary) / f"{name}-{seed}", overrides=[f"train.seed={seed}"],
                                 track=False)
                metrics = run.metrics
                runs.append({"seed": seed, "accuracy": metrics["test/accuracy"],
                             "balanced_accuracy": metrics["test/balanced_accuracy"],
                             "validation_accuracy": metrics["val/accuracy"],
                             "loss": metrics["test/loss"], "validation_loss": metrics["val/loss"],
                             "fit_seconds": metrics["fit_seconds"], "best_epoch": metrics["best_epoch"]})
                print(name, runs[-1], flush=True)
            summary = {}
            for key in ("accuracy", "balanced_accuracy", "validation_accuracy", "loss", "validation_loss",
                        "fit_seconds"):
                values = [r[key] for r in runs]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                summary[key] = {"mean": statistics.mean(values), "std": spread}
            results = read_results()
            results[name] = {"runs": runs, **summary}
            RESULT_FILE.write_text(json.dumps(results, indent=2) + "\n")
    print("| recipe | test accuracy | test balanced accuracy | validation accuracy | fit s (mean) |\n"
          "|---|---|---|---|---|")
    for name, value in read_results().items():
        validation = value.get("validation_accuracy", {"mean": float("nan"), "std": float("nan")})  # older rows
        print(f"| {name} | {value['accuracy']['mean']:.3f} ± {value['accuracy']['std']:.3f} | "
              f"{value['balanced_accuracy']['mean']:.3f} ± {value['balanced_accuracy']['std']:.3f} | "
              f"{validation['mean']:.3f} ± {validation['std']:.3f} | {value['fit_seconds']['mean']:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
