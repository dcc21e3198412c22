"""A sweep's configurations (grid, list, seeded random; Optuna's are asked as the study runs), and the
results of its trials summarized per configuration."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ensayo.metrics import interval95
from ensayo.studies.schema import Distribution, SweepConfig


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    text = Path(text).stem if isinstance(value, str) and "/" in value else text
    return "".join(c if c.isalnum() or c in ".-+" else "_" for c in text)[:24]


def config_name(settings: dict[str, Any]) -> str:
    if not settings:
        return "base"
    name = ",".join(f"{key.split('.')[-1]}={_short(value)}" for key, value in settings.items())
    if len(name) <= 60:
        return name
    return name[:50] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]


def configurations(sweep: SweepConfig) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, settings) of every configuration of a grid, list or random sweep, in a fixed order."""
    if sweep.method == "list":
        for experiment in sweep.experiments:
            yield experiment.name, experiment.set
    elif sweep.method == "grid":
        keys = list(sweep.grid)
        for values in itertools.product(*(sweep.grid[k] for k in keys)):
            settings = dict(zip(keys, values, strict=True))
            yield config_name(settings), settings
    elif sweep.method == "random":
        rng = random.Random(sweep.seed)
        space = {k: Distribution(choices=v) for k, v in sweep.grid.items()} | sweep.space
        for _ in range(sweep.trials or 0):
            settings = {key: _sample(rng, dist) for key, dist in space.items()}
            yield config_name(settings), settings
    else:
        raise ValueError("optuna configurations are chosen while the study runs")


def _sample(rng: random.Random, dist: Distribution) -> Any:
    if dist.choices is not None:
        return rng.choice(dist.choices)
    low, high = float(dist.low), float(dist.high)  # type: ignore[arg-type]
    value = math.exp(rng.uniform(math.log(low), math.log(high))) if dist.log else rng.uniform(low, high)
    return round(value) if dist.integer else float(f"{value:.4g}")


def suggest(trial: Any, key: str, dist: Distribution) -> Any:
    """Optuna's value for `key`; choices that are not plain scalars (lists, mappings) travel as JSON."""
    if dist.choices is not None:
        if all(c is None or isinstance(c, bool | int | float | str) for c in dist.choices):
            return trial.suggest_categorical(key, dist.choices)
        return json.loads(trial.suggest_categorical(key, [json.dumps(c) for c in dist.choices]))
    if dist.integer:
        return trial.suggest_int(key, int(dist.low), int(dist.high), log=dist.log)  # type: ignore[arg-type]
    return trial.suggest_float(key, float(dist.low), float(dist.high), log=dist.log)  # type: ignore[arg-type]


def decoded(params: dict[str, Any], space: dict[str, Distribution]) -> dict[str, Any]:
    """A stored Optuna trial's parameters as recipe values (JSON-carried choices decoded)."""
    return {key: json.loads(value) if isinstance(value, str) and space[key].choices is not None
            and value not in space[key].choices else value for key, value in params.items()}


def optuna_name(params: dict[str, Any]) -> str:
    """The folder name of an Optuna trial's configuration: a digest of its parameters."""
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"t-{digest}"


@dataclass
class TrialResult:
    config: str
    repeat: int
    directory: str
    status: Literal["finished", "failed", "pruned"]
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""


def summarize(results: list[TrialResult]) -> list[dict[str, Any]]:
    """One row per configuration: its settings, finished repeats, and mean / std / ci95 of each metric."""
    rows = []
    for config in dict.fromkeys(r.config for r in results):
        done = [r for r in results if r.config == config and r.status == "finished"]
        mine = [r for r in results if r.config == config]
        row: dict[str, Any] = {"config": config, "settings": mine[0].settings, "repeats": len(done),
                               "failed": sum(r.status == "failed" for r in mine),
                               "pruned": sum(r.status == "pruned" for r in mine), "metrics": {}}
        for key in sorted({k for r in done for k in r.metrics}):
            values = [r.metrics[key] for r in done if key in r.metrics and r.metrics[key] == r.metrics[key]]
            if values:
                mean, std, ci = interval95(values)
                row["metrics"][key] = {"mean": mean, "std": std, "ci95": ci, "n": len(values)}
        rows.append(row)
    return rows


