"""The demo CNN's training step before and after 7e753af, in one process (issue 30). This machine's speed moves by up
to a third between runs minutes apart, more than the change; here one epoch of the demo recipe runs as the trainer
runs it, its CNN forward switching between the code before (kept below as it was) and the code now every
`--block` steps, so that both see the same machine, batches and weights (the two give the same values and
gradients to the last bit). Prints the mean and median step time of each and what an epoch saves.

    ENSAYO_DATA=../shared/data python benchmarks/cnn_step.py                     # the 230,000-title set
    ENSAYO_DATA=../shared/data python benchmarks/cnn_step.py --source meli       # the demo's own data
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import ensayo
from ensayo.features.text import encoders
from ensayo.training import trainer as training

ROOT = Path(__file__).resolve().parents[1]
SCALED = ROOT / "benchmarks" / "out" / "scaling" / "titles-230000.csv"


def forward_before(self: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """CnnEncoder.forward's training path at 81acc42: unfold, autocast's casts, amax and its backward."""
    embedded, _ = self.embed(batch)
    lengths = batch["lengths"]
    shortfall = max(self.widths) - embedded.shape[1]
    if shortfall > 0:
        embedded = nn.functional.pad(embedded, (0, 0, 0, shortfall))
    embedded = self.dropout(embedded)
    pooled = []
    for width, conv in zip(self.widths, self.convs, strict=True):
        activations = conv(embedded.unfold(1, width, 1).flatten(2))
        positions = torch.arange(activations.shape[1], device=activations.device)
        valid = positions.unsqueeze(0) <= (lengths - width).clamp_min(0).unsqueeze(1)
        activations = activations * valid.unsqueeze(-1).to(activations.dtype)
        pooled.append(torch.relu(activations.amax(1)))
    return self.dropout(torch.cat(pooled, dim=-1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="scaled", help="scaled (benchmarks/out/scaling/titles-230000.csv, "
                        "made by scaling.py --sizes 230000) or meli (the recipe's own data)")
    parser.add_argument("--block", type=int, default=8, help="steps before switching")
    arguments = parser.parse_args()
    forward_now = encoders.CnnEncoder.forward
    times: dict[str, list[float]] = {"before": [], "now": []}
    clock: dict[str, Any] = {"steps": 0, "last": None, "side": "now"}
    original_loss = training.Trainer._loss

    def timed_loss(self: Any, batch: Any, labels: Any) -> Any:
        now = time.perf_counter()
        switching = clock["steps"] % arguments.block == 0
        if clock["last"] is not None and not switching:  # the step before a switch ran on one side only
            times[clock["side"]].append(now - clock["last"])
        if switching:
            clock["side"] = "before" if clock["side"] == "now" else "now"
            encoders.CnnEncoder.forward = forward_before if clock["side"] == "before" else forward_now
        clock["steps"] += 1
        clock["last"] = now
        return original_loss(self, batch, labels)

    overrides = ["train.epochs=1", "evaluate.bootstrap=0"]
    if arguments.source == "scaled":
        if not SCALED.exists():
            raise SystemExit(f"{SCALED} is missing: make it with `python benchmarks/scaling.py --sizes 230000`")
        overrides.append(f"data.source={SCALED}")
    training.Trainer._loss = timed_loss
    try:
        with tempfile.TemporaryDirectory() as scratch:
            ensayo.run(ROOT / "recipes" / "product-titles-cnn.yaml", output=Path(scratch) / "run",
                       overrides=overrides, track=False)
    finally:
        training.Trainer._loss, encoders.CnnEncoder.forward = original_loss, forward_now
    for side, seconds in times.items():
        print(f"{side:6s} {len(seconds)} steps: mean {statistics.mean(seconds) * 1000:.2f} ms, "
              f"median {statistics.median(seconds) * 1000:.2f} ms")
    before, after = statistics.mean(times["before"]), statistics.mean(times["now"])
    steps = clock["steps"]
    print(f"now / before {after / before:.3f}: an epoch of {steps} steps {before * steps:.1f} s before, "
          f"{after * steps:.1f} s now")


if __name__ == "__main__":
    main()
