"""Auxiliary targets: number columns a classifier also learns to predict while it trains (output.auxiliary)."""

from __future__ import annotations

import numpy as np
import polars as pl

from ensayo.data import FILE, LINE, DataError
from ensayo.features.number import to_numbers
from ensayo.recipe import AuxiliaryConfig

AUXILIARY = "__auxiliary__"  # the batch key of the auxiliary targets (no input feature has this name)


def auxiliary_targets(table: pl.DataFrame, targets: list[AuxiliaryConfig]) -> np.ndarray:
    """The training split's auxiliary target columns, each standardized by its own mean and spread: (rows,
    targets) floats, NaN where a row has no value. A value that is there but not a number is an error."""
    columns = []
    for target in targets:
        values = table[target.column].to_list()
        x = to_numbers(values)
        for i in np.flatnonzero(np.isnan(x)):
            if values[i] is not None and str(values[i]).strip() not in ("", "nan", "NaN"):
                where = f"{table[FILE][int(i)]}:{table[LINE][int(i)]}" if FILE in table.columns else f"row {i}"
                raise DataError(f"{where}: output.auxiliary column {target.column!r} holds {values[i]!r}, "
                                "not a number")
        known = x[~np.isnan(x)]
        if len(known) < 2:
            raise DataError(f"output.auxiliary: column {target.column!r} has fewer than two numbers in the "
                            "training split")
        columns.append((x - known.mean()) / (known.std() or 1.0))
    return np.stack(columns, axis=1).astype(np.float32)
