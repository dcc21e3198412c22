"""Where a training step's time goes (issue 30): the demo recipe (or another) trained for one epoch with
torch's profiler on during the epoch only, as the trainer runs it. Prints a table of the step's parts (making
the batch, the forward pass, the backward pass, each optimizer, the rest: Python and the loop's own work)
and the operators that take the most time, each as a share of the epoch's wall time.

    ENSAYO_DATA=../shared/data python benchmarks/profile_training.py
    ENSAYO_DATA=../shared/data python benchmarks/profile_training.py --recipe spoken-digits-cnn train.precision=bf16

Writes benchmarks/out/profile_<recipe>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from instrument import WrappedSplit

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
TOP_OPERATORS = 15


def instrumented(parts: dict[str, float]) -> contextlib.AbstractContextManager:
    """Labels the trainer's batching and forward pass for the profiler (the backward pass and the optimizers
    are labelled by torch itself) and profiles each training epoch, adding its wall time to `parts`."""
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile

    from ensayo.training import trainer as module

    original_epoch, original_loss = module.Trainer._train_epoch, module.Trainer._loss
    profiles: list[Any] = []

    def batches(iterator: Iterator[Any]) -> Iterator[Any]:
        while True:
            with record_function("ensayo: make the batch"):
                item = next(iterator, None)
            if item is None:
                return
            yield item

    def epoch(self: Any, train: Any, steps: int, progress: Any) -> None:
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            started = time.perf_counter()
            original_epoch(self, WrappedSplit(train, batches), steps, progress)
            parts["epoch wall"] = parts.get("epoch wall", 0.0) + time.perf_counter() - started
        profiles.append(profiler)

    def loss(self: Any, batch: Any, labels: Any) -> Any:
        with record_function("ensayo: forward and loss"):
            return original_loss(self, batch, labels)

    @contextlib.contextmanager
    def patched() -> Iterator[list[Any]]:
        module.Trainer._train_epoch, module.Trainer._loss = epoch, loss
        try:
            yield profiles
        finally:
            module.Trainer._train_epoch, module.Trainer._loss = original_epoch, original_loss

    return patched()


def summarise(profiles: list[Any], wall: float) -> dict[str, Any]:
    """The step's parts and the top operators, in seconds and as shares of the epoch's wall time."""
    regions = {"ensayo: make the batch": "making the batch (collate, to tensors)",
               "ensayo: forward and loss": "forward pass and loss",
               "autograd::engine::evaluate_function": "backward pass"}
    totals: dict[str, float] = {}
    operators: dict[str, float] = {}
    for profiler in profiles:
        for event in profiler.key_averages():
            seconds = event.cpu_time_total / 1e6
            name = event.key
            if name in regions:
                totals[regions[name]] = totals.get(regions[name], 0.0) + seconds
            elif name.startswith("autograd::engine::evaluate_function"):
                totals["backward pass"] = totals.get("backward pass", 0.0) + seconds
            elif name.startswith("Optimizer.step#"):
                label = f"optimizer {name.split('#')[1].split('.')[0]}"
                totals[label] = totals.get(label, 0.0) + seconds
            elif name.startswith("Optimizer.zero_grad#"):
                totals["zero_grad"] = totals.get("zero_grad", 0.0) + seconds
            if not name.startswith(("ensayo:", "autograd::engine", "Optimizer.", "ProfilerStep")):
                operators[name] = operators.get(name, 0.0) + event.self_cpu_time_total / 1e6
    totals["the rest (Python, the loop, checks, progress)"] = max(wall - sum(totals.values()), 0.0)
    top = dict(sorted(operators.items(), key=lambda item: -item[1])[:TOP_OPERATORS])
    return {"epoch_seconds": wall, "parts": {k: {"seconds": v, "share": v / wall} for k, v in totals.items()},
            "operators_self": {k: {"seconds": v, "share": v / wall} for k, v in top.items()}}


def table(summary: dict[str, Any]) -> str:
    lines = [f"epoch: {summary['epoch_seconds']:.1f} s", "", "| part of the step | seconds | share |", "|---|---|---|"]
    lines += [f"| {k} | {v['seconds']:.1f} | {v['share']:.1%} |" for k, v in summary["parts"].items()]
    lines += ["", "| operator (self time) | seconds | share |", "|---|---|---|"]
    lines += [f"| `{k}` | {v['seconds']:.1f} | {v['share']:.1%} |" for k, v in summary["operators_self"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="product-titles-cnn")
    parser.add_argument("overrides", nargs="*", help="key.path=value, as `ensayo run` takes them")
    arguments = parser.parse_args()
    import ensayo

    parts: dict[str, float] = {}
    overrides = ["train.epochs=1", "evaluate.bootstrap=0", *arguments.overrides]
    with tempfile.TemporaryDirectory(prefix="ensayo-profile-") as scratch, instrumented(parts) as profiles:
        run = ensayo.run(ROOT / "recipes" / f"{arguments.recipe}.yaml", output=Path(scratch) / "run",
                         overrides=overrides, track=False)
    summary = summarise(profiles, parts["epoch wall"]) | {
        "recipe": arguments.recipe, "overrides": overrides,
        "test/balanced_accuracy": run.metrics.get("test/balanced_accuracy"),
        "preprocess_seconds": run.metrics.get("preprocess_seconds")}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"profile_{arguments.recipe}.json").write_text(json.dumps(summary, indent=2))
    print(table(summary))


if __name__ == "__main__":
    main()
