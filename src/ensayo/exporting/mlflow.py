"""`ensayo export RUN --format mlflow`: an MLflow pyfunc model of any model type, in the `loader_module` form
(the run's files, read by `ensayo.exporting.pyfunc`), carrying the wheel of the ensayo it was exported from
(`wheels/`, its only requirement). Logged to the run's MLflow run when it was tracked, and registered under a
name with `--register`."""

from __future__ import annotations

import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ensayo import layout
from ensayo.exporting.wheel import copy_into, project_wheel, requirement
from ensayo.models import model_type_of
from ensayo.runs import answer
from ensayo.runs.saved import SavedRun
from ensayo.store import read_json, write_text, write_yaml

LOADER = "ensayo.exporting.pyfunc"
NOT_EXPORTED = (*layout.BOOKKEEPING, *layout.TRAINING_ONLY, layout.MLFLOW_MODEL)


@dataclass
class Exported:
    """What an export wrote, and for MLflow where it was logged and registered."""

    path: Path
    model_uri: str | None = None  # where it was logged, when the run was tracked
    registered: str | None = None  # "name version N" with --register


def signature(run: SavedRun):
    """Inputs as columns (files as base64 text), and the parameters a request may set."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    kinds = {"text": "string", "number": "double", "category": "string", "file": "string"}
    if run.can_generate:
        inputs = Schema([ColSpec("string", "prompt", required=False)])
    else:
        inputs = Schema([ColSpec(kinds[f.values.kind], f.name, required=f.values.kind in ("text", "file"))
                         for f in run.fields])
    types = {bool: "boolean", int: "long", float: "double"}
    params = ParamSchema([ParamSpec(name, types[type(value)], value)
                          for name, value in answer.defaults(run.can_predict).items()])
    return ModelSignature(inputs=inputs, params=params)


def export_mlflow(run: SavedRun, output: Path | None = None, register: str | None = None) -> Exported:
    problem = model_type_of(run.recipe).export_problem("mlflow")
    if problem:
        raise ValueError(f"{run.path}: cannot export to MLflow: {problem}")
    target = output or run.path / layout.MLFLOW_MODEL
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target}: already holds files; choose another --output or remove it")
    tracking = read_json(run.path / layout.TRACKING) if (run.path / layout.TRACKING).is_file() else {}
    if register and not tracking.get("run_id"):
        raise ValueError(f"{run.path}: the run was not tracked in MLflow, so there is no run to register the "
                         "model from; export it without --register, or train it with tracking")
    model = PyfuncModel(run)
    if target.exists():
        target.rmdir()
    model.save_model(target)
    result = Exported(target)
    if tracking.get("run_id"):
        try:
            _log(result, model, tracking, register)
        except Exception as exc:  # the store is down, the run was deleted...: the folder is written all the same
            raise ValueError(f"{target} is written, but logging it to MLflow run {tracking['run_id']} at "
                             f"{tracking['tracking_uri']} failed: {exc}") from exc
    return result


class PyfuncModel:
    """A run as an MLflow pyfunc model with the wheel of ensayo it needs (`save_model`, the flavor interface that
    `mlflow.models.Model.log` calls): the run's files as its data, `ensayo.exporting.pyfunc` as its loader, and
    its requirements that wheel alone, which brings every other dependency by name."""

    def __init__(self, run: SavedRun) -> None:
        self.run = run

    def save_model(self, path: str | Path, mlflow_model: Any = None, **_: Any) -> None:
        import mlflow

        target = Path(path)
        with tempfile.TemporaryDirectory(prefix="ensayo-export-") as folder, warnings.catch_warnings():
            # the signature is explicit; an input example would only make MLflow run the model once more
            warnings.filterwarnings("ignore", message=".*An input example was not provided")
            data = Path(folder) / self.run.path.name
            shutil.copytree(self.run.path, data, ignore=shutil.ignore_patterns(*NOT_EXPORTED))
            wheel = project_wheel()
            mlflow.pyfunc.save_model(str(target), loader_module=LOADER, data_path=str(data),
                                     signature=signature(self.run), pip_requirements=[requirement(wheel)],
                                     mlflow_model=mlflow_model)
        copy_into(target, wheel)
        _requiring_the_wheel_only(target)


def _requiring_the_wheel_only(model: Path) -> None:
    """MLflow adds a pin of its own version to every model's requirements; the wheel requires MLflow itself (any
    version ensayo works with), so the pin goes: the requirements resolve from the wheel, offline."""
    requirements = model / "requirements.txt"
    kept = [line for line in requirements.read_text().splitlines() if not re.match(r"^mlflow(\W|$)", line)]
    write_text(requirements, "\n".join(kept) + "\n")
    conda = model / "conda.yaml"
    if conda.is_file():
        environment = yaml.safe_load(conda.read_text())
        for dependency in environment.get("dependencies", []):
            if isinstance(dependency, dict) and "pip" in dependency:
                dependency["pip"] = [line for line in dependency["pip"] if not re.match(r"^mlflow(\W|$)", line)]
        write_yaml(conda, environment)


def _log(result: Exported, model: PyfuncModel, tracking: dict[str, str], register: str | None) -> None:
    import mlflow
    from mlflow.models import Model

    mlflow.set_tracking_uri(tracking["tracking_uri"])
    with mlflow.start_run(run_id=tracking["run_id"]):
        info = Model.log(artifact_path=None, name="model", flavor=model, signature=signature(model.run))
    result.model_uri = info.model_uri
    if register:
        version = mlflow.register_model(info.model_uri, register)
        result.registered = f"{version.name} version {version.version}"
