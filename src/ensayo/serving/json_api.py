"""The JSON API of the web service: what the server holds (`/health`, `/v1/models`), a classifier's
`/predict` (JSON rows, or one multipart form for a model with file inputs) and a generator's `/generate`
(Server-Sent Events). Routes and their OpenAPI schema are built from each run's input columns."""

# no `from __future__ import annotations`: the routes' annotations are classes built at run time
import inspect
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import FileResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from ensayo.features.rows import InputError
from ensayo.runs import answer
from ensayo.serving.errors import ERRORS, error, input_error, unknown_model
from ensayo.serving.models import ServedClassifier, ServedGenerator, ServedModel
from ensayo.serving.schemas import GenerateRequest, Health, ModelDescription, ModelList, PredictAnswer


def add_json_api(app: FastAPI, served: dict[str, ServedModel]) -> None:
    @app.get("/health", response_model=Health, tags=["service"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "models": list(served)}

    app.head("/health", include_in_schema=False)(health)  # what load balancers ask

    @app.get("/v1/models", response_model=ModelList, tags=["service"])
    def list_models() -> dict[str, Any]:
        return {"models": [model.describe() for model in served.values()]}

    @app.get("/v1/models/{name}", response_model=ModelDescription, responses=ERRORS, tags=["service"])
    def describe_model(name: str) -> dict[str, Any]:
        if name not in served:
            raise unknown_model(name, served)
        return served[name].describe()

    @app.get("/v1/models/{name}/examples/{file}", response_class=FileResponse, responses=ERRORS, tags=["service"])
    def example_file(name: str, file: str) -> FileResponse:
        """A file one of the model's examples reads (a clip, a photo), for its page to send back."""
        if name not in served:
            raise unknown_model(name, served)
        path = served[name].example_file(file)
        if path is None:
            raise error(404, ["path", "file"], f"model {name!r} has no example file {file!r}", "not_found")
        return FileResponse(path)

    for model in served.values():
        if isinstance(model, ServedClassifier):
            (_upload_route if model.has_files else _predict_route)(app, model)
        elif isinstance(model, ServedGenerator):
            _generate_route(app, model)


def add_unknown_actions(app: FastAPI, served: dict[str, ServedModel]) -> None:
    """A POST to a model or an action the server does not have: a 404 that lists what there is (added last)."""

    @app.api_route("/v1/models/{name}/{action}", methods=["POST"], include_in_schema=False)
    def unknown_action(name: str, action: str) -> None:
        if name not in served:
            raise unknown_model(name, served)
        raise error(404, ["path", "action"], f"model {name!r} has no {action!r} (it has "
                    f"{', '.join(served[name].endpoints())})", "not_found")


def _predict_route(app: FastAPI, model: ServedClassifier) -> None:
    request_model = model.request

    async def predict(body: request_model) -> dict[str, Any]:  # type: ignore[valid-type]
        rows = body.rows  # type: ignore[attr-defined]  # dicts, validated
        try:
            predictions = await model.answer(rows, body)  # the request is an `answer.Ranking` with its rows
        except InputError as problem:
            raise input_error(problem, ["body", "rows"]) from None
        return {"model": model.identity(), "predictions": predictions}

    app.post(f"/v1/models/{model.name}/predict", response_model=PredictAnswer, response_model_exclude_none=True,
             responses=ERRORS, tags=[model.name],
             summary=f"Classify rows with {model.name}", operation_id=f"predict_{model.name}")(predict)


def _upload_route(app: FastAPI, model: ServedClassifier) -> None:
    """A model with file inputs takes one row per request as a multipart form: files as file parts, the
    other inputs as form fields, each named as its column."""
    fields = model.run.fields
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
    described = {name: field.description for name, field in answer.Ranking.model_fields.items()}
    parameters.append(inspect.Parameter("top_k", inspect.Parameter.KEYWORD_ONLY, default=answer.TOP_K,
                                        annotation=Annotated[int, Form(ge=1, description=described["top_k"])]))
    parameters.append(inspect.Parameter("all_classes", inspect.Parameter.KEYWORD_ONLY, default=False,
                                        annotation=Annotated[bool, Form(description=described["all_classes"])]))
    parameters.append(inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request))

    async def predict(**values: Any) -> dict[str, Any]:
        form = await values["request"].form()  # as FastAPI read it: a field sent twice is refused, not half-read
        for field in fields:
            sent = len(form.getlist(field.name))
            if sent > 1:
                raise error(422, ["body", field.name], f"{sent} values for one {field.values.kind} input; send one "
                            "per request (a file input: one file)")
        row: dict[str, Any] = {}
        uploads: dict[str, str] = {}
        for index, field in enumerate(fields):
            value = values[f"f{index}"]
            if field.values.kind == "file":
                uploads[field.name] = value.filename or "the upload"
                value = await value.read()
            row[field.name] = value
        try:
            predictions = await model.answer([row], answer.Ranking(top_k=values["top_k"],
                                                                   all_classes=values["all_classes"]))
        except InputError as problem:
            if problem.field in uploads:
                problem.message = f"{uploads[problem.field]}: {problem.message}"
            raise input_error(problem, ["body"]) from None
        return {"model": model.identity(), "predictions": predictions}

    predict.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    app.post(f"/v1/models/{model.name}/predict", response_model=PredictAnswer, response_model_exclude_none=True,
             responses=ERRORS, tags=[model.name],
             summary=f"Classify one row with {model.name}: files as file parts, other inputs as form fields",
             operation_id=f"predict_{model.name}")(predict)


def _generate_route(app: FastAPI, model: ServedGenerator) -> None:
    def generate(body: GenerateRequest) -> Iterator[ServerSentEvent]:
        yield from model.stream(body.prompt, answer.Sampling(**body.model_dump(exclude={"prompt"})))

    app.post(f"/v1/models/{model.name}/generate", response_class=EventSourceResponse, responses=ERRORS,
             tags=[model.name], summary=f"Stream text from {model.name} as Server-Sent Events",
             operation_id=f"generate_{model.name}")(generate)
