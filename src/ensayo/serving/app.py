"""The web service over saved runs (Ludwig's `serve.py`, per model): a FastAPI app whose routes and OpenAPI
schema are built from each run's input columns. Predictions run off the event loop, gathered into batches;
bad input is a 4xx whose JSON names the row, field or file, never a 500."""

# no `from __future__ import annotations`: the routes' annotations are classes built at run time
import asyncio
import contextlib
import inspect
import io
import json
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from ensayo import __version__
from ensayo.runs import InputError, SavedRun, example_rows, records_of, rows_to_table
from ensayo.serving.batching import Batcher
from ensayo.serving.schemas import (
    ErrorBody,
    GenerateRequest,
    Health,
    InvocationsAnswer,
    ModelDescription,
    ModelList,
    PredictAnswer,
    predict_request_model,
    row_model,
)

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 404, 413, 415, 422)}
NO_FILES = Path("/nonexistent")  # a model without file inputs writes nothing
MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


@dataclass
class ServeOptions:
    """Limits and batching of a server (`ensayo serve --help` names each)."""

    max_rows: int = 1024  # rows in one request
    max_upload_mb: float = 16.0  # bytes in one request body
    batch_rows: int = 256  # rows in one model call, gathered from concurrent requests
    batch_wait_ms: float = 2.0  # how long a call waits for more requests once the model is free


class ServedModel:
    """One run as the server holds it: loaded once, warmed up, with its batcher and request models."""

    def __init__(self, name: str, run: SavedRun, options: ServeOptions) -> None:
        self.name, self.run, self.options = name, run, options
        self.batcher: Batcher | None = None
        if run.can_predict:
            self.batcher = Batcher(run.predict_proba, options.batch_rows, options.batch_wait_ms / 1000, name)
            self.row = row_model(run, name)
            self.request = predict_request_model(run, name, self.row, options.max_rows)
        self.has_files = any(field.values.kind == "file" for field in run.fields)
        # uploads are decoded and checked on one thread per model: one request is prepared while the model
        # answers others, and the preparing never crowds the model's own thread off the CPU
        self.preparing = ThreadPoolExecutor(1, thread_name_prefix=f"ensayo-{name}-files") if self.has_files else None

    def identity(self) -> dict[str, str]:
        return {**self.run.identity(), "name": self.name}

    def warm_up(self) -> None:
        """One prediction (or one generated token) at start-up, so that the first client does not wait for it."""
        if self.batcher is not None:
            with tempfile.TemporaryDirectory(prefix="ensayo-warmup-") as folder:
                table = rows_to_table(self.run.fields, example_rows(self.run.fields), Path(folder))
                self.batcher.predict_now(table)
        else:
            with torch.inference_mode():
                next(iter(self.run.generate("", length=1)), None)

    def describe(self) -> dict[str, Any]:
        base = f"/v1/models/{self.name}"
        endpoints = {"predict": f"{base}/predict", "invocations": f"{base}/invocations"} if self.batcher else \
            {"generate": f"{base}/generate", "invocations": f"{base}/invocations"}
        content = None
        if self.batcher:
            content = "multipart/form-data" if self.has_files else "application/json"
        return {**self.run.describe(), **self.identity(), "endpoints": endpoints, "content_type": content,
                "stats": self.batcher.stats() if self.batcher else {}}

    async def answer(self, rows: Sequence[Any], top_k: int, all_classes: bool = False) -> list[dict[str, Any]]:
        """Each row's likeliest labels with their probabilities, best first."""
        assert self.batcher is not None
        if not self.has_files:  # checking a few values is quicker than a hop to a thread
            probabilities = await self.batcher.predict(rows_to_table(self.run.fields, rows, NO_FILES))
        else:
            with tempfile.TemporaryDirectory(prefix="ensayo-request-") as folder:  # the uploads, while predicted
                table = await asyncio.get_running_loop().run_in_executor(self.preparing, rows_to_table,
                                                                         self.run.fields, rows, Path(folder))
                probabilities = await self.batcher.predict(table)
        return top_labels(probabilities, self.run.output.classes, len(self.run.output) if all_classes else top_k)

    def generate(self, request: GenerateRequest) -> Iterator[ServerSentEvent]:
        tokens = self.run.generate(request.prompt, request.length, request.temperature, request.top_k,
                                   request.top_p, request.seed)
        text = []
        while True:
            with torch.inference_mode():  # each step may run on another thread of the pool: set it per step
                token = next(tokens, None)
            if token is None:
                break
            text.append(token)
            yield ServerSentEvent(data=token, event="token")
        yield ServerSentEvent(data={"text": "".join(text), "model": self.identity()}, event="done")


def top_labels(probabilities: np.ndarray, classes: Sequence[str], k: int) -> list[dict[str, Any]]:
    k = min(k, len(classes))
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [{"labels": [classes[i] for i in row], "probabilities": [round(float(p), 6) for p in values[row]]}
            for row, values in zip(order, probabilities, strict=True)]


# ------------------------------------------------------------------------------------------ errors
def _error(status: int, loc: list[str | int], message: str, kind: str = "value_error") -> HTTPException:
    return HTTPException(status, detail=[{"loc": loc, "msg": message, "type": kind}])


def _input_error(error: InputError, where: list[str | int]) -> HTTPException:
    loc: list[str | int] = [*where]
    if error.row is not None and where[-1] == "rows":
        loc.append(error.row)
    if error.field:
        loc.append(error.field)
    return _error(422, loc, error.message)


def _unknown(name: str, served: dict[str, ServedModel]) -> HTTPException:
    return _error(404, ["path", "name"], f"no model {name!r} here (served: {', '.join(served)})", "not_found")


class DeclaredSizeLimit:
    """A body whose Content-Length passes the limit gets a 413 in JSON before any of it is read. Starlette's
    limit stays behind it for bodies sent without a length (chunked), which it cuts short."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            declared = dict(scope.get("headers") or []).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_bytes:
                message = (f"the request body is {int(declared):,} bytes; this server takes at most "
                           f"{self.max_bytes:,} (ensayo serve --max-upload-mb)")
                response = JSONResponse({"detail": [{"loc": ["body"], "msg": message, "type": "too_large"}]}, 413)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# ------------------------------------------------------------------------------------------ the app
def create_app(models: dict[str, SavedRun], options: ServeOptions | None = None) -> FastAPI:
    """The app serving `models` (name -> run), each warmed up; the first is the one `/invocations` uses."""
    options = options or ServeOptions()
    if not models:
        raise ValueError("nothing to serve: give at least one run")
    served = {name: ServedModel(name, run, options) for name, run in models.items()}
    for model in served.values():
        model.warm_up()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for model in served.values():
            if model.batcher is not None:
                model.batcher.close()
            if model.preparing is not None:
                model.preparing.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="ensayo", version=__version__, lifespan=lifespan,
                  description="Models trained by ensayo: " + ", ".join(served),
                  responses={413: {"model": ErrorBody}})
    app.state.served = served
    limit = int(options.max_upload_mb * 2**20)
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=limit)  # a body sent without a length
    app.add_middleware(DeclaredSizeLimit, max_bytes=limit)  # outermost

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e.get("loc", [])), "msg": e.get("msg", ""), "type": e.get("type", "")}
                   for e in error.errors()]
        return JSONResponse({"detail": details}, status_code=422)

    _page_routes(app, served)

    @app.get("/health", response_model=Health, tags=["service"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "models": list(served)}

    @app.get("/v1/models", response_model=ModelList, tags=["service"])
    def list_models() -> dict[str, Any]:
        return {"models": [model.describe() for model in served.values()]}

    @app.get("/v1/models/{name}", response_model=ModelDescription, responses=ERRORS, tags=["service"])
    def describe_model(name: str) -> dict[str, Any]:
        if name not in served:
            raise _unknown(name, served)
        return served[name].describe()

    for model in served.values():
        if model.batcher is not None:
            (_upload_route if model.has_files else _json_route)(app, model)
        else:
            _generate_route(app, model)
        _invocations_route(app, model, f"/v1/models/{model.name}/invocations")
    _invocations_route(app, next(iter(served.values())), "/invocations")

    @app.api_route("/v1/models/{name}/{action}", methods=["POST"], include_in_schema=False)
    def unknown_model(name: str, action: str) -> None:
        if name not in served:
            raise _unknown(name, served)
        raise _error(404, ["path", "action"], f"model {name!r} has no {action!r} (it has "
                     f"{', '.join(a for a in served[name].describe()['endpoints'])})", "not_found")

    return app


def _page_routes(app: FastAPI, served: dict[str, ServedModel]) -> None:
    page = resources.files("ensayo.serving") / "page"

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse((page / "index.html").read_text(encoding="utf-8"))

    app.mount("/page", StaticFiles(directory=str(page)), name="page")


def _json_route(app: FastAPI, model: ServedModel) -> None:
    request_model = model.request

    async def predict(body: request_model) -> dict[str, Any]:  # type: ignore[valid-type]
        rows = [row.model_dump(by_alias=True) for row in body.rows]  # type: ignore[attr-defined]
        try:
            predictions = await model.answer(rows, body.top_k, body.all_classes)  # type: ignore[attr-defined]
        except InputError as error:
            raise _input_error(error, ["body", "rows"]) from None
        return {"model": model.identity(), "predictions": predictions}

    app.post(f"/v1/models/{model.name}/predict", response_model=PredictAnswer, responses=ERRORS, tags=[model.name],
             summary=f"Classify rows with {model.name}", operation_id=f"predict_{model.name}")(predict)


def _upload_route(app: FastAPI, model: ServedModel) -> None:
    """A model with file inputs takes one row per request as a multipart form: files as file parts, the
    other inputs as form fields, each named as its column."""
    fields = model.run.fields
    classes = len(model.run.output)
    parameters = []
    for index, field in enumerate(fields):
        if field.values.kind == "file":
            annotation: Any = Annotated[UploadFile, File(alias=field.name, description=f"{field.values.media} file "
                                                         f"({', '.join(field.values.suffixes)})")]
        elif field.values.kind == "number":
            annotation = Annotated[float | None, Form(alias=field.name)]
        elif field.values.kind == "text":
            annotation = Annotated[str, Form(alias=field.name, min_length=1, pattern=r"\S")]
        else:
            described = "a name, or a JSON list of names" if field.values.multi else "a name"
            annotation = Annotated[str | None, Form(alias=field.name, description=described)]
        default = inspect.Parameter.empty if field.values.kind in ("file", "text") else None
        parameters.append(inspect.Parameter(f"f{index}", inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                            default=default))
    parameters.append(inspect.Parameter("top_k", inspect.Parameter.KEYWORD_ONLY, default=min(3, classes),
                                        annotation=Annotated[int, Form(ge=1, le=classes)]))
    parameters.append(inspect.Parameter("all_classes", inspect.Parameter.KEYWORD_ONLY, default=False,
                                        annotation=Annotated[bool, Form()]))

    async def predict(**values: Any) -> dict[str, Any]:
        row: dict[str, Any] = {}
        uploads: dict[str, str] = {}
        for index, field in enumerate(fields):
            value = values[f"f{index}"]
            if field.values.kind == "file":
                uploads[field.name] = value.filename or "the upload"
                value = await value.read()
            row[field.name] = value
        try:
            predictions = await model.answer([row], values["top_k"], values["all_classes"])
        except InputError as error:
            if error.field in uploads:
                error.message = f"{uploads[error.field]}: {error.message}"
            raise _input_error(error, ["body"]) from None
        return {"model": model.identity(), "predictions": predictions}

    predict.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    app.post(f"/v1/models/{model.name}/predict", response_model=PredictAnswer, responses=ERRORS, tags=[model.name],
             summary=f"Classify one row with {model.name}: files as file parts, other inputs as form fields",
             operation_id=f"predict_{model.name}")(predict)


def _generate_route(app: FastAPI, model: ServedModel) -> None:
    def generate(body: GenerateRequest) -> Iterator[ServerSentEvent]:
        yield from model.generate(body)

    app.post(f"/v1/models/{model.name}/generate", response_class=EventSourceResponse, responses=ERRORS,
             tags=[model.name], summary=f"Stream text from {model.name} as Server-Sent Events",
             operation_id=f"generate_{model.name}")(generate)


# ------------------------------------------------------------------------------ MLflow's protocol
class _Unusable(Exception):
    def __init__(self, status: int, message: str, loc: list[str | int]) -> None:
        super().__init__(message)
        self.status, self.message, self.loc = status, message, loc


def _mlflow_error(status: int, message: str, loc: list[str | int]) -> JSONResponse:
    code = {400: "BAD_REQUEST", 413: "BAD_REQUEST", 415: "BAD_REQUEST", 422: "INVALID_PARAMETER_VALUE"}[status]
    return JSONResponse({"error_code": code, "message": message,
                         "detail": [{"loc": loc, "msg": message, "type": "value_error"}]}, status_code=status)


def parse_invocation(body: bytes, content_type: str) -> tuple[list[Any], dict[str, Any]]:
    """Rows and params from a request in MLflow's scoring protocol, parsed by MLflow's own functions."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import infer_and_parse_data, parse_csv_input

    mime = content_type.split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Unusable(400, "the body is not UTF-8 text", ["body"]) from None
    try:
        if mime == "text/csv":
            return records_of(parse_csv_input(io.StringIO(text))), {}
        if mime != "application/json":
            raise _Unusable(415, f"content type {mime or '(none)'}: send application/json or text/csv", ["header"])
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError as error:
            raise _Unusable(400, f"not JSON: {error}", ["body"]) from None
        if not isinstance(decoded, dict):
            raise _Unusable(400, f"a JSON object with one of {', '.join(MLFLOW_FORMATS)} expected", ["body"])
        params = decoded.get("params") or {}
        if not isinstance(params, dict):
            raise _Unusable(400, "params is an object", ["body", "params"])
        data = {k: v for k, v in decoded.items() if k in MLFLOW_FORMATS}
        return records_of(infer_and_parse_data(data)), params
    except MlflowException as error:
        raise _Unusable(400, error.message.split(" IMPORTANT:")[0], ["body"]) from None
    except InputError as error:
        raise _Unusable(422, error.message, ["body"]) from None
    except (ValueError, TypeError, KeyError) as error:
        raise _Unusable(400, f"rows could not be read: {error}", ["body"]) from None


class _InvocationParams(BaseModel):
    """The `params` of an MLflow request: a classifier's, or a generator's (those of the exported model)."""

    top_k: int = Field(3, ge=1)
    all_classes: bool = False
    length: int = Field(200, ge=1, le=5000)
    temperature: float = Field(0.8, ge=0, le=10)
    seed: int = Field(0, ge=0)


def _invocation_schema(model: ServedModel) -> dict[str, Any]:
    if model.batcher is None:
        row = {"type": "object", "properties": {"prompt": {"type": "string"}}}
    else:
        row = model.row.model_json_schema(by_alias=True)
    rows = {"type": "array", "items": row, "minItems": 1}
    params = {"type": "object"}
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
            rows, raw_params = parse_invocation(await request.body(), request.headers.get("content-type", ""))
            params = _InvocationParams.model_validate(raw_params)
            if len(rows) > model.options.max_rows:
                raise _Unusable(422, f"{len(rows)} rows: at most {model.options.max_rows} in one request", ["body"])
            if not rows:
                raise _Unusable(422, "no rows", ["body"])
            if model.batcher is None:
                texts = await run_in_threadpool(_generate_rows, model, rows, params)
                return JSONResponse({"predictions": texts, "model": model.identity()})
            predictions = await model.answer(rows, params.top_k, params.all_classes)
        except _Unusable as error:
            return _mlflow_error(error.status, error.message, error.loc)
        except InputError as error:
            loc: list[str | int] = ["body", *(x for x in (error.row, error.field) if x is not None)]
            return _mlflow_error(422, str(error), loc)
        except ValueError as error:  # pydantic's, for the params
            return _mlflow_error(422, str(error).splitlines()[0] + ": " + " ".join(str(error).splitlines()[1:3]),
                                 ["body", "params"])
        return JSONResponse({"predictions": predictions, "model": model.identity()})

    app.post(path, responses={200: {"model": InvocationsAnswer}, **ERRORS}, tags=["mlflow"],
             summary=f"MLflow's scoring protocol ({model.name})",
             openapi_extra={"requestBody": _invocation_schema(model)},
             operation_id=f"invocations_{model.name}" + ("_default" if path == "/invocations" else ""))(invocations)


def _generate_rows(model: ServedModel, rows: list[Any], params: _InvocationParams) -> list[str]:
    prompts = []
    for index, row in enumerate(rows):
        prompt = row.get("prompt", "") if isinstance(row, dict) else row
        if not isinstance(prompt, str):
            raise InputError("a prompt is text", index, "prompt")
        prompts.append(prompt)
    with torch.inference_mode():
        return ["".join(model.run.generate(p, params.length, params.temperature, None, None, params.seed))
                for p in prompts]

