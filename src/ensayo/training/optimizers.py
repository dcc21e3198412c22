"""Adam for embedding tables with sparse gradients, computed on the rows a batch uses."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


class RowAdam(torch.optim.Optimizer):
    """torch's SparseAdam, the same arithmetic (moments and weights move only on the rows a batch uses; the bias
    correction counts every step), done with a gather, a few dense operations on those rows and a scatter per
    table. SparseAdam reads and writes the moments through sparse masks and sparse additions: on a CPU its step
    cost more than the whole forward pass of the demo CNN. Its state has SparseAdam's names, so that checkpoints
    of either load into the other."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "maximize": False})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if not param.grad.is_sparse:
                    raise RuntimeError("RowAdam updates embedding tables with sparse gradients (sparse=True)")
                grad = param.grad.coalesce()  # the update is not linear: one row of gradient per table row
                rows, values = grad._indices()[0], grad._values()
                if values.numel() == 0:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["step"] += 1
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                old_mean = exp_avg.index_select(0, rows)
                mean = values.sub(old_mean).mul_(1 - beta1).add_(old_mean)
                old_square = exp_avg_sq.index_select(0, rows)
                square = values.pow(2).sub_(old_square).mul_(1 - beta2).add_(old_square)
                exp_avg.index_copy_(0, rows, mean)
                exp_avg_sq.index_copy_(0, rows, square)
                step = state["step"]
                step_size = group["lr"] * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
                param.index_add_(0, rows, mean.div_(square.sqrt_().add_(group["eps"])).mul_(-step_size))
