"""Files -> string tables with the source line of every row: CSV (header or not, gzip), JSONL, Parquet, and
folders of files whose names carry fields."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ensayo.bulk import collector_paused
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
    """UTF-8 text, a byte-order mark at the start dropped (it would hide in the first column's name)."""
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


@contextlib.contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Text that is not UTF-8, and a compressed file cut short or damaged, are named with where they break."""
    try:
        yield
    except UnicodeDecodeError as exc:
        line = _first_undecodable_line(path)
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r}); "
                        "save the file as UTF-8 (from Latin-1: iconv -f latin1 -t utf-8)") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: the compressed file is cut short or damaged ({exc or type(exc).__name__})") from None


def _first_undecodable_line(path: Path) -> int | str:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return number
    except (OSError, EOFError, zlib.error):
        pass
    return "?"


CHUNK_ROWS = 200_000  # CSV or JSONL rows held as Python lists at a time; each chunk becomes a compact polars table


def _read_csv(path: Path, config: DataConfig, bad: list[BadRow],
              chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[list[str], list[list[str]], list[int]]]:
    """(columns, rows, source lines) of each chunk of `chunk_rows` well-formed rows, read by the csv module; bad
    rows are named as they are met."""
    with _readable(path), _open_text(path) as handle:
        reader = csv.reader(handle, delimiter=config.separator)
        if config.header:
            try:
                columns = next(reader)
            except StopIteration:
                raise DataError(f"{path}: the file is empty, expected a header line") from None
            columns = _named(columns, config)
        else:
            columns = list(config.columns or [])
        for rows, lines in _csv_rows(path, reader, len(columns), 0, bad, chunk_rows):
            yield columns, rows, lines


def _named(header: list[str], config: DataConfig) -> list[str]:
    """A header's columns, or the recipe's `data.columns` in their place where it names as many."""
    return config.columns if config.columns and len(config.columns) == len(header) else header


def _csv_rows(path: Path, reader: Any, width: int, lines_before: int, bad: list[BadRow],
              chunk_rows: int) -> Iterator[tuple[list[list[str]], list[int]]]:
    """The rest of a csv module reader's rows of `width` fields, in chunks, with their source lines (the reader
    started `lines_before` lines into the file); the others go to `bad`."""
    line = reader.line_num
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            start, line = line + 1, reader.line_num
            if not row:
                continue
            if len(row) != width:
                bad.append(BadRow(str(path), lines_before + start, f"{len(row)} fields, expected {width}"))
                continue
            rows.append(row)
            lines.append(lines_before + start)
            if len(rows) == chunk_rows:
                yield rows, lines
                rows, lines = [], []
    except csv.Error as exc:
        raise DataError(f"{path}:{lines_before + reader.line_num}: cannot parse CSV: {exc}") from None
    yield rows, lines


PARSED_BLOCK_BYTES = 16 << 20  # a plain CSV is parsed by polars this many bytes (and the rest of a line) at a time
_BYTE_ORDER_MARK = b"\xef\xbb\xbf"
CSV_FIELD_LIMIT = csv.field_size_limit()  # the csv module refuses a longer field
QUOTED_SHARE = 0.1  # a block with more lines that hold a quote is left to the csv module: each is read twice here


def _csv_tables(path: Path, config: DataConfig, bad: list[BadRow], chunk_rows: int) -> Iterator[pl.DataFrame]:
    """A CSV file's tables of at most `chunk_rows` rows. A plain (not compressed) file is parsed by polars, a
    block of whole lines at a time, as long as each block reads as the csv module reads it (`_parsed_block`);
    from the first block that might not, the csv module reads on, naming bad rows and keeping its quoting rules.
    The csv module alone reads a compressed file, and one whose start it must read (`_plain_header`)."""
    separator = config.separator
    if path.name.lower().endswith(".gz") or len(separator) != 1 or separator in '"\r\n' or not separator.isascii():
        yield from _python_csv_tables(path, config, bad, chunk_rows)
        return
    with _readable(path), open(path, "rb") as handle:
        columns = _plain_header(handle, config)
        if columns is None:
            yield from _python_csv_tables(path, config, bad, chunk_rows)
            return
        lines_before = header_lines = 1 if config.header else 0
        while block := handle.read(PARSED_BLOCK_BYTES):
            offset = handle.tell() - len(block)
            block += handle.readline()
            table = _parsed_block(block, columns, separator)
            if table is None:
                handle.seek(offset)
                text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
                reader = csv.reader(text, delimiter=separator)
                for rows, lines in _csv_rows(path, reader, len(columns), lines_before, bad, chunk_rows):
                    yield _string_table(columns, rows, lines, path)
                return
            table = table.with_columns(pl.int_range(lines_before + 1, lines_before + table.height + 1,
                                                    dtype=pl.Int64).alias(LINE), pl.lit(str(path)).alias(FILE))
            lines_before += table.height
            yield from table.iter_slices(chunk_rows)
        if lines_before == header_lines:  # no rows: the table still has the file's columns
            yield _string_table(columns, [], [], path)


def _string_table(columns: list[str], rows: list[list[str]], lines: list[int], path: Path) -> pl.DataFrame:
    return _table(columns, rows, lines, path, dict.fromkeys(columns, pl.String))


def _python_csv_tables(path: Path, config: DataConfig, bad: list[BadRow], chunk_rows: int) -> Iterator[pl.DataFrame]:
    for columns, rows, lines in _read_csv(path, config, bad, chunk_rows):
        yield _string_table(columns, rows, lines, path)


def _plain_header(handle: Any, config: DataConfig) -> list[str] | None:
    """The columns, the header line read from `handle` (a binary file at its start) where there is one; None
    where the csv module must read the file: a byte-order mark, an empty file, a header line with a quote, a
    carriage return or a NUL byte in it, or longer than the csv module's field limit."""
    if handle.peek(3)[:3] == _BYTE_ORDER_MARK:
        return None
    if not config.header:
        return list(config.columns or [])
    first = handle.readline()
    line = first.removesuffix(b"\n").removesuffix(b"\r")
    if not line.strip() or any(sign in line for sign in (b'"', b"\r", b"\0")) or len(line) > CSV_FIELD_LIMIT:
        return None
    columns = line.decode("utf-8").split(config.separator)
    return _named(columns, config)


def _parsed_block(block: bytes, columns: list[str], separator: str) -> pl.DataFrame | None:
    """`block` (whole lines) parsed by polars, or None where the csv module might read it otherwise: a blank
    line, a line without one field per column, a carriage return that does not end a line, a NUL byte, a line
    longer than the csv module's field limit, text that is not UTF-8, or lines with a quote that the csv module,
    reading them strictly, does not read as one record each, of the same fields as polars."""
    if not block.endswith(b"\n"):
        block += b"\n"
    data = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(data == ord("\n"))
    starts = np.concatenate([[0], ends[:-1] + 1])
    returns = np.flatnonzero(data == ord("\r"))
    if len(returns) and not (data[returns + 1] == ord("\n")).all():
        return None
    content = ends - starts - np.isin(ends - 1, returns)
    if not content.all() or content.max() > CSV_FIELD_LIMIT or (data == 0).any():
        return None
    quoted = np.unique(np.searchsorted(ends, np.flatnonzero(data == ord('"'))))
    if len(quoted) > QUOTED_SHARE * len(ends):
        return None
    separators = np.bincount(np.searchsorted(ends, np.flatnonzero(data == ord(separator))), minlength=len(ends))
    one_per_column = separators == len(columns) - 1
    one_per_column[quoted] = True  # a quoted field may hold the separator: such lines are read again below
    if not one_per_column.all():
        return None
    try:
        table = pl.read_csv(block, has_header=False, new_columns=columns, infer_schema=False, separator=separator,
                            quote_char='"', empty_string_is_null=False, raise_if_empty=False)
        lines = [block[starts[line]: ends[line]].decode("utf-8") for line in quoted.tolist()]
        records = [tuple(record) for record in csv.reader(lines, delimiter=separator, strict=True)]
    except (pl.exceptions.PolarsError, ValueError, csv.Error):  # UnicodeDecodeError is a ValueError
        return None
    if table.shape != (len(ends), len(columns)) or records != table[quoted].rows():
        return None
    return table


def _jsonl_records(path: Path, bad: list[BadRow] | None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, record) of each JSON object line; the others go to `bad` (where given) with their line."""
    with _readable(path), _open_text(path) as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                if bad is not None:
                    bad.append(BadRow(str(path), number, f"not valid JSON: {exc.msg}"))
                continue
            if not isinstance(record, dict):
                if bad is not None:
                    bad.append(BadRow(str(path), number, "not a JSON object"))
                continue
            yield number, record


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "value"


_KIND_NAMES = {"list": "a list", "object": "an object", "value": "a plain value"}


class _JsonFields:
    """What a first pass over a JSONL file learns of its fields, so that a second can read it a chunk at a
    time: the fields in order of first appearance, the kind (list, object, plain value) most rows give each,
    and the types of each field's plain values."""

    def __init__(self, records: Iterator[tuple[int, dict[str, Any]]]) -> None:
        self.kinds: dict[str, Counter[str]] = {}
        self.types: dict[str, set[type]] = {}
        for _, record in records:
            for key, value in record.items():
                if value is None:
                    self.kinds.setdefault(key, Counter())
                    continue
                kind = _kind(value)
                self.kinds.setdefault(key, Counter())[kind] += 1
                if kind == "value":
                    self.types.setdefault(key, set()).add(type(value))
        self.columns = list(self.kinds)
        self.usual = {key: counted.most_common(1)[0][0] for key, counted in self.kinds.items() if counted}

    def odd_field(self, record: dict[str, Any]) -> str | None:
        """The first field whose kind differs from most rows' (such a row is a bad row)."""
        return next((key for key, value in record.items()
                     if value is not None and _kind(value) != self.usual[key]), None)

    def row(self, record: dict[str, Any]) -> list[Any]:
        """The record's values in column order; a field whose plain values are of several JSON types is read
        as text (as a CSV column would be), or as floats where they are all numbers."""
        values = []
        for key in self.columns:
            value = record.get(key)
            types = self.types.get(key, set())
            if value is not None and len(types) > 1 and _kind(value) == "value":
                value = float(value) if types <= {int, float} else value if isinstance(value, str) \
                    else json.dumps(value)
            values.append(value)
        return values

    def schema(self) -> dict[str, Any]:
        """Polars types of the plain-value fields, the same for every chunk (lists and objects are inferred)."""
        known = {int: pl.Int64, float: pl.Float64, bool: pl.Boolean, str: pl.String}
        schema = {}
        for key, types in self.types.items():
            if self.usual.get(key) != "value":
                continue
            schema[key] = (pl.Float64 if types <= {int, float} and len(types) > 1 else
                           known.get(next(iter(types)), pl.String) if len(types) == 1 else pl.String)
        return schema


def _read_jsonl(path: Path, bad: list[BadRow],
                chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[list[str], list[list[Any]], list[int], dict[str, Any]]]:
    """JSONL in two passes: the first learns the fields (`_JsonFields`) and names the lines that are not JSON
    objects; the second yields (columns, rows, lines, polars types) of at most `chunk_rows` rows, a row whose
    field is of another kind than in most rows (a list among plain values) being a bad row that names the
    field."""
    fields = _JsonFields(_jsonl_records(path, bad))
    schema = fields.schema()
    rows: list[list[Any]] = []
    lines: list[int] = []
    for number, record in _jsonl_records(path, None):
        odd = fields.odd_field(record)
        if odd is not None:
            bad.append(BadRow(str(path), number, f"field {odd!r} is {_KIND_NAMES[_kind(record[odd])]}, in other "
                                                 f"rows {_KIND_NAMES[fields.usual[odd]]}"))
            continue
        rows.append(fields.row(record))
        lines.append(number)
        if len(rows) == chunk_rows:
            yield fields.columns, rows, lines, schema
            rows, lines = [], []
    yield fields.columns, rows, lines, schema


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
        entries = sorted(p for p in path.iterdir() if not p.name.startswith(".")
                         and p.name.lower().endswith(suffix.lower()))
        files = []
        for entry in entries:  # a folder or a dangling link named like a file is a bad row, not left out unsaid
            if entry.is_file():
                files.append(entry)
            else:
                reason = "a folder, not a file" if entry.is_dir() else "a link to nothing" if entry.is_symlink() \
                    else "not a regular file"
                bad.append(BadRow(str(entry), None, reason))
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


def read_columns(path: Path, config: DataConfig, records: int = 1000) -> list[str]:
    """The columns a file (or a folder) gives, read cheaply: a CSV's header (or `columns`), the fields of a JSONL
    file's first `records` records, a Parquet file's schema, a folder pattern's fields and the path column."""
    if config.format == "folder":
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        return [*pattern_regex(config.pattern or "").groupindex, config.path_column]
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    fmt = detect_format(path) if config.format == "auto" else config.format
    if fmt == "parquet":
        try:
            return list(pl.read_parquet_schema(path))
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    if fmt == "jsonl":
        fields: dict[str, None] = {}
        for count, (_, record) in enumerate(_jsonl_records(path, None)):
            fields |= dict.fromkeys(record)
            if count + 1 == records:
                break
        return list(fields)
    if not config.header:
        return list(config.columns or [])
    with _readable(path), _open_text(path) as handle:
        header = next(csv.reader(handle, delimiter=config.separator), None)
    if header is None:
        raise DataError(f"{path}: the file is empty, expected a header line")
    return _named(header, config)


def read_file(path: Path, config: DataConfig, bad: list[BadRow]) -> pl.DataFrame:
    """Read one file (or, for the folder format, a folder) into a string table with the source line of
    every row."""
    with collector_paused():
        chunks = list(read_chunks(path, config, bad))
    # a JSONL list field may be inferred as list[null] in a chunk of empty lists: relaxed takes the wider type
    return chunks[0] if len(chunks) == 1 else pl.concat(chunks, how="vertical_relaxed")


def read_chunks(path: Path, config: DataConfig, bad: list[BadRow],
                chunk_rows: int = CHUNK_ROWS) -> Iterator[pl.DataFrame]:
    """The file as tables of at most `chunk_rows` rows (CSV and JSONL; Parquet and folders come whole), each
    with the source line of its rows: a file of any size is read with one chunk of Python values in memory
    at a time (Parquet is read by polars straight into its compact columns)."""
    if config.format == "folder":
        table = read_folder(path, config, bad)
        yield table.head(config.limit) if config.limit else table
        return
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    fmt = detect_format(path) if config.format == "auto" else config.format
    if fmt == "parquet":
        try:
            table = pl.read_parquet(path, n_rows=config.limit)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
        yield table.with_columns(pl.int_range(1, table.height + 1).alias(LINE), pl.lit(str(path)).alias(FILE))
        return
    if fmt == "jsonl":
        tables = (_table(columns, rows, lines, path, schema)
                  for columns, rows, lines, schema in _read_jsonl(path, bad, chunk_rows))
    else:
        tables = _csv_tables(path, config, bad, chunk_rows)
    left = config.limit
    for table in tables:
        if left is not None:
            table = table.head(left)
            left -= table.height
        yield table
        if left == 0:
            return


def _table(columns: list[str], rows: list[list[Any]], lines: list[int], path: Path,
           schema: dict[str, Any]) -> pl.DataFrame:
    data = {name: [row[i] for row in rows] for i, name in enumerate(columns)}
    table = pl.DataFrame(data, schema_overrides=schema)
    return table.with_columns(pl.Series(LINE, lines, dtype=pl.Int64), pl.lit(str(path)).alias(FILE))
