"""What a report reads of each run: its configuration, status, parameters, metrics and learning curves, from
MLflow when the run was tracked, else from its folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ensayo import layout
from ensayo.recipe import flatten
from ensayo.recipe.safe_yaml import load_yaml
from ensayo.store import read_json


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


def curve_keys(metric: str) -> tuple[str, ...]:
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
                                 settings, dict(run.data.metrics), _curves(client, run_id, curve_keys(metric)),
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
        recipe = run_dir / layout.RECIPE
        params = {k: str(v) for k, v in flatten(load_yaml(recipe.read_text(), str(recipe))).items()}
    curves: dict[str, list[tuple[int, float]]] = {}
    if (run_dir / layout.HISTORY).is_file():
        history = read_json(run_dir / layout.HISTORY)
        for key in curve_keys(metric):
            points = [(int(h["epoch"]), h[key]) for h in history if key in h]
            if points:
                curves[key] = points
    return params, curves


def record_from_run_dir(run_dir: Path, metric: str) -> RunRecord:
    """A finished run that was not tracked, read from its folder."""
    params, curves = _params_and_curves(run_dir, metric)
    return RunRecord(run_dir.name, 0, "finished", params, None, read_json(run_dir / layout.METRICS), curves)
