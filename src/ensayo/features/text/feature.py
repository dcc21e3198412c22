"""The text feature: a column of texts -> padded token ids (and subword ids), fitted on the training split."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from ensayo.bulk import collector_paused
from ensayo.features.base import Feature, Ranks, as_tensors, register_feature
from ensayo.features.text.preprocessing import (
    PAD,
    UNK,
    TextPipeline,
    TextPreprocessing,
    Vocabulary,
    fit_word_vectors,
    load_word_vectors,
    subword_table,
)
from ensayo.recipe import expand_path

if TYPE_CHECKING:
    import torch

CHUNK_ROWS = 50_000  # texts tokenized at a time: the Python lists of one chunk are all that is held at once


def _flat(rows: list[list[str]]) -> tuple[list[str], np.ndarray]:
    """Every row's tokens one after the other, and how many each row has."""
    return list(chain.from_iterable(rows)), np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))


def _capped(ids: np.ndarray, lengths: np.ndarray, cap: int, empty: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `cap` of each row's `ids` (rows one after the other, `lengths` long), a row without any given one
    `empty` id; and the rows' new lengths."""
    starts = np.cumsum(lengths) - lengths
    kept = ids[np.arange(len(ids)) - np.repeat(starts, lengths) < cap]
    kept_lengths = np.minimum(lengths, cap)
    empty_rows = np.flatnonzero(lengths == 0)
    if len(empty_rows):
        kept = np.insert(kept, (np.cumsum(kept_lengths) - kept_lengths)[empty_rows], empty)
        kept_lengths[empty_rows] = 1
    return kept, kept_lengths


@dataclass
class EncodedText:
    """A column's token ids, compact: every row's ids one after the other (int32), where each row starts and how
    long it is. About 4 bytes a token, where a padded int64 matrix took 8 bytes times the longest row."""

    tokens: np.ndarray  # (total tokens,) int32
    starts: np.ndarray  # (rows,) int64
    lengths: np.ndarray  # (rows,) int64

    def __len__(self) -> int:
        return len(self.lengths)

    def padded(self, index: np.ndarray | None = None) -> np.ndarray:
        """(rows, longest) int64 ids of the rows of `index` (all rows by default), 0-padded."""
        starts = self.starts if index is None else self.starts[index]
        lengths = self.lengths if index is None else self.lengths[index]
        width = int(lengths.max()) if len(lengths) else 1
        positions = np.arange(width)
        inside = positions[None, :] < lengths[:, None]
        taken = self.tokens[np.where(inside, starts[:, None] + positions[None, :], 0)] if len(self.tokens) else \
            np.zeros(inside.shape, dtype=np.int32)
        return np.where(inside, taken, 0).astype(np.int64)

    @property
    def ids(self) -> np.ndarray:
        return self.padded()


@register_feature("text")
class TextFeature(Feature):
    Preprocessing = TextPreprocessing

    def __init__(self, name: str, column: str, preprocessing: TextPreprocessing) -> None:
        super().__init__(name, column, preprocessing)
        self.pipeline = TextPipeline(preprocessing)
        self.vocab = Vocabulary([PAD, UNK])
        self.subword_vocab: Vocabulary | None = None
        self.coverage: dict[str, float] | None = None
        self._vectors: np.ndarray | None = None
        self._found: np.ndarray | None = None
        self._subword_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def options(self) -> TextPreprocessing:
        return self.preprocessing  # type: ignore[return-value]

    @collector_paused()
    def fit(self, values: list[str]) -> TextFeature:
        spec = self.options.embeddings
        keep = bool(spec and spec.train)  # word vectors trained here need the sentences; counting does not
        counts: Counter[str] = Counter()
        tokenized = []
        for start in range(0, len(values), CHUNK_ROWS):
            for tokens in self.pipeline.many(values[start: start + CHUNK_ROWS]):
                counts.update(tokens)
                if keep and tokens:
                    tokenized.append(tokens)
        self._fit_vocabularies(counts)
        if spec and spec.train:
            self._attach_vectors(counts, fit_word_vectors(tokenized, spec.train, f"input {self.name!r}"))
        elif spec and spec.path:
            self._attach_vectors(counts, load_word_vectors(expand_path(spec.path), spec.format))
        return self

    @collector_paused()
    def fit_transform(self, values: list[str]) -> EncodedText:
        """fit, then transform, tokenizing each text once: its tokens are numbered as they are first met and
        renumbered once the vocabulary is known."""
        spec = self.options.embeddings
        if spec and spec.train:
            return self.fit(values).transform(values)
        met, seen, pieces, lengths = self._numbered(values)
        met_ids = self._fit_with_vectors(Counter(dict(zip(met, seen.tolist(), strict=True))))
        return self._renumbered(met_ids, pieces, lengths)

    @property
    def shares_fit(self) -> bool:
        """Word vectors trained here need every sentence in one process; counting tokens does not."""
        spec = self.options.embeddings
        return not (spec and spec.train)

    @collector_paused()
    def fit_transform_shared(self, share: list[str], ranks: Ranks) -> EncodedText:
        """`fit_transform` over every rank's share of the column at once (the shares, in rank order, are the column),
        each rank tokenizing only its own. Rank 0 adds up the ranks' token counts in the order the tokens were first
        met, so that it fits the vocabularies one process fits, with all its threads (polars) while the others wait;
        they take its vocabularies and its words' subword table. Returns this rank's share encoded."""
        met, seen, pieces, lengths = self._numbered(share)
        gathered = ranks.gather((list(met), seen))
        fitted = None
        if gathered is not None:
            counts: Counter[str] = Counter()
            for tokens, numbers in gathered:
                for token, count in zip(tokens, numbers.tolist(), strict=True):
                    counts[token] += count
            self._fit_with_vectors(counts)
            fitted = (self.state(), self._subword_cache)
        state, subword_cache = ranks.broadcast(fitted)
        if not ranks.main:
            self.load_state(state)
            self._subword_cache = subword_cache
        met_ids = np.fromiter(map(self.vocab.index.get, met, repeat(-1)), np.int64, len(met))
        return self._renumbered(met_ids, pieces, lengths)

    def _numbered(self, values: list[str]) -> tuple[dict[str, int], np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """Each text's tokens numbered as they are first met (capped, -1 for a text with none), with each
        token's count."""
        met: defaultdict[str, int] = defaultdict()
        met.default_factory = met.__len__  # a token not met yet gets the next number as it is looked up
        cap, seen = self.options.max_length, np.zeros(0, dtype=np.int64)
        pieces, lengths = [], []
        for start in range(0, len(values), CHUNK_ROWS):
            tokens, row_lengths = _flat(self.pipeline.many(values[start: start + CHUNK_ROWS]))
            numbers = np.fromiter(map(met.__getitem__, tokens), dtype=np.int64, count=len(tokens))
            seen = np.pad(seen, (0, len(met) - len(seen))) + np.bincount(numbers, minlength=len(met))
            # a text with no tokens left reads as one unknown token (-1 until renumbered)
            kept, kept_lengths = _capped(numbers, row_lengths, cap, -1)
            pieces.append(kept.astype(np.int32))  # 4 bytes a token until renumbered
            lengths.append(kept_lengths)
        met.default_factory = None
        return met, seen, pieces, lengths

    def _fit_with_vectors(self, counts: Counter[str]) -> np.ndarray:
        """`_fit_vocabularies`, and word vectors read from a file; returns each counted token's id."""
        spec = self.options.embeddings
        counted_ids = self._fit_vocabularies(counts)
        if spec and spec.path:
            self._attach_vectors(counts, load_word_vectors(expand_path(spec.path), spec.format))
        return counted_ids

    def _renumbered(self, met_ids: np.ndarray, pieces: list[np.ndarray], lengths: list[np.ndarray]) -> EncodedText:
        """Texts numbered by `_numbered` in the fitted vocabulary's ids, given the id of each token it met (in the
        order it met them; -1 for one outside the vocabulary, which reads as the unknown token)."""
        renumbered = np.append(np.where(met_ids < 0, 1, met_ids), 1).astype(np.int32)  # -1 (no tokens): unknown
        return self._encoded([renumbered[piece] for piece in pieces], lengths)

    def _fit_vocabularies(self, counts: Counter[str]) -> np.ndarray:
        """The vocabularies of words and subwords from the words' counts; returns each counted word's id (in
        `counts`' order, -1 for a word left out)."""
        self._subword_cache = None
        self.vocab, counted_ids = Vocabulary.build_with_ids(counts, self.options.min_count, self.options.max_vocab,
                                                            [PAD, UNK])
        if self.options.char_ngrams:
            low, high = self.options.char_ngrams
            table = subword_table(list(counts), low, high)  # token: its place in `counts`
            token_counts = pl.Series(np.fromiter(counts.values(), np.int64, len(counts)))
            summed = table.with_columns(count=token_counts[table["token"]]).group_by("gram").agg(pl.col("count").sum())
            self.subword_vocab = Vocabulary.ranked(summed.rename({"gram": "token"}), self.options.subword_min_count,
                                                   self.options.max_subwords, [PAD])
            # the words' subword table is at hand: index it now rather than make it again for the first batch
            self._subword_cache = self._indexed(table.with_columns(
                token=pl.Series(counted_ids)[table["token"]] - 2).filter(pl.col("token") >= 0))
        return counted_ids

    def _attach_vectors(self, counts: Counter[str], vectors: Any) -> None:
        matrix = np.zeros((len(self.vocab), vectors.vector_size), dtype=np.float32)
        found = np.zeros(len(self.vocab), dtype=bool)
        for index, token in enumerate(self.vocab.tokens[2:], start=2):
            for candidate in (token, token.lower()):
                if candidate in vectors.key_to_index:
                    matrix[index] = vectors[candidate]
                    found[index] = True
                    break
        total = sum(counts.values())
        words = self.vocab.tokens[2:]
        tokens_found = sum(counts[t] for t, f in zip(words, found[2:], strict=True) if f)
        self.coverage = {
            "vocabulary_found": float(found[2:].mean()) if words else 0.0,
            "tokens_found": tokens_found / total if total else 0.0,
            "dimension": int(vectors.vector_size),
        }
        self._vectors, self._found = matrix, found

    def init_tensors(self) -> dict[str, torch.Tensor]:
        if self._vectors is None or self._found is None:
            return {}
        return as_tensors({"vectors": self._vectors, "found": self._found})

    @collector_paused()
    def transform(self, values: list[str]) -> EncodedText:
        cap, known = self.options.max_length, self.vocab.index.get
        pieces, lengths = [], []
        for start in range(0, len(values), CHUNK_ROWS):
            tokens, row_lengths = _flat(self.pipeline.many(values[start: start + CHUNK_ROWS]))
            ids = np.fromiter(map(known, tokens, repeat(1)), dtype=np.int32, count=len(tokens))  # 1: unknown
            kept, kept_lengths = _capped(ids, row_lengths, cap, 1)  # a text with no tokens: one unknown token
            pieces.append(kept)
            lengths.append(kept_lengths)
        return self._encoded(pieces, lengths)

    @staticmethod
    def _encoded(pieces: list[np.ndarray], lengths: list[np.ndarray]) -> EncodedText:
        counts = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if len(counts) else counts
        return EncodedText(np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32), starts, counts)

    def vocabulary_subwords(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every vocabulary token's subword ids, flat, with where each token's run starts and how long it is.
        Built once per fitted vocabulary: predicting a file in chunks would otherwise rebuild it per chunk."""
        if self._subword_cache is None:
            assert self.subword_vocab is not None and self.options.char_ngrams
            low, high = self.options.char_ngrams
            self._subword_cache = self._indexed(subword_table(self.vocab.tokens[2:], low, high))
        return self._subword_cache

    def _indexed(self, table: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`vocabulary_subwords` from a subword table of vocabulary words (token: the word's id - 2, past the padding
        and unknown tokens, which have no subwords; rows by gram length, then word, then start), the subwords
        outside the subword vocabulary left out."""
        assert self.subword_vocab is not None
        subword_ids = pl.DataFrame({"gram": pl.Series(self.subword_vocab.tokens[1:], dtype=pl.String),
                                    "id": np.arange(1, len(self.subword_vocab), dtype=np.int64)})
        # each word's subwords in `subwords`' order: the table's order within a word is kept by a stable sort
        known = table.join(subword_ids, on="gram", maintain_order="left").sort("token", maintain_order=True)
        counts = np.bincount(known["token"].to_numpy() + 2, minlength=len(self.vocab)).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return known["id"].to_numpy().astype(np.int64), starts, counts

    def lengths(self, encoded: EncodedText) -> np.ndarray:
        return encoded.lengths

    def arrays(self, encoded: EncodedText, index: np.ndarray) -> dict[str, np.ndarray]:
        return self.arrays_of_ids(encoded.padded(np.asarray(index)), encoded.lengths[index])

    def arrays_of_ids(self, ids: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        """The encoder's batch of padded (rows, tokens) ids: the ids, their lengths and their subwords."""
        batch = {"ids": ids, "lengths": np.asarray(lengths)}
        if self.subword_vocab is not None:
            flat, first, how_many = self.vocabulary_subwords()
            counts = how_many[ids].reshape(-1)
            starts = first[ids].reshape(-1)
            bag_offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
            positions = np.repeat(starts - bag_offsets, counts) + np.arange(int(counts.sum()))
            batch |= {"sub_ids": flat[positions], "sub_offsets": bag_offsets, "sub_counts": counts}
        return batch

    def batch_of_ids(self, ids: np.ndarray, lengths: np.ndarray) -> dict[str, torch.Tensor]:
        """`arrays_of_ids` as tensors."""
        return as_tensors(self.arrays_of_ids(ids, lengths))

    def state(self) -> dict[str, Any]:
        return {
            "vocabulary": self.vocab.tokens,
            "subword_vocabulary": self.subword_vocab.tokens if self.subword_vocab else None,
            "coverage": self.coverage,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self._subword_cache = None
        self.vocab = Vocabulary(state["vocabulary"])
        if state.get("subword_vocabulary"):
            self.subword_vocab = Vocabulary(state["subword_vocabulary"])
        self.coverage = state.get("coverage")

    @classmethod
    def explore(cls, name: str, values: list[str], labels: list[str], preprocessing: Any,
                directory: Path) -> list[str]:
        from ensayo.features.text.explore import explore_texts

        return explore_texts(name, values, directory)

    def example_values(self, count: int, short: bool = False) -> list[str]:
        known = self.vocab.tokens[2:] or ["?"]  # past the padding and unknown tokens
        return [" ".join(known[(i + j) % len(known)] for j in range(2 if short else 3 + i)) for i in range(count)]

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"vocabulary": len(self.vocab)}
        if self.subword_vocab is not None:
            info["subwords"] = len(self.subword_vocab)
        if self.coverage:
            info["embedding_coverage"] = self.coverage
        return info


