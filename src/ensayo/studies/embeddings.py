"""Self-trained word vectors: gensim word2vec or fastText on a text column, written as a word2vec text
file (`.vec`) that the text feature's `preprocessing.embeddings` loads.

The tokens are made by the text feature's own pipeline, so that a recipe with the same normalization
finds its words in the vectors: `normalize: true` is the feature's default normalization (lowercase,
accents and punctuation stripped), `false` keeps the words as written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ensayo.data import DataError, parse_filter, read_file
from ensayo.features.text import TextPipeline, TextPreprocessing, WordVectorTraining, fit_word_vectors
from ensayo.recipe import DataConfig, expand_path

RAW_TEXT = {"lowercase": False, "strip_accents": False, "remove_punctuation": False}


class EmbeddingJob(WordVectorTraining):
    source: str = Field("train", description="'train' (the study recipe's training split) or a data file")
    column: str = "title"
    header: bool = True
    columns: list[str] | None = Field(None, description="column names of a file without header")
    filters: list[str] = Field(default_factory=list)
    limit: int | None = Field(None, gt=0, description="at most this many texts")
    normalize: bool = True
    numbers: Literal["keep", "zero", "remove"] = "keep"


def preprocessing_for(job: EmbeddingJob) -> TextPreprocessing:
    """The text feature preprocessing whose tokens these vectors are trained on."""
    options = {} if job.normalize else dict(RAW_TEXT)
    return TextPreprocessing(**options, numbers=job.numbers)


def read_texts(path: Path, column: str, filters: list[str] | None = None, limit: int | None = None,
               header: bool = True, columns: list[str] | None = None) -> list[str]:
    """One column of a CSV / JSONL / Parquet file, after `filters`; empty values are skipped."""
    bad: list[Any] = []
    table = read_file(path, DataConfig(source=str(path), header=header, columns=columns), bad)
    for text in filters or []:
        table = table.filter(parse_filter(text, table.columns))
    if column not in table.columns:
        raise DataError(f"{path}: no column {column!r} to train word vectors on; columns: {table.columns}")
    texts = [t for t in table[column].cast(str).to_list() if t and t.strip()]
    return texts[:limit] if limit else texts


def train_word_vectors(texts: Iterable[str], job: EmbeddingJob, target: Path) -> dict[str, Any]:
    """Tokenize with the feature's pipeline, train, write `target` (.vec); returns what was done."""
    pipeline = TextPipeline(preprocessing_for(job))
    sentences = [tokens for tokens in (pipeline(t) for t in texts) if tokens]
    started = time.perf_counter()
    vectors = fit_word_vectors(sentences, job, target.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    vectors.save_word2vec_format(str(partial))
    partial.replace(target)  # an interrupted job leaves no half file that looks finished
    return {"texts": len(sentences), "tokens": sum(map(len, sentences)), "words": len(vectors),
            "dimension": job.dim, "seconds": round(time.perf_counter() - started, 1), "path": str(target)}


def train_job(job: EmbeddingJob, target: Path, training_texts: Callable[[str], list[str]],
              base: Path | None = None) -> dict[str, Any]:
    """Run one job of a study: its texts come from `training_texts(column)` when source is 'train'."""
    if job.source == "train":
        texts = training_texts(job.column)
        texts = texts[: job.limit] if job.limit else texts
    else:
        texts = read_texts(expand_path(job.source, base), job.column, job.filters, job.limit, job.header, job.columns)
    return train_word_vectors(texts, job, target)
