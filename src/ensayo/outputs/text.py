"""The text output: documents, tokenizers (characters or words), the spelling cost of unknown words, and the
token windows a language model trains on.

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

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import polars as pl
import torch

from ensayo.features.text import repair_markup
from ensayo.recipe import OutputConfig

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

    held: ClassVar[None] = None  # every process holds every window

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
        yield from self.iterate([order[start: start + size] for start in range(skip * size, len(order), size)],
                                device or torch.device("cpu"))

    def iterate(self, indices: list[np.ndarray],
                device: torch.device) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        for index in indices:
            windows = self.window(index).to(device)
            yield {"tokens": windows[:, :-1]}, windows[:, 1:].reshape(-1)


