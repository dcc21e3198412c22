"""The studies layer: many runs of one recipe (sweeps, repeats, resumable, tracked as MLflow parent and
child runs), scheduled by one process (`local`) or by many workers sharing a database (`shared`), their
reports, and the word vectors a study trains first. Names are imported on first use: a report of finished runs
needs no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from ensayo.lazy import exports
from ensayo.recipe import RecipeError

_REPORT, _SCHEMA, _STUDY = "ensayo.studies.report", "ensayo.studies.schema", "ensayo.studies.study"
_EXPORTS = {"write_runs_report": _REPORT, "write_study_report": _REPORT, "StudyConfig": _SCHEMA,
            "SweepConfig": _SCHEMA, "load_study": _SCHEMA, "parse_grid": _SCHEMA, "Study": _STUDY,
            "TrialPruned": _STUDY, "tell": _STUDY}
__all__ = sorted([*_EXPORTS, "run_study"])
__getattr__ = exports(__name__, _EXPORTS)


def run_study(path: str | Path, output: str | Path | None = None, smoke: bool = False, track: bool = True,
              grid: dict[str, list[Any]] | None = None, repeats: int | None = None,
              console: Console | None = None, retry_failed: bool = False, report: bool = True,
              storage: str | None = None) -> Path:
    """Run (or continue) the study in `path` into `output`; returns the study directory. With a `storage` (or
    the study's `sweep.storage`), this process is one of many workers sharing the study's trials through it."""
    from ensayo.studies.local import LocalScheduler
    from ensayo.studies.schema import SweepConfig, load_study
    from ensayo.studies.shared import SharedScheduler
    from ensayo.studies.study import Study

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
