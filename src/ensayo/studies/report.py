"""Study (or run) report: one self-contained HTML page and a Markdown table, read from MLflow.

The experiment table lists the parameters that vary, then each metric's mean, standard deviation and
95 % interval over repeats; the plots are those of seed 001: metric by configuration (box and points
over repeats), loss vs metric, learning curves and metric vs training time.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import yaml

from ensayo import layout
from ensayo.metrics import interval95
from ensayo.recipe import TrackConfig, flatten
from ensayo.store import read_json, write_text
from ensayo.tracking import tracking_uri
from ensayo.training import higher_is_better

IGNORED_PARAMS = ("train.seed", "track.", "name", "description")
TABLE_METRICS = ("test/loss", "fit_seconds")


@dataclass
class RunRecord:
    """One trial as the report sees it."""

    config: str
    repeat: int
    status: str
    params: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] | None = None  # what the study set for this configuration
    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # key -> [(epoch, value)]
    error: str = ""


# ----------------------------------------------------------------------------------------- reading
def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _curves(client: Any, run_id: str, keys: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    curves = {}
    for key in keys:
        seen: dict[int, float] = {}
        for point in client.get_metric_history(run_id, key):
            seen.setdefault(point.step, point.value)  # the final score repeats the last epoch's step
        if seen:
            curves[key] = sorted(seen.items())
    return curves


def _curve_keys(metric: str) -> tuple[str, ...]:
    name = metric.split("/", 1)[-1]
    return ("train/loss", "val/loss", f"val/{name}")


def records_from_mlflow(uri: str, run_ids: list[str], metric: str, labels: dict[str, str] | None = None
                        ) -> list[RunRecord]:
    client = _client(uri)
    records = []
    for run_id in run_ids:
        run = client.get_run(run_id)
        tags = run.data.tags
        status = tags.get("ensayo.status") or ("finished" if run.info.status == "FINISHED" else "failed")
        label = (labels or {}).get(run_id) or tags.get("ensayo.config") or tags.get("mlflow.runName", run_id[:8])
        settings = json.loads(tags["ensayo.settings"]) if "ensayo.settings" in tags else None
        records.append(RunRecord(label, int(tags.get("ensayo.repeat", 0)), status, dict(run.data.params),
                                 settings, dict(run.data.metrics), _curves(client, run_id, _curve_keys(metric)),
                                 tags.get("ensayo.error", "")))
    return records


def study_records(directory: Path) -> tuple[list[RunRecord], dict[str, Any]]:
    """The trials of a study directory: from MLflow when it was tracked, else from its run directories."""
    state = read_json(directory / layout.STUDY)
    metric = state.get("metric", "test/balanced_accuracy")
    if state.get("parent_run_id"):
        client = _client(state["tracking_uri"])
        parent = client.get_run(state["parent_run_id"])
        children = client.search_runs([parent.info.experiment_id],
                                      f"tags.mlflow.parentRunId = '{state['parent_run_id']}'", max_results=5000)
        order = _config_order(directory)
        records = records_from_mlflow(state["tracking_uri"], [c.info.run_id for c in children], metric)
        records.sort(key=lambda r: (order.get(r.config, len(order)), r.repeat))
        return records, state
    return _records_from_directory(directory, metric), state


def _config_order(directory: Path) -> dict[str, int]:
    results = directory / layout.RESULTS
    if not results.is_file():
        return {}
    names = dict.fromkeys(t["config"] for t in read_json(results)["trials"])
    return {name: index for index, name in enumerate(names)}


def _records_from_directory(directory: Path, metric: str) -> list[RunRecord]:
    records = []
    for trial in read_json(directory / layout.RESULTS)["trials"]:
        run_dir = directory / trial["directory"]
        params, curves = _params_and_curves(run_dir, metric)
        records.append(RunRecord(trial["config"], trial["repeat"], trial["status"], params, trial["settings"],
                                 trial["metrics"], curves, trial.get("error", "")))
    return records


def _params_and_curves(run_dir: Path, metric: str) -> tuple[dict[str, str], dict[str, list[tuple[int, float]]]]:
    """A run directory's recipe, flattened as MLflow keeps its params, and its learning curves."""
    params = {}
    if (run_dir / layout.RECIPE).is_file():
        params = {k: str(v) for k, v in flatten(yaml.safe_load((run_dir / layout.RECIPE).read_text())).items()}
    curves: dict[str, list[tuple[int, float]]] = {}
    if (run_dir / layout.HISTORY).is_file():
        history = read_json(run_dir / layout.HISTORY)
        for key in _curve_keys(metric):
            points = [(int(h["epoch"]), h[key]) for h in history if key in h]
            if points:
                curves[key] = points
    return params, curves


def record_from_run_dir(run_dir: Path, metric: str) -> RunRecord:
    """A finished run that was not tracked, read from its folder."""
    params, curves = _params_and_curves(run_dir, metric)
    return RunRecord(run_dir.name, 0, "finished", params, None, read_json(run_dir / layout.METRICS), curves)


# ------------------------------------------------------------------------------------------ tables
MAX_PARAM_COLUMNS = 6


def varying_params(records: list[RunRecord]) -> list[str]:
    """The keys a study set (or, for loose runs, the recipe keys that differ), when few enough to be
    columns; otherwise the configuration names carry them and the page lists each one's settings."""
    if all(r.settings is not None for r in records):
        keys = list(dict.fromkeys(k for r in records for k in r.settings or {}))
    else:
        every = sorted({k for r in records for k in r.params})
        keys = [k for k in every if not k.startswith(IGNORED_PARAMS) and len({r.params.get(k) for r in records}) > 1]
    return keys if len(keys) <= MAX_PARAM_COLUMNS else []


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


# ------------------------------------------------------------------------------------------- plots
def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _colors(configs: list[str]) -> dict[str, Any]:
    palette = plt.get_cmap("tab10" if len(configs) <= 10 else "tab20")
    return {c: palette(i % palette.N) for i, c in enumerate(configs)}


def plot_metric_by_config(records: list[RunRecord], metric: str, order: list[str]) -> str:
    figure, axes = plt.subplots(figsize=(max(6, 0.9 * len(order) + 2), 4.5))
    values = [[r.metrics[metric] for r in records if r.config == c and metric in r.metrics] for c in order]
    axes.boxplot([v or [np.nan] for v in values], tick_labels=order, showmeans=True)
    rng = np.random.default_rng(0)
    for index, points in enumerate(values, start=1):
        axes.scatter(index + rng.uniform(-0.12, 0.12, len(points)), points, s=18, alpha=0.7, zorder=3)
    axes.set(title=f"{metric} by configuration (each point a repeat)", ylabel=metric)
    axes.tick_params(axis="x", rotation=35)
    plt.setp(axes.get_xticklabels(), ha="right")
    return _png(figure)


def plot_scatter(records: list[RunRecord], x: str, y: str, order: list[str], title: str) -> str:
    figure, axes = plt.subplots(figsize=(7, 4.5))
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
    return _png(figure)


def plot_learning_curves(records: list[RunRecord], metric: str, order: list[str]) -> str:
    keys = _curve_keys(metric)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
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
    return _png(figure)


# --------------------------------------------------------------------------------------------- page
STYLE = """body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
table{border-collapse:collapse;font-size:.85rem;margin:1rem 0}th,td{border:1px solid #ccc;padding:.3rem .5rem;
text-align:left}th{background:#f2f2f2}tr:nth-child(even){background:#fafafa}img{max-width:100%;margin:.5rem 0}
figure{margin:1.5rem 0}figcaption{color:#555;font-size:.9rem}code{background:#f4f4f4;padding:0 .2rem}"""


PAIRED_HEADER = ["run A", "run B", "A - B (mean over folds)", "paired 95 % interval", "folds"]


def render_html(title: str, description: str, header: list[str], body: list[list[str]],
                figures: list[tuple[str, str]], failures: list[RunRecord], settings: list[tuple[str, str]],
                paired: list[list[str]] | None = None, metric: str = "") -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    images = "".join(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>" for caption, data in figures)
    lists = ""
    if paired:
        cells_paired = "".join(f"<th>{html.escape(h)}</th>" for h in PAIRED_HEADER)
        rows_paired = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                              for row in paired)
        lists += (f"<h2>Paired differences of {html.escape(metric)} over the same folds</h2>"
                  f"<table id='paired'><thead><tr>{cells_paired}</tr></thead><tbody>{rows_paired}</tbody></table>")
    if failures:
        items = "".join(f"<li><code>{html.escape(r.config)}</code> repeat {r.repeat}: {html.escape(r.status)}"
                        f" – {html.escape(r.error)}</li>" for r in failures)
        lists = f"<h2>Trials that did not finish</h2><ul>{items}</ul>"
    if settings:
        items = "".join(f"<li><code>{html.escape(name)}</code>: {html.escape(text)}</li>" for name, text in settings)
        lists += f"<h2>What each configuration sets</h2><ul>{items}</ul>"
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(description)}</p>"
            f"<h2>Configurations</h2><table id='experiments'><thead><tr>{cells}</tr></thead><tbody>{rows}</tbody>"
            f"</table>{lists}<h2>Plots</h2>{images}</body></html>")


def build_report(records: list[RunRecord], metric: str, title: str, description: str, target: Path) -> Path:
    """Write `target`/report.html and report.md; returns the HTML path."""
    if not records:
        raise ValueError(f"{title}: no runs to report")
    header, body = table(records, metric)
    order = [row[0] for row in body]
    figures = [
        (f"{metric} by configuration", plot_metric_by_config(records, metric, order)),
        (f"test loss vs {metric}", plot_scatter(records, "test/loss", metric, order, f"test loss vs {metric}")),
        ("learning curves", plot_learning_curves(records, metric, order)),
        (f"{metric} vs training time", plot_scatter(records, "fit_seconds", metric, order,
                                                    f"{metric} vs training time (s)")),
    ]
    failures = [r for r in records if r.status != "finished"]
    target.mkdir(parents=True, exist_ok=True)
    page = target / layout.REPORT_HTML
    settings = settings_lines(records)
    paired = paired_differences(records, metric)
    write_text(page, render_html(title, description, header, body, figures, failures, settings, paired, metric))
    text = f"# {title}\n\n{description}\n\n{markdown(header, body)}"
    if paired:
        text += f"\nPaired differences of {metric} over the same folds:\n\n{markdown(PAIRED_HEADER, paired)}"
    if settings:
        text += "\nWhat each configuration sets:\n\n" + "".join(f"- {name}: {line}\n" for name, line in settings)
    if failures:
        text += "\nTrials that did not finish:\n\n" + "".join(
            f"- {r.config} repeat {r.repeat}: {r.status}: {r.error}\n" for r in failures)
    write_text(target / layout.REPORT_MARKDOWN, text)
    return page


def write_study_report(directory: Path, target: Path | None = None) -> Path:
    records, state = study_records(directory)
    study = read_json(directory / layout.RESULTS)["study"] if (directory / layout.RESULTS).is_file() else {}
    metric = state.get("metric", "test/balanced_accuracy")
    description = study.get("description", "") + f" ({len(records)} trials; study directory {directory})"
    return build_report(records, metric, f"Study {state.get('name', directory.name)}", description.strip(),
                        target or directory)


def write_runs_report(references: list[str], target: Path, metric: str, uri: str | None = None) -> Path:
    """A report over single runs, named by run directory (read from MLflow when it was tracked, else from the
    folder) or by MLflow run id; in the order given."""
    ids, labels, found = [], {}, {}
    for reference in references:
        path = Path(reference)
        if (path / layout.TRACKING).is_file():
            tracking = json.loads((path / layout.TRACKING).read_text())
            uri = uri or tracking.get("tracking_uri")
            ids.append(tracking["run_id"])
            labels[tracking["run_id"]] = path.name
        elif (path / layout.METRICS).is_file():
            ids.append(reference)
            found[reference] = record_from_run_dir(path, metric)
        elif path.exists():
            raise ValueError(f"{path}: not a finished run directory (no {layout.METRICS})")
        else:
            ids.append(reference)
    tracked = [i for i in ids if i not in found]
    read = dict(zip(tracked, records_from_mlflow(uri or tracking_uri(TrackConfig()), tracked, metric, labels),
                    strict=True)) if tracked else {}
    records = [found.get(i) or read[i] for i in ids]
    return build_report(records, metric, f"{len(records)} runs", "", target)
