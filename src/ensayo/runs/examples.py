"""A few rows of a run's test split, kept with the run so that a person can try the model on real input with one
click (the server's page): a classifier's input values (its files copied beside, in `examples/`), a
generator's prompts (the start of test documents)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import polars as pl

from ensayo import layout
from ensayo.features.rows import input_fields
from ensayo.recipe import Recipe
from ensayo.store import read_json, write_json

COUNT = 3  # examples kept
PROMPT_CHARACTERS = 40


def write_examples(run_dir: Path, recipe: Recipe, table: pl.DataFrame, count: int = COUNT) -> None:
    """The first `count` rows of `table` (the test split, or whatever split has rows) as examples.json."""
    rows = table.head(count)
    if recipe.output.type == "text":
        from ensayo.outputs.text import documents  # (torch: it is written while training)

        prompts = [" ".join(text[:PROMPT_CHARACTERS].split()[:-1]) for text in documents(rows, recipe.output)]
        write_json(run_dir / layout.EXAMPLES, [{"prompt": prompt} for prompt in prompts if prompt])
        return
    examples = []
    for index, row in enumerate(rows.to_dicts()):
        example: dict[str, Any] = {}
        for field in input_fields(recipe):
            value = row.get(field.name)
            if field.values.kind == "file" and value:
                source = Path(str(value))
                if not source.is_file():
                    break
                copy = run_dir / layout.EXAMPLE_FILES / f"{index}-{field.name}{source.suffix.lower()}"
                copy.parent.mkdir(exist_ok=True)
                shutil.copyfile(source, copy)
                value = copy.name
            example[field.name] = value
        else:
            examples.append(example)
    write_json(run_dir / layout.EXAMPLES, examples)


def read_examples(run_dir: Path) -> list[dict[str, Any]]:
    """The run's examples; none for a run saved before they were kept."""
    path = run_dir / layout.EXAMPLES
    return read_json(path) if path.is_file() else []
