"""Files -> string tables with the source line of every row: CSV (header or not, gzip), JSONL, Parquet, and
folders of files whose names carry fields."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path
from typing import Any

import polars as pl

from ensayo.data.report import BadRow, DataError
from ensayo.recipe import DataConfig

LINE = "__line__"
FILE = "__file__"


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


