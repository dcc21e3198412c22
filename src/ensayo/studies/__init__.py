"""The studies layer: many runs of one recipe (sweeps, repeats, resumable, tracked as MLflow parent and
child runs), scheduled by one process (`local`) or by many workers sharing a database (`shared`), their
reports, and the word vectors a study trains first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from ensayo.recipe import RecipeError
from ensayo.studies.report import write_runs_report, write_study_report
from ensayo.studies.schema import StudyConfig, SweepConfig, load_study, parse_grid
from ensayo.studies.study import Study, TrialPruned, tell

__all__ = ["Study", "StudyConfig", "SweepConfig", "TrialPruned", "load_study", "parse_grid", "run_study", "tell",
           "write_runs_report", "write_study_report"]


def run_study(path: str | Path, output: str | Path | None = None, smoke: bool = False, track: bool = True,
              grid: dict[str, list[Any]] | None = None, repeats: int | None = None,
              console: Console | None = None, retry_failed: bool = False, report: bool = True,
              storage: str | None = None) -> Path:
    """Run (or continue) the study in `path` into `output`; returns the study directory. With a `storage` (or
    the study's `sweep.storage`), this process is one of many workers sharing the study's trials through it."""
    from ensayo.studies.local import LocalScheduler
    from ensayo.studies.shared import SharedScheduler

    config, base = load_study(path, smoke)
    if grid:
        config.sweep = SweepConfig(method="grid", grid=grid)
    if repeats is not None:
        if repeats < 1:
            raise RecipeError(f"--repeats {repeats}: a configuration runs once or more")
        config.repeats = repeats
    directory = Path(output) if output else Path("studies") / (config.name + ("-smoke" if smoke else ""))
    study = Study(config, base, directory, track=track, console=console, retry_failed=retry_failed, report=report)
    shared = storage or config.sweep.storage
    option = "--storage" if storage else "sweep.storage"
    (SharedScheduler(study, shared, option) if shared else LocalScheduler(study)).run()
    return directory
