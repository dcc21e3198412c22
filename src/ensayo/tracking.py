"""Runs -> MLflow: params, per-epoch metrics and artifacts, on a local store unless told otherwise."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ensayo.errors import TrackingError
from ensayo.recipe import Recipe, TrackConfig, flatten, recipe_to_dict

TRACKING_TIMEOUT_SECONDS = 5  # per HTTP request to a tracking server, with no retries: fail in seconds, not minutes
DEFAULT_STORE = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
MAX_PARAM_LENGTH = 500


def tracking_uri(config: TrackConfig) -> str:
    """The recipe's uri, else MLFLOW_TRACKING_URI, else a SQLite store in the working directory."""
    if config.uri:
        return config.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(DEFAULT_STORE).resolve()}"


def masked_url(url: str | None) -> str:
    """A database URL without its password, for files and messages."""
    if not url:
        return str(url)
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def database_problem(error: BaseException) -> str:
    """Why a database URL (an Optuna study's, an MLflow store's) cannot be used, in one line a person reads."""
    if isinstance(error, ImportError):
        return (f"its driver is not installed ({error}); install ensayo's cluster extra for PostgreSQL "
                "(pip install 'ensayo-ml[cluster]')")
    reason = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's own error
    text = " ".join(str(reason).split())
    if type(error).__name__ == "ArgumentError":
        text = f"not a database URL ({text}); write postgresql://USER@HOST/DATABASE or sqlite:///PATH"
    return text[:300]


class Tracker:
    """A thin MLflow wrapper that does nothing when tracking is off. A store that does not answer at the start
    fails the run at once (or, with `track.required: false`, is warned about once); one that fails later
    stops the tracking, not the run."""

    def __init__(self, config: TrackConfig, enabled: bool = True, console: Any = None) -> None:
        self.config = config
        self.enabled = enabled and config.enabled
        self.run_id: str | None = None
        self.uri: str | None = None
        self.experiment_id: str | None = None
        self._client: Any = None
        self.failure: str | None = None  # why tracking stopped during the run, when it did
        self.console = console  # where the warnings go (the run's console)

    def start(self, recipe: Recipe, run_name: str, resume_id: str | None = None,
              parent_id: str | None = None, tags: dict[str, str] | None = None) -> str | None:
        return self._start(self.config.experiment or recipe.name, run_name, recipe_to_dict(recipe),
                           resume_id, parent_id, tags)

    def start_parent(self, name: str, study: dict[str, Any], resume_id: str | None = None) -> str | None:
        """The parent run of a study: its settings as parameters, its trials as child runs."""
        return self._start(self.config.experiment or name, name, study, resume_id, None, {"ensayo.kind": "study"})

    def check(self) -> None:
        """Reach the store now, before any work: raises TrackingError (or warns) when it does not answer."""
        self._reached(lambda: self._client or self._connect())

    def _start(self, experiment_name: str, run_name: str, params: dict[str, Any], resume_id: str | None,
               parent_id: str | None, tags: dict[str, str] | None) -> str | None:
        return self._reached(lambda: self._open_run(experiment_name, run_name, params, resume_id, parent_id, tags))

    def _reached(self, action: Any) -> Any:
        if not self.enabled:
            return None
        try:
            return action()
        except Exception as exc:  # MLflow's own errors, requests', sqlite's...
            self.run_id = None
            reason = database_problem(exc)
            if self.config.required:
                raise TrackingError(f"track.uri {masked_url(self.uri)}: the tracking store cannot be reached "
                                    f"({reason}); "
                                    "start it, point track.uri elsewhere, run with --no-track, or set "
                                    "track.required: false to train untracked") from None
            self._warn(f"the tracking store {masked_url(self.uri)} cannot be reached ({reason}); training untracked")
            self.enabled = False
            return None

    def _open_run(self, experiment_name: str, run_name: str, params: dict[str, Any], resume_id: str | None,
                  parent_id: str | None, tags: dict[str, str] | None) -> str:
        self._client = client = self._client or self._connect()
        self.experiment_id = self._experiment(experiment_name)
        if resume_id:
            self.run_id = resume_id
            client.update_run(resume_id, status="RUNNING")
            return self.run_id
        all_tags = {"mlflow.runName": run_name, **(tags or {})}
        if parent_id:
            all_tags["mlflow.parentRunId"] = parent_id
        self.run_id = client.create_run(self.experiment_id, tags=all_tags).info.run_id
        items = [(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in flatten(params).items()]
        for start in range(0, len(items), 100):
            client.log_batch(self.run_id, params=[_param(k, v) for k, v in items[start: start + 100]])
        return self.run_id

    def _connect(self) -> Any:
        import mlflow
        from mlflow.tracking import MlflowClient

        _quiet_unless_asked()
        uri = self.uri = tracking_uri(self.config)
        _reach_database(uri)
        # MLflow's default retries a server that does not answer for minutes
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(TRACKING_TIMEOUT_SECONDS))
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)  # answers, or raises now rather than mid-run
        return client

    def _warn(self, message: str) -> None:
        from rich.console import Console

        (self.console or Console(stderr=True)).print(f"[yellow]warning[/]: {message}", soft_wrap=True)

    def _guarded(self, action: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one MLflow call; a failure stops the tracking (warned once), never the run."""
        if not self.run_id or self.failure:
            return None
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            self.failure = f"{action}: {' '.join(str(exc).split())[:300]}"
            self._warn(f"tracking to {self.uri} failed ({self.failure}); the run goes on untracked and its folder "
                       "is complete")
            return None

    def _experiment(self, name: str) -> str:
        experiment = self._client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        artifacts = self.config.artifacts
        if artifacts and "://" not in artifacts:
            artifacts = Path(artifacts).resolve().as_uri()
        if artifacts is None and self.uri.startswith("sqlite"):
            artifacts = Path(DEFAULT_ARTIFACTS).resolve().as_uri()
        try:
            return self._client.create_experiment(name, artifact_location=artifacts)
        except Exception:  # another worker of the study created it a moment ago
            experiment = self._client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def record_child(self, run_id: str | None, parent_id: str, run_name: str, tags: dict[str, str],
                     status: str) -> None:
        """Tag a child run that did not finish, creating it when the trial failed before it had one."""
        self._guarded("recording a trial", self._record_child, run_id, parent_id, run_name, tags, status)

    def _record_child(self, run_id: str | None, parent_id: str, run_name: str, tags: dict[str, str],
                      status: str) -> None:
        if run_id is None:
            run_id = self._client.create_run(self.experiment_id, tags={"mlflow.runName": run_name,
                                                                       "mlflow.parentRunId": parent_id}).info.run_id
        for key, value in tags.items():
            self._client.set_tag(run_id, key, value)
        self._client.set_terminated(run_id, status=status)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if not self.run_id:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = [Metric(_key(k), float(v), now, step or 0) for k, v in metrics.items()
                   if isinstance(v, int | float) and v == v]
        for start in range(0, len(entries), 500):
            self._guarded("logging metrics", self._client.log_batch, self.run_id, metrics=entries[start: start + 500])

    def log_artifacts(self, directory: Path, skip: tuple[str, ...] = ()) -> None:
        if not self.run_id:
            return
        for path in sorted(directory.iterdir()):
            if path.is_file() and path.name not in skip and not path.name.startswith("."):
                self._guarded(f"logging {path.name}", self._client.log_artifact, self.run_id, str(path))

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.run_id:
            for key, value in tags.items():
                self._guarded("tagging the run", self._client.set_tag, self.run_id, key, value)

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id:
            self._guarded("ending the run", self._client.set_terminated, self.run_id, status=status)


def _quiet_unless_asked() -> None:
    """MLflow's and its migrations' INFO lines ("Creating initial MLflow database tables...") are not ensayo's to
    print; MLFLOW_LOGGING_LEVEL brings them back."""
    import logging

    if not os.environ.get("MLFLOW_LOGGING_LEVEL"):
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _reach_database(uri: str) -> None:
    """A database server store answers, or its error is raised now: MLflow would retry for 100 s first. A SQLite
    file is MLflow's to make."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    if scheme not in ("postgresql", "mysql", "mssql"):
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": TRACKING_TIMEOUT_SECONDS}
                                      if scheme == "postgresql" else {})
    try:
        engine.connect().close()
    finally:
        engine.dispose()


def _key(name: str) -> str:
    """MLflow keys allow letters, digits, '_', '-', '.', ' ', ':' and '/'."""
    return "".join(c if c.isalnum() or c in "_-. :/" else "_" for c in name)


def _param(key: str, value: str) -> Any:
    from mlflow.entities import Param

    return Param(_key(key), value)
