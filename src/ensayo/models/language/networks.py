"""Language-model networks: a stacked LSTM / GRU and a decoder-only Transformer, both with optional hashed
n-gram input embeddings; one registry entry per architecture (`model.language_model.architecture`)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import nn
from torch.nn import functional as F

from ensayo.recipe import Recipe, Strict


class LanguageModelConfig(Strict):
    """A next-token model: a stacked LSTM / GRU or a decoder-only Transformer (pre-norm, causal attention)."""

    architecture: str = Field("lstm", description="a registered language model: lstm, gru, transformer")
    dim: int = Field(256, gt=0, description="embedding (and Transformer) width")
    hidden_size: int = Field(512, gt=0, description="recurrent state width")
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    positions: Literal["learned", "rotary"] = "learned"
    dropout: float = Field(0.1, ge=0, lt=1)
    tie_weights: bool = True
    ngrams: list[int] = Field(default_factory=list, description=(
        "hashed n-gram input embeddings: for each order n listed (2-6), the n tokens ending at a position "
        "are hashed into `ngram_buckets` rows of their own table and added to that position's embedding"))
    ngram_buckets: int = Field(65536, ge=16, description="rows of each hashed n-gram table")
    ngram_dropout: float = Field(0.0, ge=0, lt=1, description=(
        "in training, each order's n-gram embedding is dropped at this share of positions, so that the model "
        "learns to fall back on shorter n-grams and its own context instead of memorising long ones"))

    @field_validator("ngrams")
    @classmethod
    def _orders(cls, value: list[int]) -> list[int]:
        if any(not 2 <= n <= 6 for n in value) or len(set(value)) != len(value):
            raise ValueError("n-gram orders are distinct integers from 2 to 6")
        return sorted(value)


LANGUAGE_MODELS: dict[str, type[nn.Module]] = {}


def register_language_model(*names: str):
    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        for name in names:
            LANGUAGE_MODELS[name] = cls
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

    @property
    def history(self) -> int:
        return max(self.orders, default=1) - 1

    def forward(self, tokens: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        length = tokens.shape[1]
        if previous is None:
            previous = torch.full((tokens.shape[0], self.history), -1, dtype=tokens.dtype, device=tokens.device)
        padded = torch.cat([previous[:, previous.shape[1] - self.history:], tokens], dim=1) + 2
        total = torch.zeros(*tokens.shape, self.tables[0].embedding_dim, device=tokens.device)
        code = torch.zeros_like(tokens)
        tables = dict(zip(self.orders, self.tables, strict=True))
        for back in range(self.history + 1):  # fold in the token `back` places before each position
            start = self.history - back
            code = (code * 1_000_003 + padded[:, start: start + length]) % self.PRIME
            if back + 1 in tables:
                total = total + self._drop(tables[back + 1](code % self.buckets))
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

    @torch.no_grad()
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

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, width // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (batch, heads, length, head width)
        if rotary is not None:
            q, k = rotate(q, *rotary), rotate(k, *rotary)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                  dropout_p=self.dropout if self.training else 0.0)
        x = x + F.dropout(self.proj(attended.transpose(1, 2).reshape(batch, length, width)), self.dropout,
                          self.training)
        return x + F.dropout(self.mlp(self.norm2(x)), self.dropout, self.training)


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

    def forward(self, batch: dict[str, torch.Tensor], flat: bool = True) -> torch.Tensor:
        tokens = batch["tokens"]
        length = tokens.shape[1]
        x = self.embed(tokens)
        if self.ngrams is not None:
            x = x + self.ngrams(tokens)
        rotary = None
        if self.positions is not None:
            x = x + self.positions(torch.arange(length, device=tokens.device))
        else:
            rotary = (self.cos[:length], self.sin[:length])
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x, rotary)
        logits = self.out(self.norm(x))
        return logits.flatten(0, 1) if flat else logits

    @torch.no_grad()
    def sample(self, prompt: list[int], steps: int, pick: Any) -> Iterator[int]:
        tokens = list(prompt)
        for _ in range(steps):
            window = torch.tensor([tokens[-self.context:]])
            token = pick(self({"tokens": window}, flat=False)[0, -1])
            tokens.append(token)
            yield token


def build_language_model(recipe: Recipe, vocabulary: int) -> nn.Module:
    config = recipe.model.language_model
    return LANGUAGE_MODELS[config.architecture](vocabulary, config, recipe.output.context)


