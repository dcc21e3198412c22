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
        # the gathered rows' working tensors, kept between steps: fresh ones of 7 MB each step cost page faults
        # (not in the state: a checkpoint holds the moments only)
        self._scratch: dict[tuple[torch.device, torch.dtype, int], torch.Tensor] = {}

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if not param.grad.is_sparse:
                    raise RuntimeError("RowAdam updates embedding tables with sparse gradients (sparse=True)")
                rows, values = _distinct_rows(param.grad)
                if values.numel() == 0:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["step"] += 1
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                mean, square, squared_grad = self._working_rows(values)
                torch.index_select(exp_avg, 0, rows, out=mean).lerp_(values, 1 - beta1)
                torch.index_select(exp_avg_sq, 0, rows, out=square).lerp_(
                    torch.mul(values, values, out=squared_grad), 1 - beta2)
                _as_wide_elements(exp_avg).index_copy_(0, rows, _as_wide_elements(mean))
                _as_wide_elements(exp_avg_sq).index_copy_(0, rows, _as_wide_elements(square))
                step = state["step"]
                step_size = group["lr"] * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
                # index_add_ with an alpha is slower than a product first (1.6 s against under 0.4 s, 165,600 titles)
                param.index_add_(0, rows, mean.div_(square.sqrt_().add_(group["eps"])).mul_(-step_size))

    def _working_rows(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Three tensors shaped as the gradient's rows, from a buffer that grows by half when a batch uses more."""
        count, width = values.shape[0], values[0].numel()
        key = (values.device, values.dtype, width)
        buffer = self._scratch.get(key)
        if buffer is None or buffer.shape[1] < count:
            buffer = self._scratch[key] = values.new_empty(3, count * 3 // 2 + 1, width)
        return tuple(buffer[i, :count].view(values.shape) for i in range(3))  # type: ignore[return-value]


def _as_wide_elements(table: torch.Tensor) -> torch.Tensor:
    """The same memory as rows of 16-byte elements where it can be: torch's CPU `index_copy_` looks its index up
    for every element, so rows of 128 floats move 2-4x faster as 32 complex128 (copied as bits, never computed
    on). Rows that are not whole, aligned 16-byte elements (a table read from a file may start anywhere), and
    every other device, as they are."""
    wide = 16
    size = table.element_size()
    if (table.device.type != "cpu" or table.dim() != 2 or table.stride(1) != 1 or size >= wide
            or table.shape[1] * size % wide or table.stride(0) * size % wide or table.data_ptr() % wide):
        return table
    return table.view(torch.complex128)


def _distinct_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A sparse gradient's rows and their values, one row of gradient per table row (the update is not linear).
    Rows already increasing, as a table looked up once per batch gives them, are taken as they are: coalescing
    would sort them again (18 ms for 51,000 rows of 128 here)."""
    rows = grad._indices()[0]
    if not grad.is_coalesced() and not bool((rows[1:] > rows[:-1]).all()):
        grad = grad.coalesce()
        rows = grad._indices()[0]
    return rows, grad._values()
