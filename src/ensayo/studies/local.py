"""The local scheduler: one process runs a study's trials one after another, its folder locked meanwhile so that
a second `ensayo sweep` into it is refused instead of running the same trials. A fixed sweep (grid, list,
random) runs its configurations in order; an Optuna search asks TPE for each next one, its trials kept in a
SQLite file in the study folder. Run it again to continue: ended trials are read back, an interrupted one
resumes."""

from __future__ import annotations

from typing import Any

from ensayo import layout
from ensayo.store import locked, read_json
from ensayo.studies.study import Study, direction, tell
from ensayo.studies.sweep import TrialResult, configurations, decoded, optuna_name, suggest


class LocalScheduler:
    def __init__(self, study: Study) -> None:
        self.study = study

    def run(self) -> list[dict[str, Any]]:
        """Run (or continue) every trial; returns the study's summary."""
        study = self.study
        with locked(study.output, "a study"):
            study.check_recipes()
            study.train_embeddings()
            state = study.output / layout.STUDY
            study.start_parent(read_json(state).get("parent_run_id") if state.is_file() else None)
            results: list[TrialResult] = []
            status = "FINISHED"
            try:
                if study.config.sweep.method == "optuna":
                    self._search(results)
                else:
                    for name, settings in configurations(study.config.sweep):
                        results += study.run_configuration(name, settings)
            except KeyboardInterrupt:
                status = "KILLED"
                raise
            finally:
                summary = study.finish(results, status)
        return summary

    def _search(self, results: list[TrialResult]) -> None:
        """Optuna's TPE over the sweep's space, its trials in the study folder's SQLite file."""
        import optuna

        study, sweep = self.study, self.study.config.sweep
        objective = study.objective()
        storage = f"sqlite:///{(study.output / layout.OPTUNA_DB).resolve()}"
        pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1) if sweep.pruning \
            else optuna.pruners.NopPruner()
        searched = optuna.create_study(study_name=study.config.name, storage=storage, load_if_exists=True,
                                       direction=direction(objective), pruner=pruner)
        # a continued study draws afresh: the same seed would repeat the first session's random start
        searched.sampler = optuna.samplers.TPESampler(seed=sweep.seed + len(searched.trials))
        space = study.space()
        for trial in searched.trials:  # finished ones are read back; an interrupted one is asked again
            if trial.state == optuna.trial.TrialState.RUNNING:
                searched.enqueue_trial(trial.params)
                searched.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            elif trial.state.is_finished():
                results += study.read_configuration(optuna_name(trial.params), decoded(trial.params, space))
        remaining = (sweep.trials or 0) - sum(t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL
                                              for t in searched.trials)
        for _ in range(max(remaining, 0)):
            trial = searched.ask()
            settings = {key: suggest(trial, key, dist) for key, dist in space.items()}
            done = study.run_configuration(optuna_name(trial.params), settings,
                                           on_epoch=study.pruning_callback(trial, objective))
            results += done
            tell(searched, trial, done, objective)
