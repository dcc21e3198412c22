"""A report's plots, each as PNG text for the page: the metric by configuration, one metric against another,
and learning curves (the mean of each configuration's repeats)."""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np

from ensayo import figures
from ensayo.studies.report.records import RunRecord, curve_keys


def _colors(configs: list[str]) -> dict[str, Any]:
    palette = matplotlib.colormaps["tab10" if len(configs) <= 10 else "tab20"]
    return {c: palette(i % palette.N) for i, c in enumerate(configs)}


def plot_metric_by_config(records: list[RunRecord], metric: str, order: list[str]) -> str:
    figure = figures.figure(figsize=(max(6, 0.9 * len(order) + 2), 4.5), layout="tight")
    axes = figure.subplots()
    values = [[r.metrics[metric] for r in records if r.config == c and metric in r.metrics] for c in order]
    axes.boxplot([v or [np.nan] for v in values], tick_labels=order, showmeans=True)
    rng = np.random.default_rng(0)
    for index, points in enumerate(values, start=1):
        axes.scatter(index + rng.uniform(-0.12, 0.12, len(points)), points, s=18, alpha=0.7, zorder=3)
    axes.set(title=f"{metric} by configuration (each point a repeat)", ylabel=metric)
    axes.tick_params(axis="x", rotation=35)
    for label in axes.get_xticklabels():
        label.set_horizontalalignment("right")
    return figures.png_base64(figure, dpi=100)


def plot_scatter(records: list[RunRecord], x: str, y: str, order: list[str], title: str) -> str:
    figure = figures.figure(figsize=(7, 4.5), layout="tight")
    axes = figure.subplots()
    colors = _colors(order)
    for config in order:
        points = [(r.metrics[x], r.metrics[y]) for r in records if r.config == config and x in r.metrics
                  and y in r.metrics]
        if points:
            xs, ys = zip(*points, strict=True)
            axes.scatter(xs, ys, label=config, color=colors[config], s=30, alpha=0.8)
    axes.set(title=title, xlabel=x, ylabel=y)
    if axes.collections:
        axes.legend(fontsize=7, loc="best")
    return figures.png_base64(figure, dpi=100)


def plot_learning_curves(records: list[RunRecord], metric: str, order: list[str]) -> str:
    keys = curve_keys(metric)
    figure = figures.figure(figsize=(11, 4.5), layout="tight")
    (left, right) = figure.subplots(1, 2)
    colors = _colors(order)
    for config in order:
        for axes, key, style in ((left, keys[1], "-"), (left, keys[0], ":"), (right, keys[2], "-")):
            curves = [dict(r.curves[key]) for r in records if r.config == config and key in r.curves]
            if not curves:
                continue
            epochs = sorted({e for c in curves for e in c})
            mean = [np.nanmean([c.get(e, np.nan) for c in curves]) for e in epochs]
            axes.plot(epochs, mean, style, color=colors[config], marker="o", markersize=3,
                      label=config if style == "-" else None)
    left.set(title="loss per epoch (validation solid, train dotted; mean of repeats)", xlabel="epoch")
    right.set(title=f"{keys[2]} per epoch (mean of repeats)", xlabel="epoch")
    if right.lines:
        right.legend(fontsize=7)
    return figures.png_base64(figure, dpi=100)
