"""Text feature: normalization, tokenization, stemming / lemmatization, vocabulary, pretrained word
vectors, and the text encoders (bag of embeddings, CNN, recurrent)."""

from __future__ import annotations

import gzip
import html
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ensayo.config import Strict, expand_path
from ensayo.features import Encoder, Feature, register_feature

PAD, UNK = "<pad>", "<unk>"
LANGUAGES = {"es": "spanish", "pt": "portuguese", "en": "english"}


class WordVectorTraining(Strict):
    """gensim word2vec / fastText settings, for vectors trained on the training split's own tokens."""

    method: Literal["word2vec", "fasttext"] = "word2vec"
    dim: int = Field(100, gt=0)
    window: int = Field(5, gt=0)
    min_count: int = Field(2, ge=1)
    epochs: int = Field(10, ge=1)
    skip_gram: bool = True
    seed: int = 0


class EmbeddingsConfig(Strict):
    """Pretrained word vectors from `path`, or vectors trained (`train`) on the training split when the
    feature is fitted: the MeLi 2019 winners found vectors of the task's own text beat generic ones."""

    path: str | None = None
    format: Literal["auto", "word2vec", "word2vec_binary", "glove", "fasttext"] = "auto"
    train: WordVectorTraining | None = None

    @model_validator(mode="after")
    def _check(self) -> EmbeddingsConfig:
        if (self.path is None) == (self.train is None):
            raise ValueError("give embeddings.path (a vectors file) or embeddings.train (train them), not both")
        return self


class TextPreprocessing(Strict):
    lowercase: bool = True
    strip_accents: bool = True
    remove_punctuation: bool = True
    numbers: Literal["keep", "zero", "remove"] = "keep"
    fix_html: bool = True
    tokenizer: Literal["words", "chars"] = "words"
    word_ngrams: int = Field(1, ge=1, le=3, description="adds n-gram tokens (for bag encoders)")
    char_ngrams: tuple[int, int] | None = Field(None, description="fastText-style subwords of each word")
    stem: Literal["es", "pt", "en"] | None = None
    lemmatize: Literal["es", "pt", "en"] | None = None
    min_count: int = Field(1, ge=1)
    max_vocab: int | None = Field(None, gt=0)
    subword_min_count: int = Field(2, ge=1)
    max_subwords: int | None = Field(200_000, gt=0)
    max_length: int = Field(64, gt=0)
    embeddings: EmbeddingsConfig | None = None


# ------------------------------------------------------------------------------------ normalization
_ENTITY_DEBRIS = re.compile(r"(?<![&\w])#(\d{2,5});")  # '&#39;' whose '&' was lost, as in AG News
_CONTRACTION = re.compile(r"(\w) #39;(s|t|ll|re|ve|d|m)\b")  # AG News' "doesn #39;t" is "doesn't"
_PLURAL_POSSESSIVE = re.compile(r"(?<=s) #39;(?=\s)")  # "makers #39; efforts" is "makers' efforts"
_NAMED_DEBRIS = re.compile(r"(?<![&\w])(quot|amp|lt|gt|apos|nbsp);")  # '&quot;' whose '&' was lost
_NAMED = {"quot": '"', "amp": "&", "lt": "<", "gt": ">", "apos": "'", "nbsp": " "}
# HTML tags only: AG News writes tickers as <INTC.O>, which stay
_TAG = re.compile(r"</?(?:a|b|i|u|p|br|em|strong|font|span|div|img)\b[^<>]{0,300}>", re.IGNORECASE)
_ESCAPED_DOLLAR = re.compile(r"\\\$")
_BACKSLASHES = re.compile(r"\\+")
_NON_WORD = re.compile(r"[^\w\s]|_")
_SPACES = re.compile(r"\s+")
_DIGIT = re.compile(r"\d")
_NUMBER = re.compile(r"\d+")
_WORD_OR_MARK = re.compile(r"\w+|[^\w\s]")


def _entity(match: re.Match[str]) -> str:
    code = int(match.group(1))
    if 128 <= code <= 159:  # Windows-1252 code points written as entities (#151; is an em dash)
        return bytes([code]).decode("cp1252", errors="replace")
    return chr(code) if code < 0x110000 else match.group(0)


def repair_markup(text: str) -> str:
    """HTML entities and tags, entity debris (`#39;`) and escaped new lines (`\\`) back to plain text."""
    text = _PLURAL_POSSESSIVE.sub("'", _CONTRACTION.sub(r"\1'\2", text))
    text = _TAG.sub(" ", html.unescape(text))
    text = _ENTITY_DEBRIS.sub(_entity, text)
    text = _NAMED_DEBRIS.sub(lambda match: _NAMED[match.group(1)], text)
    text = _ESCAPED_DOLLAR.sub("$", text)
    return _BACKSLASHES.sub(" ", text)


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalize(text: str, options: TextPreprocessing) -> str:
    if options.fix_html:
        text = repair_markup(text)
    if options.lowercase:
        text = text.lower()
    if options.strip_accents:
        text = strip_accents(text)
    if options.numbers == "zero":
        text = _DIGIT.sub("0", text)
    elif options.numbers == "remove":
        text = _NUMBER.sub(" ", text)
    if options.remove_punctuation:
        text = _NON_WORD.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


@lru_cache(maxsize=8)
def _stemmer(language: str) -> Any:
    import Stemmer

    return Stemmer.Stemmer(LANGUAGES[language])


@lru_cache(maxsize=500_000)
def _lemma(token: str, language: str) -> str:
    import simplemma

    return simplemma.lemmatize(token, lang=language)


class TextPipeline:
    """normalize -> tokenize -> lemmatize / stem -> word n-grams; the same at fit and predict time."""

    def __init__(self, options: TextPreprocessing) -> None:
        self.options = options

    def words(self, text: str) -> list[str]:
        options = self.options
        text = normalize(text, options)
        if options.tokenizer == "chars":
            return list(text)
        tokens = _WORD_OR_MARK.findall(text)
        if options.lemmatize:
            tokens = [_lemma(t, options.lemmatize) for t in tokens]
        if options.stem:
            tokens = _stemmer(options.stem).stemWords(tokens)
        return tokens

    def tokens(self, text: str) -> list[str]:
        words = self.words(text)
        n = self.options.word_ngrams
        grams = ["_".join(words[i: i + k]) for k in range(2, n + 1) for i in range(len(words) - k + 1)]
        return words + grams

    def __call__(self, text: str) -> list[str]:
        return self.tokens(text)


def subwords(token: str, low: int, high: int) -> list[str]:
    """fastText's character n-grams of `<token>`."""
    marked = f"<{token}>"
    return [marked[i: i + n] for n in range(low, high + 1) for i in range(len(marked) - n + 1)]


# ---------------------------------------------------------------------------------------- vocabulary
class Vocabulary:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, counts: Counter[str], min_count: int, max_size: int | None, specials: list[str]) -> Vocabulary:
        kept = [t for t, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
        if max_size is not None:
            kept = kept[: max(max_size - len(specials), 0)]
        return cls(specials + kept)

    def __len__(self) -> int:
        return len(self.tokens)

    def lookup(self, tokens: list[str], default: int | None = 1) -> list[int]:
        get = self.index.get
        if default is None:
            return [i for i in map(get, tokens) if i is not None]
        return [get(t, default) for t in tokens]


# ---------------------------------------------------------------------------------- word vectors
def load_word_vectors(path: Path, fmt: str = "auto") -> Any:
    """word2vec text / binary, GloVe (no header) or fastText .vec, through gensim."""
    from gensim.models import KeyedVectors

    if not path.is_file():
        raise FileNotFoundError(f"{path}: word vectors file not found")
    if fmt == "auto":
        if path.suffix == ".bin":
            fmt = "word2vec_binary"
        else:
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
                first = handle.readline().split()
            fmt = "word2vec" if len(first) == 2 and all(p.isdigit() for p in first) else "glove"
    try:
        return KeyedVectors.load_word2vec_format(
            str(path), binary=fmt == "word2vec_binary", no_header=fmt == "glove", unicode_errors="replace"
        )
    except Exception as exc:  # gensim raises bare ValueErrors / EOFErrors on malformed files
        raise ValueError(f"{path}: cannot read word vectors as {fmt}: {exc}") from exc


# ----------------------------------------------------------------------------------------- feature
@dataclass
class EncodedText:
    ids: np.ndarray  # (rows, length) token ids, 0-padded
    lengths: np.ndarray  # (rows,)
    sub_ids: np.ndarray | None = None  # all subword ids, flat
    sub_start: np.ndarray | None = None  # (rows, length) where each token's subwords start
    sub_count: np.ndarray | None = None  # (rows, length) how many subwords each token has

    def __len__(self) -> int:
        return len(self.lengths)


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

    def fit(self, values: list[str]) -> TextFeature:
        tokenized = [self.pipeline(v) for v in values]
        counts = Counter(t for tokens in tokenized for t in tokens)
        self._subword_cache = None
        self.vocab = Vocabulary.build(counts, self.options.min_count, self.options.max_vocab, [PAD, UNK])
        if self.options.char_ngrams:
            low, high = self.options.char_ngrams
            sub_counts: Counter[str] = Counter()
            for token, count in counts.items():
                for gram in subwords(token, low, high):
                    sub_counts[gram] += count
            self.subword_vocab = Vocabulary.build(sub_counts, self.options.subword_min_count,
                                                  self.options.max_subwords, [PAD])
        spec = self.options.embeddings
        if spec and spec.train:
            from ensayo.embeddings import fit_word_vectors

            sentences = [t for t in tokenized if t]
            self._attach_vectors(counts, fit_word_vectors(sentences, spec.train, f"input {self.name!r}"))
        elif spec and spec.path:
            self._attach_vectors(counts, load_word_vectors(expand_path(spec.path), spec.format))
        return self

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
        return {"vectors": torch.from_numpy(self._vectors), "found": torch.from_numpy(self._found)}

    def transform(self, values: list[str]) -> EncodedText:
        cap = self.options.max_length
        rows = [self.vocab.lookup(self.pipeline(v))[:cap] for v in values]
        rows = [row or [1] for row in rows]  # a text with no tokens left reads as one unknown token
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        width = int(lengths.max()) if len(rows) else 1
        ids = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
        encoded = EncodedText(ids, lengths)
        if self.subword_vocab is not None:
            self._attach_subwords(encoded)
        return encoded

    def _subword_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every vocabulary token's subword ids, flat, with where each token's run starts and how long it is.
        Built once per fitted vocabulary: predicting a file in chunks would otherwise rebuild it per chunk."""
        if self._subword_cache is None:
            assert self.subword_vocab is not None and self.options.char_ngrams
            low, high = self.options.char_ngrams
            table = [self.subword_vocab.lookup(subwords(t, low, high), default=None) if i > 1 else []
                     for i, t in enumerate(self.vocab.tokens)]
            counts = np.array([len(s) for s in table], dtype=np.int64)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            self._subword_cache = (np.array([i for s in table for i in s], dtype=np.int64), starts, counts)
        return self._subword_cache

    def _attach_subwords(self, encoded: EncodedText) -> None:
        flat, starts, counts = self._subword_index()
        encoded.sub_ids = flat
        encoded.sub_start = starts[encoded.ids]
        encoded.sub_count = counts[encoded.ids]

    def lengths(self, encoded: EncodedText) -> np.ndarray:
        return encoded.lengths

    def collate(self, encoded: EncodedText, index: np.ndarray) -> dict[str, torch.Tensor]:
        lengths = encoded.lengths[index]
        width = int(lengths.max())
        batch = {"ids": torch.from_numpy(encoded.ids[index, :width]), "lengths": torch.from_numpy(lengths)}
        if encoded.sub_ids is not None:
            counts = encoded.sub_count[index, :width].reshape(-1)
            starts = encoded.sub_start[index, :width].reshape(-1)
            bag_offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
            positions = np.repeat(starts - bag_offsets, counts) + np.arange(int(counts.sum()))
            batch["sub_ids"] = torch.from_numpy(encoded.sub_ids[positions])
            batch["sub_offsets"] = torch.from_numpy(bag_offsets)
            batch["sub_counts"] = torch.from_numpy(counts)
        return batch

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
        return explore_texts(name, values, directory)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"vocabulary": len(self.vocab)}
        if self.subword_vocab is not None:
            info["subwords"] = len(self.subword_vocab)
        if self.coverage:
            info["embedding_coverage"] = self.coverage
        return info


# ----------------------------------------------------------------------------------------- encoders
class TokenEmbedding(nn.Module):
    """Word embeddings, plus fastText-style subword embeddings averaged in when the feature has them."""

    def __init__(self, feature: TextFeature, dim: int, freeze: bool) -> None:
        super().__init__()
        vectors = feature.init_tensors()
        if vectors and vectors["vectors"].shape[1] != dim:
            raise ValueError(f"input {feature.name!r}: embedding_dim is {dim} but the word vectors "
                             f"({feature.options.embeddings.path or 'trained'}) have "
                             f"{vectors['vectors'].shape[1]} dimensions")
        self.words = nn.Embedding(len(feature.vocab), dim, padding_idx=0, sparse=True)
        # PyTorch's N(0, 1) start makes every token a large random vector that Adam needs thousands of
        # steps to move; a small start (as Keras and fastText use) lets the few examples of a rare class count.
        nn.init.uniform_(self.words.weight, -0.05, 0.05)
        with torch.no_grad():
            self.words.weight[0].zero_()
        if vectors:
            with torch.no_grad():
                found = vectors["found"]
                self.words.weight[found] = vectors["vectors"][found]
        self.words.weight.requires_grad_(not freeze)
        self.subwords = None
        if feature.subword_vocab is not None:
            self.subwords = nn.EmbeddingBag(len(feature.subword_vocab), dim, mode="sum", padding_idx=0,
                                            sparse=True)
            nn.init.uniform_(self.subwords.weight, -0.05, 0.05)
            with torch.no_grad():
                self.subwords.weight[0].zero_()
        self.dim = dim

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = batch["ids"]
        embedded = self.words(ids)
        if self.subwords is not None:
            summed = self.subwords(batch["sub_ids"], batch["sub_offsets"]).view_as(embedded)
            counts = batch["sub_counts"].view(ids.shape).unsqueeze(-1).to(embedded.dtype)
            embedded = (embedded + summed) / (1.0 + counts)
        positions = torch.arange(ids.shape[1], device=ids.device)
        mask = positions.unsqueeze(0) < batch["lengths"].unsqueeze(1)
        return embedded, mask


class BagEncoderConfig(Strict):
    type: Literal["bag"]
    embedding_dim: int = Field(100, gt=0)
    pooling: Literal["mean", "mean_max"] = "mean"
    freeze_embeddings: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)


@TextFeature.register_encoder("bag")
class BagEncoder(Encoder):
    """Mean (and optionally max) of the token embeddings: fastText's architecture."""

    Config = BagEncoderConfig

    def __init__(self, feature: TextFeature, config: BagEncoderConfig) -> None:
        super().__init__()
        self.embed = TokenEmbedding(feature, config.embedding_dim, config.freeze_embeddings)
        self.pooling = config.pooling
        self.dropout = nn.Dropout(config.dropout)
        self.output_dim = config.embedding_dim * (2 if config.pooling == "mean_max" else 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        embedded, mask = self.embed(batch)
        weights = mask.unsqueeze(-1).to(embedded.dtype)
        pooled = (embedded * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        if self.pooling == "mean_max":
            pooled = torch.cat([pooled, embedded.masked_fill(~mask.unsqueeze(-1), -1e4).amax(1)], dim=-1)
        return self.dropout(pooled)


class CnnEncoderConfig(Strict):
    type: Literal["cnn"]
    embedding_dim: int = Field(100, gt=0)
    filter_widths: list[int] = Field(default_factory=lambda: [2, 3, 4], min_length=1)
    filters_count: int = Field(100, gt=0)
    freeze_embeddings: bool = False
    dropout: float = Field(0.1, ge=0, lt=1)


@TextFeature.register_encoder("cnn")
class CnnEncoder(Encoder):
    """Parallel 1-D convolutions of several widths over the embeddings, max-pooled over time."""

    Config = CnnEncoderConfig

    def __init__(self, feature: TextFeature, config: CnnEncoderConfig) -> None:
        super().__init__()
        self.embed = TokenEmbedding(feature, config.embedding_dim, config.freeze_embeddings)
        # Each convolution is one matrix product over unfolded windows: on a CPU this is several times
        # faster than mkldnn's Conv1d for short texts, forward and backward.
        self.convs = nn.ModuleList(
            nn.Linear(config.embedding_dim * width, config.filters_count) for width in config.filter_widths
        )
        self.widths = list(config.filter_widths)
        self.dropout = nn.Dropout(config.dropout)
        self.output_dim = config.filters_count * len(config.filter_widths)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        embedded, _ = self.embed(batch)
        lengths = batch["lengths"]
        shortfall = max(self.widths) - embedded.shape[1]
        if shortfall > 0:
            embedded = nn.functional.pad(embedded, (0, 0, 0, shortfall))
        embedded = self.dropout(embedded)
        pooled = []
        for width, conv in zip(self.widths, self.convs, strict=True):
            windows = embedded.unfold(1, width, 1).flatten(2)  # (batch, positions, width * dim)
            activations = torch.relu(conv(windows))
            positions = torch.arange(activations.shape[1], device=activations.device)
            # a window is valid if it starts inside the text (or is the first one of a short text)
            valid = positions.unsqueeze(0) <= (lengths - width).clamp_min(0).unsqueeze(1)
            pooled.append(activations.masked_fill(~valid.unsqueeze(-1), 0.0).amax(1))
        return self.dropout(torch.cat(pooled, dim=-1))


class RnnEncoderConfig(Strict):
    type: Literal["rnn"]
    embedding_dim: int = Field(100, gt=0)
    cell: Literal["lstm", "gru"] = "lstm"
    hidden_size: int = Field(128, gt=0)
    layers: int = Field(1, ge=1)
    bidirectional: bool = True
    pooling: Literal["max", "mean", "last"] = "max"
    freeze_embeddings: bool = False
    dropout: float = Field(0.1, ge=0, lt=1)


@TextFeature.register_encoder("rnn")
class RnnEncoder(Encoder):
    """A (bidirectional) LSTM or GRU over the embeddings, pooled over time."""

    Config = RnnEncoderConfig

    def __init__(self, feature: TextFeature, config: RnnEncoderConfig) -> None:
        super().__init__()
        self.embed = TokenEmbedding(feature, config.embedding_dim, config.freeze_embeddings)
        cell = nn.LSTM if config.cell == "lstm" else nn.GRU
        self.rnn = cell(config.embedding_dim, config.hidden_size, num_layers=config.layers, batch_first=True,
                        bidirectional=config.bidirectional, dropout=config.dropout if config.layers > 1 else 0.0)
        self.pooling = config.pooling
        self.dropout = nn.Dropout(config.dropout)
        self.output_dim = config.hidden_size * (2 if config.bidirectional else 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        embedded, mask = self.embed(batch)
        packed = pack_padded_sequence(self.dropout(embedded), batch["lengths"].cpu(), batch_first=True,
                                      enforce_sorted=False)
        outputs, state = self.rnn(packed)
        if self.pooling == "last":
            hidden = state[0] if isinstance(state, tuple) else state
            directions = 2 if self.rnn.bidirectional else 1
            return self.dropout(torch.cat(list(hidden[-directions:]), dim=-1))
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=mask.shape[1])
        if self.pooling == "max":
            pooled = outputs.masked_fill(~mask.unsqueeze(-1), -1e4).amax(1)
        else:
            weights = mask.unsqueeze(-1).to(outputs.dtype)
            pooled = (outputs * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.dropout(pooled)


# ------------------------------------------------------------------------------------------ explore
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def explore_texts(name: str, texts: list[str], directory: Path, top: int = 25) -> list[str]:
    """Word and sentence counts, frequent words and characters, word and sentence length distributions
    (after repairing markup, before any other normalization)."""
    import matplotlib.pyplot as plt

    from ensayo.explore import markdown_table

    texts = [repair_markup(str(t)) for t in texts]
    words_per_text = np.array([len(t.split()) for t in texts])
    sentences = [s for t in texts for s in _SENTENCE_END.split(t.strip()) if s]
    words_per_sentence = np.array([len(s.split()) for s in sentences])
    word_lengths = Counter(len(w) for t in texts for w in _WORD_OR_MARK.findall(t) if w[0].isalnum())
    words = Counter(w.lower() for t in texts for w in re.findall(r"\w+", t))
    characters = Counter(c for t in texts for c in t)
    lengths = np.repeat(list(word_lengths), list(word_lengths.values())) if word_lengths else np.zeros(1)

    def spread(values: np.ndarray) -> list[str]:
        return [f"{values.mean():.1f}", f"{np.median(values):.0f}", f"{np.percentile(values, 95):.0f}",
                f"{values.max()}"]

    lines = [
        f"{len(texts):,} texts, {int(words_per_text.sum()):,} words, {len(sentences):,} sentences, "
        f"{sum(characters.values()):,} characters ({len(characters)} distinct), {len(words):,} distinct words.",
        "",
        *markdown_table(["length", "mean", "median", "95%", "max"],
                        [["words per text", *spread(words_per_text)],
                         ["words per sentence", *spread(words_per_sentence if len(sentences) else np.zeros(1))],
                         ["characters per word", *spread(lengths)]]),
        "",
        "Most frequent words: " + ", ".join(f"`{w}` {c:,}" for w, c in words.most_common(top)),
        "",
        "Most frequent characters: " + ", ".join(f"`{c!r}` {n:,}" for c, n in characters.most_common(top)),
        "",
    ]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    axes[0].hist(words_per_text, bins=50, color="tab:blue")
    axes[0].set(title="words per text", xlabel="words")
    if len(sentences):
        axes[1].hist(words_per_sentence, bins=50, color="tab:orange")
    axes[1].set(title="words per sentence", xlabel="words")
    axes[2].bar(list(word_lengths), list(word_lengths.values()), color="tab:green")
    axes[2].set(title="characters per word", xlabel="characters")
    figure.tight_layout()
    figure.savefig(directory / f"{name}_lengths.png", dpi=110)
    plt.close(figure)
    return [*lines, f"![length distributions]({name}_lengths.png)"]
