"""One study worked on by many `ensayo sweep` workers, on one machine or several, through an Optuna storage
every worker reaches (PostgreSQL: `--storage postgresql://...` or the study's `sweep.storage`).

The database is the study's to-do list, whatever the sweep method:
- grid, list and random: the worker that creates the Optuna study enqueues one Optuna trial per
  (configuration, repeat); optuna: each worker asks Optuna's TPE sampler for the next configuration.
- A worker claims a waiting trial by moving it from WAITING to RUNNING, which the storage does under a row
  lock: each trial runs exactly once.
- While a trial runs, its worker records a heartbeat. A worker that stops beating (killed, its machine gone)
  has its trial failed by the next worker to look, and a copy is enqueued (Optuna's
  RetryHeartbeatStaleTrialCallback); whoever claims the copy resumes the trial from its checkpoint when the
  trial folder is on storage every worker sees, else trains it from the start.
- A worker with nothing left to claim waits while other workers' trials run: one that goes stale is
  taken up, and the last worker to finish writes the report and ends the MLflow parent run.
- Each trial's status, metrics and folder are kept in the database as the trial's user attributes, so that
  any worker can list every trial.
"""

from __future__ import annotations

import json
import os
import random
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ensayo.progress import repeating
from ensayo.studies.study import Study, direction, tell
from ensayo.studies.sweep import TrialResult, configurations, optuna_name, suggest
from ensayo.tracking import database_problem, masked_url

HEARTBEAT_VARIABLE = "ENSAYO_HEARTBEAT_SECONDS"  # how often a worker says its trial is alive (default 10)
SCHEMA_ATTEMPTS = 5  # tries at opening the storage while another worker creates its tables
READY_SECONDS = 300  # how long a worker waits for the study's creator to enqueue the trials
CONFIG, REPEAT, RESULT = "ensayo.config", "ensayo.repeat", "ensayo.result"


class StorageError(ValueError):
    """A study's database that cannot be opened; the message names the option that gave it and why, in one line."""


def storage_for(url: str, option: str = "--storage") -> Any:
    """An Optuna RDB storage with heartbeats: a trial whose worker stops beating for three beats is failed and
    enqueued again. A URL that cannot be opened is a StorageError naming `option` (`--storage` or
    `sweep.storage`)."""
    import optuna
    import sqlalchemy.exc

    beat = max(1, round(float(os.environ.get(HEARTBEAT_VARIABLE, "10"))))
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=beat, grace_period=3 * beat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback())
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as error:
            # workers started together on an empty database race to create Optuna's tables; the loser's
            # CREATE fails ("already exists") and its next try finds them made
            if attempt == SCHEMA_ATTEMPTS - 1:
                raise StorageError(f"{option} {masked_url(url)}: {database_problem(error)}") from None
            time.sleep(0.2 + random.random())
        except Exception as error:  # a bad URL, a missing driver, a server that refuses, a file that cannot be made
            raise StorageError(f"{option} {masked_url(url)}: {database_problem(error)}") from None
    raise AssertionError("unreachable")


class SharedScheduler:
    """Runs this worker's share of a study whose trials live in `url`; `run()` returns the summary of every
    trial of the study that has ended so far."""

    def __init__(self, study: Study, url: str, option: str = "--storage") -> None:
        self.study = study
        self.url = url
        self.storage = storage_for(url, option)

    # ------------------------------------------------------------------ public
    def run(self) -> list[dict[str, Any]]:
        import optuna

        study = self.study
        study.output.mkdir(parents=True, exist_ok=True)
        study.check_recipes()
        study.train_embeddings()
        optuna_study, created = self._open()
        if created:
            self._set_up(optuna_study)
        else:
            self._wait_until_ready(optuna_study)
        self._join_parent(optuna_study)
        status = "FINISHED"
        try:
            while True:
                claimed = self._claim(optuna_study)
                if claimed is not None:
                    self._work(optuna_study, *claimed)
                elif self._running(optuna_study):  # another worker's trial: it ends, or goes stale and is ours
                    time.sleep(self.storage.get_heartbeat_interval())
                else:
                    break
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            left = optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,
                                                                   optuna.trial.TrialState.RUNNING))
            # the last worker writes the report and ends the parent run
            summary = study.finish(self._results(optuna_study), status, last=status == "FINISHED" and not left,
                                   storage=masked_url(self.url))
        return summary

    # ------------------------------------------------------------------ the study in the database
    def _open(self) -> tuple[Any, bool]:
        import optuna

        config = self.study.config
        try:
            created = optuna.create_study(study_name=config.name, storage=self.storage,
                                          direction=direction(self.study.objective()))
            return created, True
        except optuna.exceptions.DuplicatedStudyError:
            return optuna.load_study(study_name=config.name, storage=self.storage), False

    def _set_up(self, optuna_study: Any) -> None:
        """The creator's part: the MLflow parent run, then every (configuration, repeat) of a fixed sweep."""
        import optuna

        study = self.study
        parent = study.tracker.start_parent(study.config.name, study.config.model_dump(mode="json"))
        optuna_study.set_user_attr("ensayo.parent_run_id", parent)
        if study.config.sweep.method != "optuna":
            for name, settings in configurations(study.config.sweep):
                for repeat in range(study.config.repeats):
                    optuna_study.add_trial(optuna.trial.create_trial(
                        state=optuna.trial.TrialState.WAITING,
                        user_attrs={CONFIG: name, REPEAT: repeat, "ensayo.settings": json.dumps(settings)}))
        optuna_study.set_user_attr("ensayo.ready", True)

    def _wait_until_ready(self, optuna_study: Any) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while not optuna_study.user_attrs.get("ensayo.ready"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"study {self.study.config.name!r} in {masked_url(self.url)}: the worker that "
                                   f"created it has not enqueued its trials after {READY_SECONDS} s")
            time.sleep(0.5)

    def _join_parent(self, optuna_study: Any) -> None:
        parent = optuna_study.user_attrs.get("ensayo.parent_run_id")  # None: the creator tracks nothing
        self.study.start_parent(resume_id=parent, storage=masked_url(self.url), create=False)

    # ------------------------------------------------------------------ claiming and working
    def _claim(self, optuna_study: Any) -> tuple[Any, int, str, dict[str, Any], list[int]] | None:
        """The next trial for this worker, RUNNING in its name: (trial, its id in the storage, configuration,
        settings, repeats)."""
        import optuna

        with warnings.catch_warnings():  # experimental since Optuna 2.9, and what the heartbeat is for
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(optuna_study)  # a silent worker's trial goes back to the queue
        config = self.study.config
        study_id = self.storage.get_study_id_from_name(config.name)
        if config.sweep.method == "optuna":
            finished = [t for t in optuna_study.get_trials(deepcopy=False) if RESULT in t.user_attrs
                        or t.state == optuna.trial.TrialState.RUNNING]
            waiting = optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
            if len(finished) >= (config.sweep.trials or 0) and not waiting:
                return None
            trial = optuna_study.ask()  # a waiting (retried) trial first, else TPE's next configuration
            space = self.study.space()
            settings = {key: suggest(trial, key, dist) for key, dist in space.items()}
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            return trial, trial_id, optuna_name(trial.params), settings, list(range(config.repeats))
        for frozen in optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
            try:
                if self.storage.set_trial_state_values(trial_id, optuna.trial.TrialState.RUNNING):
                    attrs = frozen.user_attrs
                    trial = optuna.trial.Trial(optuna_study, trial_id)
                    return trial, trial_id, attrs[CONFIG], json.loads(attrs["ensayo.settings"]), [int(attrs[REPEAT])]
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker took it first
        return None

    def _work(self, optuna_study: Any, trial: Any, trial_id: int, name: str, settings: dict[str, Any],
              repeats: list[int]) -> None:

        study, config = self.study, self.study.config
        pruning = config.sweep.method == "optuna" and config.sweep.pruning
        objective = study.objective()
        with self._heartbeat(trial_id):
            done = study.run_configuration(name, settings, repeats,
                                           study.pruning_callback(trial, objective) if pruning else None)
        trial.set_user_attr(RESULT, [r.__dict__ for r in done])
        tell(optuna_study, trial, done, objective)

    @staticmethod
    def _running(optuna_study: Any) -> bool:
        import optuna

        return bool(optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))

    @contextmanager
    def _heartbeat(self, trial_id: int) -> Iterator[None]:
        self.storage.record_heartbeat(trial_id)
        with repeating(lambda: self.storage.record_heartbeat(trial_id), self.storage.get_heartbeat_interval(),
                       "ensayo-heartbeat"):
            yield

    def _results(self, optuna_study: Any) -> list[TrialResult]:
        """Every trial of the study that has ended, whichever worker ran it, in the order they were created."""
        results = []
        for trial in optuna_study.get_trials(deepcopy=False):
            results += [TrialResult(**record) for record in trial.user_attrs.get(RESULT, [])]
        return results



