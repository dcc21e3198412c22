"""Rows -> usable rows: filters, rows with an empty input or label, and inputs whose files are unusable."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import polars as pl

from ensayo.data.read import FILE, LINE
from ensayo.data.report import BadRow, DataError, DataReport
from ensayo.recipe import Recipe, RecipeError, expand_path
from ensayo.recipe.safe_yaml import load_yaml


@runtime_checkable
class FileInput(Protocol):
    """The preprocessing of an input whose values are file paths (audio, images): it says which files are
    unusable, and whether their rows stay (the feature stands in for the file) instead of being dropped."""

    root: str | None

    def file_problems(self, paths: list[str]) -> dict[int, str]: ...

    def keeps_bad_files(self) -> bool: ...

    # optional: `file_notes(paths) -> {row: note}`, what a person should know of how a file was read (a clip
    # with more speech than the model hears)


_FILTER = re.compile(r"^\s*([\w.]+)\s*(==|!=|>=|<=|>|<|not in|in)\s*([^=<>!\s].*?)\s*$")


def check_filter(text: str) -> str | None:
    """Why a filter cannot be read, or None: checked by `ensayo validate` before any data is read."""
    match = _FILTER.match(text)
    if not match:
        return (f"cannot read {text!r}; expected 'column op value' with op one of ==, !=, <, <=, >, >=, in, "
                "not in")
    try:
        load_yaml(match.group(3), f"data.filters {text!r}")
    except RecipeError:
        return f"cannot read the value of {text!r}"
    return None


def filter_column(text: str) -> str | None:
    """The column a filter reads, or None when it cannot be read."""
    match = _FILTER.match(text)
    return match.group(1) if match else None


def filter_values(table: pl.DataFrame, text: str) -> str:
    """What a filter's column holds, to say why it kept nothing."""
    match = _FILTER.match(text)
    if not match or match.group(1) not in table.columns:
        return "no row matches"
    column = match.group(1)
    values = table[column].cast(pl.String).value_counts(sort=True).head(8)[column].to_list()
    return f"{column!r} holds {', '.join(repr(v) for v in values)}" + (", ..." if len(values) == 8 else "")


def parse_filter(text: str, columns: list[str]) -> pl.Expr:
    """`language == spanish`, `label_quality in [reliable]`, `tier >= 2` -> a polars expression."""
    problem = check_filter(text)
    if problem:
        raise DataError(f"data.filters: {problem}")
    match = _FILTER.match(text)
    assert match is not None
    column, op, raw = match.groups()
    if column not in columns:
        raise DataError(f"data.filters: {text!r} names column {column!r}, which the data does not have "
                        f"(columns: {', '.join(c for c in columns if not c.startswith('__'))})")
    value = load_yaml(raw, f"data.filters {text!r}")
    target = pl.col(column)
    if op in ("in", "not in"):
        values = value if isinstance(value, list) else [value]
        expr = target.cast(pl.String).is_in([str(v) for v in values])
        return ~expr if op == "not in" else expr
    if isinstance(value, int | float) and not isinstance(value, bool):
        target = target.cast(pl.Float64, strict=False)
    else:
        target, value = target.cast(pl.String), str(value)
    return {"==": target == value, "!=": target != value, ">": target > value,
            "<": target < value, ">=": target >= value, "<=": target <= value}[op]


def required_columns(recipe: Recipe) -> list[str]:
    """Columns every row needs; a binned column is made after the split, so its source stands in for it."""
    binned = {d.name: d.bin.column for d in recipe.derive if d.bin is not None}
    columns = [recipe.column_of(f) for f in recipe.inputs] + recipe.output.source_columns
    return list(dict.fromkeys(binned.get(c, c) for c in columns))


def absent_columns(table: pl.DataFrame, said: str) -> DataError:
    """The error for columns the recipe names and the data lacks; `said` names them."""
    source = table[FILE][0] if table.height else "the data"
    return DataError(f"{source}: {said} (columns: {', '.join(c for c in table.columns if not c.startswith('__'))})")


def drop_incomplete_rows(table: pl.DataFrame, columns: list[str], bad: list[BadRow],
                         computed: set[str] | frozenset[str] = frozenset()) -> pl.DataFrame:
    """Rows whose inputs or label are missing or empty are bad rows too; an empty `computed` column (a derived
    expression) is one whose value was not a finite number (a division by zero, the log of 0...)."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise absent_columns(table, f"column(s) {missing} named by the recipe are not in the data")
    empty = pl.lit(False)
    for column in columns:
        value = pl.col(column)
        is_empty = value.is_null()
        if table.schema[column] == pl.String:
            is_empty = is_empty | (value.str.strip_chars() == "")
        empty = empty | is_empty
    flagged = table.filter(empty)
    for row in flagged.iter_rows(named=True):
        empties = [c for c in columns if row[c] is None or (isinstance(row[c], str) and not row[c].strip())]
        said = [f"{c} is not a finite number (a division by zero, the log of 0 or less...)" if c in computed
                else f"empty {c}" for c in empties]
        bad.append(BadRow(row[FILE], row[LINE], "; ".join(said)))
    return table.filter(~empty)


def check_files(table: pl.DataFrame, recipe: Recipe, report: DataReport, base: Path | None) -> pl.DataFrame:
    """Inputs whose values are file paths (audio, images): resolve them (against the input's `root`, else the
    data file's folder) and drop the rows whose file is missing or unreadable, naming the file (or keep and
    report them, when the feature stands in for a missing file)."""
    for spec in recipe.inputs:
        options = spec.preprocessing
        if not isinstance(options, FileInput) or table.height == 0:
            continue
        column = recipe.column_of(spec)
        paths = []
        folder = expand_path(options.root, base) if options.root else None
        for value, source in zip(table[column].cast(pl.String).to_list(), table[FILE].to_list(), strict=True):
            path = Path(value).expanduser()  # a value from the data: no ${...} expansion
            paths.append(str(path if path.is_absolute() else (folder or Path(source).parent) / path))
        table = table.with_columns(pl.Series(column, paths, dtype=pl.String))
        problems = options.file_problems(paths)
        if problems:
            found = []
            for index, reason in sorted(problems.items()):
                line = table[LINE][index] if table[FILE][index] != paths[index] else None
                where = f" ({paths[index]})" if line is not None else ""
                found.append(BadRow(table[FILE][index], line, f"{column}: {reason}{where}"))
            if options.keeps_bad_files():
                report.kept_without_file += [str(b) for b in found]
                continue
            report.bad_rows.extend(found)
            keep = np.ones(table.height, dtype=bool)
            keep[list(problems)] = False
            table = table.filter(pl.Series(keep))
    return table
