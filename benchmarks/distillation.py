"""What a teacher teaches (issue 31), on runs that `text_classification.py` made:

    python benchmarks/distillation.py mistakes benchmarks/out/meli/distilled benchmarks/out/meli/cnn-12
    python benchmarks/distillation.py predict benchmarks/out/meli/cnn benchmarks/out/meli/cnn-use

`mistakes`: the training rows where the teacher's out-of-fold top class (the student's `teacher.npz`) is not the
label, and how often each run predicts the teacher's wrong class there. `predict`: raw test titles to
probabilities, each run in its own process with an empty sentence-vector cache (what a served model pays).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def mistakes(student: Path, others: list[Path]) -> None:
    from ensayo.data import load_splits
    from ensayo.runs import SavedRun

    with np.load(student / "teacher.npz", allow_pickle=False) as teacher:
        lines, classes = teacher["lines"], teacher["classes"]
        top, probabilities = teacher["top_classes"], teacher["top_probabilities"]
    runs = [SavedRun.load(path) for path in [student, *others]]
    train = load_splits(runs[0].recipe).train
    where = np.searchsorted(lines, train["__line__"].to_numpy())
    taught = classes[top[where, probabilities[where].argmax(axis=1)]]
    labels = np.array(train[runs[0].recipe.output.column].cast(str).to_list())
    wrong = taught != labels
    print(f"{len(labels):,} training rows; the teacher's out-of-fold top class is not the label on {wrong.sum():,} "
          f"({wrong.mean():.4f}); its mean top probability {probabilities.max(axis=1).mean():.3f}")
    rows = train.filter(wrong)
    for path, run in zip([student, *others], runs, strict=True):
        predicted = np.array(run.output.classes)[run.predict_proba(rows).argmax(axis=1)]
        print(f"{path}: on those rows, the teacher's wrong class {np.mean(predicted == taught[wrong]):.4f}, "
              f"the label {np.mean(predicted == labels[wrong]):.4f}")


def predict_child(run_dir: Path) -> None:
    from ensayo.data import load_splits
    from ensayo.runs import SavedRun

    run = SavedRun.load(run_dir)
    test = load_splits(run.recipe).test
    run.predict_proba(test.head(64))  # the model and its encoders loaded, a batch answered
    started = time.perf_counter()
    run.predict_proba(test)
    print(f"{run_dir}: {test.height:,} test titles in {time.perf_counter() - started:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["mistakes", "predict", "predict-child"])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    if args.what == "mistakes":
        mistakes(args.runs[0], args.runs[1:])
    elif args.what == "predict-child":
        predict_child(args.runs[0])
    else:
        for run in args.runs:
            with tempfile.TemporaryDirectory() as cache:
                subprocess.run([sys.executable, __file__, "predict-child", str(run)], check=True,
                               env={**os.environ, "ENSAYO_CACHE": cache})


if __name__ == "__main__":
    main()
