"""A change to the training step, before and after, in one process (issue 30). This machine's speed moves by up to
a third between runs minutes apart, more than a change of a few percent; here a recipe trains as the trainer runs
it (the demo's changes: one epoch; spoken digits': the recipe), switching between the code before a change (kept
below as it was) and the code now every `--block` steps, so that both see the same machine, batches and weights
(each change gives the same values and gradients to the last bit). Prints the mean and median step time of each
and what the run saves.

    ENSAYO_DATA=../shared/data python benchmarks/step_before_after.py --change cnn        # 7e753af: the CNN's step
    ENSAYO_DATA=../shared/data python benchmarks/step_before_after.py --change sparse     # the sparse tables' step
    ENSAYO_DATA=../shared/data python benchmarks/step_before_after.py --source meli       # the demo's own data
    ENSAYO_DATA=../shared/data python benchmarks/step_before_after.py --change pool-relu  # spoken digits' blocks
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import ensayo
from ensayo.features.text import encoders
from ensayo.training import optimizers
from ensayo.training import trainer as training

ROOT = Path(__file__).resolve().parents[1]
SCALED = ROOT / "benchmarks" / "out" / "scaling" / "titles-230000.csv"


def cnn_forward_before(self: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
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


@torch.no_grad()
def row_adam_step_before(self: Any, closure: None = None) -> None:
    """RowAdam.step at 4e9d05f: fresh working rows every step, rows of floats scattered one float at a time."""
    for group in self.param_groups:
        beta1, beta2 = group["betas"]
        for param in group["params"]:
            if param.grad is None:
                continue
            rows, values = optimizers._distinct_rows(param.grad)
            if values.numel() == 0:
                continue
            state = self.state[param]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(param)
                state["exp_avg_sq"] = torch.zeros_like(param)
            state["step"] += 1
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            mean = exp_avg.index_select(0, rows).lerp_(values, 1 - beta1)
            square = exp_avg_sq.index_select(0, rows).lerp_(values.square(), 1 - beta2)
            exp_avg.index_copy_(0, rows, mean)
            exp_avg_sq.index_copy_(0, rows, square)
            step = state["step"]
            step_size = group["lr"] * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
            param.index_add_(0, rows, mean.div_(square.sqrt_().add_(group["eps"])).mul_(-step_size))


def bag_sums_before(self: Any, sub_ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """TokenEmbedding._learnt_bag_sums at 4e9d05f: the rows looked up with a padding filter."""
    used, places = torch.unique(sub_ids, return_inverse=True)
    rows = nn.functional.embedding(used, self.subwords.weight, padding_idx=0, sparse=True)
    return nn.functional.embedding_bag(places, rows, offsets, mode="sum")


def windows_backward_before(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
    """_TrainingWindows.backward at 4e9d05f: every shift added onto zeros."""
    width = ctx.width
    batch, positions, flat = grad.shape
    per_shift = grad.view(batch, positions, flat // width, width)
    embedded_grad = grad.new_zeros(batch, positions + width - 1, flat // width, dtype=ctx.embedded_dtype)
    for shift in reversed(range(width)):
        embedded_grad[:, shift: shift + positions].add_(per_shift[..., shift])
    return embedded_grad, None, None


def pool_after_relu(model: nn.Module, before: bool) -> None:
    """The convolution blocks' order before this change (ReLU, then max pooling) or now (pooling, then ReLU): the
    same modules and weights, the two last of each block swapped."""
    wanted = (nn.ReLU, nn.MaxPool2d) if before else (nn.MaxPool2d, nn.ReLU)
    for block in model.modules():
        if isinstance(block, nn.Sequential) and len(block) >= 2:
            last_two = (block[-2], block[-1])
            if (type(last_two[1]), type(last_two[0])) == wanted:
                block[-2], block[-1] = last_two[1], last_two[0]


@dataclass
class Change:
    """A change to the training step: the recipe it is timed on, the (owner, attribute) pairs it replaced with the
    code before, and what else puts the model back as it was (`arrange(model, before)`)."""

    recipe: str
    patches: dict[tuple[Any, str], Any] = field(default_factory=dict)
    arrange: Callable[[nn.Module, bool], None] | None = None


DEMO = "product-titles-cnn"
CHANGES = {
    "cnn": Change(DEMO, {(encoders.CnnEncoder, "forward"): cnn_forward_before}),
    "sparse": Change(DEMO, {(optimizers.RowAdam, "step"): row_adam_step_before,
                            (encoders.TokenEmbedding, "_learnt_bag_sums"): bag_sums_before,
                            (encoders._TrainingWindows, "backward"): staticmethod(windows_backward_before)}),
    "pool-relu": Change("spoken-digits-cnn", arrange=pool_after_relu),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="scaled", help="for the demo's changes: scaled "
                        "(benchmarks/out/scaling/titles-230000.csv, made by scaling.py --sizes 230000) or meli (the "
                        "recipe's own data)")
    parser.add_argument("--change", choices=sorted(CHANGES), default="sparse")
    parser.add_argument("--block", type=int, default=8, help="steps before switching")
    arguments = parser.parse_args()
    change = CHANGES[arguments.change]
    code_now = {place: vars(place[0])[place[1]] for place in change.patches}
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
            before = clock["side"] == "before"
            for (owner, name), code in (change.patches if before else code_now).items():
                setattr(owner, name, code)
            if change.arrange is not None:
                change.arrange(self.model, before)
        clock["steps"] += 1
        clock["last"] = now
        return original_loss(self, batch, labels)

    overrides = ["train.epochs=1", "evaluate.bootstrap=0"] if change.recipe == DEMO else ["evaluate.bootstrap=0"]
    if change.recipe == DEMO and arguments.source == "scaled":
        if not SCALED.exists():
            raise SystemExit(f"{SCALED} is missing: make it with `python benchmarks/scaling.py --sizes 230000`")
        overrides.append(f"data.source={SCALED}")
    training.Trainer._loss = timed_loss
    try:
        with tempfile.TemporaryDirectory() as scratch:
            ensayo.run(ROOT / "recipes" / f"{change.recipe}.yaml", output=Path(scratch) / "run",
                       overrides=overrides, track=False)
    finally:
        training.Trainer._loss = original_loss
        for (owner, name), code in code_now.items():
            setattr(owner, name, code)
    for side, seconds in times.items():
        print(f"{side:6s} {len(seconds)} steps: mean {statistics.mean(seconds) * 1000:.2f} ms, "
              f"median {statistics.median(seconds) * 1000:.2f} ms")
    before, after = statistics.mean(times["before"]), statistics.mean(times["now"])
    steps = clock["steps"]
    print(f"now / before {after / before:.3f}: {steps} steps {before * steps:.1f} s before, {after * steps:.1f} s now")


if __name__ == "__main__":
    main()
