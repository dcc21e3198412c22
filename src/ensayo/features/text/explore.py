"""The text section of `ensayo explore`: counts, frequent words and characters, length distributions."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from ensayo import figures
from ensayo.features.report import markdown_table
from ensayo.features.text.preprocessing import WORD_OR_MARK, repair_markup

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def explore_texts(name: str, texts: list[str], directory: Path, top: int = 25) -> list[str]:
    """Word and sentence counts, frequent words and characters, word and sentence length distributions
    (after repairing markup, before any other normalization)."""

    texts = [repair_markup(str(t)) for t in texts]
    words_per_text = np.array([len(t.split()) for t in texts])
    sentences = [s for t in texts for s in _SENTENCE_END.split(t.strip()) if s]
    words_per_sentence = np.array([len(s.split()) for s in sentences])
    word_lengths = Counter(len(w) for t in texts for w in WORD_OR_MARK.findall(t) if w[0].isalnum())
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
    figure = figures.figure(figsize=(13, 3.5), layout="tight")
    axes = figure.subplots(1, 3)
    axes[0].hist(words_per_text, bins=50, color="tab:blue")
    axes[0].set(title="words per text", xlabel="words")
    if len(sentences):
        axes[1].hist(words_per_sentence, bins=50, color="tab:orange")
    axes[1].set(title="words per sentence", xlabel="words")
    axes[2].bar(list(word_lengths), list(word_lengths.values()), color="tab:green")
    axes[2].set(title="characters per word", xlabel="characters")
    figures.save(figure, directory / f"{name}_lengths.png", dpi=110)
    return [*lines, f"![length distributions]({name}_lengths.png)"]
