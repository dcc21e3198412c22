"""Many runs of one recipe: sweeps (grid, list, random, Optuna TPE), repeats, resumable studies.

A study directory holds `study.json` (its MLflow parent run), `trials/<config>/seed<k>/` (one saved
run each, resumed from its checkpoint when interrupted), `results.json` and the report (file names in
`ensayo.layout`). Each trial is an MLflow child run of the study's parent run, tagged with its
configuration name and repeat.
"""

from __future__ import annotations

import copy
import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.console import Console

from ensayo import layout
from ensayo.data import load_splits
from ensayo.models import load_recipe
from ensayo.pipeline import run
from ensayo.recipe import RecipeError, TrackConfig, expand_path, set_key
from ensayo.store import locked, read_json, write_json, write_text
from ensayo.studies.embeddings import train_job
from ensayo.studies.report import write_study_report
from ensayo.studies.schema import Distribution, StudyConfig, SweepConfig, load_study
from ensayo.studies.sweep import TrialResult, configurations, decoded, optuna_name, suggest, summarize
from ensayo.tracking import Tracker
from ensayo.training import higher_is_better

STUDY_DIR_VARIABLE = "${STUDY_DIR}"


class TrialPruned(Exception):
    """Raised from the epoch callback when Optuna's pruner stops a bad trial."""


class Study:
    """Runs a StudyConfig into a directory; `run()` is idempotent: finished trials are read, not rerun."""

    def __init__(self, config: StudyConfig, base: Path, output: Path, track: bool = True,
                 console: Console | None = None, retry_failed: bool = False, report: bool = True,
                 storage: str | None = None) -> None:
        self.config = config
        # a database every worker reaches (PostgreSQL): workers share the trials through it (ensayo.studies.shared)
        self.storage = storage or config.sweep.storage
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
        """Run (or continue) every trial. Alone, the study directory is locked meanwhile, so that a second `ensayo
        sweep` into it is refused instead of running the same trials; with a shared storage, workers claim the
        trials through it instead (each trial folder is locked while it trains)."""
        if self.storage:
            from ensayo.studies.shared import SharedStudy

            self.output.mkdir(parents=True, exist_ok=True)
            return SharedStudy(self, self.storage).run()
        with locked(self.output, "a study"):
            return self._run()

    def _run(self) -> list[dict[str, Any]]:
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
            write_json(self.output / layout.RESULTS, {"study": self.config.model_dump(mode="json"),
                                                         "trials": [r.__dict__ for r in self.results],
                                                         "summary": summary})
            if self.report and status == "FINISHED" and self.results:
                write_study_report(self.output)
            self._end_parent(summary, status)
        return summary

    def trial_recipe(self, settings: dict[str, Any], repeat: int) -> Any:
        raw = copy.deepcopy(self.recipe_raw)
        for key, value in {**self.config.set, **settings, **self.config.set_last}.items():
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
        for name, job in self.config.embeddings.items():
            target = self.output / layout.EMBEDDINGS / f"{name}.vec"
            if target.is_file():
                continue
            with self.console.status(f"training word vectors {name!r} ({job.method}, dim {job.dim})"):
                report = train_job(job, target, self._train_texts, self.base)
            self.console.print(f"  embeddings {name}: {report}")

    def _train_texts(self, column: str) -> list[str]:
        """The base recipe's training split: word vectors see no validation or test title."""
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
        directory = self._trial_dir(name, repeat)
        recorded = self._recorded(name, settings, repeat)
        if recorded and (recorded.status != "failed" or not self.retry_failed):
            return recorded
        (directory / layout.TRIAL_ERROR).unlink(missing_ok=True)
        result = TrialResult(name, repeat, str(directory.relative_to(self.output)), "finished", settings)
        label = f"{name} (repeat {repeat + 1}/{self.config.repeats})"
        self.console.rule(f"[bold]{self.config.name}[/]: {label}")
        tags = {"ensayo.study": self.config.name, "ensayo.config": name, "ensayo.repeat": str(repeat),
                "ensayo.settings": json.dumps(settings, default=str)[:5000]}
        try:
            recipe = self.trial_recipe(settings, repeat)
            resume = directory if (directory / layout.RECIPE).is_file() else None
            saved = run(recipe, output=directory, track=self.track, resume=resume, console=self.console,
                        base=self.recipe_base, parent_id=self.parent_id, tags=tags, on_epoch=on_epoch)
            result.metrics = read_json(saved.path / layout.METRICS)
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
            write_text(directory / layout.TRIAL_ERROR, f"{result.status}\n{result.error}\n{detail}")
            self._tag_unfinished(directory, result, tags)
        return result

    # ----------------------------------------------------------------- optuna
    def _run_optuna(self) -> None:
        import optuna

        sweep = self.config.sweep
        objective = sweep.objective or self.trial_recipe({}, 0).train.monitor
        storage = self.storage or f"sqlite:///{(self.output / layout.OPTUNA_DB).resolve()}"
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
                self.results += self._read_configuration(optuna_name(trial.params), decoded(trial.params, space))
        remaining = (sweep.trials or 0) - sum(t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL
                                              for t in study.trials)
        for _ in range(max(remaining, 0)):
            trial = study.ask()
            settings = {key: suggest(trial, key, dist) for key, dist in space.items()}
            done = self._run_configuration(optuna_name(trial.params), settings, self.pruning_callback(trial, objective))
            values = [r.metrics[objective] for r in done if r.status == "finished" and objective in r.metrics]
            if any(r.status == "pruned" for r in done):
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            elif values:
                study.tell(trial, float(np.mean(values)))
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)

    @staticmethod
    def pruning_callback(trial: Any, objective: str) -> Callable[[dict[str, float]], None]:
        """Each epoch's objective to Optuna, which may stop the trial (TrialPruned)."""

        def report(record: dict[str, float]) -> None:
            if objective in record:
                trial.report(record[objective], int(record["epoch"]))
                if trial.should_prune():
                    raise TrialPruned(f"pruned after epoch {int(record['epoch'])}: {objective} "
                                      f"{record[objective]:.4f}")

        return report

    def _read_configuration(self, name: str, settings: dict[str, Any]) -> list[TrialResult]:
        recorded = (self._recorded(name, settings, repeat) for repeat in range(self.config.repeats))
        return [result for result in recorded if result is not None]

    def _trial_dir(self, name: str, repeat: int) -> Path:
        return self.output / layout.TRIALS / name / f"seed{repeat}"

    def _recorded(self, name: str, settings: dict[str, Any], repeat: int) -> TrialResult | None:
        """A trial that ended in an earlier session (finished, failed or pruned), or None."""
        directory = self._trial_dir(name, repeat)
        result = TrialResult(name, repeat, str(directory.relative_to(self.output)), "finished", settings)
        if (directory / layout.METRICS).is_file():
            result.metrics = read_json(directory / layout.METRICS)
        elif (directory / layout.TRIAL_ERROR).is_file():
            result.status, result.error = _read_error(directory / layout.TRIAL_ERROR)
        else:
            return None
        return result

    # ----------------------------------------------------------------- mlflow
    def _start_parent(self) -> None:
        state_file = self.output / layout.STUDY
        state = read_json(state_file) if state_file.is_file() else {}
        self.parent_id = self.tracker_for_parent().start_parent(self.config.name, self.config.model_dump(mode="json"),
                                                   resume_id=state.get("parent_run_id"))
        write_json(state_file, {"name": self.config.name, "parent_run_id": self.parent_id,
                                     "tracking_uri": self.tracker.uri, "metric": self.config.metric})

    def tracker_for_parent(self) -> Tracker:
        """The MLflow tracker of the study's parent run (the base recipe's store, the study's experiment)."""
        if self.tracker is None:
            recipe = self.trial_recipe({}, 0)
            self.tracker = Tracker(TrackConfig(**{**recipe.track.model_dump(), "experiment": self.config.name}),
                                   enabled=self.track)
        return self.tracker

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
        self.tracker.log_artifacts(self.output, skip=(layout.OPTUNA_DB,))
        self.tracker.end(status)

    def _tag_unfinished(self, directory: Path, result: TrialResult, tags: dict[str, str]) -> None:
        """The trial's MLflow run (or a new child run when it failed before it had one) gets the error."""
        if not self.tracker or not self.parent_id:
            return
        tracking = directory / layout.TRACKING
        run_id = read_json(tracking).get("run_id") if tracking.is_file() else None
        self.tracker.record_child(run_id, self.parent_id, f"{result.config}-seed{result.repeat}",
                                  tags | {"ensayo.status": result.status, "ensayo.error": result.error[:5000]},
                                  "KILLED" if result.status == "pruned" else "FAILED")


def _read_error(path: Path) -> tuple[Any, str]:
    status, _, rest = path.read_text().partition("\n")
    return (status if status in ("failed", "pruned") else "failed"), rest.split("\n", 1)[0]


def run_study(path: str | Path, output: str | Path | None = None, smoke: bool = False, track: bool = True,
              grid: dict[str, list[Any]] | None = None, repeats: int | None = None,
              console: Console | None = None, retry_failed: bool = False, report: bool = True,
              storage: str | None = None) -> Path:
    """Run (or continue) the study in `path` into `output`; returns the study directory."""
    config, base = load_study(path, smoke)
    if grid:
        config.sweep = SweepConfig(method="grid", grid=grid)
    if repeats:
        config.repeats = repeats
    directory = Path(output) if output else Path("studies") / (config.name + ("-smoke" if smoke else ""))
    Study(config, base, directory, track=track, console=console, retry_failed=retry_failed, report=report,
          storage=storage).run()
    return directory
