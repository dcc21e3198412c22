"""Many runs of one recipe: sweeps (grid, list, random, Optuna TPE), repeats, resumable studies.

A study directory holds `study.json` (its MLflow parent run), `trials/<config>/seed<k>/` (one saved
run each, resumed from its checkpoint when interrupted), `results.json` and the report (file names in
`ensayo.layout`). Each trial is an MLflow child run of the study's parent run, tagged with its
configuration name and repeat.

`Study` is what a study is and does, trial by trial; a scheduler decides which trial runs next: the local
one (`ensayo.studies.local`, one process, the folder locked) or the shared one (`ensayo.studies.shared`, many
workers claiming trials through a database). Both tell Optuna a trial's outcome through `tell`, so that the
same trials make the same Optuna study whichever ran them.
"""

from __future__ import annotations

import copy
import json
import math
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from ensayo import layout
from ensayo.data import load_splits
from ensayo.models import load_recipe
from ensayo.models.registry import is_finished
from ensayo.pipeline import run
from ensayo.progress import working
from ensayo.recipe import RecipeError, TrackConfig, expand_path, set_key
from ensayo.recipe.safe_yaml import load_yaml
from ensayo.recipe.schema import name_of_file
from ensayo.store import read_json, write_json, write_text
from ensayo.studies.embeddings import train_job
from ensayo.studies.report import write_study_report
from ensayo.studies.schema import Distribution, StudyConfig
from ensayo.studies.sweep import TrialResult, configurations, summarize
from ensayo.tracking import Tracker
from ensayo.training import higher_is_better

STUDY_DIR_VARIABLE = "${STUDY_DIR}"


class TrialPruned(Exception):
    """Raised from the epoch callback when Optuna's pruner stops a bad trial."""


def direction(objective: str) -> str:
    """Which way Optuna optimizes an objective."""
    return "maximize" if higher_is_better(objective) else "minimize"


def tell(optuna_study: Any, trial: Any, done: list[TrialResult], objective: str) -> None:
    """Tell Optuna how a trial (its repeats) ended: pruned, the mean of the objective over the repeats that
    finished with a finite value, or failed when none did (a NaN, or a run without the objective, is no value).
    Both schedulers tell through here: the same trials give the same study on SQLite and on PostgreSQL."""
    import optuna

    values = [r.metrics[objective] for r in done if r.status == "finished" and objective in r.metrics
              and math.isfinite(r.metrics[objective])]
    if any(r.status == "pruned" for r in done):
        optuna_study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    elif values:
        optuna_study.tell(trial, sum(values) / len(values))
    else:
        optuna_study.tell(trial, state=optuna.trial.TrialState.FAIL)


class Study:
    """A StudyConfig run into a directory, one trial at a time: what its trials are, how one runs (resumed when
    interrupted, read back when it ended before), and its MLflow parent run and results. Which trial runs
    next is its scheduler's."""

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
        self._tracker: Tracker | None = None
        self._train_table: Any = None  # the base recipe's training split, read once for embedding jobs
        recipe_path = expand_path(config.recipe, base)
        if not recipe_path.is_file():
            raise RecipeError(f"study {config.name!r}: its recipe {recipe_path} is not there")
        raw = load_yaml(recipe_path.read_text(), str(recipe_path))
        if not isinstance(raw, dict):
            raise RecipeError(f"{recipe_path}: a recipe must be a mapping")
        raw.setdefault("name", name_of_file(Path(config.recipe).stem))
        self.recipe_raw = raw
        self.recipe_base = recipe_path.resolve().parent

    # ------------------------------------------------------------------ what its trials are
    def trial_recipe(self, settings: dict[str, Any], repeat: int) -> Any:
        raw = copy.deepcopy(self.recipe_raw)
        for key, value in {**self.config.set, **settings, **self.config.set_last}.items():
            set_key(raw, key, self._substitute(value))
        train = raw.setdefault("train", {})
        train["seed"] = int(train.get("seed", 42)) + repeat
        raw.setdefault("track", {})["experiment"] = self.config.name
        return load_recipe(raw, label=f"{self.config.recipe} with these settings")

    def objective(self) -> str:
        """What a trial tells Optuna: the sweep's objective (else the recipe's monitored metric) for an Optuna
        search, the study's metric for a fixed sweep."""
        sweep = self.config.sweep
        if sweep.method == "optuna":
            return sweep.objective or self.trial_recipe({}, 0).train.monitor
        return self.config.metric

    def space(self) -> dict[str, Distribution]:
        """The dimensions an Optuna search asks values of."""
        return {k: Distribution(choices=v) for k, v in self.config.sweep.grid.items()} | self.config.sweep.space

    def check_recipes(self) -> None:
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

    def train_embeddings(self) -> None:
        """The word vectors the study's recipes read, trained once on the base recipe's training split."""
        for name, job in self.config.embeddings.items():
            target = self.output / layout.EMBEDDINGS / f"{name}.vec"
            if target.is_file():
                continue
            with working(self.console, f"training word vectors {name!r} ({job.method}, dim {job.dim})"):
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

    # ------------------------------------------------------------------ running trials
    def run_configuration(self, name: str, settings: dict[str, Any], repeats: list[int] | None = None,
                          on_epoch: Callable[[dict[str, float]], None] | None = None) -> list[TrialResult]:
        """The configuration's repeats (all, or those given), the first watched by `on_epoch`; a pruned one
        stops the rest."""
        done = []
        for repeat in range(self.config.repeats) if repeats is None else repeats:
            result = self.run_trial(name, settings, repeat, on_epoch if repeat == 0 else None)
            done.append(result)
            if result.status == "pruned":
                break
        return done

    def run_trial(self, name: str, settings: dict[str, Any], repeat: int,
                  on_epoch: Callable[[dict[str, float]], None] | None = None) -> TrialResult:
        """One trial: read back when it ended before (a failed one run again with `retry_failed`), else run
        or resumed; a failure is recorded, never raised."""
        directory = self._trial_dir(name, repeat)
        recorded = self.recorded(name, settings, repeat)
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

    def read_configuration(self, name: str, settings: dict[str, Any]) -> list[TrialResult]:
        recorded = (self.recorded(name, settings, repeat) for repeat in range(self.config.repeats))
        return [result for result in recorded if result is not None]

    def _trial_dir(self, name: str, repeat: int) -> Path:
        return self.output / layout.TRIALS / name / f"seed{repeat}"

    def recorded(self, name: str, settings: dict[str, Any], repeat: int) -> TrialResult | None:
        """A trial that ended in an earlier session (finished, failed or pruned), or None."""
        directory = self._trial_dir(name, repeat)
        result = TrialResult(name, repeat, str(directory.relative_to(self.output)), "finished", settings)
        if is_finished(directory):
            result.metrics = read_json(directory / layout.METRICS)
        elif (directory / layout.TRIAL_ERROR).is_file():
            result.status, result.error = _read_error(directory / layout.TRIAL_ERROR)
        else:
            return None
        return result

    # ----------------------------------------------------------------- its MLflow parent run and results
    @property
    def tracker(self) -> Tracker:
        """The MLflow tracker of the study's parent run (the base recipe's store, the study's experiment)."""
        if self._tracker is None:
            recipe = self.trial_recipe({}, 0)
            self._tracker = Tracker(TrackConfig(**{**recipe.track.model_dump(), "experiment": self.config.name}),
                                    enabled=self.track, console=self.console)
        return self._tracker

    def start_parent(self, resume_id: str | None = None, storage: str | None = None,
                     create: bool = True) -> str | None:
        """The study's MLflow parent run, continued when `resume_id` names it, else new unless not to `create`
        one; recorded in study.json."""
        self.parent_id = self.tracker.start_parent(self.config.name, self.config.model_dump(mode="json"),
                                                   resume_id=resume_id) if resume_id or create else None
        state = {"name": self.config.name, "parent_run_id": self.parent_id, "tracking_uri": self.tracker.uri,
                 "metric": self.config.metric}
        write_json(self.output / layout.STUDY, state | ({"storage": storage} if storage else {}))
        return self.parent_id

    def finish(self, results: list[TrialResult], status: str, last: bool = True,
               storage: str | None = None) -> list[dict[str, Any]]:
        """results.json from the trials that ended; when the study is over (`last`) and nothing stopped it, its
        report; then its parent run ends. Returns the summary."""
        self.results = results
        summary = summarize(results)
        write_json(self.output / layout.RESULTS, {"study": self.config.model_dump(mode="json"),
                                                  "trials": [r.__dict__ for r in results], "summary": summary}
                   | ({"storage": storage} if storage else {}))
        if last:
            if self.report and status == "FINISHED" and results:
                write_study_report(self.output)
            self._end_parent(summary, status)
        return summary

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
        if not self.parent_id:
            return
        tracking = directory / layout.TRACKING
        run_id = read_json(tracking).get("run_id") if tracking.is_file() else None
        self.tracker.record_child(run_id, self.parent_id, f"{result.config}-seed{result.repeat}",
                                  tags | {"ensayo.status": result.status, "ensayo.error": result.error[:5000]},
                                  "KILLED" if result.status == "pruned" else "FAILED")


def _read_error(path: Path) -> tuple[Any, str]:
    status, _, rest = path.read_text().partition("\n")
    return (status if status in ("failed", "pruned") else "failed"), rest.split("\n", 1)[0]
