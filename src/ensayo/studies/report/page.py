"""Study (or run) report: one self-contained HTML page and a Markdown table, read from MLflow.

The experiment table lists the parameters that vary, then each metric's mean, standard deviation and
95 % interval over repeats; the plots are those of seed 001: metric by configuration (box and points
over repeats), loss vs metric, learning curves and metric vs training time.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from ensayo import figures, layout
from ensayo.recipe import TrackConfig
from ensayo.store import read_json, write_text
from ensayo.studies.report.plots import plot_learning_curves, plot_metric_by_config, plot_scatter
from ensayo.studies.report.records import RunRecord, record_from_run_dir, records_from_mlflow, study_records
from ensayo.studies.report.tables import markdown, paired_differences, settings_lines, table
from ensayo.tracking import tracking_uri

STYLE = """tr:nth-child(even){background:#fafafa}figure{margin:1.5rem 0}figcaption{color:#555;font-size:.9rem}
code{background:#f4f4f4;padding:0 .2rem}"""
PAIRED_HEADER = ["run A", "run B", "A - B (mean over folds)", "paired 95 % interval", "folds"]


def render_html(title: str, description: str, header: list[str], body: list[list[str]],
                plots: list[tuple[str, str]], failures: list[RunRecord], settings: list[tuple[str, str]],
                paired: list[list[str]] | None = None, metric: str = "") -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    images = "".join(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>" for caption, data in plots)
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
    return figures.page(title, f"<h1>{html.escape(title)}</h1><p>{html.escape(description)}</p>"
                        f"<h2>Configurations</h2><table id='experiments'><thead><tr>{cells}</tr></thead>"
                        f"<tbody>{rows}</tbody></table>{lists}<h2>Plots</h2>{images}", STYLE)


def build_report(records: list[RunRecord], metric: str, title: str, description: str, target: Path) -> Path:
    """Write `target`/report.html and report.md; returns the HTML path."""
    if not records:
        raise ValueError(f"{title}: no runs to report")
    header, body = table(records, metric)
    order = [row[0] for row in body]
    plots = [
        (f"{metric} by configuration", plot_metric_by_config(records, metric, order)),
        (f"test loss vs {metric}", plot_scatter(records, "test/loss", metric, order, f"test loss vs {metric}")),
        *([("learning curves", plot_learning_curves(records, metric, order))]
          if any(r.curves for r in records) else []),  # models fitted in one go have no epochs
        (f"{metric} vs training time", plot_scatter(records, "fit_seconds", metric, order,
                                                    f"{metric} vs training time (s)")),
    ]
    failures = [r for r in records if r.status != "finished"]
    target.mkdir(parents=True, exist_ok=True)
    page = target / layout.REPORT_HTML
    settings = settings_lines(records)
    paired = paired_differences(records, metric)
    write_text(page, render_html(title, description, header, body, plots, failures, settings, paired, metric))
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
