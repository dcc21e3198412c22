"""A language model's scores (loss, perplexity, bits per character) and how it picks the next token."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ensayo.models.language.networks import scored_stride
from ensayo.outputs.text import TokenWindows
from ensayo.training import distributed


@torch.no_grad()
def language_metrics(model: nn.Module, windows: TokenWindows, batch_size: int, prefix: str = "",
                     stride: int | None = None) -> dict[str, float]:
    """Cross-entropy per token (nats), perplexity and bits per character of a split.

    Windows start every `stride` tokens (default: a quarter of the context) and only their last `stride`
    predictions are scored (all of the first window's), so that every scored token, but the first few,
    has at least `context - stride` tokens before it: cut-off windows would charge the model for
    contexts it never lacks when it generates. In a distributed run each rank scores a share of the windows
    and the sums are added across ranks."""
    model.eval()
    device = next(model.parameters()).device
    context = windows.context
    stride = min(stride or scored_stride(context), context)
    starts = np.arange(0, max(len(windows.stream) - context - 1, -1) + 1, stride)
    starts = starts[distributed.row_share(len(starts))]
    scored = torch.arange(context) >= context - stride
    total, tokens = 0.0, 0
    for first in range(0, len(starts), batch_size):
        chunk = torch.from_numpy(starts[first: first + batch_size])
        window = windows.stream[chunk[:, None] + torch.arange(context + 1)].to(device)
        losses = F.cross_entropy(model({"tokens": window[:, :-1]}).float(), window[:, 1:].reshape(-1),
                                 reduction="none").view(len(chunk), context).cpu()
        mask = scored.expand(len(chunk), context).clone()
        mask[chunk == 0] = True
        total += float(losses[mask].sum())
        tokens += int(mask.sum())
    model.train()
    total, tokens = distributed.sum_over_ranks([total, float(tokens)], device)
    if tokens == 0:
        return {}
    # the scored tokens are this share of the stream; the characters counted (and the <unk> words spelt)
    # are the same share of the text's
    share = tokens / len(windows.stream)
    characters = windows.characters * share
    spelling = windows.spelling_bits * share / characters
    loss = total / tokens
    return {f"{prefix}loss": loss, f"{prefix}perplexity": math.exp(min(loss, 50.0)),
            f"{prefix}bits_per_char": total / math.log(2) / characters + spelling,
            f"{prefix}spelling_bits_per_char": spelling,
            f"{prefix}unknown_share": float((windows.stream == 0).float().mean())}


def picker(temperature: float, top_k: int | None, top_p: float | None, generator: torch.Generator) -> Any:
    """A function from next-token logits to a sampled token id (greedy at temperature 0); <unk> (id 0) is
    never written.

    It draws as `torch.multinomial(probabilities, 1)` does (the index of the largest probability over Exp(1)
    noise, one draw per vocabulary entry from `generator`), so a seed writes the text it wrote before, without
    multinomial's checks or a renormalisation after top-p; temperature and top-p are 0-d tensors, which torch
    wraps faster than Python numbers. A generator's step spends 35 us here against 60-90."""
    divisor = torch.tensor(float(temperature))
    mass = torch.tensor(float(top_p)) if top_p is not None and top_p < 1.0 else None

    def pick(logits: torch.Tensor) -> int:
        if temperature <= 0:
            return int(logits[1:].argmax()) + 1
        logits = logits[1:].float() / divisor
        if top_k:
            threshold = torch.topk(logits, min(top_k, len(logits))).values[-1]
            logits[logits < threshold] = -math.inf
        probabilities = torch.softmax(logits, dim=-1)
        if mass is not None:
            ordered, order = torch.sort(probabilities, descending=True)
            outside = ordered.cumsum(0) - ordered > mass  # keep the smallest set whose mass reaches top_p
            probabilities = probabilities.scatter(0, order, ordered.masked_fill(outside, 0.0))
        noise = probabilities.new_empty(len(probabilities) + 1).exponential_(generator=generator)[1:]
        return int((probabilities / noise).argmax()) + 1

    return pick
