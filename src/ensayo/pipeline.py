"""One recipe end to end: table -> features -> model -> trainer -> evaluator -> tracker -> saved run.

What depends on the kind of model is the model type's (`ensayo.models`); this module orders the stages. A
`RunSession` opens a run directory and its MLflow run and closes them, the same way for a plain run, a
cross-validated run and each of its folds, and each rank of a distributed run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import torch
from rich.console import Console

from ensayo import layout
from ensayo import metrics as ev
from ensayo.data import DataError, Splits, data_problems, load_folds, load_splits
from ensayo.models import (
    Classifier,
    FitContext,
    Fitted,
    ModelType,
    fold_dirs,
    is_cross_validated,
    load_recipe,
    model_type_of,
    run_recipe,
    save_recipe,
    write_format,
)
from ensayo.models.base import EpochCallback
from ensayo.models.registry import is_finished
from ensayo.recipe import Recipe
from ensayo.runs.examples import write_examples
from ensayo.runs.folds import write_cross_validation
from ensayo.runs.saved import SavedRun
from ensayo.runs.teacher import check_teacher, teacher_for
from ensayo.store import (
    Locked,
    contents,
    empty,
    held_by,
    locked,
    output_folder,
    read_json,
    remove_partial_files,
    write_json,
)
from ensayo.tracking import Tracker
from ensayo.training import distributed, seed_everything

T = TypeVar("T")


class OutputTaken(ValueError):
    """`--output` names a folder that holds something already; the message says what, and what to do."""


def check_output(run_dir: Path, force: bool, locked_here: bool = False) -> None:
    """A new run goes into a missing or empty folder; a folder another process is writing, a finished run, an
    unfinished one or other files there are refused by name (the last three unless `force`). `locked_here`:
    this process holds the folder's lock already."""
    output_folder(run_dir)
    writer = None if locked_here else held_by(run_dir)
    if writer:
        raise Locked(f"{run_dir}: a run is being written there by {writer}; wait for it to end or stop it, or "
                     "choose another --output")
    found = contents(run_dir)
    if not found or force:
        return
    if is_finished(run_dir):
        raise OutputTaken(f"{run_dir}: holds a finished run; choose another --output, or --force to replace it")
    if (run_dir / layout.RECIPE).is_file():
        raise OutputTaken(f"{run_dir}: holds an unfinished run; continue it with `ensayo run --resume {run_dir}`, "
                          "or --force to start again")
    shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    raise OutputTaken(f"{run_dir}: not empty and not a run (it holds {shown}); choose another --output, or "
                      "--force to empty it")


def new_run_dir(recipe: Recipe, root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
    return root / recipe.name / stamp


@dataclass
class RunSession:
    """A run directory and its MLflow run, from opening to closing. Opening checks the folder (a new run needs an
    empty one) and reaches the tracking store before any data is read; `writing` holds the folder's lock and
    lays the recipe in it; `close` writes what marks a finished run and ends the MLflow run."""

    recipe: Recipe
    run_dir: Path
    console: Console
    tracker: Tracker
    resume: bool = False
    force: bool = False
    main: bool = True  # rank 0 (or the only process): the one that writes the folder and tracks
    run_id: str | None = field(default=None, init=False)

    @classmethod
    def open(cls, recipe: Recipe, run_dir: Path, console: Console, *, track: bool, resume: bool = False,
             force: bool = False, main: bool = True, check: bool = True) -> RunSession:
        session = cls(recipe, run_dir, console, Tracker(recipe.track, enabled=track and main, console=console),
                      resume, force, main)
        if main and check:
            if not resume:
                check_output(run_dir, force)  # before reading any data; again once the folder is locked
            session.tracker.check()  # a store that does not answer fails the run in seconds, before any work
        return session

    @contextmanager
    def writing(self, what: str = "a run") -> Iterator[RunSession]:
        """The folder locked for this process, holding the recipe (a new run's emptied first); files a killed
        process left half-written are removed, never read."""
        if not self.main:
            yield self
            return
        with locked(self.run_dir, what):
            if not self.resume:
                check_output(self.run_dir, self.force, locked_here=True)
                empty(self.run_dir)
                save_recipe(self.recipe, self.run_dir)
            remove_partial_files(self.run_dir)
            yield self

    def start_tracking(self, parent_id: str | None = None, tags: dict[str, str] | None = None) -> str | None:
        """The MLflow run (the interrupted run's own, when resuming), recorded in the folder."""
        tracking_file = self.run_dir / layout.TRACKING
        previous = read_json(tracking_file).get("run_id") if self.main and self.resume and tracking_file.is_file() \
            else None
        self.run_id = self.tracker.start(self.recipe, self.run_dir.name, resume_id=previous, parent_id=parent_id,
                                         tags=tags)
        if self.run_id:
            write_json(tracking_file, {"run_id": self.run_id, "tracking_uri": self.tracker.uri})
        return self.run_id

    @contextmanager
    def ended_on_failure(self) -> Iterator[None]:
        """An interrupt ends the MLflow run KILLED and an error FAILED; either goes on up."""
        try:
            yield
        except KeyboardInterrupt:
            self.tracker.end("KILLED")
            raise
        except Exception:
            self.tracker.end("FAILED")
            raise

    def close(self, metrics: dict[str, float], step: int = 0, classes: int | None = None) -> None:
        """The run is finished: `metrics.json` is written (last, with the files the run writes for a person
        before it) and the training leftovers are gone; then when it finished, and MLflow is told."""
        write_json(self.run_dir / layout.METRICS, dict(sorted(metrics.items())))
        for leftover in layout.TRAINING_ONLY:
            (self.run_dir / leftover).unlink(missing_ok=True)
        write_format(self.run_dir, self.recipe, trained_at=datetime.now(UTC).isoformat(timespec="seconds"))
        tracker = self.tracker
        tracker.log_metrics(metrics, step=step)  # the final scores sit after the last epoch
        tracker.log_artifacts(self.run_dir, skip=(*layout.TRAINING_ONLY, *layout.BOOKKEEPING))
        tracker.end()
        if tracker.failure:
            write_json(self.run_dir / layout.TRACKING, {"run_id": self.run_id, "tracking_uri": tracker.uri,
                                                        "failure": tracker.failure})
        _print_summary(self.console, metrics, self.run_dir, tracker, classes)


# ------------------------------------------------------------------------------------------ stages
def _set_threads(recipe: Recipe) -> None:
    threads = recipe.train.threads or int(os.environ.get("ENSAYO_THREADS", "0")) or None
    if threads:
        torch.set_num_threads(threads)


def _epoch_logger(tracker: Tracker, then: EpochCallback | None) -> EpochCallback:
    """Each epoch's record to MLflow, then to the caller's callback (a study's pruner)."""

    def on_epoch(record: dict[str, float]) -> None:
        tracker.log_metrics({k: v for k, v in record.items() if k != "epoch"}, int(record["epoch"]))
        if then:
            then(record)

    return on_epoch


def _member_trainer(console: Console, base: Path | None):
    """How an ensemble trains a member: reuse a finished member run, continue an interrupted one, or train it."""

    def train_member(recipe: Recipe, run_dir: Path, resume: bool) -> Classifier:
        if is_finished(run_dir):
            saved = SavedRun.load(run_dir)
        elif resume and (run_dir / layout.RECIPE).is_file():
            saved = run(recipe, track=False, resume=run_dir, console=console, base=base)
        else:
            saved = run(recipe, output=run_dir, track=False, console=console, base=base)
        return saved.classifier

    return train_member


def check_data(recipe: Recipe, base: Path | None) -> None:
    """The data is there with the columns the recipe names, read from each file's header (what `ensayo
    validate` says too), before any work."""
    problems = data_problems(recipe, base)
    if problems:
        raise DataError("\n".join(["the recipe does not fit its data", *(f"  {p}" for p in problems)]))


def _read(recipe: Recipe, base: Path | None) -> Splits:
    # before the run directory exists: bad data leaves no half run
    splits, seconds = _timed_reading(load_splits, recipe, base)
    splits.report.read_seconds = seconds
    return splits


def _timed_reading(read: Callable[[Recipe, Path | None], T], recipe: Recipe, base: Path | None) -> tuple[T, float]:
    """What `read` returns and the seconds it took, scikit-learn's splitters imported before the clock starts
    (the split imports them lazily; read_seconds times the reading, not a 3 s import)."""
    import sklearn.model_selection  # noqa: F401

    started = time.perf_counter()
    return read(recipe, base), time.perf_counter() - started


def _fit(session: RunSession, splits: Splits, base: Path | None, parent_id: str | None = None,
         tags: dict[str, str] | None = None, on_epoch: EpochCallback | None = None) -> ModelType:
    """Train the recipe's model into the session's folder; the main process writes the report and closes the
    session. Returns the trained model (every rank of a distributed run has it)."""
    recipe, console = session.recipe, session.console
    console.print(f"[bold]{recipe.name}[/]: run directory {session.run_dir}")
    for line in splits.report.summary_lines():
        console.print(f"  {line}")
    teacher = None
    if recipe.train.teacher is not None:
        teacher = distributed.broadcast_object(teacher_for(recipe, base, session.run_dir, splits)
                                               if session.main else None)
        tags = {**(tags or {}), "ensayo.teacher": teacher.run_id}
        console.print(f"  learning from teacher {teacher.run_id} ({len(teacher.lines):,} training rows' "
                      f"probabilities, weight {recipe.train.teacher.weight}, temperature "
                      f"{recipe.train.teacher.temperature})")
        taught = read_json(session.run_dir / layout.TEACHER_RECORD).get("validation_rows_taught", 0) \
            if session.main else 0
        if taught:
            console.print(f"  [yellow]note[/]: the teacher's folds trained on {taught:,} of the validation rows, so "
                          "validation figures are optimistic; the test rows' are the honest ones", soft_wrap=True)
    session.start_tracking(parent_id, tags)
    model = model_type_of(recipe)(recipe)
    context = FitContext(session.run_dir, session.resume, console, _epoch_logger(session.tracker, on_epoch), base,
                         _member_trainer(console, base), teacher)
    with session.ended_on_failure():
        fitted = model.fit(splits, context)
        if session.main:
            _write_report(model, fitted, splits, session.run_dir)
    if session.main:
        classes = len(model.classes) if hasattr(model, "predict_proba") else None  # type: ignore[attr-defined]
        session.close(fitted.metrics, step=len(fitted.history), classes=classes)
    return model


def _write_report(model: ModelType, fitted: Fitted, splits: Splits, run_dir: Path) -> None:
    """What a finished run holds besides its metrics, which `RunSession.close` writes last."""
    report = splits.report
    model.write_report(run_dir)
    write_examples(run_dir, model.recipe, next((t for t in (splits.test, splits.validation, splits.train)
                                               if t.height), splits.test))
    if report.read_seconds is not None:
        fitted.metrics["read_seconds"] = report.read_seconds
    write_json(run_dir / layout.HISTORY, fitted.history)
    write_json(run_dir / layout.DATA_REPORT, report.to_dict())
    if fitted.history:
        ev.plot_learning_curves(fitted.history, run_dir / layout.LEARNING_CURVES, metric=model.curve_metric)


def _prepare(recipe: Recipe | str | Path | dict, overrides: list[str] | None, base: Path | None,
             resume: str | Path | None) -> tuple[Recipe, Path | None]:
    """The recipe to run (read from the run directory when resuming) and its folder."""
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / layout.RECIPE).is_file():
            raise FileNotFoundError(f"{run_dir}: no {layout.RECIPE}; not a run directory to resume")
        if is_finished(run_dir):
            raise ValueError(f"{run_dir}: this run has finished (it has {layout.METRICS}); nothing to resume")
        return run_recipe(run_dir), base
    if isinstance(recipe, dict):
        recipe = load_recipe(recipe, overrides)
    elif not isinstance(recipe, Recipe):
        base = base or Path(recipe).resolve().parent
        recipe = load_recipe(recipe, overrides)
    return model_type_of(recipe).prepare(recipe, base), base


# ------------------------------------------------------------------------------------------ runs
def run(recipe: Recipe | str | Path | dict, output: str | Path | None = None, overrides: list[str] | None = None,
        track: bool = True, resume: str | Path | None = None, console: Console | None = None,
        base: Path | None = None, parent_id: str | None = None, tags: dict[str, str] | None = None,
        on_epoch: EpochCallback | None = None, force: bool = False) -> SavedRun:
    """Train, evaluate, track and save one recipe; returns the saved run, holding the model as trained (which
    answers as the saved run loaded again does).

    With `resume`, continue the interrupted run in that directory from its last checkpoint. The run
    directory is locked while this process writes it; `output` must be missing or empty unless `force`.
    A study passes its MLflow `parent_id` and `tags`, and `on_epoch` (which may raise to stop the run).
    Under torchrun (several processes), every rank trains its share and returns the run.
    """
    console = console or Console(stderr=True)
    recipe, base = _prepare(recipe, overrides, base, resume)
    if distributed.launched():
        return _run_rank(recipe, output, resume, console, base, track, force)
    if is_cross_validated(recipe):
        return _run_folds(recipe, output, resume, console, base, track, force, parent_id, tags, on_epoch)
    run_dir = Path(resume) if resume is not None else Path(output) if output else new_run_dir(recipe)
    check_data(recipe, base)
    if recipe.train.teacher is not None and resume is None:
        check_teacher(recipe, base)
    session = RunSession.open(recipe, run_dir, console, track=track, resume=resume is not None, force=force)
    _set_threads(recipe)
    seed_everything(recipe.train.seed)
    splits = _read(recipe, base)
    with session.writing():
        model = _fit(session, splits, base, parent_id, tags, on_epoch)
    return SavedRun(run_dir, recipe, model)


def _run_folds(recipe: Recipe, output: str | Path | None, resume: str | Path | None, console: Console,
               base: Path | None, track: bool, force: bool, parent_id: str | None, tags: dict[str, str] | None,
               on_epoch: EpochCallback | None) -> SavedRun:
    """A cross-validated recipe: one fold run after another in `folds/fold<k>` (MLflow child runs of the
    recipe's run), then the recipe's run from them. Resuming keeps the finished folds and continues the
    interrupted one from its checkpoint."""
    run_dir = Path(resume) if resume is not None else Path(output) if output else new_run_dir(recipe)
    session = RunSession.open(recipe, run_dir, console, track=track, resume=resume is not None, force=force)
    _set_threads(recipe)
    # the data read once; each fold fits its preprocessing on its own train
    folds, read_seconds = _timed_reading(load_folds, recipe, base)
    with session.writing():
        console.print(f"[bold]{recipe.name}[/]: {len(folds)}-fold cross-validation in {run_dir}")
        run_id = session.start_tracking(parent_id, {**(tags or {}), "ensayo.kind": "cross-validation"})
        with session.ended_on_failure():
            runs = [_fold(session, fold, splits, base, track, run_id,
                          on_epoch if fold == 0 else None)  # a study's pruner watches the first fold
                    for fold, splits in enumerate(folds)]
            metrics, average = write_cross_validation(run_dir, recipe, folds, [r.classifier for r in runs],
                                                      [r.metrics for r in runs])
            metrics["read_seconds"] = read_seconds
            write_json(run_dir / layout.DATA_REPORT, folds[0].report.to_dict() | {
                "fold_sizes": [f.report.split_sizes for f in folds], "held_out_rows": folds.held_out.height})
        session.close(metrics, classes=len(average.classes))
    return SavedRun(run_dir, recipe, average)


def _fold(above: RunSession, fold: int, splits: Splits, base: Path | None, track: bool, parent_id: str | None,
          on_epoch: EpochCallback | None) -> SavedRun:
    """Fold `fold`'s run: kept when it finished before, continued when it was interrupted, else trained."""
    recipe, console = above.recipe, above.console
    fold_dir = fold_dirs(above.run_dir, recipe.data.split.folds or 0)[fold]
    if is_finished(fold_dir):
        console.print(f"fold {fold + 1}/{recipe.data.split.folds}: finished before, kept")
        return SavedRun.load(fold_dir)
    fold_recipe = recipe.model_copy(deep=True)
    fold_recipe.data.split.fold = fold
    continuing = above.resume and (fold_dir / layout.RECIPE).is_file()
    console.rule(f"fold {fold + 1}/{recipe.data.split.folds}")
    seed_everything(recipe.train.seed)
    session = RunSession.open(fold_recipe, fold_dir, console, track=track, resume=continuing, force=True,
                              check=False)
    with session.writing("a fold run"):
        model = _fit(session, splits, base, parent_id, {"ensayo.fold": str(fold)}, on_epoch)
    return SavedRun(fold_dir, fold_recipe, model)


def distributed_problem(recipe: Recipe, ranks: int) -> str | None:
    """Why a recipe cannot train on `ranks` processes, or None when it can."""
    if is_cross_validated(recipe):
        return "data.split.folds: a cross-validated recipe trains its folds one after another in one process"
    why = model_type_of(recipe).distributed
    if why:
        return f"model.type {recipe.model.type} cannot train on several processes: {why}"
    if ranks > recipe.train.batch_size:  # each global batch is shared out; a rank without a row takes no step
        return (f"{ranks} processes share each batch of train.batch_size {recipe.train.batch_size} rows, so "
                f"some would get none and no step would be taken: use at most {recipe.train.batch_size} "
                f"processes, or train.batch_size={ranks} or more")
    return None


@distributed.failing_after_the_cause()
def _run_rank(recipe: Recipe, output: str | Path | None, resume: str | Path | None, console: Console,
              base: Path | None, track: bool, force: bool) -> SavedRun:
    """One rank of a run torchrun started on several processes. Rank 0 owns the run directory, its lock and
    MLflow; every rank trains and scores its shares and returns the trained run."""
    problem = distributed_problem(recipe, distributed.launched_size())
    if problem:
        raise ValueError(problem)
    current = distributed.start(recipe.train.device)
    try:
        if not current.main:
            console = Console(stderr=True, quiet=True)
        run_dir = Path(resume) if resume is not None else Path(output) if output else new_run_dir(recipe)
        run_dir = Path(distributed.broadcast_object(str(run_dir)))  # rank 0's clock names a new run
        session = RunSession.open(recipe, run_dir, console, track=track, resume=resume is not None, force=force,
                                  main=current.main)
        _set_threads(recipe)
        seed_everything(recipe.train.seed)
        splits = _read(recipe, base)
        if current.main:
            console.print(f"training on {current.size} processes ({torch.distributed.get_backend()})")
        with session.writing():
            model = _fit(session, splits, base)
        return SavedRun(run_dir, recipe, model)
    finally:
        distributed.stop()


# ------------------------------------------------------------------------------------------ the summary
def _figure(metrics: dict[str, float], key: str) -> str:
    """`key value` as a person reads it (seconds to a tenth), with its bootstrap interval when it has one."""
    if key.endswith("seconds"):
        return f"{key} {metrics[key]:.1f}"
    low, high = metrics.get(f"{key}_low"), metrics.get(f"{key}_high")
    interval = f" [{low:.4f}, {high:.4f}]" if low is not None and high is not None else ""
    return f"{key} {metrics[key]:.4f}{interval}"


def chance_note(metrics: dict[str, float], classes: int) -> str | None:
    """A warning when the test balanced accuracy is no better than guessing among `classes` classes (its
    bootstrap interval, where there is one, reaches chance)."""
    score = metrics.get("test/balanced_accuracy")
    if score is None or classes < 2:
        return None
    chance = 1 / classes
    high = metrics.get("test/balanced_accuracy_high", score)
    if score > 1.5 * chance and metrics.get("test/balanced_accuracy_low", score) > chance:
        return None
    return (f"{classes} classes: chance is {chance:.4g}, and test/balanced_accuracy {score:.4f} (at most "
            f"{high:.4f}) is at chance level: the model learnt nothing it can use; look at the learning curves, "
            "train.lr, train.epochs and the data")


def _print_summary(console: Console, metrics: dict[str, float], run_dir: Path, tracker: Tracker,
                   classes: int | None = None) -> None:
    shown = [k for k in ("test/balanced_accuracy", "test/accuracy", "test/macro_f1", "val/balanced_accuracy",
                         "test/bits_per_char", "test/perplexity", "temperature", "fit_seconds") if k in metrics]
    console.print("[bold green]done[/]: " + "  ".join(_figure(metrics, k) for k in shown))
    if classes is not None and (note := chance_note(metrics, classes)):
        console.print(f"[yellow]warning[/]: {note}", soft_wrap=True)
    if "cv/balanced_accuracy_mean" in metrics:
        console.print("  over the folds: " + "  ".join(
            f"{name} {metrics[f'cv/{name}_mean']:.4f} ± {metrics[f'cv/{name}_std']:.4f} "
            f"[{metrics[f'cv/{name}_low']:.4f}, {metrics[f'cv/{name}_high']:.4f}]"
            for name in ("balanced_accuracy", "accuracy") if f"cv/{name}_mean" in metrics))
    held_out = [k for k in ("held_out/balanced_accuracy", "held_out/accuracy") if k in metrics]
    if held_out:
        console.print("  the fold average on the held-out test rows: " + "  ".join(_figure(metrics, k)
                                                                                 for k in held_out))
    console.print(f"  metrics: {run_dir / layout.METRICS}")
    made = [name for name in layout.REPORT_FILES if (run_dir / name).is_file()]
    console.print(f"  report:  {run_dir}/ ({', '.join(made)})")
    if tracker.run_id:
        console.print(f"  mlflow:  run {tracker.run_id} in {tracker.uri}; "
                      f"browse with `mlflow ui --backend-store-uri {tracker.uri}`", soft_wrap=True)
