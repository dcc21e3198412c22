"""The studies layer: many runs of one recipe (sweeps, repeats, resumable, tracked as MLflow parent and
child runs), their reports, and the word vectors a study trains first."""

from ensayo.studies.report import write_runs_report, write_study_report
from ensayo.studies.schema import StudyConfig, SweepConfig, load_study, parse_grid
from ensayo.studies.study import Study, TrialPruned, run_study

__all__ = ["Study", "StudyConfig", "SweepConfig", "TrialPruned", "load_study", "parse_grid", "run_study",
           "write_runs_report", "write_study_report"]
