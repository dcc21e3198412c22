"""Recipe -> table: read the source files, count bad rows, filter, sample and split."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from ensayo.data.clean import (
    absent_columns,
    check_files,
    check_filter,
    drop_incomplete_rows,
    filter_column,
    filter_values,
    parse_filter,
    required_columns,
)
from ensayo.data.derive import Bins, apply_expressions, check_derived, reads
from ensayo.data.read import CHUNK_ROWS, LINE, read_chunks, read_columns, read_file, read_folder
from ensayo.data.report import DataError, DataReport, Splits
from ensayo.data.split import fold_tables, fold_test_rows, hold_out, split_table
from ensayo.recipe import Recipe, expand_path


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
                raise absent_columns(table, f"output.auxiliary column {target.column!r} is not in the data")
    derived = {spec.name for spec in recipe.derive if spec.expression is not None}
    table = drop_incomplete_rows(table, columns or required_columns(recipe), report.bad_rows, derived)
    if filters and recipe.data.filters:
        before = table.height
        for index, text in enumerate(recipe.data.filters):
            kept = table.filter(parse_filter(text, table.columns))
            if kept.height == 0 and table.height > 0:
                raise DataError(f"data.filters.{index}: {text!r} leaves no row of {table.height:,} "
                                f"({filter_values(table, text)})")
            table = kept
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


def recipe_problems(recipe: Recipe) -> list[str]:
    """What in the recipe's filters and expressions cannot work, found without reading any data."""
    problems = [f"data.filters.{index}: {problem}" for index, text in enumerate(recipe.data.filters)
                if (problem := check_filter(text))]
    test_filter = recipe.data.split.test_filter
    if test_filter and (problem := check_filter(test_filter)):
        problems.append(f"data.split.test_filter: {problem}")
    return problems + check_derived(recipe)


def data_problems(recipe: Recipe, base: Path | None = None) -> list[str]:
    """What in the recipe cannot work with its data, found by reading only each file's header: a file that is not
    there, and columns the recipe names (in filters, derived columns, inputs, the output) that it does not have.
    `ensayo validate` and `ensayo run` say these before any work."""
    split = recipe.data.split
    sources = [s for s in (split.files or {}).values() if s] if split.method == "files" else [recipe.data.source or ""]
    problems, found = [], []
    for source in sources:
        path = expand_path(source, base)
        try:
            found.append(set(read_columns(path, recipe.data)))
        except DataError as error:
            problems.append(f"data.source: {error}")
    if problems or not found:
        return problems
    columns = set.intersection(*found)
    derived = [spec.name for spec in recipe.derive]
    known = columns | set(derived)
    named = [(f"data.filters.{i}", filter_column(text)) for i, text in enumerate(recipe.data.filters)]
    if split.test_filter:
        named.append(("data.split.test_filter", filter_column(split.test_filter)))
    named += [(f"derive.{i} ({spec.name})", name) for i, spec in enumerate(recipe.derive)
              for name in sorted(reads(spec))]
    named += [(f"inputs.{i} ({spec.name})", recipe.column_of(spec)) for i, spec in enumerate(recipe.inputs)]
    named += [("output", name) for name in recipe.output.source_columns]
    for key, column in named:
        if column and column not in known:
            close = difflib.get_close_matches(column, sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{key}: column {column!r} is not in the data{hint} (columns: "
                            f"{', '.join(sorted(columns))})")
    return problems


def _check_rows(table: pl.DataFrame, path: Path, recipe: Recipe, report: DataReport, bad_before: int) -> None:
    """A file that gave no usable row is named with why: no rows at all, or every row bad."""
    if table.height:
        return
    bad = report.bad_rows[bad_before:]
    if bad:
        raise DataError(f"{path}: every row of the file is bad ({len(bad):,}), e.g. "
                        + "; ".join(str(b) for b in bad[:3]))
    if recipe.data.format == "folder":
        raise DataError(f"{path}: holds no file the recipe reads (pattern {recipe.data.pattern!r})")
    header_only = path.is_file() and recipe.data.header
    raise DataError(f"{path}: the file has no data rows" + (" (a header only)" if header_only else ""))


def _check_classes(train: pl.DataFrame, recipe: Recipe) -> None:
    classes = train[recipe.output.column].cast(pl.String).unique().to_list()
    if len(classes) < 2:
        raise DataError(f"output.column {recipe.output.column!r}: the training split holds one class only "
                        f"({classes[0]!r}, {train.height:,} rows); a classifier needs two or more (look at "
                        "data.filters, data.sample and the split)")


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
            path, bad_before = expand_path(source, base), len(report.bad_rows)
            table = _read_source(path, recipe, report)
            _check_rows(table, path, recipe, report, bad_before)
            parts[name] = check_files(_prepare(table, recipe, report), recipe, report, base)
        train = _sample(parts["train"], recipe)  # files checked before sampling: few sets have both
        empty = train.head(0)
        validation = parts["validation"] if parts["validation"] is not None else empty
        if recipe.calibration_share:  # no validation file: the temperature is fitted on held-out training rows
            train, validation = hold_out(train, recipe, recipe.calibration_share)
        test = parts["test"] if parts["test"] is not None else empty
    else:
        table = _read_table(recipe, base, report)
        if split.folds is not None:
            if split.fold is None:
                raise ValueError("data.split.folds: a cross-validated recipe has one split per fold; read them "
                                 "with load_folds")
            return _finish(*fold_tables(table, recipe, split.fold, fold_test_rows(table, recipe)[0]), report, recipe)
        train, validation, test = split_table(table, recipe)
    return _finish(train, validation, test, report, recipe)


class Folds(list[Splits]):
    """The splits of each fold, and the rows held out of every fold (`data.split.hold_out_test`; else empty)."""

    def __init__(self, folds: list[Splits], held_out: pl.DataFrame) -> None:
        super().__init__(folds)
        self.held_out = held_out


def load_folds(recipe: Recipe, base: Path | None = None) -> Folds:
    """The splits of each fold of a cross-validated recipe (`data.split.folds`), the data read once."""
    report = DataReport()
    table = _read_table(recipe, base, report)
    tests, held = fold_test_rows(table, recipe)
    folds = [_finish(*fold_tables(table, recipe, fold, tests), copy.deepcopy(report), recipe)
             for fold in range(len(tests))]
    return Folds(folds, folds[0].bins.transform(table[held]) if folds[0].bins else table[held])


def _read_table(recipe: Recipe, base: Path | None, report: DataReport) -> pl.DataFrame:
    """The usable rows of a single-source recipe: read, cleaned, filtered and sampled, files checked."""
    path = expand_path(recipe.data.source or "", base)
    table = _read_source(path, recipe, report)
    _check_rows(table, path, recipe, report, 0)
    table = _prepare(table, recipe, report)
    _check_rows(table, path, recipe, report, 0)  # every row bad once derived: named here, not blamed on the split
    table = check_files(_sample(table, recipe), recipe, report, base)
    _check_rows(table, path, recipe, report, 0)
    return table


def _finish(train: pl.DataFrame, validation: pl.DataFrame, test: pl.DataFrame, report: DataReport,
            recipe: Recipe) -> Splits:
    """The split checked (bad rows, a training split with rows and two classes), with its bins fitted on the
    training rows."""
    _fail_on_bad_rows(report, recipe)
    if train.height == 0:
        raise DataError(f"{recipe.data.source}: no training rows left: {report.rows_read:,} read, "
                        f"{len(report.bad_rows):,} bad, {report.rows_filtered_out:,} filtered out, the rest in "
                        f"validation ({validation.height:,}) and test ({test.height:,})")
    bins = Bins(recipe.derive).fit(train)
    train, validation, test = (bins.transform(part) for part in (train, validation, test))
    if recipe.output.type == "category":
        _check_classes(train, recipe)
    report.split_sizes = {"train": train.height, "validation": validation.height, "test": test.height}
    if recipe.output.type != "category":
        return Splits(train, validation, test, report, bins)
    known = set(train[recipe.output.column].cast(pl.String).to_list())
    for name, part in (("validation", validation), ("test", test)):
        unseen = sorted(set(part[recipe.output.column].cast(pl.String).to_list()) - known)
        if unseen:
            report.labels_only_in_eval[name] = unseen
    return Splits(train, validation, test, report, bins)


def stream_for_inference(path: Path, recipe: Recipe, report: DataReport,
                         chunk_rows: int = CHUNK_ROWS) -> Iterator[pl.DataFrame]:
    """The rows to predict of a file of any size, a chunk at a time (CSV and JSONL; Parquet comes whole), with the
    bad-row rules of `read_for_inference`; `report` fills as the chunks are read, and a recipe that fails on
    bad rows fails once the last chunk is read."""
    if recipe.data.format == "folder":
        table, whole = read_for_inference(path, recipe, need_label=False)
        report.bad_rows += whole.bad_rows
        report.rows_read += whole.rows_read
        yield table
        return
    columns = [recipe.column_of(f) for f in recipe.inputs]
    bad_before, usable = len(report.bad_rows), 0
    for chunk in read_chunks(path, recipe.data, report.bad_rows, chunk_rows):
        report.rows_read += chunk.height
        table = check_files(_prepare(chunk, recipe, report, columns, filters=False), recipe, report, None)
        usable += table.height
        yield table
    report.rows_read += len(report.bad_rows) - bad_before
    if not usable:  # as `ensayo run` says of the same file
        _check_rows(pl.DataFrame(), path, recipe, report, bad_before)
    _fail_on_bad_rows(report, recipe)


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
    _check_rows(table, path, recipe, report, 0)  # as `ensayo run` says of the same file
    columns = [recipe.column_of(f) for f in recipe.inputs]
    if need_label:
        label = recipe.output.column or ""
        columns.append(next((d.bin.column for d in recipe.derive if d.bin and d.name == label), label))
    table = _prepare(table, recipe, report, columns, filters=need_label)
    table = check_files(table, recipe, report, None)
    _check_rows(table, path, recipe, report, 0)
    if bins is not None:
        table = bins.transform(table)
    _fail_on_bad_rows(report, recipe)
    return table, report
