"""Usable rows -> train, validation and test: stratified, random, grouped, by files or by a filter."""

from __future__ import annotations

import numpy as np
import polars as pl

from ensayo.data.clean import parse_filter
from ensayo.data.derive import Bins
from ensayo.data.report import DataError
from ensayo.recipe import Recipe

RARE = 0  # the pooled rare labels' rank: before every label's (ranks start at 1), as "\0rare" sorted before texts


def _stratify_labels(labels: np.ndarray, min_count: int) -> np.ndarray:
    """Labels too rare to stratify are pooled, so that sklearn can split the rest by class."""
    values, counts = np.unique(labels, return_counts=True)
    rare = set(values[counts < min_count].tolist())
    if not rare:
        return labels
    pooled = np.where(np.isin(labels, list(rare)), RARE, labels)
    if (pooled == RARE).sum() < 2:  # a lone rare row: stratified with the commonest label
        pooled[pooled == RARE] = values[np.argmax(counts)]
    return pooled


def _two_way(index: np.ndarray, size: float, labels: np.ndarray | None, groups: np.ndarray | None,
             seed: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        return _split_two_way(index, size, labels, groups, seed)
    except ValueError as exc:  # scikit-learn's words for too few rows or groups to split
        what = f"{len(np.unique(groups[index]))} groups" if groups is not None else f"{len(index)} rows"
        raise DataError(f"data.split: cannot hold out a {size:.3g} share of {what} ({exc})") from None


def _split_two_way(index: np.ndarray, size: float, labels: np.ndarray | None, groups: np.ndarray | None,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import GroupShuffleSplit, train_test_split  # 3 s of import: only when splitting

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
    """The label of each row as its rank among the labels' texts (integers sort faster than strings, and in
    the same order, so that the split is the one the texts give); a label binned after the split is stood in
    for by the same bins of all rows (used to stratify only: the real edges are fitted on the training split)."""
    column = recipe.output.column or ""
    if column not in table.columns:
        spec = next(d for d in recipe.derive if d.name == column and d.bin is not None)
        table = Bins([spec]).fit(table).transform(table)
    # polars orders texts by their UTF-8 bytes, which is code point order, as Python's and numpy's
    return table[column].cast(pl.String).rank("dense").cast(pl.Int64).to_numpy()


def _hold_out_test(index: np.ndarray, labels: np.ndarray | None, groups: np.ndarray | None,
                   recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """(the rest, the test rows) of a stratified, random or group split: one rule for a single split and for a
    cross-validation that holds out the same test rows (`hold_out_test`)."""
    split = recipe.data.split
    return _two_way(index, split.test, labels, groups, split.seed)


def _hold_out_validation(rest: np.ndarray, labels: np.ndarray | None, groups: np.ndarray | None,
                         recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """(the training rows, the validation rows) of the rest of a single split, by the same one rule."""
    split = recipe.data.split
    share = split.validation / (split.train + split.validation) if split.validation else recipe.calibration_share
    return _two_way(rest, share, labels, groups, split.seed + 1)


def split_table(table: pl.DataFrame, recipe: Recipe) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    split = recipe.data.split
    index = np.arange(table.height)
    classify = recipe.output.type == "category" and split.method in ("stratified", "filter")
    labels = _stratification_labels(table, recipe) if classify else None
    if split.method == "filter":
        chosen = table.select(parse_filter(split.test_filter or "", table.columns)).to_series().fill_null(False)
        test, rest = index[chosen.to_numpy()], index[~chosen.to_numpy()]
        train, validation = _two_way(rest, split.validation or recipe.calibration_share, labels, None, split.seed)
        return table[train], table[validation], table[test]
    groups = _groups(table, recipe) if split.method == "group" else None
    rest, test = _hold_out_test(index, labels, groups, recipe)
    train, validation = _hold_out_validation(rest, labels, groups, recipe)
    return table[train], table[validation], table[test]




def fold_test_rows(table: pl.DataFrame, recipe: Recipe) -> tuple[list[np.ndarray], np.ndarray]:
    """Each fold's test rows (`data.split.folds`, shuffled by the split's seed): stratified by the label, by
    group (a group's rows all in one fold) or at random; and the test rows held out of every fold
    (`hold_out_test`: those of the single split with the same method, shares and seed; else none). That split's
    validation rows are held out too, unused: only its training rows are cross-validated."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    split = recipe.data.split
    folds, index = split.folds or 0, np.arange(table.height)
    classify = split.method == "stratified" and recipe.output.type == "category"
    labels = _stratification_labels(table, recipe) if classify else None
    groups = _groups(table, recipe) if split.method == "group" else None
    held = index[:0]
    if split.hold_out_test:
        index, held = _hold_out_test(index, labels, groups, recipe)
        index, _ = _hold_out_validation(index, labels, groups, recipe)
    if groups is not None:
        if len(np.unique(groups[index])) < folds:
            raise DataError(f"data.split.folds: {folds} folds need {folds} groups or more; column "
                            f"{split.group_column!r} has {len(np.unique(groups[index]))}")
        splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=split.seed)
        return [index[test] for _, test in splitter.split(index, groups=groups[index])], held
    if len(index) < folds:
        raise DataError(f"data.split.folds: {folds} folds need {folds} rows or more; there are {len(index)}")
    if labels is not None:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=split.seed)
        return [index[test] for _, test in splitter.split(index, _stratify_labels(labels[index], folds))], held
    splitter = KFold(n_splits=folds, shuffle=True, random_state=split.seed)
    return [index[test] for _, test in splitter.split(index)], held


def fold_tables(table: pl.DataFrame, recipe: Recipe, fold: int,
                tests: list[np.ndarray]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Fold `fold`'s train, validation and test: its test rows, and the `validation` share of the other folds'
    rows (stratified or grouped as the split is) to validate on."""
    split = recipe.data.split
    test = np.sort(tests[fold])
    rest = np.sort(np.concatenate([rows for k, rows in enumerate(tests) if k != fold]))
    classify = recipe.output.type == "category" and split.method == "stratified"
    labels = _stratification_labels(table, recipe) if classify else None
    groups = _groups(table, recipe) if split.method == "group" else None
    train, validation = _two_way(rest, split.validation or recipe.calibration_share, labels, groups, split.seed + 1)
    return table[train], table[validation], table[test]


def hold_out(table: pl.DataFrame, recipe: Recipe, share: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A training table's (train, held out): `share` of its rows, stratified by the label for a classifier."""
    labels = _stratification_labels(table, recipe) if recipe.output.type == "category" else None
    train, held = _two_way(np.arange(table.height), share, labels, None, recipe.data.split.seed + 1)
    return table[train], table[held]


def _groups(table: pl.DataFrame, recipe: Recipe) -> np.ndarray:
    column = recipe.data.split.group_column
    if column not in table.columns:
        raise DataError(f"data.split.group_column: column {column!r} is not in the data")
    return table[column].cast(pl.String).to_numpy()
