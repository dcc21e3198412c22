"""Language-model networks: a stacked LSTM / GRU and a decoder-only Transformer, both with optional hashed
n-gram input embeddings; one registry entry per architecture (`model.language_model.architecture`)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ensayo.models.language.schema import ARCHITECTURES, LanguageModelConfig
from ensayo.recipe import Recipe

LANGUAGE_MODELS: dict[str, type[nn.Module]] = {}


def register_language_model(*names: str):
    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        for name in names:
            LANGUAGE_MODELS[name] = cls
            if name not in ARCHITECTURES:
                ARCHITECTURES.append(name)
        return cls

    return decorate


class HashedNgrams(nn.Module):
    """Embeddings of the n-grams that end at each position, hashed into a fixed number of rows per order.

    A position's embedding becomes its token's plus one row per order: the model starts from local
    statistics a count-based n-gram model has for free, and spends its layers on the longer range.
    `previous` (batch, n - 1) holds the tokens before the window, when known (generation step by step);
    otherwise the first positions hash their missing predecessors as a padding id."""

    PRIME = 2_147_483_647  # keeps every intermediate hash inside int64

    def __init__(self, orders: list[int], buckets: int, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.orders, self.buckets, self.dropout = list(orders), buckets, dropout
        # sparse gradients: a batch touches a few thousand of the rows (the trainer gives them RowAdam)
        self.tables = nn.ModuleList(nn.Embedding(buckets, dim, sparse=True) for _ in self.orders)
        for table in self.tables:
            nn.init.normal_(table.weight, std=0.02)

    def _by_order(self) -> dict[int, nn.Embedding]:
        return dict(zip(self.orders, self.tables, strict=True))  # type: ignore[arg-type]

    @property
    def history(self) -> int:
        return max(self.orders, default=1) - 1

    def forward(self, tokens: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        if tokens.shape == (1, 1) and previous is not None and not self.training:
            return self.one(previous[0].tolist() + tokens[0].tolist()).view(1, 1, -1)
        length = tokens.shape[1]
        if previous is None:
            previous = torch.full((tokens.shape[0], self.history), -1, dtype=tokens.dtype, device=tokens.device)
        padded = torch.cat([previous[:, previous.shape[1] - self.history:], tokens], dim=1) + 2
        total = torch.zeros(*tokens.shape, self.tables[0].embedding_dim, device=tokens.device)
        code = torch.zeros_like(tokens)
        tables = self._by_order()
        for back in range(self.history + 1):  # fold in the token `back` places before each position
            start = self.history - back
            code = (code * 1_000_003 + padded[:, start: start + length]) % self.PRIME
            if back + 1 in tables:
                total = total + self._drop(tables[back + 1](code % self.buckets))
        return total

    def one(self, tokens: list[int]) -> torch.Tensor:
        """The n-grams ending at the last of `tokens`, hashed by Python's integers exactly as `forward` hashes a
        batch, predecessors missing before the first token padded as there: a generator's step costs a few
        lookups (21 us, against 100 us)."""
        window = tokens[-self.history - 1:]
        code, total = 0, None
        tables = self._by_order()
        for back, token in enumerate(reversed([-1] * (self.history + 1 - len(window)) + window)):
            code = (code * 1_000_003 + token + 2) % self.PRIME
            if back + 1 in tables:
                row = tables[back + 1].weight[code % self.buckets]
                total = row if total is None else total + row
        assert total is not None
        return total

    def _drop(self, embedded: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropout == 0:
            return embedded
        kept = torch.rand(*embedded.shape[:-1], 1, device=embedded.device) >= self.dropout
        return embedded * kept / (1 - self.dropout)


def ngram_embedding(config: LanguageModelConfig) -> HashedNgrams | None:
    if not config.ngrams:
        return None
    return HashedNgrams(config.ngrams, config.ngram_buckets, config.dim, config.ngram_dropout)


@register_language_model("lstm", "gru")
class RecurrentLanguageModel(nn.Module):
    """Embedding -> stacked LSTM / GRU -> projection to the embedding width -> (tied) output layer."""

    def __init__(self, vocabulary: int, config: LanguageModelConfig, context: int) -> None:
        super().__init__()
        cell = nn.LSTM if config.architecture == "lstm" else nn.GRU
        self.embed = nn.Embedding(vocabulary, config.dim)
        self.rnn = cell(config.dim, config.hidden_size, num_layers=config.layers, batch_first=True,
                        dropout=config.dropout if config.layers > 1 else 0.0)
        self.project = nn.Linear(config.hidden_size, config.dim)
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.dim, vocabulary)
        self.ngrams = ngram_embedding(config)
        if config.tie_weights:
            self.out.weight = self.embed.weight

    def forward(self, batch: dict[str, torch.Tensor], state: Any = None, flat: bool = True) -> Any:
        tokens = batch["tokens"]
        x = self.embed(tokens)
        if self.ngrams is not None:
            x = x + self.ngrams(tokens, batch.get("previous"))
        outputs, state = self.rnn(self.dropout(x), state)
        logits = self.out(self.dropout(self.project(outputs)))
        return logits.flatten(0, 1) if flat else (logits, state)

    @torch.inference_mode()
    def sample(self, prompt: list[int], steps: int, pick: Any) -> Iterator[int]:
        history = self.ngrams.history if self.ngrams is not None else 0
        tokens = list(prompt)
        logits, state = self({"tokens": torch.tensor([prompt])}, flat=False)
        for _ in range(steps):
            token = pick(logits[0, -1])
            yield token
            batch = {"tokens": torch.tensor([[token]])}
            if history:
                before = ([-1] * history + tokens)[-history:]
                batch["previous"] = torch.tensor([before])
            tokens.append(token)
            logits, state = self(batch, state, flat=False)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


class KeyValueCache:
    """Each block's keys and values for the positions a Transformer has seen, so that a new token costs one
    step through the network instead of a pass over its whole context. Room for `context` positions is
    taken once, keys and values of a block side by side (one copy stores both of a new token's); `length`
    counts the positions filled."""

    def __init__(self, layers: int, heads: int, context: int, head_width: int, like: torch.Tensor) -> None:
        self.pairs = [like.new_empty((2, heads, context, head_width)) for _ in range(layers)]
        self.context, self.length = context, 0

    @property
    def full(self) -> bool:
        return self.length == self.context

    def extend(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store a block's keys and values (1, heads, new positions, head width); all of them so far, to attend to."""
        end = self.length + keys.shape[2]
        if keys.shape[2] > 1 and self.length:
            raise ValueError("several new positions go into an empty cache only (causal attention from the start)")
        pair = self.pairs[layer]
        pair[0, :, self.length: end] = keys[0]
        pair[1, :, self.length: end] = values[0]
        return pair[0, :, :end].unsqueeze(0), pair[1, :, :end].unsqueeze(0)


def scored_stride(context: int) -> int:
    """How many positions each scoring window adds (see `language_metrics`), and so how far a cached
    generator goes before it starts its window again: both see contexts of `context - stride + 1` to
    `context` tokens."""
    return max(context // 4, 1)


class Block(nn.Module):
    """Pre-norm Transformer block: causal self-attention, then a GELU MLP, each with a residual."""

    def __init__(self, config: LanguageModelConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.norm1 = nn.LayerNorm(config.dim)
        self.qkv = nn.Linear(config.dim, 3 * config.dim)
        self.proj = nn.Linear(config.dim, config.dim)
        self.norm2 = nn.LayerNorm(config.dim)
        width = config.dim
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None,
                cache: KeyValueCache | None = None, layer: int = 0) -> torch.Tensor:
        batch, length, width = x.shape
        # (q, k, v) x (batch, heads, length, head width); q and k rotated together (a generator's step is
        # bound by how many small tensor operations it runs, not by their arithmetic)
        qkv = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        if rotary is not None:
            (q, k), v = rotate(qkv[:2], *rotary).unbind(0), qkv[2]
        else:
            q, k, v = qkv.unbind(0)
        if cache is not None:  # attend to every position cached so far as well
            k, v = cache.extend(layer, k, v)
        dropout = self.dropout if self.training else 0.0
        # several new positions are causal among themselves; one new position sees everything before it
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=length > 1, dropout_p=dropout)
        x = x + self._drop(self.proj(attended.transpose(1, 2).reshape(batch, length, width)), dropout)
        return x + self._drop(self.mlp(self.norm2(x)), dropout)

    @staticmethod
    def _drop(x: torch.Tensor, dropout: float) -> torch.Tensor:
        return F.dropout(x, dropout) if dropout else x


def rotation_rows(cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`rotate`'s angles laid out for one multiply and one multiply-add: x * scale[p] + x.roll(half, -1) *
    shift[p] rotates the rows of x as position p does (positions x head width each)."""
    return torch.cat([cos, cos], dim=-1), torch.cat([-sin, sin], dim=-1)


class _BlockWeights(NamedTuple):
    norm1: torch.Tensor
    norm1_bias: torch.Tensor
    qkv: torch.Tensor  # q's rows carry the attention's scale
    qkv_bias: torch.Tensor
    proj: torch.Tensor
    proj_bias: torch.Tensor
    norm2: torch.Tensor
    norm2_bias: torch.Tensor
    up: torch.Tensor
    up_bias: torch.Tensor
    down: torch.Tensor
    down_bias: torch.Tensor
    eps: float


class DecodingStep:
    """One new token through a Transformer whose cache holds every position before it: `Block.forward`'s
    arithmetic in evaluation (no dropout) for a single position, with the weights taken out of their modules
    once.

    A generator's step is bound by how many small tensor operations it dispatches, not by their arithmetic
    (dim 128, one position): a block here is 33 calls, 16 of them views, against about 45 and 8 module
    calls, with no `scaled_dot_product_attention` (57 us a call in the profile, for one query); q and k are rotated
    together by a multiply and a multiply-add (`rotation_rows`)."""

    def __init__(self, network: TransformerLanguageModel) -> None:
        self.width = network.embed.embedding_dim
        self.heads = network.blocks[0].heads
        head = self.width // self.heads
        self.by_part, self.half = (3, self.heads, 1, head), head // 2
        self.embed, self.out = network.embed.weight, network.out.weight
        self.norm = (network.norm.weight, network.norm.bias, network.norm.eps)
        self.ngrams = network.ngrams
        self.positions = network.positions.weight if network.positions is not None else None
        self.rotations = rotation_rows(network.cos, network.sin) if network.positions is None else None
        self.blocks = [self._weights(block, head ** -0.5) for block in network.blocks]
        # GELU hands a contiguous float tensor to oneDNN, whose set-up costs 8-13 us for one position's 512
        # values; on a strided one torch's own kernel takes 1-5 us (the same values to 1e-6)
        up = network.blocks[0].mlp[0].weight
        self.hidden = up.new_empty((up.shape[0], 2))[:, 0]

    def _weights(self, block: Block, scale: float) -> _BlockWeights:
        qkv, qkv_bias = block.qkv.weight.clone(), block.qkv.bias.clone()
        qkv[:self.width] *= scale
        qkv_bias[:self.width] *= scale
        return _BlockWeights(block.norm1.weight, block.norm1.bias, qkv, qkv_bias, block.proj.weight,
                             block.proj.bias, block.norm2.weight, block.norm2.bias, block.mlp[0].weight,
                             block.mlp[0].bias, block.mlp[2].weight, block.mlp[2].bias, block.norm1.eps)

    def __call__(self, window: list[int], cache: KeyValueCache) -> torch.Tensor:
        """The next token's logits after `window`, whose last token is the new one."""
        position = cache.length
        x = self.embed[window[-1]]
        if self.ngrams is not None:
            x = x + self.ngrams.one(window)
        if self.positions is not None:
            x = x + self.positions[position]
        for weights, pair in zip(self.blocks, cache.pairs, strict=True):
            x = self._block(x, weights, pair, position)
        cache.length += 1
        return torch.mv(self.out, torch.layer_norm(x, (self.width,), *self.norm))

    def _block(self, x: torch.Tensor, w: _BlockWeights, pair: torch.Tensor, position: int) -> torch.Tensor:
        qkv = torch.addmv(w.qkv_bias, w.qkv, torch.layer_norm(x, (self.width,), w.norm1, w.norm1_bias, w.eps))
        qkv = qkv.view(self.by_part)
        query_key = qkv.narrow(0, 0, 2)
        if self.rotations is not None:
            scale, shift = self.rotations
            query_key = torch.addcmul(query_key * scale[position], query_key.roll(self.half, -1), shift[position])
        pair[0].narrow(1, position, 1).copy_(query_key[1])
        pair[1].narrow(1, position, 1).copy_(qkv[2])
        seen = pair.narrow(2, 0, position + 1)
        attention = torch.softmax(torch.bmm(query_key[0], seen[0].transpose(1, 2)), dim=-1)
        x = x + torch.addmv(w.proj_bias, w.proj, torch.bmm(attention, seen[1]).view(self.width))
        normed = torch.layer_norm(x, (self.width,), w.norm2, w.norm2_bias, w.eps)
        torch.addmv(w.up_bias, w.up, normed, out=self.hidden)
        return x + torch.addmv(w.down_bias, w.down, F.gelu(self.hidden))


@register_language_model("transformer")
class TransformerLanguageModel(nn.Module):
    """A small decoder-only Transformer (GPT-2 style) with learned or rotary positions and tied weights."""

    def __init__(self, vocabulary: int, config: LanguageModelConfig, context: int) -> None:
        super().__init__()
        if config.dim % config.heads:
            raise ValueError(f"model.language_model: dim {config.dim} is not divisible by heads {config.heads}")
        self.context = context
        self.embed = nn.Embedding(vocabulary, config.dim)
        self.positions = nn.Embedding(context, config.dim) if config.positions == "learned" else None
        if config.positions == "rotary":
            head = config.dim // config.heads
            frequencies = 1.0 / (10000 ** (torch.arange(0, head // 2).float() / (head // 2)))
            angles = torch.outer(torch.arange(context).float(), frequencies)
            self.register_buffer("cos", angles.cos(), persistent=False)
            self.register_buffer("sin", angles.sin(), persistent=False)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim)
        self.out = nn.Linear(config.dim, vocabulary, bias=False)
        self.apply(self._init)
        self.ngrams = ngram_embedding(config)
        for name, parameter in self.named_parameters():  # GPT-2's scaled start for residual projections
            if name.endswith(("proj.weight", "mlp.2.weight")):
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.layers))
        if config.tie_weights:
            self.out.weight = self.embed.weight

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, batch: dict[str, torch.Tensor], flat: bool = True,
                cache: KeyValueCache | None = None) -> torch.Tensor:
        """Logits for each position of `batch["tokens"]`; with a `cache`, the tokens come after those it
        holds (and `batch["previous"]`, the tokens before them, feeds the n-gram hashes)."""
        tokens = batch["tokens"]
        start = cache.length if cache is not None else 0
        length = tokens.shape[1]
        x = self.embed(tokens)
        if self.ngrams is not None:
            x = x + self.ngrams(tokens, batch.get("previous"))
        rotary = None
        if self.positions is not None:
            x = x + self.positions(torch.arange(start, start + length, device=tokens.device))
        else:
            rotary = (self.cos[start: start + length], self.sin[start: start + length])
        x = self.dropout(x)
        for layer, block in enumerate(self.blocks):
            x = block(x, rotary, cache, layer)
        if cache is not None:
            cache.length += length
        logits = self.out(self.norm(x))
        return logits.flatten(0, 1) if flat else logits

    def new_cache(self) -> KeyValueCache:
        block = self.blocks[0]
        width = self.embed.embedding_dim
        return KeyValueCache(len(self.blocks), block.heads, self.context, width // block.heads, self.embed.weight)

    @torch.inference_mode()
    def sample(self, prompt: list[int], steps: int, pick: Any) -> Iterator[int]:
        """One step per token with a key-value cache. Until the context is full this is exactly one pass
        over the whole text per token. When it is full, the window starts again from its last
        `context - stride + 1` tokens (positions from 0, as in training): the generator then sees
        the contexts the test bits per character were scored with (`language_metrics`)."""
        window = list(prompt[-self.context:])
        keep = self.context - scored_stride(self.context) + 1
        step = DecodingStep(self)
        cache: KeyValueCache | None = None
        for _ in range(steps):
            if cache is None or cache.full:
                window = window[-keep:] if cache is not None else window
                cache = self.new_cache()
                logits = self({"tokens": torch.tensor([window])}, flat=False, cache=cache)[0, -1]
            else:
                logits = step(window, cache)
            token = pick(logits)
            window.append(token)
            yield token


def build_language_model(recipe: Recipe, vocabulary: int) -> nn.Module:
    config = recipe.model.language_model
    return LANGUAGE_MODELS[config.architecture](vocabulary, config, recipe.output.context)


