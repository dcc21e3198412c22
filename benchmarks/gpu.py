"""The demo recipe, spoken digits and the char Transformer on one GPU, fp32 against bf16 (issue 30): seconds per
training epoch, examples per second, peak GPU memory, and the share of each step spent waiting on data (the time
the training loop waits for its next batch, over the epoch's time).

    ENSAYO_DATA=../shared/data python benchmarks/gpu.py                  # on a machine with a CUDA GPU
    ENSAYO_DATA=../shared/data python benchmarks/gpu.py --recipes product-titles-cnn --precisions bf16
    python benchmarks/gpu.py --smoke                                     # the same measurement, on the CPU,
                                                                         # on tiny made-up data (the tests run it)

Each recipe trains for `--epochs` epochs (1 by default) at each precision, in this process, one after another;
the table goes to stdout and to benchmarks/out/gpu.json (gpu-smoke.json for --smoke), or `--output`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from instrument import WrappedSplit

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
RECIPES = ("product-titles-cnn", "spoken-digits-cnn", "news-char-transformer")


@contextlib.contextmanager
def timed_epochs(device: Any) -> Iterator[dict[str, float]]:
    """Each training epoch's wall time and the time its loop spent waiting for batches, summed, while inside."""
    import torch

    from ensayo.training import trainer as module

    original = module.Trainer._train_epoch
    totals = {"epochs": 0, "epoch_seconds": 0.0, "wait_seconds": 0.0}

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def waited(iterator: Iterator[Any]) -> Iterator[Any]:
        while True:
            started = time.perf_counter()
            item = next(iterator, None)
            totals["wait_seconds"] += time.perf_counter() - started
            if item is None:
                return
            yield item

    def epoch(self: Any, train: Any, steps: int, progress: Any) -> None:
        synchronize()
        started = time.perf_counter()
        original(self, WrappedSplit(train, waited), steps, progress)
        synchronize()
        totals["epoch_seconds"] += time.perf_counter() - started
        totals["epochs"] += 1

    module.Trainer._train_epoch = epoch
    try:
        yield totals
    finally:
        module.Trainer._train_epoch = original


def measure(recipe: Path | dict, overrides: list[str], device_name: str) -> dict[str, Any]:
    """One run of `recipe` on `device_name`: its epochs' cost and its test figure."""
    import torch

    import ensayo
    from ensayo.training import pick_device

    device = pick_device(device_name)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory(prefix="ensayo-gpu-") as scratch, timed_epochs(device) as totals:
        saved = ensayo.run(recipe, output=Path(scratch) / "run", overrides=[f"train.device={device_name}",
                                                                           *overrides], track=False)
        train_rows = json.loads((saved.path / "data_report.json").read_text())["split_sizes"]["train"]
        metrics = dict(saved.metrics)  # read before the scratch folder goes
    epochs = max(totals["epochs"], 1)
    figure = next(k for k in ("test/balanced_accuracy", "test/bits_per_char") if k in metrics)
    return {"device": str(device), "epochs": totals["epochs"],
            "seconds_per_epoch": totals["epoch_seconds"] / epochs,
            # a language model's rows are windows of text; its examples per second count those windows
            "examples_per_second": train_rows * epochs / max(totals["epoch_seconds"], 1e-9),
            "data_wait_share": totals["wait_seconds"] / max(totals["epoch_seconds"], 1e-9),
            "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
            "figure": figure, "value": metrics[figure]}


# ---------------------------------------------------------------------------------------- smoke data
WORDS = ["rojo", "azul", "verde", "negro", "blanco", "grande", "chico", "nuevo", "usado", "caja", "funda", "cable",
         "mesa", "silla", "lampara", "zapato", "remera", "pantalon", "taza", "vaso"]


def smoke_recipes(folder: Path) -> dict[str, tuple[Path, list[str]]]:
    """Tiny made-up data for the demo recipe and the char Transformer, with overrides that make them small."""
    rng = random.Random(0)
    titles = folder / "titles.csv"
    with titles.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["title", "label_quality", "language", "category"])
        for label in range(4):
            for _ in range(40):
                words = [WORDS[(label * 5 + rng.randrange(5)) % len(WORDS)] for _ in range(3)] + rng.sample(WORDS, 2)
                writer.writerow([" ".join(words), "reliable", "spanish", f"CLASS_{label}"])
    news = folder / "news.csv"
    with news.open("w", newline="") as handle:
        writer = csv.writer(handle)
        for _ in range(120):
            writer.writerow([1, " ".join(rng.sample(WORDS, 4)), " ".join(rng.choices(WORDS, k=12))])
    small = ["train.epochs=1", "evaluate.bootstrap=0"]
    return {
        "product-titles-cnn": (titles, [f"data.source={titles}", "model.encoders.title.embedding_dim=16",
                                        "model.encoders.title.filters_count=16", "train.batch_size=32", *small]),
        "news-char-transformer": (news, [f"data.source={news}", "model.language_model.dim=32",
                                         "model.language_model.ngram_buckets=1024", *small]),
    }


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    rows = ["| recipe | precision | device | s / epoch | examples / s | peak GPU MB | waiting on data | test figure |"
            " value |", "|" + "---|" * 9]
    for recipe, by_precision in results.items():
        for precision, r in by_precision.items():
            memory = f"{r['peak_gpu_mb']:,.0f}" if r["peak_gpu_mb"] is not None else "-"
            rows.append(f"| {recipe} | {precision} | {r['device']} | {r['seconds_per_epoch']:.2f} | "
                        f"{r['examples_per_second']:,.0f} | {memory} | {r['data_wait_share']:.1%} | {r['figure']} | "
                        f"{r['value']:.4f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="on the CPU, on tiny made-up data")
    parser.add_argument("--output", type=Path, default=None, help="JSON to write (default: benchmarks/out/gpu.json, "
                                                                  "or gpu-smoke.json)")
    arguments = parser.parse_args(argv)
    from ensayo.training.trainer import has_bf16, pick_device

    device = "cpu" if arguments.smoke else "cuda"
    precisions = arguments.precisions.split(",")
    if arguments.smoke and not has_bf16(pick_device("cpu")):
        precisions = [p for p in precisions if p != "bf16"]  # this CPU would emulate it
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="ensayo-gpu-data-") as folder:
        chosen = smoke_recipes(Path(folder)) if arguments.smoke else {
            name: (ROOT / "recipes" / f"{name}.yaml", [f"train.epochs={arguments.epochs}"])
            for name in arguments.recipes.split(",")}
        for name, (_, overrides) in chosen.items():
            recipe = ROOT / "recipes" / f"{name}.yaml"
            for precision in precisions:
                results.setdefault(name, {})[precision] = measure(recipe, [*overrides, f"train.precision={precision}"],
                                                                  device)
                print(f"{name} {precision}: {json.dumps(results[name][precision])}", file=sys.stderr, flush=True)
    print(table(results))
    output = arguments.output or OUT / ("gpu-smoke.json" if arguments.smoke else "gpu.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
