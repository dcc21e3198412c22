"""Text preprocessing: the schema, markup repair and normalization, tokens (stems, lemmas, word n-grams,
subwords), vocabularies and word vectors (read or trained with gensim)."""

from __future__ import annotations

import gzip
import html
import re
import unicodedata
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ensayo.data import DataError
from ensayo.recipe import Strict

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
WORD_OR_MARK = re.compile(r"\w+|[^\w\s]")


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
        tokens = WORD_OR_MARK.findall(text)
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


def fit_word_vectors(sentences: list[list[str]], settings: WordVectorTraining, source: str) -> Any:
    """gensim KeyedVectors trained on token lists; `source` names them in an error."""
    from gensim.models import FastText, Word2Vec

    if not sentences:
        raise DataError(f"no text to train word vectors for {source}")
    trainer = FastText if settings.method == "fasttext" else Word2Vec
    model = trainer(sentences=sentences, vector_size=settings.dim, window=settings.window,
                    min_count=settings.min_count, epochs=settings.epochs, sg=int(settings.skip_gram),
                    seed=settings.seed, workers=2)
    return model.wv
