"""A report's tables: one row per configuration (the keys that vary as columns, the metric's mean, spread and
interval), the paired differences of cross-validated runs, and Markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ensayo.metrics import interval95
from ensayo.studies.report.records import RunRecord
from ensayo.training import higher_is_better

IGNORED_PARAMS = ("train.seed", "track.", "name", "description", "data.split.fold")
TABLE_METRICS = ("test/loss", "fit_seconds")
MAX_PARAM_COLUMNS = 6
# what tells runs apart first, when more keys differ than there are columns
FIRST_KEYS = ("model.type", "model.encoders", "inputs", "model.linear", "model.language_model", "model.head",
              "train.epochs", "train.lr", "train.batch_size", "data.split.folds")


def varying_params(records: list[RunRecord]) -> list[str]:
    """The keys a study set when few enough to be columns (otherwise the configuration names carry them and
    the page lists each one's settings); for loose runs, the recipe keys that differ, the most telling first
    (the model type, the encoders, the epochs...), as many as there are columns."""
    if all(r.settings is not None for r in records):
        keys = list(dict.fromkeys(k for r in records for k in r.settings or {}))
        return keys if len(keys) <= MAX_PARAM_COLUMNS else []
    every = sorted({k for r in records for k in r.params})
    keys = [k for k in every if not k.startswith(IGNORED_PARAMS) and len({r.params.get(k) for r in records}) > 1]
    return sorted(keys, key=_telling)[:MAX_PARAM_COLUMNS]


def _telling(key: str) -> tuple[int, bool, int, str]:
    """How early a differing recipe key comes: by FIRST_KEYS, a section's `type` before its options, then the
    shallower first."""
    rank = next((i for i, first in enumerate(FIRST_KEYS) if key == first or key.startswith(first + ".")),
                len(FIRST_KEYS))
    return rank, not key.endswith(".type"), key.count("."), key


def _param_value(record: RunRecord, key: str) -> str:
    if record.settings is not None and key in record.settings:
        value = record.settings[key]
        return json.dumps(value) if isinstance(value, dict | list) else str(value)  # as MLflow params read
    return record.params.get(key, "")


def config_rows(records: list[RunRecord], metric: str) -> list[dict[str, Any]]:
    rows = []
    for config in dict.fromkeys(r.config for r in records):
        mine = [r for r in records if r.config == config]
        done = [r for r in mine if r.status == "finished"]
        row: dict[str, Any] = {"config": config, "record": mine[0], "finished": len(done),
                               "failed": sum(r.status == "failed" for r in mine),
                               "pruned": sum(r.status == "pruned" for r in mine)}
        for key in (metric, *TABLE_METRICS):
            values = [r.metrics[key] for r in done if key in r.metrics]
            row[key] = interval95(values) if values else None
        folds = fold_values(done[0], metric) if len(done) == 1 else []
        if folds:  # one cross-validated run: the spread and the interval are over its folds
            row[metric] = interval95(folds)
        elif len(done) == 1 and {f"{metric}_low", f"{metric}_high"} <= done[0].metrics.keys():
            row["bootstrap"] = (done[0].metrics[f"{metric}_low"], done[0].metrics[f"{metric}_high"])
        rows.append(row)
    best_first = higher_is_better(metric)
    return sorted(rows, key=lambda r: (r[metric] is None, -(r[metric][0] if r[metric] else 0) if best_first
                                       else (r[metric][0] if r[metric] else 0)))


def _fmt(stats: tuple[float, float, float] | None, digits: int = 4) -> tuple[str, str]:
    if stats is None:
        return "–", "–"
    mean, std, ci = stats
    spread = f"± {std:.{digits}f}" if std == std else ""
    interval = f"[{mean - ci:.{digits}f}, {mean + ci:.{digits}f}]" if ci == ci else "–"
    return f"{mean:.{digits}f} {spread}".strip(), interval


def table(records: list[RunRecord], metric: str) -> tuple[list[str], list[list[str]]]:
    varying = varying_params(records)
    header = ["configuration", *[_column_name(k, varying) for k in varying], "runs",
              f"{metric} (mean ± std)", "95 % interval", "test loss", "fit s"]
    body = []
    for row in config_rows(records, metric):
        value, interval = _fmt(row[metric])
        if "bootstrap" in row:
            interval = "[{:.4f}, {:.4f}] bootstrap".format(*row["bootstrap"])
        loss, _ = _fmt(row["test/loss"], 3)
        seconds, _ = _fmt(row["fit_seconds"], 1)
        runs_text = str(row["finished"]) + "".join(f", {row[k]} {k}" for k in ("failed", "pruned") if row[k])
        folds = len(fold_values(row["record"], metric))
        if folds and row["finished"] == 1:
            runs_text += f" ({folds}-fold cross-validated: the mean and interval of its folds)"
        body.append([row["config"], *[_short_param(_param_value(row["record"], k)) for k in varying], runs_text,
                     value, interval, loss, seconds])
    return header, body


# the recipe keys (MLflow params) that decide which rows land in which fold
FOLD_KEYS = ("data.source", "data.sample", "data.filters", "data.split.method", "data.split.folds",
             "data.split.seed", "data.split.group_column")


def fold_values(record: RunRecord, metric: str) -> list[float]:
    """A cross-validated run's per-fold values of a test metric (`cv/<name>_fold<k>`), else none."""
    name = metric.split("/", 1)[-1]
    values = []
    while f"cv/{name}_fold{len(values)}" in record.metrics:
        values.append(record.metrics[f"cv/{name}_fold{len(values)}"])
    return values


def paired_differences(records: list[RunRecord], metric: str) -> list[list[str]]:
    """Each pair of cross-validated runs scored on the same folds: the mean per-fold difference of `metric`
    and its paired Student-t 95 % interval (the folds' shared difficulty cancels out)."""
    runs = [r for r in records if r.status == "finished" and len(fold_values(r, metric)) >= 2]
    rows = []
    for index, first in enumerate(runs):
        for second in runs[index + 1:]:
            a, b = fold_values(first, metric), fold_values(second, metric)
            if len(a) != len(b) or any(first.params.get(k) != second.params.get(k) for k in FOLD_KEYS):
                rows.append([first.config, second.config, "–", "–", "not scored on the same folds"])
                continue
            mean, _, half = interval95([x - y for x, y in zip(a, b, strict=True)])
            verdict = "no clear difference" if mean - half <= 0 <= mean + half else \
                f"{first.config if mean > 0 else second.config} higher"
            rows.append([first.config, second.config, f"{mean:+.4f}", f"[{mean - half:+.4f}, {mean + half:+.4f}]",
                         f"{len(a)} folds: {verdict}"])
    return rows


def _column_name(key: str, keys: list[str]) -> str:
    """The last part of a recipe key, or more of it when two keys would share a name."""
    parts = key.split(".")
    for size in range(1, len(parts) + 1):
        name = ".".join(parts[-size:])
        if sum(k == name or k.endswith("." + name) for k in keys) == 1:
            return name
    return key


def _short_param(value: str) -> str:
    return Path(value).name if "/" in value else value[:40]


def settings_lines(records: list[RunRecord]) -> list[tuple[str, str]]:
    """(configuration, 'key = value; ...') for studies whose settings are too many for table columns."""
    if varying_params(records) or not all(r.settings is not None for r in records):
        return []
    first = {r.config: r for r in reversed(records)}
    return [(name, "; ".join(f"{k} = {_param_value(record, k)}" for k in record.settings or {}) or "(the recipe)")
            for name, record in reversed(first.items())]


def markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    return "\n".join(lines) + "\n"
