"""Recipe -> table: read the source files, count bad rows, filter, sample and split."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from ensayo.config import DataConfig, Recipe, expand_path
from ensayo.derive import Bins, apply_expressions

LINE = "__line__"
FILE = "__file__"


class DataError(ValueError):
    """Data that cannot be used as the recipe asks; the message names the file, line or column."""


@dataclass
class BadRow:
    file: str
    line: int | None  # None for a row that is a whole file (a folder data set)
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}" if self.line is None else f"{self.file}:{self.line}: {self.reason}"


@dataclass
class DataReport:
    """What reading and splitting did to the rows, kept with the run."""

    rows_read: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    rows_filtered_out: int = 0
    split_sizes: dict[str, int] = field(default_factory=dict)
    labels_only_in_eval: dict[str, list[str]] = field(default_factory=dict)
    kept_without_file: list[str] = field(default_factory=list)  # rows kept with a stand-in for a bad file

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "bad_rows": len(self.bad_rows),
            "bad_row_examples": [str(b) for b in self.bad_rows[:50]],
            "rows_filtered_out": self.rows_filtered_out,
            "split_sizes": self.split_sizes,
            "labels_only_in_eval": self.labels_only_in_eval,
            "kept_without_file": self.kept_without_file,
        }

    def summary_lines(self) -> list[str]:
        lines = [f"read {self.rows_read:,} rows; " + ", ".join(f"{k} {v:,}" for k, v in self.split_sizes.items())]
        if self.bad_rows:
            lines.append(f"skipped {len(self.bad_rows):,} bad rows, e.g. " + "; ".join(map(str, self.bad_rows[:3])))
        if self.rows_filtered_out:
            lines.append(f"filters removed {self.rows_filtered_out:,} rows")
        if self.kept_without_file:
            lines.append(f"kept {len(self.kept_without_file):,} rows whose file is unusable (as the recipe asks), "
                         "e.g. " + "; ".join(self.kept_without_file[:3]))
        for split, labels in self.labels_only_in_eval.items():
            lines.append(f"{len(labels)} label(s) appear in {split} but not in train (always wrong there): "
                         + ", ".join(labels[:10]))
        return lines


@dataclass
class Splits:
    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame
    report: DataReport
    bins: Bins | None = None  # derived bins, fitted on train (saved with the run)

    def items(self) -> Iterator[tuple[str, pl.DataFrame]]:
        yield from (("train", self.train), ("validation", self.validation), ("test", self.test))


# ------------------------------------------------------------------------------------------ readers
def detect_format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    for suffix, fmt in ((".csv", "csv"), (".tsv", "csv"), (".txt", "csv"), (".parquet", "parquet"),
                        (".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "jsonl")):
        if name.endswith(suffix):
            return fmt
    raise DataError(f"{path}: cannot tell the format from the file name; set data.format")


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _read_csv(path: Path, config: DataConfig, bad: list[BadRow]) -> tuple[list[str], list[list[str]], list[int]]:
    rows: list[list[str]] = []
    lines: list[int] = []
    with _open_text(path) as handle:
        reader = csv.reader(handle, delimiter=config.separator)
        if config.header:
            try:
                columns = next(reader)
            except StopIteration:
                raise DataError(f"{path}: the file is empty, expected a header line") from None
            if config.columns and len(config.columns) == len(columns):
                columns = config.columns
        else:
            columns = list(config.columns or [])
        width = len(columns)
        line = reader.line_num
        try:
            for row in reader:
                start, line = line + 1, reader.line_num
                if not row:
                    continue
                if len(row) != width:
                    bad.append(BadRow(str(path), start, f"{len(row)} fields, expected {width}"))
                    continue
                rows.append(row)
                lines.append(start)
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: cannot parse CSV: {exc}") from None
    return columns, rows, lines


def _read_jsonl(path: Path, bad: list[BadRow]) -> tuple[list[str], list[list[Any]], list[int]]:
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    with _open_text(path) as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                bad.append(BadRow(str(path), number, f"not valid JSON: {exc.msg}"))
                continue
            if not isinstance(record, dict):
                bad.append(BadRow(str(path), number, "not a JSON object"))
                continue
            records.append(record)
            lines.append(number)
    columns = list(dict.fromkeys(key for record in records for key in record))
    rows = [[record.get(c) for c in columns] for record in records]
    return columns, rows, lines


_FIELD = re.compile(r"\{(\w+)\}")


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """'{digit}_{speaker}_{index}.wav' -> a regex with one named group per field."""
    parts, position = [], 0
    for match in _FIELD.finditer(pattern):
        parts += [re.escape(pattern[position: match.start()]), f"(?P<{match.group(1)}>[^/]+?)"]
        position = match.end()
    parts.append(re.escape(pattern[position:]))
    return re.compile("^" + "".join(parts) + "$")


def read_folder(path: Path, config: DataConfig, bad: list[BadRow], need_fields: bool = True) -> pl.DataFrame:
    """One row per file of a folder (or one file): the path, and the fields its name carries."""
    pattern = config.pattern or ""
    suffix = pattern[max(m.end() for m in _FIELD.finditer(pattern)):] if _FIELD.search(pattern) else ""
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.name.lower().endswith(suffix.lower()))
    else:
        raise DataError(f"{path}: no such file or folder")
    regex = pattern_regex(pattern)
    fields = regex.groupindex.keys()
    rows: dict[str, list[Any]] = {name: [] for name in fields}
    rows[config.path_column], rows[LINE], rows[FILE] = [], [], []
    for number, file in enumerate(files, start=1):
        match = regex.match(file.name)
        if match is None and need_fields:
            bad.append(BadRow(str(file), None, f"file name does not match the pattern {pattern!r}"))
            continue
        for name in fields:
            rows[name].append(match.group(name) if match else None)
        rows[config.path_column].append(str(file.resolve()))
        rows[LINE].append(number)
        rows[FILE].append(str(file))
    return pl.DataFrame(rows, schema={**dict.fromkeys(fields, pl.String), config.path_column: pl.String,
                                      LINE: pl.Int64, FILE: pl.String})


def read_file(path: Path, config: DataConfig, bad: list[BadRow]) -> pl.DataFrame:
    """Read one file (or, for the folder format, a folder) into a string table with the source line of
    every row."""
    if config.format == "folder":
        table = read_folder(path, config, bad)
        return table.head(config.limit) if config.limit else table
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    fmt = detect_format(path) if config.format == "auto" else config.format
    if fmt == "parquet":
        table = pl.read_parquet(path)
        if config.limit:
            table = table.head(config.limit)
        return table.with_columns(pl.int_range(1, table.height + 1).alias(LINE), pl.lit(str(path)).alias(FILE))
    if fmt == "csv":
        columns, rows, lines = _read_csv(path, config, bad)
    else:
        columns, rows, lines = _read_jsonl(path, bad)
    if config.limit:
        rows, lines = rows[: config.limit], lines[: config.limit]
    data = {name: [row[i] for row in rows] for i, name in enumerate(columns)}
    table = pl.DataFrame(data, schema=dict.fromkeys(columns, pl.String) if fmt == "csv" else None)
    return table.with_columns(pl.Series(LINE, lines, dtype=pl.Int64), pl.lit(str(path)).alias(FILE))


# ------------------------------------------------------------------------------------------ filters
_FILTER = re.compile(r"^\s*([\w.]+)\s*(==|!=|>=|<=|>|<|not in|in)\s*(.+?)\s*$")


def parse_filter(text: str, columns: list[str]) -> pl.Expr:
    """`language == spanish`, `label_quality in [reliable]`, `tier >= 2` -> a polars expression."""
    match = _FILTER.match(text)
    if not match:
        raise DataError(f"data.filters: cannot read {text!r}; expected 'column op value' "
                        "with op one of ==, !=, <, <=, >, >=, in, not in")
    column, op, raw = match.groups()
    if column not in columns:
        raise DataError(f"data.filters: {text!r} names column {column!r}, which the data does not have "
                        f"(columns: {', '.join(c for c in columns if not c.startswith('__'))})")
    value = yaml.safe_load(raw)
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


# ------------------------------------------------------------------------------------------- checks
def required_columns(recipe: Recipe) -> list[str]:
    """Columns every row needs; a binned column is made after the split, so its source stands in for it."""
    binned = {d.name: d.bin.column for d in recipe.derive if d.bin is not None}
    columns = [recipe.column_of(f) for f in recipe.inputs] + recipe.output.source_columns
    return list(dict.fromkeys(binned.get(c, c) for c in columns))


def _absent_columns(table: pl.DataFrame, said: str) -> DataError:
    """The error for columns the recipe names and the data lacks; `said` names them."""
    source = table[FILE][0] if table.height else "the data"
    return DataError(f"{source}: {said} (columns: {', '.join(c for c in table.columns if not c.startswith('__'))})")


def drop_incomplete_rows(table: pl.DataFrame, columns: list[str], bad: list[BadRow]) -> pl.DataFrame:
    """Rows whose inputs or label are missing or empty are bad rows too."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise _absent_columns(table, f"column(s) {missing} named by the recipe are not in the data")
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
        bad.append(BadRow(row[FILE], row[LINE], f"empty {', '.join(empties)}"))
    return table.filter(~empty)


def check_files(table: pl.DataFrame, recipe: Recipe, report: DataReport, base: Path | None) -> pl.DataFrame:
    """Inputs whose values are file paths (audio, images): resolve them (against the feature's `root`, else the
    data file's folder) and drop the rows whose file is missing or unreadable, naming the file (or keep and
    report them, when the feature stands in for a missing file)."""
    from ensayo.features import FEATURES

    for spec in recipe.inputs:
        kind = FEATURES.get(spec.type)
        if kind is None or not kind.reads_files or table.height == 0:
            continue
        column = recipe.column_of(spec)
        root = getattr(spec.preprocessing, "root", None)
        paths = []
        folder = expand_path(root, base) if root else None
        for value, source in zip(table[column].cast(pl.String).to_list(), table[FILE].to_list(), strict=True):
            path = Path(value).expanduser()  # a value from the data: no ${...} expansion
            paths.append(str(path if path.is_absolute() else (folder or Path(source).parent) / path))
        table = table.with_columns(pl.Series(column, paths, dtype=pl.String))
        problems = kind.check_files(paths, spec.preprocessing)
        if problems:
            found = []
            for index, reason in sorted(problems.items()):
                line = table[LINE][index] if table[FILE][index] != paths[index] else None
                where = f" ({paths[index]})" if line is not None else ""
                found.append(BadRow(table[FILE][index], line, f"{column}: {reason}{where}"))
            if kind.keeps_bad_files(spec.preprocessing):
                report.kept_without_file += [str(b) for b in found]
                continue
            report.bad_rows.extend(found)
            keep = np.ones(table.height, dtype=bool)
            keep[list(problems)] = False
            table = table.filter(pl.Series(keep))
    return table


# ------------------------------------------------------------------------------------------- splits
def _stratify_labels(labels: np.ndarray, min_count: int) -> np.ndarray:
    """Labels too rare to stratify are pooled, so that sklearn can split the rest by class."""
    values, counts = np.unique(labels, return_counts=True)
    rare = set(values[counts < min_count].tolist())
    if not rare:
        return labels
    return np.array(["\0rare" if v in rare else v for v in labels], dtype=object)


def _two_way(index: np.ndarray, size: float, labels: np.ndarray | None, groups: np.ndarray | None,
             seed: int) -> tuple[np.ndarray, np.ndarray]:
    if size <= 0:
        return index, index[:0]
    if groups is not None:
        splitter = GroupShuffleSplit(n_splits=1, test_size=size, random_state=seed)
        keep, held = next(splitter.split(index, groups=groups[index]))
        return index[keep], index[held]
    stratify = _stratify_labels(labels[index], 2) if labels is not None else None
    if stratify is not None and len(np.unique(stratify)) > len(index) * size:
        stratify = None  # fewer held-out rows than classes: sklearn cannot stratify
    keep, held = train_test_split(index, test_size=size, random_state=seed, stratify=stratify)
    return np.sort(keep), np.sort(held)


def _stratification_labels(table: pl.DataFrame, recipe: Recipe) -> np.ndarray:
    """The label of each row; a label binned after the split is stood in for by the same bins of all rows
    (used to stratify only: the real edges are fitted on the training split)."""
    column = recipe.output.column or ""
    if column in table.columns:
        return table[column].cast(pl.String).to_numpy()
    spec = next(d for d in recipe.derive if d.name == column and d.bin is not None)
    provisional = Bins([spec]).fit(table).transform(table)
    return provisional[column].cast(pl.String).to_numpy()


def split_table(table: pl.DataFrame, recipe: Recipe) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    split = recipe.data.split
    index = np.arange(table.height)
    classify = recipe.output.type == "category" and split.method in ("stratified", "filter")
    labels = _stratification_labels(table, recipe) if classify else None
    if split.method == "filter":
        chosen = table.select(parse_filter(split.test_filter or "", table.columns)).to_series().fill_null(False)
        test, rest = index[chosen.to_numpy()], index[~chosen.to_numpy()]
        train, validation = _two_way(rest, split.validation, labels, None, split.seed)
        return table[train], table[validation], table[test]
    groups = None
    if split.method == "group":
        if split.group_column not in table.columns:
            raise DataError(f"data.split.group_column: column {split.group_column!r} is not in the data")
        groups = table[split.group_column].cast(pl.String).to_numpy()
    rest, test = _two_way(index, split.test, labels, groups, split.seed)
    val_share = split.validation / (split.train + split.validation)
    train, validation = _two_way(rest, val_share, labels, groups, split.seed + 1)
    return table[train], table[validation], table[test]


# --------------------------------------------------------------------------------------------- load
def _read_source(path: Path, recipe: Recipe, report: DataReport) -> pl.DataFrame:
    bad_before = len(report.bad_rows)
    table = read_file(path, recipe.data, report.bad_rows)
    report.rows_read += table.height + len(report.bad_rows) - bad_before
    return table


def _prepare(table: pl.DataFrame, recipe: Recipe, report: DataReport,
             columns: list[str] | None = None, filters: bool = True) -> pl.DataFrame:
    table = apply_expressions(table, recipe, only_possible=columns is not None)
    if columns is None:  # training: auxiliary targets may be missing in a row, but their column must be there
        for target in recipe.output.auxiliary:
            if target.column not in table.columns:
                raise _absent_columns(table, f"output.auxiliary column {target.column!r} is not in the data")
    table = drop_incomplete_rows(table, columns or required_columns(recipe), report.bad_rows)
    if filters and recipe.data.filters:
        before = table.height
        for text in recipe.data.filters:
            table = table.filter(parse_filter(text, table.columns))
        report.rows_filtered_out += before - table.height
    return table


def _sample(table: pl.DataFrame, recipe: Recipe) -> pl.DataFrame:
    sample = recipe.data.sample
    if sample is None:
        return table
    seed = recipe.data.split.seed
    if isinstance(sample, float) and sample <= 1:
        return table.sample(fraction=sample, seed=seed).sort(LINE)
    return table.sample(n=min(int(sample), table.height), seed=seed).sort(LINE)


def _fail_on_bad_rows(report: DataReport, recipe: Recipe) -> None:
    if report.bad_rows and recipe.data.bad_rows == "fail":
        shown = "\n  ".join(map(str, report.bad_rows[:20]))
        more = f"\n  ... and {len(report.bad_rows) - 20} more" if len(report.bad_rows) > 20 else ""
        raise DataError(f"{len(report.bad_rows)} bad row(s) and data.bad_rows is 'fail':\n  {shown}{more}")


def load_splits(recipe: Recipe, base: Path | None = None) -> Splits:
    """Read, clean, filter, sample and split the recipe's data."""
    report = DataReport()
    split = recipe.data.split
    if split.method == "files":
        parts = {}
        for name in ("train", "validation", "test"):
            source = (split.files or {}).get(name)
            if source is None:
                parts[name] = None
                continue
            table = _read_source(expand_path(source, base), recipe, report)
            parts[name] = check_files(_prepare(table, recipe, report), recipe, report, base)
        train = _sample(parts["train"], recipe)  # files checked before sampling: few sets have both
        empty = train.head(0)
        validation = parts["validation"] if parts["validation"] is not None else empty
        test = parts["test"] if parts["test"] is not None else empty
    else:
        table = _read_source(expand_path(recipe.data.source or "", base), recipe, report)
        table = _sample(_prepare(table, recipe, report), recipe)
        table = check_files(table, recipe, report, base)
        train, validation, test = split_table(table, recipe)
    _fail_on_bad_rows(report, recipe)
    if train.height == 0:
        raise DataError(f"{recipe.data.source}: no training rows left after cleaning, filtering and splitting")
    bins = Bins(recipe.derive).fit(train)
    train, validation, test = (bins.transform(part) for part in (train, validation, test))
    report.split_sizes = {"train": train.height, "validation": validation.height, "test": test.height}
    if recipe.output.type != "category":
        return Splits(train, validation, test, report, bins)
    known = set(train[recipe.output.column].cast(pl.String).to_list())
    for name, part in (("validation", validation), ("test", test)):
        unseen = sorted(set(part[recipe.output.column].cast(pl.String).to_list()) - known)
        if unseen:
            report.labels_only_in_eval[name] = unseen
    return Splits(train, validation, test, report, bins)


def read_for_inference(path: Path, recipe: Recipe, need_label: bool,
                       bins: Bins | None = None) -> tuple[pl.DataFrame, DataReport]:
    """Read a file in the recipe's format with the same bad-row rules. Scoring (`need_label`) applies the
    recipe's filters, as its test split did; predicting answers for every well-formed row. For a folder
    recipe, `path` is one file or a folder, and predicting needs no label in the file names."""
    report = DataReport()
    if recipe.data.format == "folder":
        table = read_folder(path, recipe.data, report.bad_rows, need_fields=need_label)
        report.rows_read = table.height + len(report.bad_rows)
    else:
        table = _read_source(path, recipe, report)
    columns = [recipe.column_of(f) for f in recipe.inputs]
    if need_label:
        label = recipe.output.column or ""
        columns.append(next((d.bin.column for d in recipe.derive if d.bin and d.name == label), label))
    table = _prepare(table, recipe, report, columns, filters=need_label)
    table = check_files(table, recipe, report, None)
    if bins is not None:
        table = bins.transform(table)
    _fail_on_bad_rows(report, recipe)
    return table, report
