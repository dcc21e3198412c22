"""Derived columns: arithmetic over existing columns, texts joined, and bins that cut a column into classes.

Expressions are parsed with Python's `ast` into polars expressions over a small whitelist (numbers,
column names, + - * / // % **, and a few functions); nothing is ever evaluated as Python. Quantile
bins are fitted on the training split only and saved with the run.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from ensayo.recipe import DeriveConfig, Recipe


class DeriveError(ValueError):
    """An expression or bin that cannot be computed; the message names the derived column."""


_OPERATORS: dict[type[ast.AST], Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a ** b,
}
_FUNCTIONS: dict[str, Callable[..., pl.Expr]] = {
    "log": lambda x: x.log(), "log1p": lambda x: x.log1p(), "sqrt": lambda x: x.sqrt(), "exp": lambda x: x.exp(),
    "abs": lambda x: x.abs(), "min": lambda a, b: pl.min_horizontal(a, b), "max": lambda a, b: pl.max_horizontal(a, b),
}


def _no_such_column(where: str, what: str, name: str, columns: list[str]) -> DeriveError:
    close = difflib.get_close_matches(name, columns, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return DeriveError(f"{where}: {what} names column {name!r}, which the data does not have{hint}")


MAX_DEPTH = 100  # nested operations in one expression; deeper ones are refused, not a RecursionError


def parse_expression(text: str, columns: list[str] | None, where: str) -> pl.Expr:
    """`((Likes * Bookmarks**2 - Dislikes) / Visits) * (1 / tier)` -> a polars expression (floats). With
    `columns` None (checking a recipe before its data is read), any column name is taken."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise DeriveError(f"{where}: cannot parse {text!r}: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise DeriveError(f"{where}: {text[:40]!r}...: nested too deeply to read") from None
    depth = _depth(tree)
    if depth > MAX_DEPTH:
        raise DeriveError(f"{where}: {text[:40]!r}...: nested {depth} levels deep (at most {MAX_DEPTH})")

    def build(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return build(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](build(node.left), build(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = build(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return pl.lit(float(node.value))
        if isinstance(node, ast.Name):
            if columns is not None and node.id not in columns:
                raise _no_such_column(where, repr(text), node.id, columns)
            return pl.col(node.id).cast(pl.Float64, strict=False)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
            return _FUNCTIONS[node.func.id](*(build(a) for a in node.args))
        raise DeriveError(f"{where}: {text!r}: {ast.unparse(node)!r} is not allowed (numbers, column names, "
                          f"+ - * / // % **, and {', '.join(_FUNCTIONS)})")

    return build(tree)


def _depth(tree: ast.AST) -> int:
    deepest, pending = 0, [(tree, 1)]
    while pending:
        node, depth = pending.pop()
        deepest = max(deepest, depth)
        pending += [(child, depth + 1) for child in ast.iter_child_nodes(node)]
    return deepest


def check_derived(recipe: Recipe) -> list[str]:
    """What cannot work in the recipe's expressions (syntax, what they may use), before any data is read."""
    problems = []
    for index, spec in enumerate(recipe.derive):
        if spec.expression is not None:
            try:
                parse_expression(spec.expression, None, f"derive.{index} ({spec.name})")
            except DeriveError as exc:
                problems.append(str(exc))
    return problems


def expression_columns(text: str) -> set[str]:
    """The column names an expression reads (the functions it calls excluded)."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return set()
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - calls


def reads(spec: DeriveConfig) -> set[str]:
    """The columns one derived column is made from."""
    if spec.expression is not None:
        return expression_columns(spec.expression)
    if spec.join is not None:
        return set(spec.join)
    assert spec.bin is not None
    return {spec.bin.column}


def sources_of(recipe: Recipe, column: str) -> set[str]:
    """Every column that `column` is derived from, directly or through other derived columns."""
    by_name = {d.name: d for d in recipe.derive}
    found: set[str] = set()
    pending = [column]
    while pending:
        spec = by_name.get(pending.pop())
        if spec is None:
            continue
        direct = reads(spec)
        for name in direct - found:
            found.add(name)
            pending.append(name)
    return found


def leaking_inputs(recipe: Recipe) -> list[str]:
    """Inputs whose column feeds the target through `derive`: a model given them learns the formula."""
    if recipe.output.type != "category":
        return []
    feeding = sources_of(recipe, recipe.output.column or "")
    return [spec.name for spec in recipe.inputs if recipe.column_of(spec) in feeding]


def apply_expressions(table: pl.DataFrame, recipe: Recipe, only_possible: bool = False) -> pl.DataFrame:
    """Add the row-wise derived columns, expressions and joins (the bins come after the split: see `Bins`).
    With `only_possible` (predicting new rows), those whose columns the table lacks are left out."""
    for index, spec in enumerate(recipe.derive):
        if spec.bin is not None or (only_possible and not reads(spec) <= set(table.columns)):
            continue
        where = f"derive.{index} ({spec.name})"
        if spec.join is not None:
            table = table.with_columns(_joined(spec, table.columns, where))
            continue
        assert spec.expression is not None
        expression = parse_expression(spec.expression, table.columns, where)
        value = expression.alias(spec.name)
        # a division by zero gives inf or NaN: those rows get no value (null), so they count as bad rows
        table = table.with_columns(pl.when(value.is_finite()).then(value).otherwise(None).alias(spec.name))
    return table


def _joined(spec: DeriveConfig, columns: list[str], where: str) -> pl.Expr:
    assert spec.join is not None
    for name in spec.join:
        if name not in columns:
            raise _no_such_column(where, "join", name, columns)
    parts = [pl.col(name).cast(pl.String).str.strip_chars() for name in spec.join]
    # an empty or missing part leaves no stray separator; with every part missing the text is empty (a bad row)
    parts = [pl.when(part != "").then(part) for part in parts]
    return pl.concat_str(parts, separator=spec.separator, ignore_nulls=True).alias(spec.name)


class Bins:
    """The `bin` entries of `derive`: edges from given values or from training quantiles, then labels."""

    def __init__(self, specs: list[DeriveConfig]) -> None:
        self.specs = [s for s in specs if s.bin is not None]
        self.edges: dict[str, list[float]] = {}

    def fit(self, train: pl.DataFrame) -> Bins:
        for spec in self.specs:
            config = spec.bin
            assert config is not None
            if config.edges is not None:
                self.edges[spec.name] = list(config.edges)
                continue
            values = train[config.column].cast(pl.Float64, strict=False).drop_nulls().to_numpy()
            if len(values) == 0:
                raise DeriveError(f"derive {spec.name}: column {config.column!r} has no numbers in the training split")
            inner = np.quantile(values, np.linspace(0, 1, config.quantiles + 1)[1:-1])
            if len(np.unique(inner)) < len(inner):
                raise DeriveError(f"derive {spec.name}: {config.quantiles} quantiles of {config.column!r} are not "
                                  f"distinct ({inner.tolist()}); use fewer quantiles or edges")
            self.edges[spec.name] = inner.tolist()
        return self

    def transform(self, table: pl.DataFrame) -> pl.DataFrame:
        for spec in self.specs:
            config = spec.bin
            assert config is not None
            if config.column not in table.columns:
                continue  # predicting: the target's sources need not be there
            labels = config.labels or [f"bin{i}" for i in range(len(self.edges[spec.name]) + 1)]
            values = table[config.column].cast(pl.Float64, strict=False).to_numpy()
            codes = np.searchsorted(np.asarray(self.edges[spec.name]), values, side="right")
            named = [None if np.isnan(v) else labels[c] for v, c in zip(values, codes, strict=True)]
            table = table.with_columns(pl.Series(spec.name, named, dtype=pl.String))
        return table

    def state(self) -> dict[str, list[float]]:
        return dict(self.edges)

    def load_state(self, state: dict[str, list[float]]) -> Bins:
        self.edges = {k: list(v) for k, v in state.items()}
        return self
