"""Text classification benchmark: ensayo's bundled recipes for a data set (tfidf_linear, bag, cnn, rnn
and, on MeLi, TF-IDF with sentence vectors, the ensemble, and the CNN distilled from a cross-validated
teacher) against fastText supervised (word bigrams and character subwords, as practitioners use it), on
the same split of a real data set. Prints one table: test balanced accuracy, fit seconds (training
only), run seconds (the whole recipe: reading, pretrained encoders with an empty cache, training,
scoring), predict seconds, peak memory, and each as a ratio to fastText measured in the same run.

    python benchmarks/text_classification.py --dataset meli
    python benchmarks/text_classification.py --dataset ag_news --models cnn,fasttext
    python benchmarks/text_classification.py --dataset meli --models cnn,cnn-bf16,fasttext   # with a variant
    python benchmarks/text_classification.py --dataset meli --models teacher,distilled,cnn,fasttext

`teacher` (product-titles-teacher.yaml) is cross-validated: its row's accuracy is its fold average's on the
held-out test rows (the same rows as every other model's test), its fit the folds' fits added up.
`distilled` learns from the teacher run in benchmarks/out/meli/teacher (made by `teacher`, in this
invocation or an earlier one; --teacher names another); without `teacher` in --models, the teacher's row is
read from its run (its accuracy and fit; the rest is not measured again).

Every model runs in its own process, so that its peak memory (max RSS) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peers import fasttext_labels, fasttext_lines, fasttext_predicted, train_fasttext

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"

MODELS = {
    "meli": {name: f"product-titles-{name}.yaml"
             for name in ("tfidf", "tfidf-use", "bag", "cnn", "cnn-use", "rnn", "ensemble", "teacher", "distilled")},
    "ag_news": {name: f"news-topics-{name}.yaml"
                for name in ("tfidf", "tfidf-minilm", "bag", "cnn", "rnn", "ensemble")},
}
# a bundled recipe with overrides, measured beside it when asked for by name (`--models cnn,cnn-fp32,fasttext`)
VARIANTS = {"cnn-fp32": ("cnn", ["train.precision=fp32"]), "cnn-bf16": ("cnn", ["train.precision=bf16"]),
            "cnn-12": ("cnn", ["train.epochs=12", "train.early_stopping=3"])}  # the distilled CNN without teacher


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------ child processes
def child_ensayo(recipe: str, output: Path, overrides: list[str]) -> dict:
    """One recipe, timed whole (`run_seconds`: reading, preprocessing, pretrained encoders, training,
    scoring) besides its `fit_seconds`; sentence vectors are computed afresh, never read from a cache."""
    import shutil

    import ensayo

    shutil.rmtree(output, ignore_errors=True)  # an ensemble would reuse the members it finds there
    with tempfile.TemporaryDirectory() as cache:
        os.environ["ENSAYO_CACHE"] = cache
        started = time.perf_counter()
        saved = ensayo.run(ROOT / "recipes" / recipe, output=output, overrides=overrides, track=False)
        run_seconds = time.perf_counter() - started
    metrics = saved.metrics
    test = "held_out" if "held_out/balanced_accuracy" in metrics else "test"  # a teacher: its held-out test rows
    return {"balanced_accuracy": metrics[f"{test}/balanced_accuracy"], "accuracy": metrics[f"{test}/accuracy"],
            "fit_seconds": metrics["fit_seconds"], "run_seconds": run_seconds,
            "predict_seconds": metrics.get("test/predict_seconds", float("nan")), "peak_mb": peak_mb()}


def child_fasttext(recipe: str, epochs: int) -> dict:
    """fastText on the very rows of the ensayo recipe's train and test splits, with its normalization."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    from ensayo.data import load_splits
    from ensayo.models import load_recipe

    began = time.perf_counter()
    spec = load_recipe(ROOT / "recipes" / recipe, ["data.split.validation=0.0", "data.split.train=0.8"])
    splits = load_splits(spec)
    model, fit_seconds = train_fasttext(spec, splits.train, epochs)
    texts = fasttext_lines(spec, splits.test)
    started = time.perf_counter()
    predicted = fasttext_predicted(model, texts)
    predict_seconds = time.perf_counter() - started
    true = fasttext_labels(spec, splits.test)
    return {"balanced_accuracy": balanced_accuracy_score(true, predicted), "accuracy": accuracy_score(true, predicted),
            "fit_seconds": fit_seconds, "run_seconds": time.perf_counter() - began,
            "predict_seconds": predict_seconds, "peak_mb": peak_mb()}


def teacher_row(run: Path) -> dict:
    """A teacher made earlier: its fold average's accuracy on the held-out test rows and its folds' fits."""
    metrics = json.loads((run / "metrics.json").read_text())
    return {"balanced_accuracy": metrics["held_out/balanced_accuracy"], "accuracy": metrics["held_out/accuracy"],
            "fit_seconds": metrics["fit_seconds"], "predict_seconds": float("nan"), "peak_mb": float("nan"),
            "reused": str(run)}


def run_child(args: list[str]) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if result.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ main
def table(results: dict[str, dict]) -> str:
    peer = results.get("fasttext")
    header = "| model | test balanced acc. | fit s | run s | predict s | peak MB | acc. / fastText | " \
             "fit / fastText | predict / fastText | memory / fastText |"
    rows = [header, "|" + "---|" * 10]
    for name, r in results.items():
        ratios = ["-"] * 4
        if peer:
            ratios = [f"{r['balanced_accuracy'] / peer['balanced_accuracy']:.3f}",
                      f"{r['fit_seconds'] / peer['fit_seconds']:.2f}",
                      f"{r['predict_seconds'] / peer['predict_seconds']:.2f}",
                      f"{r['peak_mb'] / peer['peak_mb']:.2f}"]
        whole = f"{r['run_seconds']:.0f}" if "run_seconds" in r else "-"  # rows measured before it was kept
        rows.append(f"| {name} | {r['balanced_accuracy']:.4f} | {r['fit_seconds']:.1f} | {whole} "
                    f"| {r['predict_seconds']:.2f} | {r['peak_mb']:.0f} | " + " | ".join(ratios) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(MODELS), default="meli")
    parser.add_argument("--models", default=None, help="comma-separated; default: every model of the data set")
    parser.add_argument("--fasttext-epochs", type=int, default=25)
    parser.add_argument("--teacher", type=Path, default=None,
                        help="the run `distilled` learns from (default: benchmarks/out/<dataset>/teacher)")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child is not None:
        kind, *rest = args.child
        if kind == "fasttext":
            print(json.dumps(child_fasttext(rest[0], int(rest[1]))))
        else:
            recipe, output, *overrides = rest
            print(json.dumps(child_ensayo(recipe, Path(output), overrides)))
        return

    saved = OUT / f"text_classification_{args.dataset}.json"
    # models not asked for this time keep their last measured row (a rerun of one model keeps the table whole)
    results: dict[str, dict] = json.loads(saved.read_text()) if saved.is_file() else {}
    cnn_recipe = MODELS[args.dataset]["cnn"]
    every = [*MODELS[args.dataset], *VARIANTS, "fasttext"]  # also the table's row order
    asked = args.models.split(",") if args.models else every
    for name in asked:
        print(f"[{args.dataset}] {name} ...", file=sys.stderr, flush=True)
        if name == "fasttext":
            results[name] = run_child(["fasttext", cnn_recipe, str(args.fasttext_epochs)])
        else:
            base, overrides = VARIANTS.get(name, (name, []))
            if name == "distilled":
                overrides = [*overrides, f"train.teacher.run={args.teacher or OUT / args.dataset / 'teacher'}"]
            output = OUT / args.dataset / name
            results[name] = run_child(["ensayo", MODELS[args.dataset][base], str(output), *overrides])
        print(f"  {results[name]}", file=sys.stderr, flush=True)
        if name == "distilled" and "teacher" not in asked:
            results["teacher"] = teacher_row(args.teacher or OUT / args.dataset / "teacher")
    OUT.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(results, indent=2))
    print(f"\n{args.dataset}: same seeded stratified split, test rows identical for every model\n")
    print(table(dict(sorted(results.items(), key=lambda kv: every.index(kv[0]) if kv[0] in every else 99))))


if __name__ == "__main__":
    main()
