"""Text preprocessing: the schema, markup repair and normalization, tokens (stems, lemmas, word n-grams,
subwords), vocabularies and word vectors (read or trained with gensim)."""

from __future__ import annotations

import gzip
import html
import re
import unicodedata
from collections.abc import Mapping
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
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
_DIGIT = re.compile(r"\d")
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


# every character repair_markup changes is found next to one of these: a text without them skips it
_MARKUP_SIGN = re.compile(r"[&<;\\]")


class CharacterMap(dict[int, str]):
    """What accent stripping, the digits' rule and punctuation removal make of each character, for
    `str.translate`, computed the first time a character is met. All three act on one character at a time:
    NFKD decomposes each character by itself and only reorders combining marks, which stripping drops."""

    def __init__(self, strip: bool, numbers: str, remove_punctuation: bool) -> None:
        super().__init__()
        self.strip, self.numbers, self.remove_punctuation = strip, numbers, remove_punctuation

    def __missing__(self, code: int) -> str:
        text = chr(code)
        if self.strip:
            text = strip_accents(text)
        if self.numbers == "zero":
            text = _DIGIT.sub("0", text)
        elif self.numbers == "remove":
            text = _DIGIT.sub(" ", text)  # a run of digits becomes one space once spaces are collapsed
        if self.remove_punctuation:
            text = _NON_WORD.sub(" ", text)
        self[code] = text
        return text


@lru_cache(maxsize=16)
def _character_map(strip: bool, numbers: str, remove_punctuation: bool) -> CharacterMap:
    return CharacterMap(strip, numbers, remove_punctuation)


def character_map(options: TextPreprocessing) -> CharacterMap | None:
    """The options' CharacterMap (one per combination, kept), or None if they change no character."""
    if not (options.strip_accents or options.numbers != "keep" or options.remove_punctuation):
        return None
    return _character_map(options.strip_accents, options.numbers, options.remove_punctuation)


def normalize(text: str, options: TextPreprocessing) -> str:
    """Markup repaired, lowercased, accents stripped, digits zeroed or removed, punctuation removed (each as
    `options` say), spaces collapsed."""
    if options.fix_html and _MARKUP_SIGN.search(text):
        text = repair_markup(text)
    return " ".join(_lowered_and_mapped(text, options).split())  # str.split's whitespace is the regexes' \s


def _lowered_and_mapped(text: str, options: TextPreprocessing) -> str:
    if options.lowercase:
        text = text.lower()  # before the character map: a final sigma lowercases by its context
    characters = character_map(options)
    return text if characters is None else text.translate(characters)


@lru_cache(maxsize=8)
def _stemmer(language: str) -> Any:
    import Stemmer

    return Stemmer.Stemmer(LANGUAGES[language])


@lru_cache(maxsize=500_000)
def _lemma(token: str, language: str) -> str:
    import simplemma

    return simplemma.lemmatize(token, lang=language)


_APART = "\x00"  # joins a batch of texts for the whole-string steps; a batch that has it goes text by text


class TextPipeline:
    """normalize -> tokenize -> lemmatize / stem -> word n-grams; the same at fit and predict time, for one
    text (`tokens`) or for many at once (`many`, which gives the same tokens faster)."""

    def __init__(self, options: TextPreprocessing) -> None:
        self.options = options
        characters = character_map(options)
        # the joint between texts stays as it is (alone, punctuation removal would make it a space)
        self.joined_characters = None if characters is None else CharacterMap(
            characters.strip, characters.numbers, characters.remove_punctuation)
        if self.joined_characters is not None:
            self.joined_characters[ord(_APART)] = _APART
        # without punctuation, lemmas or stems, a normalized text's words are what lies between its spaces
        self.words_between_spaces = (options.tokenizer != "chars" and options.remove_punctuation
                                     and not options.lemmatize and not options.stem)

    def words(self, text: str) -> list[str]:
        return self._split(normalize(text, self.options))

    def tokens(self, text: str) -> list[str]:
        return self._with_ngrams(self.words(text))

    def __call__(self, text: str) -> list[str]:
        return self.tokens(text)

    def many(self, texts: list[str]) -> list[list[str]]:
        """`tokens` of each text, as `tokens` gives them, faster."""
        if self.options.word_ngrams == 1:
            return self.many_words(texts)
        with_ngrams = self._with_ngrams
        return [with_ngrams(words) for words in self.many_words(texts)]

    def many_words(self, texts: list[str]) -> list[list[str]]:
        """`words` of each text, as `words` gives them, faster."""
        if self.words_between_spaces:
            return [text.split() for text in self._normalized_apart(texts)]
        split = self._split
        return [split(text) for text in self._normalized_apart(texts)]

    def many_normalized(self, texts: list[str]) -> list[str]:
        """`normalize` of each text, as it gives them, faster."""
        return [" ".join(text.split()) for text in self._normalized_apart(texts)]

    def _normalized_apart(self, texts: list[str]) -> list[str]:
        """The texts normalized, their spaces not collapsed yet. Lowercasing and the character map run over the
        texts joined into one string (one call into C instead of one per text); a text's lowercasing does not
        see past the joint, which is neither a letter nor ignorable by case, as it does not see past its ends.
        The ASCII texts are joined apart from the others: `str.translate` of an ASCII string reads a table of
        128 characters, and of any other string looks each character up in the map."""
        if self.options.fix_html:
            texts = [repair_markup(text) if _MARKUP_SIGN.search(text) else text for text in texts]
        plain = [i for i, text in enumerate(texts) if text.isascii()]
        if len(plain) in (0, len(texts)):
            return self._joined_lowered_and_mapped(texts)
        others = [i for i, text in enumerate(texts) if not text.isascii()]
        normalized = [""] * len(texts)
        for rows in (plain, others):
            for row, text in zip(rows, self._joined_lowered_and_mapped([texts[i] for i in rows]), strict=True):
                normalized[row] = text
        return normalized

    def _joined_lowered_and_mapped(self, texts: list[str]) -> list[str]:
        if not texts:
            return []
        joined = _APART.join(texts)
        if joined.count(_APART) != len(texts) - 1:  # a text has the joint in it: one at a time
            return [_lowered_and_mapped(text, self.options) for text in texts]
        if self.options.lowercase:
            joined = joined.lower()
        if self.joined_characters is not None:
            joined = joined.translate(self.joined_characters)
        return joined.split(_APART)

    def _split(self, text: str) -> list[str]:
        """The words of a normalized text (its spaces collapsed or not)."""
        options = self.options
        if options.tokenizer == "chars":
            return list(" ".join(text.split()))
        # without punctuation a normalized text is words between spaces
        tokens = text.split() if options.remove_punctuation else WORD_OR_MARK.findall(text)
        if options.lemmatize:
            tokens = [_lemma(t, options.lemmatize) for t in tokens]
        if options.stem:
            tokens = _stemmer(options.stem).stemWords(tokens)
        return tokens

    def _with_ngrams(self, words: list[str]) -> list[str]:
        n = self.options.word_ngrams
        if n == 1:
            return words
        return words + ["_".join(words[i: i + k]) for k in range(2, n + 1) for i in range(len(words) - k + 1)]


def subwords(token: str, low: int, high: int) -> list[str]:
    """fastText's character n-grams of `<token>`."""
    marked = f"<{token}>"
    return [marked[i: i + n] for n in range(low, high + 1) for i in range(len(marked) - n + 1)]


def subword_table(tokens: list[str], low: int, high: int) -> pl.DataFrame:
    """`subwords` of every token as rows (token: its place in `tokens`, gram), by gram length, then token, then
    start (a stable sort by token gives `subwords`' order), made by polars in one pass (a vocabulary of millions
    of words has tens of millions of subwords)."""
    marked = pl.DataFrame({"token": pl.int_range(len(tokens), eager=True, dtype=pl.Int64),
                           "marked": pl.Series(tokens, dtype=pl.String)})
    marked = marked.with_columns(pl.concat_str(pl.lit("<"), "marked", pl.lit(">")).alias("marked"))
    grams = [marked.select("token", pl.int_ranges(0, pl.col("marked").str.len_chars().cast(pl.Int64) - n + 1)
                           .alias("start"), "marked").explode("start").drop_nulls("start")
             .select("token", pl.col("marked").str.slice(pl.col("start"), n).alias("gram"))
             for n in range(low, high + 1)]
    return pl.concat(grams)


# ---------------------------------------------------------------------------------------- vocabulary
class Vocabulary:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens

    @cached_property
    def index(self) -> dict[str, int]:
        """Each token's id, made when first asked for: a subword vocabulary is read by position only, and
        hundreds of thousands of tokens take a while to hash."""
        return dict(zip(self.tokens, range(len(self.tokens)), strict=True))

    @classmethod
    def build_with_ids(cls, counts: Mapping[str, int], min_count: int, max_size: int | None,
                       specials: list[str]) -> tuple[Vocabulary, np.ndarray]:
        """The vocabulary of `counts` (as `ranked` makes it), and each counted token's id in it (in `counts`' order;
        -1 for a token left out): what `index.get(token, -1)` gives, without a dictionary lookup per token."""
        frame = pl.DataFrame({"token": pl.Series(list(counts), dtype=pl.String),
                              "count": pl.Series(list(counts.values()), dtype=pl.Int64)}).with_row_index("place")
        kept = cls._kept(frame, min_count, max_size, len(specials))
        vocabulary = cls(specials + kept["token"].to_list())
        ids = np.full(frame.height, -1, dtype=np.int64)
        ids[kept["place"].to_numpy()] = np.arange(len(specials), len(vocabulary), dtype=np.int64)
        return vocabulary, ids

    @classmethod
    def ranked(cls, counts: pl.DataFrame, min_count: int, max_size: int | None, specials: list[str]) -> Vocabulary:
        """`specials`, then the tokens of a (token, count) table seen at least `min_count` times, most frequent
        first, ties in code point order (polars compares UTF-8 bytes, which order as code points do)."""
        return cls(specials + cls._kept(counts, min_count, max_size, len(specials))["token"].to_list())

    @staticmethod
    def _kept(counts: pl.DataFrame, min_count: int, max_size: int | None, specials: int) -> pl.DataFrame:
        """The rows of `counts` that `ranked` keeps, in its order."""
        kept = counts.filter(pl.col("count") >= min_count).sort(["count", "token"], descending=[True, False])
        return kept if max_size is None else kept.head(max(max_size - specials, 0))

    def __len__(self) -> int:
        return len(self.tokens)

    def lookup(self, tokens: list[str], default: int = 1) -> list[int]:
        """Each token's id; `default` (the unknown token) for a token outside the vocabulary."""
        get = self.index.get
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
