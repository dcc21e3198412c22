"""fastText supervised as practitioners use it (25 epochs, lr 0.5, word bigrams, character 3-5-grams, dim 100,
2 threads), the peer of the text benchmarks, fed the very rows of an ensayo split after the recipe's own
normalization."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any


def fasttext_lines(recipe: Any, table: Any) -> list[str]:
    """Each row's words: the recipe's text inputs, normalized as the recipe does (fastText reads words, not a
    sentence model's vector)."""
    from ensayo.features.text import normalize

    words = [spec for spec in recipe.inputs if spec.type == "text"]
    return [" ".join(normalize(str(row[recipe.column_of(spec)]), spec.preprocessing) for spec in words)
            for row in table.iter_rows(named=True)]


def fasttext_labels(recipe: Any, table: Any) -> list[str]:
    return [str(value).replace(" ", "_") for value in table[recipe.output.column].to_list()]


def train_fasttext(recipe: Any, table: Any, epochs: int = 25) -> tuple[Any, float]:
    """fastText trained on `table`'s rows, and the seconds its training took (writing its file left out)."""
    import fasttext

    with tempfile.TemporaryDirectory() as folder:
        train_file = Path(folder) / "train.txt"
        train_file.write_text("".join(f"__label__{label} {line}\n" for label, line in
                                      zip(fasttext_labels(recipe, table), fasttext_lines(recipe, table), strict=True)))
        started = time.perf_counter()
        model = fasttext.train_supervised(str(train_file), epoch=epochs, lr=0.5, wordNgrams=2, minn=3, maxn=5,
                                          dim=100, loss="softmax", thread=2, verbose=0, seed=42)
        return model, time.perf_counter() - started


def fasttext_predicted(model: Any, lines: list[str]) -> list[str]:
    return [labels[0].removeprefix("__label__") for labels in model.predict(lines, k=1)[0]]
