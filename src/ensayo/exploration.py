"""`ensayo explore`: recipe -> a data report: what the rows look like before anything is trained on them.

The generic part (rows, bad rows, class balance per split) is here; each feature type adds its own
section through `Feature.explore` (clip durations for audio, lengths and frequent words for text...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console

from ensayo import figures
from ensayo.data import Splits, load_splits
from ensayo.data.clean import filter_column
from ensayo.data.read import pattern_regex
from ensayo.features import FEATURES
from ensayo.features.report import markdown_table
from ensayo.features.text import explore_texts
from ensayo.progress import working
from ensayo.recipe import Recipe
from ensayo.store import write_text


def class_balance(splits: dict[str, pl.DataFrame], column: str, directory: Path) -> list[str]:
    counts = {name: table[column].cast(pl.String).value_counts() for name, table in splits.items() if table.height}
    labels = sorted({label for table in counts.values() for label in table[column].to_list()})
    by_split = {name: dict(zip(t[column].to_list(), t["count"].to_list(), strict=True)) for name, t in counts.items()}
    lines = [f"## Classes of `{column}`", "", f"{len(labels)} classes."]
    if len(labels) <= 40:
        rows = [[label, *(by_split[name].get(label, 0) for name in by_split)] for label in labels]
        lines += ["", *markdown_table(["class", *by_split], rows)]
    figure = figures.figure(figsize=(max(6, 0.25 * min(len(labels), 100)), 3.5), layout="tight")
    axes = figure.subplots()
    shown = labels[:100]
    bottom = [0] * len(shown)
    for name, found in by_split.items():
        heights = [found.get(label, 0) for label in shown]
        axes.bar(range(len(shown)), heights, bottom=bottom, label=name)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.set_xticks(range(len(shown)), shown, rotation=90, fontsize=7)
    axes.set(ylabel="rows", title=f"rows per class and split{' (first 100 classes)' if len(labels) > 100 else ''}")
    axes.legend()
    figures.save(figure, directory / "class_balance.png", dpi=110)
    return [*lines, "", "![rows per class and split](class_balance.png)", ""]


def derived_bins(splits: Splits, recipe: Recipe, directory: Path) -> list[str]:
    """The distribution of each binned column's source, with the bin edges fitted on the training split."""
    lines: list[str] = []
    for spec in recipe.derive:
        if spec.bin is None or splits.bins is None:
            continue
        source, edges = spec.bin.column, splits.bins.edges[spec.name]
        values = splits.train[source].cast(pl.Float64, strict=False).drop_nulls().to_numpy()
        figure = figures.figure(figsize=(8, 3.5), layout="tight")
        axes = figure.subplots()
        low, high = np.percentile(values, [0.5, 99.5])
        axes.hist(np.clip(values, low, high), bins=60, color="tab:blue")
        for edge in edges:
            axes.axvline(edge, color="tab:red", linestyle="--")
        axes.set(title=f"{source} (training split, clipped to its 0.5-99.5 percentiles) and the edges of "
                       f"{spec.name}", xlabel=source, ylabel="rows")
        figures.save(figure, directory / f"{spec.name}_edges.png", dpi=110)
        quantiles = np.percentile(values, [0, 25, 50, 75, 100])
        lines += [f"## Derived `{spec.name}` from `{source}`", "",
                  f"`{source}`: min {quantiles[0]:.4g}, quartiles {quantiles[1]:.4g} / {quantiles[2]:.4g} / "
                  f"{quantiles[3]:.4g}, max {quantiles[4]:.4g}; bin edges (fitted on train): "
                  + ", ".join(f"{e:.4g}" for e in edges), "",
                  f"![{source} and the bin edges]({spec.name}_edges.png)", ""]
    return lines


def numeric_correlations(table: pl.DataFrame, directory: Path, limit: int = 20,
                         left_out: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Pearson correlations between the columns that are (almost all) numbers, as a heat map; the label (a
    class, even when written with digits) is `left_out`."""
    numeric = {}
    for column in table.columns:
        if column.startswith("__") or column in left_out:
            continue
        values = table[column].cast(pl.Float64, strict=False)
        if values.null_count() <= 0.05 * table.height and values.n_unique() > 2:
            numeric[column] = values.fill_null(values.median()).to_numpy()
    if len(numeric) < 2:
        return []
    names = list(numeric)[:limit]
    matrix = np.corrcoef(np.stack([numeric[n] for n in names]))
    figure = figures.figure(figsize=(1.2 + 0.6 * len(names), 1 + 0.5 * len(names)), layout="tight")
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
    axes.set_xticks(range(len(names)), names, rotation=90)
    axes.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            axes.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7)
    figure.colorbar(image, ax=axes, fraction=0.046)
    axes.set_title("correlations (training split)")
    figures.save(figure, directory / "correlations.png", dpi=110)
    return ["## Numeric columns", "", f"Correlations between {', '.join(f'`{n}`' for n in names)}.", "",
            "![correlations](correlations.png)", ""]


def explore(recipe: Recipe, directory: Path, base: Path | None = None, console: Console | None = None) -> Path:
    """Write `report.md` and its plots under `directory`; returns the report's path."""
    console = console or Console(stderr=True)
    directory.mkdir(parents=True, exist_ok=True)
    splits = load_splits(recipe, base)
    parts = dict(splits.items())
    lines = [f"# Data report: {recipe.name}", "", *(f"- {line}" for line in splits.report.summary_lines()), ""]
    if splits.report.bad_rows:
        lines += ["Bad rows (first 20):", "", *(f"- `{row}`" for row in splits.report.bad_rows[:20]), ""]
    if recipe.output.type == "text":
        output = recipe.output
        texts = splits.train.select(pl.concat_str(output.columns, separator=output.separator)).to_series().to_list()
        section = explore_texts("corpus", texts, directory)
        lines += [f"## Corpus: {' + '.join(output.columns)} (training split)", "", *section, ""]
    else:
        lines += class_balance(parts, recipe.output.column, directory)
        lines += groups_by_split(parts, recipe)
        lines += derived_bins(splits, recipe, directory)
        lines += numeric_correlations(splits.train, directory, left_out={recipe.output.column or ""})
    labels = splits.train[recipe.output.column].cast(pl.String).to_list() if recipe.inputs else []
    for spec in recipe.inputs:
        column = recipe.column_of(spec)
        with working(console, f"exploring {spec.type} input {spec.name!r}"):
            section = FEATURES[spec.type].explore(spec.name, splits.train[column].to_list(), labels,
                                                  spec.preprocessing, directory)
        lines += [f"## Input `{spec.name}` ({spec.type}, training split)", "", *section, ""]
    report = directory / "report.md"
    text = "\n".join(lines) + "\n"
    write_text(report, text)
    write_text(directory / "report.html", figures.page(f"Data report: {recipe.name}", _html(text)))
    return report


def _html(markdown: str) -> str:
    """The report's Markdown as the body of its page (CommonMark with tables; its images are the files beside it)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)


def groups_by_split(splits: dict[str, pl.DataFrame], recipe: Recipe, most: int = 50) -> list[str]:
    """How the rows of each group (the split's group column; for a folder of files, each field of their names
    that is neither the label nor the test filter's, such as FSDD's speakers) fall into the splits, and whether
    a group sits on both sides: a test of groups the model has met, or of new ones."""
    split = recipe.data.split
    label, test_filter = recipe.output.column, filter_column(split.test_filter or "")
    if split.group_column:
        candidates = [split.group_column]
    elif recipe.data.format == "folder":
        candidates = [f for f in pattern_regex(recipe.data.pattern or "").groupindex if f not in (label, test_filter)]
    else:
        candidates = []
    lines: list[str] = []
    present = {name: table for name, table in splits.items() if table.height}
    for column in candidates:
        values = sorted({str(v) for table in present.values() for v in table[column].to_list()})
        if not values or len(values) > most:
            continue
        counts = {name: table[column].cast(pl.String).value_counts() for name, table in present.items()}
        by_split = {name: dict(zip(c[column].to_list(), c["count"].to_list(), strict=True))
                    for name, c in counts.items()}
        shared = [v for v in values if sum(bool(by_split[name].get(v)) for name in by_split) > 1]
        said = (f"{len(shared)} of {len(values)} `{column}` values have rows in more than one split: the test "
                f"measures {column}s the model has met" if shared else
                f"no `{column}` value is in two splits: the test measures {column}s the model never met")
        rows = [[value, *(by_split[name].get(value, 0) for name in by_split)] for value in values]
        lines += [f"## Rows per `{column}` and split", "", said + ".", "",
                  *markdown_table([column, *by_split], rows), ""]
    return lines
