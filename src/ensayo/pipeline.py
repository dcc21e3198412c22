"""One recipe end to end: table -> features -> model -> trainer -> evaluator -> tracker -> saved run.

What depends on the kind of model is the model type's (`ensayo.models`); this module orders the stages
and keeps the run directory and its MLflow run in step.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import torch
from rich.console import Console

from ensayo import layout
from ensayo import metrics as ev
from ensayo.data import DataReport, Splits, load_folds, load_splits
from ensayo.models import Classifier, FitContext, Fitted, ModelType, load_recipe, model_type_of, save_recipe
from ensayo.models.base import EpochCallback
from ensayo.models.registry import run_recipe, write_format
from ensayo.recipe import Recipe
from ensayo.runs import SavedRun
from ensayo.runs.folds import fold_dirs, is_cross_validated, write_cross_validation
from ensayo.store import contents, locked, read_json, write_json
from ensayo.tracking import Tracker
from ensayo.training import distributed, seed_everything


def _epoch_logger(tracker: Tracker, then: EpochCallback | None) -> EpochCallback:
    """Each epoch's record to MLflow, then to the caller's callback (a study's pruner)."""

    def on_epoch(record: dict[str, float]) -> None:
        tracker.log_metrics({k: v for k, v in record.items() if k != "epoch"}, int(record["epoch"]))
        if then:
            then(record)

    return on_epoch


@contextmanager
def _ended_on_failure(tracker: Tracker) -> Iterator[None]:
    """An interrupt ends the MLflow run KILLED and an error FAILED; either goes on up."""
    try:
        yield
    except KeyboardInterrupt:
        tracker.end("KILLED")
        raise
    except Exception:
        tracker.end("FAILED")
        raise


def _set_threads(recipe: Recipe) -> None:
    threads = recipe.train.threads or int(os.environ.get("ENSAYO_THREADS", "0")) or None
    if threads:
        torch.set_num_threads(threads)


def _member_trainer(console: Console, base: Path | None):
    """How an ensemble trains a member: reuse a finished member run, continue an interrupted one, or train it."""

    def train_member(recipe: Recipe, run_dir: Path, resume: bool) -> Classifier:
        if (run_dir / layout.METRICS).is_file():
            saved = SavedRun.load(run_dir)
        elif resume and (run_dir / layout.RECIPE).is_file():
            saved = run(recipe, track=False, resume=run_dir, console=console, base=base)
        else:
            saved = run(recipe, output=run_dir, track=False, console=console, base=base)
        return saved.classifier

    return train_member


def _write_report(model: ModelType, fitted: Fitted, report: DataReport, run_dir: Path) -> None:
    model.write_report(run_dir)  # before the metrics, whose file marks a finished run
    if report.read_seconds is not None:
        fitted.metrics["read_seconds"] = report.read_seconds
    write_json(run_dir / layout.METRICS, dict(sorted(fitted.metrics.items())))
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
        if (run_dir / layout.METRICS).is_file():
            raise ValueError(f"{run_dir}: this run has finished (it has {layout.METRICS}); nothing to resume")
        return run_recipe(run_dir), base
    if isinstance(recipe, dict):
        recipe = load_recipe(recipe, overrides)
    elif not isinstance(recipe, Recipe):
        base = base or Path(recipe).resolve().parent
        recipe = load_recipe(recipe, overrides)
    return model_type_of(recipe).prepare(recipe, base), base


class OutputTaken(ValueError):
    """`--output` names a folder that holds something already; the message says what, and what to do."""


def check_output(run_dir: Path, force: bool) -> None:
    """A new run goes into a missing or empty folder; a finished run, an unfinished one or other files there
    are refused by name unless `force`."""
    found = contents(run_dir)
    if not found or force:
        return
    if (run_dir / layout.METRICS).is_file():
        raise OutputTaken(f"{run_dir}: holds a finished run; choose another --output, or --force to replace it")
    if (run_dir / layout.RECIPE).is_file():
        raise OutputTaken(f"{run_dir}: holds an unfinished run; continue it with `ensayo run --resume {run_dir}`, "
                          "or --force to start again")
    shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    raise OutputTaken(f"{run_dir}: not empty and not a run (it holds {shown}); choose another --output, or "
                      "--force to empty it")


def _empty(run_dir: Path) -> None:
    for name in contents(run_dir):
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def new_run_dir(recipe: Recipe, root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
    return root / recipe.name / stamp


def run(recipe: Recipe | str | Path | dict, output: str | Path | None = None, overrides: list[str] | None = None,
        track: bool = True, resume: str | Path | None = None, console: Console | None = None,
        base: Path | None = None, parent_id: str | None = None, tags: dict[str, str] | None = None,
        on_epoch: EpochCallback | None = None, force: bool = False) -> SavedRun:
    """Train, evaluate, track and save one recipe; returns the saved run.

    With `resume`, continue the interrupted run in that directory from its last checkpoint. The run
    directory is locked while this process writes it; `output` must be missing or empty unless `force`.
    A study passes its MLflow `parent_id` and `tags`, and `on_epoch` (which may raise to stop the run).
    """
    console = console or Console(stderr=True)
    recipe, base = _prepare(recipe, overrides, base, resume)
    if distributed.launched():
        return _run_rank(recipe, output, resume, console, base, track, force)
    if is_cross_validated(recipe):
        return _run_folds(recipe, output, resume, console, base, track, force, parent_id, tags, on_epoch)
    run_dir = Path(resume) if resume is not None else Path(output) if output else new_run_dir(recipe)
    if resume is None:
        check_output(run_dir, force)  # before reading any data; again once the folder is locked
    tracker = Tracker(recipe.track, enabled=track)
    tracker.console = console
    tracker.check()  # a store that does not answer fails the run in seconds, before any work
    _set_threads(recipe)
    seed_everything(recipe.train.seed)
    started = time.perf_counter()
    splits = load_splits(recipe, base)  # before the run directory exists: bad data leaves no half run
    splits.report.read_seconds = time.perf_counter() - started
    with locked(run_dir, "a run"):
        if resume is None:
            check_output(run_dir, force)
            _empty(run_dir)
            save_recipe(recipe, run_dir)
        for partial in run_dir.glob(".*.tmp*"):  # half-written by a process that was killed: never read
            partial.unlink()
        return _train(recipe, run_dir, splits, console, base, resume is not None, tracker, parent_id, tags,
                      on_epoch)


def _run_folds(recipe: Recipe, output: str | Path | None, resume: str | Path | None, console: Console,
               base: Path | None, track: bool, force: bool, parent_id: str | None, tags: dict[str, str] | None,
               on_epoch: EpochCallback | None) -> SavedRun:
    """A cross-validated recipe: one fold run after another in `folds/fold<k>` (MLflow child runs of the
    recipe's run), then the recipe's run from them. Resuming keeps the finished folds and continues the
    interrupted one from its checkpoint."""
    run_dir = Path(resume) if resume is not None else Path(output) if output else new_run_dir(recipe)
    if resume is None:
        check_output(run_dir, force)
    tracker = Tracker(recipe.track, enabled=track)
    tracker.console = console
    tracker.check()
    _set_threads(recipe)
    started = time.perf_counter()
    folds = load_folds(recipe, base)  # the data read once; each fold fits its preprocessing on its own train
    read_seconds = time.perf_counter() - started
    with locked(run_dir, "a run"):
        if resume is None:
            check_output(run_dir, force)
            _empty(run_dir)
            save_recipe(recipe, run_dir)
        console.print(f"[bold]{recipe.name}[/]: {len(folds)}-fold cross-validation in {run_dir}")
        tracking_file = run_dir / layout.TRACKING
        previous = read_json(tracking_file).get("run_id") if resume and tracking_file.is_file() else None
        run_id = tracker.start(recipe, run_dir.name, resume_id=previous, parent_id=parent_id,
                               tags={**(tags or {}), "ensayo.kind": "cross-validation"})
        if run_id:
            write_json(tracking_file, {"run_id": run_id, "tracking_uri": tracker.uri})
        with _ended_on_failure(tracker):
            runs = [_fold(recipe, run_dir, fold, splits, console, base, resume is not None, track, run_id,
                          on_epoch if fold == 0 else None)  # a study's pruner watches the first fold
                    for fold, splits in enumerate(folds)]
            metrics, average = write_cross_validation(run_dir, recipe, folds, [r.classifier for r in runs],
                                                      [r.metrics for r in runs])
            metrics["read_seconds"] = read_seconds
            average.write_report(run_dir)
            write_json(run_dir / layout.METRICS, dict(sorted(metrics.items())))
            write_json(run_dir / layout.DATA_REPORT, folds[0].report.to_dict() | {
                "fold_sizes": [f.report.split_sizes for f in folds]})
        write_format(run_dir, recipe, trained_at=datetime.now(UTC).isoformat(timespec="seconds"))
        tracker.log_metrics(metrics)
        tracker.log_artifacts(run_dir, skip=layout.BOOKKEEPING)
        tracker.end()
        _print_summary(console, metrics, run_dir, tracker)
        return SavedRun.load(run_dir)


def _fold(recipe: Recipe, run_dir: Path, fold: int, splits: Splits, console: Console, base: Path | None,
          resume: bool, track: bool, parent_id: str | None, on_epoch: EpochCallback | None) -> SavedRun:
    """Fold `fold`'s run: kept when it finished before, continued when it was interrupted, else trained."""
    fold_dir = fold_dirs(run_dir, recipe.data.split.folds or 0)[fold]
    if (fold_dir / layout.METRICS).is_file():
        console.print(f"fold {fold + 1}/{recipe.data.split.folds}: finished before, kept")
        return SavedRun.load(fold_dir)
    fold_recipe = recipe.model_copy(deep=True)
    fold_recipe.data.split.fold = fold
    continuing = resume and (fold_dir / layout.RECIPE).is_file()
    console.rule(f"fold {fold + 1}/{recipe.data.split.folds}")
    seed_everything(recipe.train.seed)
    with locked(fold_dir, "a fold run"):
        if not continuing:
            _empty(fold_dir)
            save_recipe(fold_recipe, fold_dir)
        for partial in fold_dir.glob(".*.tmp*"):
            partial.unlink()
        tracker = Tracker(recipe.track, enabled=track)
        tracker.console = console
        return _train(fold_recipe, fold_dir, splits, console, base, continuing, tracker, parent_id,
                      {"ensayo.fold": str(fold)}, on_epoch)


def distributed_problem(recipe: Recipe) -> str | None:
    """Why a recipe cannot train on several processes, or None when it can."""
    if is_cross_validated(recipe):
        return "data.split.folds: a cross-validated recipe trains its folds one after another in one process"
    why = model_type_of(recipe).distributed
    return f"model.type {recipe.model.type} cannot train on several processes: {why}" if why else None


@distributed.failing_after_the_cause()
def _run_rank(recipe: Recipe, output: str | Path | None, resume: str | Path | None, console: Console,
              base: Path | None, track: bool, force: bool) -> SavedRun | None:
    """One rank of a run torchrun started on several processes. Rank 0 owns the run directory, its lock and
    MLflow, and returns the saved run; the other ranks train and score their shares and return None."""
    problem = distributed_problem(recipe)
    if problem:
        raise ValueError(problem)
    current = distributed.start(recipe.train.device)
    try:
        if not current.main:
            console = Console(stderr=True, quiet=True)
        run_dir = Path(resume) if resume is not None else Path(output) if output else new_run_dir(recipe)
        run_dir = Path(distributed.broadcast_object(str(run_dir)))  # rank 0's clock names a new run
        tracker = Tracker(recipe.track, enabled=track and current.main)
        tracker.console = console
        if current.main:
            if resume is None:
                check_output(run_dir, force)
            tracker.check()
        _set_threads(recipe)
        seed_everything(recipe.train.seed)
        started = time.perf_counter()
        splits = load_splits(recipe, base)
        splits.report.read_seconds = time.perf_counter() - started
        if not current.main:
            _train(recipe, run_dir, splits, console, base, resume is not None, tracker, None, None, None)
            return None
        console.print(f"training on {current.size} processes ({torch.distributed.get_backend()})")
        with locked(run_dir, "a run"):
            if resume is None:
                check_output(run_dir, force)
                _empty(run_dir)
                save_recipe(recipe, run_dir)
            for partial in run_dir.glob(".*.tmp*"):
                partial.unlink()
            return _train(recipe, run_dir, splits, console, base, resume is not None, tracker, None, None, None)
    finally:
        distributed.stop()


def _train(recipe: Recipe, run_dir: Path, splits: Splits, console: Console, base: Path | None, resume: bool,
           tracker: Tracker, parent_id: str | None, tags: dict[str, str] | None,
           on_epoch: EpochCallback | None) -> SavedRun:
    console.print(f"[bold]{recipe.name}[/]: run directory {run_dir}")
    for line in splits.report.summary_lines():
        console.print(f"  {line}")

    main = distributed.world().main
    tracking_file = run_dir / layout.TRACKING
    previous = read_json(tracking_file).get("run_id") if main and resume and tracking_file.is_file() else None
    run_id = tracker.start(recipe, run_dir.name, resume_id=previous, parent_id=parent_id, tags=tags)
    if run_id:
        write_json(tracking_file, {"run_id": run_id, "tracking_uri": tracker.uri})

    model = model_type_of(recipe)(recipe)
    context = FitContext(run_dir, resume, console, _epoch_logger(tracker, on_epoch), base,
                         _member_trainer(console, base))
    with _ended_on_failure(tracker):
        fitted = model.fit(splits, context)
        if not main:
            return None  # type: ignore[return-value]
        _write_report(model, fitted, splits.report, run_dir)
    write_format(run_dir, recipe, trained_at=datetime.now(UTC).isoformat(timespec="seconds"))
    tracker.log_metrics(fitted.metrics, step=len(fitted.history))  # the final scores sit after the last epoch
    tracker.log_artifacts(run_dir, skip=(*layout.TRAINING_ONLY, *layout.BOOKKEEPING))
    tracker.end()
    if tracker.failure:
        write_json(tracking_file, {"run_id": run_id, "tracking_uri": tracker.uri, "failure": tracker.failure})
    for leftover in layout.TRAINING_ONLY:
        (run_dir / leftover).unlink(missing_ok=True)
    _print_summary(console, fitted.metrics, run_dir, tracker)
    return SavedRun.load(run_dir)


def _figure(metrics: dict[str, float], key: str) -> str:
    """`key value`, with its bootstrap interval when it has one."""
    low, high = metrics.get(f"{key}_low"), metrics.get(f"{key}_high")
    interval = f" [{low:.4f}, {high:.4f}]" if low is not None and high is not None else ""
    return f"{key} {metrics[key]:.4f}{interval}"


def _print_summary(console: Console, metrics: dict[str, float], run_dir: Path, tracker: Tracker) -> None:
    shown = [k for k in ("test/balanced_accuracy", "test/accuracy", "test/macro_f1", "val/balanced_accuracy",
                         "test/bits_per_char", "test/perplexity", "temperature", "fit_seconds") if k in metrics]
    console.print("[bold green]done[/]: " + "  ".join(_figure(metrics, k) for k in shown))
    if "cv/balanced_accuracy_mean" in metrics:
        console.print("  over the folds: " + "  ".join(
            f"{name} {metrics[f'cv/{name}_mean']:.4f} ± {metrics[f'cv/{name}_std']:.4f} "
            f"[{metrics[f'cv/{name}_low']:.4f}, {metrics[f'cv/{name}_high']:.4f}]"
            for name in ("balanced_accuracy", "accuracy") if f"cv/{name}_mean" in metrics))
    console.print(f"  metrics: {run_dir / layout.METRICS}")
    made = [name for name in layout.REPORT_FILES if (run_dir / name).is_file()]
    console.print(f"  report:  {run_dir}/ ({', '.join(made)})")
    if tracker.run_id:
        console.print(f"  mlflow:  run {tracker.run_id} in {tracker.uri}; "
                      f"browse with `mlflow ui --backend-store-uri {tracker.uri}`", soft_wrap=True)
