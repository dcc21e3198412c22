"""Many runs of one recipe: sweeps (grid, list, random, Optuna TPE), repeats, resumable studies.

A study directory holds `study.json` (its MLflow parent run), `trials/<config>/seed<k>/` (one saved
run each, resumed from its checkpoint when interrupted), `results.json` and the report. Each trial is
an MLflow child run of the study's parent run, tagged with its configuration name and repeat.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import random
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import Field, ValidationError, model_validator
from rich.console import Console

from ensayo import runs
from ensayo.config import RecipeError, Strict, _error_lines, expand_path, load_recipe, set_key
from ensayo.embeddings import EmbeddingJob
from ensayo.trainer import higher_is_better

STUDY_FILE = "study.json"
RESULTS_FILE = "results.json"
ERROR_FILE = "error.txt"
STUDY_DIR_VARIABLE = "${STUDY_DIR}"


# -------------------------------------------------------------------------------------------- schema
class Experiment(Strict):
    """One configuration of an explicit list: a name and the recipe keys it sets."""

    name: str = Field(pattern=r"^[\w.+-]+$")
    set: dict[str, Any] = Field(default_factory=dict)


class Distribution(Strict):
    """A search dimension: `choices`, or a `low`..`high` range (integers when both are, `log` scale)."""

    choices: list[Any] | None = None
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> Distribution:
        if self.choices is None and (self.low is None or self.high is None):
            raise ValueError("give choices: [...] or low and high")
        if self.choices is None and self.low >= self.high:  # type: ignore[operator]
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


class SweepConfig(Strict):
    method: Literal["grid", "list", "random", "optuna"] = "grid"
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="grid: every combination")
    experiments: list[Experiment] = Field(default_factory=list, description="list: these configurations")
    space: dict[str, Distribution] = Field(default_factory=dict, description="random / optuna search space")
    trials: int | None = Field(None, ge=1, description="random / optuna: how many configurations")
    objective: str | None = Field(None, description="what optuna optimizes; default: the recipe's monitor")
    pruning: bool = True
    storage: str | None = Field(None, description="optuna storage URL; default sqlite in the study directory")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> SweepConfig:
        if self.method == "grid" and not self.grid:
            raise ValueError("method 'grid' needs grid: {key: [values]}")
        if self.method == "list" and not self.experiments:
            raise ValueError("method 'list' needs experiments: [{name, set: {key: value}}]")
        if self.method in ("random", "optuna"):
            if not (self.space or self.grid):
                raise ValueError(f"method '{self.method}' needs space: {{key: {{low, high}} or {{choices}}}}")
            if self.trials is None:
                raise ValueError(f"method '{self.method}' needs trials: N")
        names = [e.name for e in self.experiments]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment names must be unique, got {names}")
        return self


class SmokeConfig(Strict):
    """What `--smoke` changes: a few configurations on a little data, for tests and a first look."""

    set: dict[str, Any] = Field(default_factory=dict)
    experiments: list[str] | None = None
    repeats: int = Field(1, ge=1)
    trials: int | None = Field(None, ge=1)
    embeddings: dict[str, Any] = Field(default_factory=dict, description="set on every embedding job")


class StudyConfig(Strict):
    name: str
    description: str = ""
    recipe: str = Field(description="the base recipe, relative to the study file")
    set: dict[str, Any] = Field(default_factory=dict, description="recipe keys set in every trial")
    sweep: SweepConfig
    repeats: int = Field(1, ge=1, description="seeds per configuration")
    metric: str = Field("test/balanced_accuracy", description="the metric the report ranks by")
    embeddings: dict[str, EmbeddingJob] = Field(default_factory=dict,
                                                description="word vectors trained before the trials")
    smoke: SmokeConfig = Field(default_factory=SmokeConfig)


def load_study(path: str | Path, smoke: bool = False) -> tuple[StudyConfig, Path]:
    """A study file, or a plain recipe (then a one-configuration study to which the CLI adds a sweep)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: study file not found")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a study must be a mapping")
    if "sweep" not in raw and "data" in raw:  # a recipe
        raw = {"name": raw.get("name", path.stem), "recipe": path.name,
               "sweep": {"method": "list", "experiments": [{"name": "base"}]}}
    raw.setdefault("name", path.stem)
    try:
        study = StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError("\n".join([f"{path}: the study is not valid", *_error_lines(exc, StudyConfig)])) from None
    if smoke:
        study = apply_smoke(study)
    return study, path.resolve().parent


def apply_smoke(study: StudyConfig) -> StudyConfig:
    smoke = study.smoke
    study = study.model_copy(deep=True)
    study.set = {**study.set, **smoke.set}
    study.repeats = smoke.repeats
    if smoke.experiments is not None:
        known = {e.name for e in study.sweep.experiments}
        unknown = [name for name in smoke.experiments if name not in known]
        if unknown:
            raise RecipeError(f"smoke.experiments names unknown experiments {unknown}; known: {sorted(known)}")
        study.sweep.experiments = [e for e in study.sweep.experiments if e.name in smoke.experiments]
        wanted = _referenced_embeddings(study)
        study.embeddings = {k: v for k, v in study.embeddings.items() if k in wanted}
    if smoke.trials is not None:
        study.sweep.trials = smoke.trials
    study.embeddings = {k: v.model_copy(update=smoke.embeddings) for k, v in study.embeddings.items()}
    return study


def _referenced_embeddings(study: StudyConfig) -> set[str]:
    text = json.dumps([study.set, [e.set for e in study.sweep.experiments]])
    return {name for name in study.embeddings if f"embeddings/{name}." in text}


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """CLI `--grid train.lr=1e-3,4e-3` -> {'train.lr': [0.001, 0.004]}."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise RecipeError(f"--grid {item!r} is not of the form key.path=v1,v2")
        key, values = item.split("=", 1)
        grid[key.strip()] = [yaml.safe_load(v) for v in _top_level_split(values)]
    return grid


def _top_level_split(text: str) -> list[str]:
    """Split on commas outside brackets, so that `[8,16],[32]` is two values."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


# ---------------------------------------------------------------------------------- configurations
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


def _suggest(trial: Any, key: str, dist: Distribution) -> Any:
    """Optuna's value for `key`; choices that are not plain scalars (lists, mappings) travel as JSON."""
    if dist.choices is not None:
        if all(c is None or isinstance(c, bool | int | float | str) for c in dist.choices):
            return trial.suggest_categorical(key, dist.choices)
        return json.loads(trial.suggest_categorical(key, [json.dumps(c) for c in dist.choices]))
    if dist.integer:
        return trial.suggest_int(key, int(dist.low), int(dist.high), log=dist.log)  # type: ignore[arg-type]
    return trial.suggest_float(key, float(dist.low), float(dist.high), log=dist.log)  # type: ignore[arg-type]


def _decoded(params: dict[str, Any], space: dict[str, Distribution]) -> dict[str, Any]:
    """A stored Optuna trial's parameters as recipe values (JSON-carried choices decoded)."""
    return {key: json.loads(value) if isinstance(value, str) and space[key].choices is not None
            and value not in space[key].choices else value for key, value in params.items()}


# ------------------------------------------------------------------------------------------ results
@dataclass
class TrialResult:
    config: str
    repeat: int
    directory: str
    status: Literal["finished", "failed", "pruned"]
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""


def interval95(values: list[float]) -> tuple[float, float, float]:
    """Mean, sample standard deviation and the half width of a 95 % Student-t interval."""
    from scipy import stats

    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2:
        return mean, float("nan"), float("nan")
    std = float(data.std(ddof=1))
    return mean, std, float(stats.t.ppf(0.975, len(data) - 1) * std / math.sqrt(len(data)))


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


# -------------------------------------------------------------------------------------------- runner
class TrialPruned(Exception):
    """Raised from the epoch callback when Optuna's pruner stops a bad trial."""


class Study:
    """Runs a StudyConfig into a directory; `run()` is idempotent: finished trials are read, not rerun."""

    def __init__(self, config: StudyConfig, base: Path, output: Path, track: bool = True,
                 console: Console | None = None, retry_failed: bool = False, report: bool = True) -> None:
        self.config = config
        self.base = base
        self.output = output
        self.track = track
        self.console = console or Console(stderr=True)
        self.retry_failed = retry_failed
        self.report = report
        self.results: list[TrialResult] = []
        self.parent_id: str | None = None
        self.tracker: Any = None
        self._train_table: Any = None  # the base recipe's training split, read once for embedding jobs
        recipe_path = expand_path(config.recipe, base)
        if not recipe_path.is_file():
            raise RecipeError(f"study {config.name!r}: its recipe {recipe_path} is not there")
        raw = yaml.safe_load(recipe_path.read_text())
        if not isinstance(raw, dict):
            raise RecipeError(f"{recipe_path}: a recipe must be a mapping")
        raw.setdefault("name", Path(config.recipe).stem)
        self.recipe_raw = raw
        self.recipe_base = recipe_path.resolve().parent

    # ------------------------------------------------------------------ public
    def run(self) -> list[dict[str, Any]]:
        self.output.mkdir(parents=True, exist_ok=True)
        self._check_recipes()
        self._train_embeddings()
        self._start_parent()
        status = "FINISHED"
        try:
            if self.config.sweep.method == "optuna":
                self._run_optuna()
            else:
                for name, settings in configurations(self.config.sweep):
                    self._run_configuration(name, settings)
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            summary = summarize(self.results)
            runs.write_json(self.output / RESULTS_FILE, {"study": self.config.model_dump(mode="json"),
                                                         "trials": [r.__dict__ for r in self.results],
                                                         "summary": summary})
            if self.report and status == "FINISHED" and self.results:
                from ensayo.report import write_study_report

                write_study_report(self.output)
            self._end_parent(summary, status)
        return summary

    def trial_recipe(self, settings: dict[str, Any], repeat: int) -> Any:
        raw = copy.deepcopy(self.recipe_raw)
        for key, value in {**self.config.set, **settings}.items():
            set_key(raw, key, self._substitute(value))
        train = raw.setdefault("train", {})
        train["seed"] = int(train.get("seed", 42)) + repeat
        raw.setdefault("track", {})["experiment"] = self.config.name
        return load_recipe(raw, label=f"{self.config.recipe} with these settings")

    # ----------------------------------------------------------------- stages
    def _check_recipes(self) -> None:
        """Every configuration must make a valid recipe before the first trial starts."""
        if self.config.sweep.method == "optuna":
            return
        problems = []
        for name, settings in configurations(self.config.sweep):
            try:
                self.trial_recipe(settings, 0)
            except RecipeError as exc:
                problems.append(f"configuration {name!r}: {exc}")
        if problems:
            raise RecipeError("\n".join(problems))

    def _train_embeddings(self) -> None:
        from ensayo.embeddings import train_job

        for name, job in self.config.embeddings.items():
            target = self.output / "embeddings" / f"{name}.vec"
            if target.is_file():
                continue
            with self.console.status(f"training word vectors {name!r} ({job.method}, dim {job.dim})"):
                report = train_job(job, target, self._train_texts, self.base)
            self.console.print(f"  embeddings {name}: {report}")

    def _train_texts(self, column: str) -> list[str]:
        """The base recipe's training split: word vectors see no validation or test title."""
        from ensayo.data import load_splits

        if self._train_table is None:
            self._train_table = load_splits(self.trial_recipe({}, 0), self.recipe_base).train
        if column not in self._train_table.columns:
            raise RecipeError(f"study {self.config.name!r}: an embedding job reads column {column!r}, which the "
                              f"recipe's data does not have (columns: {self._train_table.columns})")
        return self._train_table[column].cast(str).to_list()

    def _substitute(self, value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(STUDY_DIR_VARIABLE, str(self.output.resolve()))
        if isinstance(value, dict):
            return {k: self._substitute(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._substitute(v) for v in value]
        return value

    def _run_configuration(self, name: str, settings: dict[str, Any],
                           on_epoch: Callable[[dict[str, float]], None] | None = None) -> list[TrialResult]:
        done = []
        for repeat in range(self.config.repeats):
            result = self._run_trial(name, settings, repeat, on_epoch if repeat == 0 else None)
            self.results.append(result)
            done.append(result)
            if result.status == "pruned":
                break
        return done

    def _run_trial(self, name: str, settings: dict[str, Any], repeat: int,
                   on_epoch: Callable[[dict[str, float]], None] | None) -> TrialResult:
        from ensayo.pipeline import run

        directory = self._trial_dir(name, repeat)
        recorded = self._recorded(name, settings, repeat)
        if recorded and (recorded.status != "failed" or not self.retry_failed):
            return recorded
        (directory / ERROR_FILE).unlink(missing_ok=True)
        result = TrialResult(name, repeat, str(directory.relative_to(self.output)), "finished", settings)
        label = f"{name} (repeat {repeat + 1}/{self.config.repeats})"
        self.console.rule(f"[bold]{self.config.name}[/]: {label}")
        tags = {"ensayo.study": self.config.name, "ensayo.config": name, "ensayo.repeat": str(repeat),
                "ensayo.settings": json.dumps(settings, default=str)[:5000]}
        try:
            recipe = self.trial_recipe(settings, repeat)
            resume = directory if (directory / runs.RECIPE).is_file() else None
            saved = run(recipe, output=directory, track=self.track, resume=resume, console=self.console,
                        base=self.recipe_base, parent_id=self.parent_id, tags=tags, on_epoch=on_epoch)
            result.metrics = runs.read_json(saved.path / runs.METRICS)
        except KeyboardInterrupt:
            raise
        except TrialPruned as exc:
            result.status, result.error = "pruned", str(exc)
        except Exception as exc:  # a failing trial is recorded and the study goes on
            result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
            self.console.print(f"[bold red]trial {label} failed[/]: {result.error}", soft_wrap=True)
        if result.status != "finished":
            directory.mkdir(parents=True, exist_ok=True)
            detail = "" if result.status == "pruned" else traceback.format_exc()
            (directory / ERROR_FILE).write_text(f"{result.status}\n{result.error}\n{detail}")
            self._tag_unfinished(directory, result, tags)
        return result

    # ----------------------------------------------------------------- optuna
    def _run_optuna(self) -> None:
        import optuna

        sweep = self.config.sweep
        objective = sweep.objective or self.trial_recipe({}, 0).train.monitor
        storage = sweep.storage or f"sqlite:///{(self.output / 'optuna.db').resolve()}"
        pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1) if sweep.pruning \
            else optuna.pruners.NopPruner()
        study = optuna.create_study(study_name=self.config.name, storage=storage, load_if_exists=True,
                                    direction="maximize" if higher_is_better(objective) else "minimize",
                                    pruner=pruner)
        # a continued study draws afresh: the same seed would repeat the first session's random start
        study.sampler = optuna.samplers.TPESampler(seed=sweep.seed + len(study.trials))
        space = {k: Distribution(choices=v) for k, v in sweep.grid.items()} | sweep.space
        for trial in study.trials:  # finished ones are read back; an interrupted one is asked again
            if trial.state == optuna.trial.TrialState.RUNNING:
                study.enqueue_trial(trial.params)
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            elif trial.state.is_finished():
                self.results += self._read_configuration(_optuna_name(trial.params), _decoded(trial.params, space))
        remaining = (sweep.trials or 0) - sum(t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL
                                              for t in study.trials)
        for _ in range(max(remaining, 0)):
            trial = study.ask()
            settings = {key: _suggest(trial, key, dist) for key, dist in space.items()}
            name = _optuna_name(trial.params)

            def report(record: dict[str, float], trial: Any = trial) -> None:
                if objective in record:
                    trial.report(record[objective], int(record["epoch"]))
                    if trial.should_prune():
                        raise TrialPruned(f"pruned after epoch {int(record['epoch'])}: "
                                          f"{objective} {record[objective]:.4f}")

            done = self._run_configuration(name, settings, report)
            values = [r.metrics[objective] for r in done if r.status == "finished" and objective in r.metrics]
            if any(r.status == "pruned" for r in done):
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            elif values:
                study.tell(trial, float(np.mean(values)))
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def _read_configuration(self, name: str, settings: dict[str, Any]) -> list[TrialResult]:
        recorded = (self._recorded(name, settings, repeat) for repeat in range(self.config.repeats))
        return [result for result in recorded if result is not None]

    def _trial_dir(self, name: str, repeat: int) -> Path:
        return self.output / "trials" / name / f"seed{repeat}"

    def _recorded(self, name: str, settings: dict[str, Any], repeat: int) -> TrialResult | None:
        """A trial that ended in an earlier session (finished, failed or pruned), or None."""
        directory = self._trial_dir(name, repeat)
        result = TrialResult(name, repeat, str(directory.relative_to(self.output)), "finished", settings)
        if (directory / runs.METRICS).is_file():
            result.metrics = runs.read_json(directory / runs.METRICS)
        elif (directory / ERROR_FILE).is_file():
            result.status, result.error = _read_error(directory / ERROR_FILE)
        else:
            return None
        return result

    # ----------------------------------------------------------------- mlflow
    def _start_parent(self) -> None:
        from ensayo.config import TrackConfig
        from ensayo.tracking import Tracker

        state_file = self.output / STUDY_FILE
        state = runs.read_json(state_file) if state_file.is_file() else {}
        recipe = self.trial_recipe({}, 0)
        self.tracker = Tracker(TrackConfig(**{**recipe.track.model_dump(), "experiment": self.config.name}),
                               enabled=self.track)
        self.parent_id = self.tracker.start_parent(self.config.name, self.config.model_dump(mode="json"),
                                                   resume_id=state.get("parent_run_id"))
        runs.write_json(state_file, {"name": self.config.name, "parent_run_id": self.parent_id,
                                     "tracking_uri": self.tracker.uri, "metric": self.config.metric})

    def _end_parent(self, summary: list[dict[str, Any]], status: str) -> None:
        if not self.parent_id:
            return
        metric = self.config.metric
        scored = [row for row in summary if metric in row["metrics"]]
        if scored:
            best = (max if higher_is_better(metric) else min)(scored, key=lambda r: r["metrics"][metric]["mean"])
            self.tracker.log_metrics({f"best/{metric}": best["metrics"][metric]["mean"],
                                      "trials/finished": sum(r.status == "finished" for r in self.results),
                                      "trials/failed": sum(r.status == "failed" for r in self.results)})
            self.tracker.set_tags({"ensayo.best_config": best["config"]})
        self.tracker.log_artifacts(self.output, skip=("optuna.db",))
        self.tracker.end(status)

    def _tag_unfinished(self, directory: Path, result: TrialResult, tags: dict[str, str]) -> None:
        """The trial's MLflow run (or a new child run when it failed before it had one) gets the error."""
        if not self.tracker or not self.parent_id:
            return
        tracking = directory / "tracking.json"
        run_id = runs.read_json(tracking).get("run_id") if tracking.is_file() else None
        self.tracker.record_child(run_id, self.parent_id, f"{result.config}-seed{result.repeat}",
                                  tags | {"ensayo.status": result.status, "ensayo.error": result.error[:5000]},
                                  "KILLED" if result.status == "pruned" else "FAILED")


def _optuna_name(params: dict[str, Any]) -> str:
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"t-{digest}"


def _read_error(path: Path) -> tuple[Any, str]:
    status, _, rest = path.read_text().partition("\n")
    return (status if status in ("failed", "pruned") else "failed"), rest.split("\n", 1)[0]


def run_study(path: str | Path, output: str | Path | None = None, smoke: bool = False, track: bool = True,
              grid: dict[str, list[Any]] | None = None, repeats: int | None = None,
              console: Console | None = None, retry_failed: bool = False, report: bool = True) -> Path:
    """Run (or continue) the study in `path` into `output`; returns the study directory."""
    config, base = load_study(path, smoke)
    if grid:
        config.sweep = SweepConfig(method="grid", grid=grid)
    if repeats:
        config.repeats = repeats
    directory = Path(output) if output else Path("studies") / (config.name + ("-smoke" if smoke else ""))
    Study(config, base, directory, track=track, console=console, retry_failed=retry_failed, report=report).run()
    return directory
