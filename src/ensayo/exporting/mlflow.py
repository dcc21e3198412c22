"""`ensayo export RUN --format mlflow`: an MLflow pyfunc model of any model type, in the `loader_module` form
(the run's files, read by `ensayo.exporting.pyfunc`; requirements: ensayo at this version). Logged to the run's
MLflow run when it was tracked, and registered under a name with `--register`."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from ensayo import __version__, layout
from ensayo.models import model_type_of
from ensayo.runs import answer
from ensayo.runs.saved import SavedRun
from ensayo.store import read_json

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
    import mlflow

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
    with tempfile.TemporaryDirectory(prefix="ensayo-export-") as folder, warnings.catch_warnings():
        # the signature is explicit; an input example would only make MLflow run the model once more
        warnings.filterwarnings("ignore", message=".*An input example was not provided")
        data = Path(folder) / run.path.name
        shutil.copytree(run.path, data, ignore=shutil.ignore_patterns(*NOT_EXPORTED))
        arguments = {"loader_module": LOADER, "data_path": str(data), "signature": signature(run),
                     "pip_requirements": [f"ensayo=={__version__}"]}
        if target.exists():
            target.rmdir()
        mlflow.pyfunc.save_model(str(target), **arguments)
        result = Exported(target)
        if tracking.get("run_id"):
            try:
                _log(result, tracking, arguments, register)
            except Exception as exc:  # the store is down, the run was deleted...: the folder is written all the same
                raise ValueError(f"{target} is written, but logging it to MLflow run {tracking['run_id']} at "
                                 f"{tracking['tracking_uri']} failed: {exc}") from exc
    return result


def _log(result: Exported, tracking: dict[str, str], arguments: dict[str, object], register: str | None) -> None:
    import mlflow

    mlflow.set_tracking_uri(tracking["tracking_uri"])
    with mlflow.start_run(run_id=tracking["run_id"]):
        info = mlflow.pyfunc.log_model(name="model", **arguments)
    result.model_uri = info.model_uri
    if register:
        version = mlflow.register_model(info.model_uri, register)
        result.registered = f"{version.name} version {version.version}"
