"""Text output: tokenizers, language models, their metrics and sampling.

A document is one row's text columns joined by the recipe's separator, its markup repaired. Documents
are tokenized (characters or words) and concatenated, each followed by an end-of-document token, into
one stream per split; the stream is cut into windows of `context + 1` tokens. Each window trains the
model to predict its tokens 2..n+1 from 1..n, so the classification trainer runs it unchanged: the model
returns (tokens, vocabulary) logits and the labels are the flattened next tokens.

Bits per character are the summed negative log2-likelihood of a split's tokens divided by the number of
characters of its text (end-of-document marks count as one character each), for word models too, so
that the two levels compare. A word model predicts <unk> for a word outside its vocabulary and would
never pay for that word's letters: each such word is also charged its spelling under a character bigram
model of the training split's rare words (`Spelling`), so its bits stay honest.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn
from torch.nn import functional as F

from ensayo.config import LanguageModelConfig, OutputConfig, Recipe, load_recipe
from ensayo.features.text import repair_markup
from ensayo.trainer import load_weights

UNK, EOD = "<unk>", "<eod>"
_WORD = re.compile(r"\w+|[^\w\s]")
_SPACES = re.compile(r"[^\S\n]+")
_CLOSES = frozenset(".,;:!?%)]'")
_OPENS = frozenset("([$")


def documents(table: pl.DataFrame, output: OutputConfig) -> list[str]:
    """Each row's text columns joined by the separator, with HTML debris and escaped new lines repaired."""
    joined = table.select(pl.concat_str([pl.col(c).fill_null("") for c in output.columns],
                                        separator=output.separator)).to_series().to_list()
    texts = [_SPACES.sub(" ", repair_markup(text)).strip() for text in joined]
    return [t.lower() for t in texts] if output.lowercase else texts


# --------------------------------------------------------------------------------------- tokenizer
class Tokenizer:
    """Characters or words <-> ids. Id 0 is <unk>, id 1 the end of a document."""

    def __init__(self, level: str, tokens: list[str]) -> None:
        self.level = level
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def fit(cls, texts: list[str], output: OutputConfig) -> Tokenizer:
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(text if output.level == "char" else _WORD.findall(text))
        kept = [t for t, n in counts.most_common(output.max_vocab) if n >= output.min_count]
        return cls(output.level, [UNK, EOD, *sorted(kept)])

    def __len__(self) -> int:
        return len(self.tokens)

    def split(self, text: str) -> list[str]:
        return list(text) if self.level == "char" else _WORD.findall(text)

    def encode(self, text: str) -> list[int]:
        get = self.index.get
        return [get(t, 0) for t in self.split(text)]

    def decode_token(self, token: int, previous: int | None = None) -> str:
        """The text of one token after `previous`, with the spacing a reader expects between words."""
        if token == 1:
            return "\n\n"
        text = self.tokens[token]
        if self.level == "char" or previous in (None, 1):
            return text
        before = self.tokens[previous]
        glued = text in _CLOSES or before in _OPENS or before == "'"
        return text if glued else " " + text

    def decode(self, ids: list[int]) -> str:
        return "".join(self.decode_token(t, ids[i - 1] if i else None) for i, t in enumerate(ids))

    def unknown_words(self, texts: list[str]) -> list[str]:
        """The words of `texts` outside the vocabulary, in order (none for characters)."""
        if self.level == "char":
            return []
        return [word for text in texts for word in _WORD.findall(text) if word not in self.index]

    def rare_words(self, texts: list[str]) -> list[str]:
        """What new words look like, from training texts: the words seen once, and any other word the
        vocabulary left out (Good-Turing's reasoning: the words seen once stand for the words not seen)."""
        if self.level == "char":
            return []
        counts = Counter(word for text in texts for word in _WORD.findall(text))
        return [word for word, n in counts.items() for _ in range(n) if n == 1 or word not in self.index]

    def stream(self, texts: list[str]) -> tuple[torch.Tensor, int]:
        """All documents as one id stream, each closed by <eod>; and the characters the stream stands for."""
        ids: list[int] = []
        characters = 0
        for text in texts:
            ids += self.encode(text)
            ids.append(1)
            characters += len(text) + 1
        return torch.tensor(ids, dtype=torch.long), characters

    def state(self) -> dict[str, Any]:
        return {"level": self.level, "tokens": self.tokens}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Tokenizer:
        return cls(state["level"], list(state["tokens"]))


class Spelling:
    """A character bigram model of words (add-k smoothed, with an end mark and a bucket for characters it
    never saw): the cost, in bits, of spelling out the words a word model can only call <unk>."""

    UNSEEN_BITS = 16.0  # naming a character outside the alphabet, as one of 65,536

    def __init__(self, words: list[str], k: float = 0.1) -> None:
        # code 0 is both the start (as the previous symbol) and the end mark (as the next); letters from 1
        self.alphabet = {c: i for i, c in enumerate(sorted({c for w in words for c in w}), start=1)}
        self.unseen = len(self.alphabet) + 1
        counts = np.full((self.unseen + 1, self.unseen + 1), k)
        for word in words:
            codes = self._codes(word)
            np.add.at(counts, (codes[:-1], codes[1:]), 1.0)
        self.log2_probability = np.log2(counts / counts.sum(axis=1, keepdims=True))

    def _codes(self, word: str) -> np.ndarray:
        return np.array([0, *(self.alphabet.get(c, self.unseen) for c in word), 0])

    def bits(self, words: list[str]) -> float:
        total = 0.0
        for word in words:
            codes = self._codes(word)
            total -= float(self.log2_probability[codes[:-1], codes[1:]].sum())
            total += self.UNSEEN_BITS * int((codes == self.unseen).sum())
        return total


@dataclass
class TokenWindows:
    """A split's token stream cut into windows; batches are what the trainer expects:
    ({"tokens": (batch, context)}, next tokens flattened to (batch * context,)).
    `spelling_bits`: what spelling the stream's <unk> words costs (word models; see `Spelling`)."""

    stream: torch.Tensor
    context: int
    characters: int
    spelling_bits: float = 0.0

    def __len__(self) -> int:
        return max((len(self.stream) - 1) // self.context, 0)

    def lengths(self) -> None:
        return None

    def window(self, index: np.ndarray) -> torch.Tensor:
        starts = torch.from_numpy(np.asarray(index, dtype=np.int64)) * self.context
        return self.stream[starts[:, None] + torch.arange(self.context + 1)]

    def batches(self, size: int, order: np.ndarray | None = None, skip: int = 0,
                device: torch.device | None = None) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        order = np.arange(len(self)) if order is None else order
        device = device or torch.device("cpu")
        for start in range(skip * size, len(order), size):
            windows = self.window(order[start: start + size]).to(device)
            yield {"tokens": windows[:, :-1]}, windows[:, 1:].reshape(-1)


# ------------------------------------------------------------------------------------------ models
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
        # sparse gradients: a batch touches a few thousand of the rows (the trainer gives them SparseAdam)
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


# ----------------------------------------------------------------------------------------- metrics
@torch.no_grad()
def language_metrics(model: nn.Module, windows: TokenWindows, batch_size: int, prefix: str = "",
                     stride: int | None = None) -> dict[str, float]:
    """Cross-entropy per token (nats), perplexity and bits per character of a split.

    Windows start every `stride` tokens (default: a quarter of the context) and only their last `stride`
    predictions are scored (all of the first window's), so that every scored token, but the first few,
    has at least `context - stride` tokens before it: cut-off windows would charge the model for
    contexts it never lacks when it generates."""
    model.eval()
    device = next(model.parameters()).device
    context = windows.context
    stride = min(stride or max(context // 4, 1), context)
    starts = np.arange(0, max(len(windows.stream) - context - 1, -1) + 1, stride)
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


# ---------------------------------------------------------------------------------------- sampling
def picker(temperature: float, top_k: int | None, top_p: float | None, generator: torch.Generator) -> Any:
    """A function from next-token logits to a sampled token id (greedy at temperature 0)."""

    def pick(logits: torch.Tensor) -> int:
        logits = logits.float().clone()
        logits[0] = -math.inf  # never write <unk>
        if temperature <= 0:
            return int(logits.argmax())
        logits /= temperature
        if top_k:
            threshold = torch.topk(logits, min(top_k, len(logits))).values[-1]
            logits[logits < threshold] = -math.inf
        probabilities = torch.softmax(logits, dim=-1)
        if top_p is not None and top_p < 1.0:
            ordered, order = torch.sort(probabilities, descending=True)
            outside = ordered.cumsum(0) - ordered > top_p  # keep the smallest set whose mass reaches top_p
            probabilities[order[outside]] = 0.0
            probabilities /= probabilities.sum()
        return int(torch.multinomial(probabilities, 1, generator=generator))

    return pick


@dataclass
class GeneratorRun:
    """A trained language model run: `GeneratorRun.load(dir).generate("prompt")` streams text."""

    path: Path
    recipe: Recipe
    tokenizer: Tokenizer
    model: nn.Module

    @classmethod
    def load(cls, path: str | Path) -> GeneratorRun:
        from ensayo import runs

        path = Path(path)
        recipe = load_recipe(path / runs.RECIPE)
        tokenizer = Tokenizer.from_state(runs.read_json(path / runs.STATE)["output"])
        weights = path / runs.WEIGHTS
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: the run has no trained weights (did training finish?)")
        model = build_language_model(recipe, len(tokenizer))
        load_weights(model, weights)
        return cls(path, recipe, tokenizer, model.eval())

    @property
    def metrics(self) -> dict[str, Any]:
        from ensayo import runs

        file = self.path / runs.METRICS
        return runs.read_json(file) if file.is_file() else {}

    def generate(self, prompt: str = "", length: int = 200, temperature: float = 0.8, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0) -> Iterator[str]:
        """Yield the text of each new token as it is sampled; `length` counts tokens."""
        text = prompt.lower() if self.recipe.output.lowercase else prompt
        ids = self.tokenizer.encode(text) if text else [1]  # no prompt: start as after a document's end
        generator = torch.Generator().manual_seed(seed)
        pick = picker(temperature, top_k, top_p, generator)
        previous = ids[-1] if text else None
        with torch.no_grad():
            for token in self.model.sample(ids, length, pick):
                yield self.tokenizer.decode_token(token, previous)
                previous = token


def generate(run: str | Path, prompt: str = "", length: int = 200, temperature: float = 0.8,
             top_k: int | None = None, top_p: float | None = None, seed: int = 0) -> Iterator[str]:
    """Stream text from the language model saved in `run` (what `ensayo generate` prints)."""
    return GeneratorRun.load(run).generate(prompt, length, temperature, top_k, top_p, seed)
