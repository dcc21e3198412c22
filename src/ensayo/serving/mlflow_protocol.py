"""MLflow's scoring protocol, as `mlflow models serve` speaks it: `/invocations` (per model, and the first
model's at the root) with rows in any of MLflow's four JSON formats or as CSV, `params` for what a request
sets (`answer.Ranking` or `answer.Sampling`, the exported MLflow model's parameters), and `/ping` and
`/version`. Errors come in MLflow's shape, with ensayo's `detail` beside."""

from __future__ import annotations

import io
import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import TypeAdapter, ValidationError

from ensayo.features.rows import InputError, records_of
from ensayo.serving.errors import ERRORS
from ensayo.serving.models import ServedModel
from ensayo.serving.schemas import InvocationsAnswer

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_CODES = {400: "BAD_REQUEST", 413: "BAD_REQUEST", 415: "BAD_REQUEST", 422: "INVALID_PARAMETER_VALUE"}


class Unusable(Exception):
    """A request the protocol cannot take: its status, message and where it is."""

    def __init__(self, status: int, message: str, loc: list[str | int]) -> None:
        super().__init__(message)
        self.status, self.message, self.loc = status, message, loc


def mlflow_error(status: int, message: str, loc: list[str | int]) -> JSONResponse:
    return JSONResponse({"error_code": _CODES[status], "message": message,
                         "detail": [{"loc": loc, "msg": message, "type": "value_error"}]}, status_code=status)


def parse_invocation(body: bytes, content_type: str) -> tuple[list[Any], dict[str, Any]]:
    """Rows and params from a request in MLflow's scoring protocol, parsed by MLflow's own functions."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import infer_and_parse_data, parse_csv_input

    mime = content_type.split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Unusable(400, "the body is not UTF-8 text", ["body"]) from None
    try:
        if mime == "text/csv":
            return records_of(parse_csv_input(io.StringIO(text))), {}
        if mime != "application/json":
            raise Unusable(415, f"content type {mime or '(none)'}: send application/json or text/csv", ["header"])
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError as problem:
            raise Unusable(400, f"not JSON: {problem}", ["body"]) from None
        if not isinstance(decoded, dict):
            raise Unusable(400, f"a JSON object with one of {', '.join(MLFLOW_FORMATS)} expected", ["body"])
        params = decoded.get("params") or {}
        if not isinstance(params, dict):
            raise Unusable(400, "params is an object", ["body", "params"])
        data = {k: v for k, v in decoded.items() if k in MLFLOW_FORMATS}
        return records_of(infer_and_parse_data(data)), params
    except MlflowException as problem:
        raise Unusable(400, problem.message.split(" IMPORTANT:")[0], ["body"]) from None
    except InputError as problem:
        raise Unusable(422, problem.message, ["body"]) from None
    except (ValueError, TypeError, KeyError) as problem:
        raise Unusable(400, f"rows could not be read: {problem}", ["body"]) from None


def _settings(model: ServedModel, params: dict[str, Any]) -> Any:
    """The request's params as the model's settings; a param the model does not take is a 422 naming it."""
    try:
        return model.settings.model_validate(params)
    except ValidationError as problem:
        first = problem.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = "not a parameter of this model" if first["type"] == "extra_forbidden" else first["msg"]
        raise Unusable(422, f"params.{where}: {message} (it takes {', '.join(model.settings.model_fields)})",
                       ["body", "params", *first["loc"]]) from None


def _invocation_schema(model: ServedModel) -> dict[str, Any]:
    row = getattr(model, "row", None)
    row_schema = TypeAdapter(row).json_schema(by_alias=True) if row is not None else \
        {"type": "object", "properties": {"prompt": {"type": "string"}}}
    rows = {"type": "array", "items": row_schema, "minItems": 1}
    params = model.settings.model_json_schema()
    formats = [{"type": "object", "properties": {key: rows, "params": params}, "required": [key],
                "additionalProperties": False} for key in ("dataframe_records", "instances", "inputs")]
    split = {"type": "object", "properties": {"columns": {"type": "array", "items": {"type": "string"}},
                                              "data": {"type": "array", "items": {"type": "array"}}},
             "required": ["columns", "data"]}
    formats.append({"type": "object", "properties": {"dataframe_split": split, "params": params},
                    "required": ["dataframe_split"], "additionalProperties": False})
    return {"required": True, "content": {"application/json": {"schema": {"oneOf": formats}},
                                          "text/csv": {"schema": {"type": "string"}}}}


def _invocations_route(app: FastAPI, model: ServedModel, path: str) -> None:
    async def invocations(request: Request) -> JSONResponse:
        try:
            rows, params = parse_invocation(await request.body(), request.headers.get("content-type", ""))
            settings = _settings(model, params)
            if len(rows) > model.options.max_rows:
                raise Unusable(422, f"{len(rows)} rows: at most {model.options.max_rows} in one request", ["body"])
            if not rows:
                raise Unusable(422, "no rows", ["body"])
            predictions = await model.invoke(rows, settings)
        except Unusable as problem:
            return mlflow_error(problem.status, problem.message, problem.loc)
        except InputError as problem:
            loc: list[str | int] = ["body", *(x for x in (problem.row, problem.field) if x is not None)]
            return mlflow_error(422, str(problem), loc)
        return JSONResponse({"predictions": predictions, "model": model.identity()})

    app.post(path, responses={200: {"model": InvocationsAnswer}, **ERRORS}, tags=["mlflow"],
             summary=f"MLflow's scoring protocol ({model.name})",
             openapi_extra={"requestBody": _invocation_schema(model)},
             operation_id=f"invocations_{model.name}" + ("_default" if path == "/invocations" else ""))(invocations)


def add_mlflow_protocol(app: FastAPI, served: dict[str, ServedModel]) -> None:
    """`/invocations` of each model, the first model's at the root, and MLflow's `/ping` and `/version`."""
    for model in served.values():
        _invocations_route(app, model, f"/v1/models/{model.name}/invocations")
    _invocations_route(app, next(iter(served.values())), "/invocations")

    # as MLflow's server answers them, JSON's media type on a body that is not JSON: left out of the schema
    @app.get("/ping", include_in_schema=False)
    def ping() -> Response:
        """200 once the models are loaded (they are before the server listens): MLflow's health check."""
        return Response("\n", media_type="application/json")

    @app.get("/version", include_in_schema=False)
    def version() -> Response:
        """The version of MLflow whose protocol this server speaks, as MLflow's own server answers."""
        from mlflow.version import VERSION

        return Response(VERSION, media_type="application/json")
