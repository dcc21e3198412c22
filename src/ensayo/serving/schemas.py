"""The pydantic models of the web service: built per served model from its input columns, so that the
OpenAPI schema says what each model takes (a title is a non-empty string, a count a number) and FastAPI
turns a wrong row into a 422 that names the row and field."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model
from typing_extensions import TypedDict

from ensayo.features.rows import InputField
from ensayo.runs import answer
from ensayo.runs.saved import SavedRun

NonEmptyText = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]
Base64File = Annotated[str, StringConstraints(min_length=1, pattern=r"^[A-Za-z0-9+/=\s]+$")]


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunIdentity(BaseModel):
    """Which run answered."""

    name: str
    run_id: str
    trained_at: str


class InputDescription(BaseModel):
    name: str
    kind: str
    input_types: list[str]
    multi: bool | None = None
    media: str | None = None
    suffixes: list[str] | None = None


class ModelDescription(RunIdentity):
    model_type: str
    output: str
    inputs: list[InputDescription]
    classes: list[str] | None = None
    level: str | None = None
    metrics: dict[str, float]
    defaults: dict[str, Any] = Field(description="the settings a request may send, with their defaults")
    description: str = Field("", description="the recipe's description")
    examples: list[dict[str, Any]] = Field(default_factory=list, description=(
        "rows of the test split to try (a file input's value: the URL of the example file)"))
    endpoints: dict[str, str]
    content_type: str | None = Field(None, description="how /predict takes rows: JSON, or one multipart form per row")
    stats: dict[str, int]


class ModelList(BaseModel):
    models: list[ModelDescription]


class Health(BaseModel):
    status: str
    models: list[str]


class Prediction(BaseModel):
    labels: list[str] = Field(description="the likeliest classes, best first")
    probabilities: list[float]
    note: str | None = Field(None, description="what to know of how the row was read (more speech than the model "
                                               "hears, say)")


class PredictAnswer(BaseModel):
    model: RunIdentity
    predictions: list[Prediction] = Field(description="one per row, in request order")


class InvocationsAnswer(BaseModel):
    predictions: list[Prediction] | list[str] = Field(description="a classifier's labels, or a generator's texts")
    model: RunIdentity


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """What every 4xx answer holds: where the problem is, and what it is."""

    detail: list[ErrorItem] | str
    error_code: str | None = None
    message: str | None = None


def _value_type(field: InputField, files_as_text: bool) -> Any:
    kind = field.values.kind
    if kind == "text":
        return NonEmptyText
    if kind == "number":
        return float | None
    if kind == "category":
        return list[str] | str | None if field.values.multi else str | None
    return Base64File if files_as_text else bytes


def row_model(run: SavedRun, model_name: str, files_as_text: bool = True) -> Any:
    """One row of the model's input columns, named as they are; files as base64 text (MLflow's protocol for
    bytes). A TypedDict: a row validates into the dict that is predicted, with no model object made and dumped
    for each row (the dumping alone was 6 % of the event loop's samples serving 64-title requests)."""
    fields: dict[str, Any] = {}
    for field in run.fields:
        described = f"{field.values.kind} ({', '.join(field.input_types)})"
        if field.values.kind == "file":
            described = f"{field.values.media} file as base64 ({', '.join(field.values.suffixes)})"
        fields[field.name] = Annotated[_value_type(field, files_as_text), Field(description=described)]
    row = TypedDict(f"{_identifier(model_name)}Row", fields)  # type: ignore[operator]
    row.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    return row


def predict_request_model(model_name: str, row: Any, max_rows: int) -> type[BaseModel]:
    """Rows of the model's inputs and how many labels each gets (`answer.Ranking`)."""
    return create_model(
        f"{_identifier(model_name)}PredictRequest", __base__=answer.Ranking,
        rows=(list[row], Field(min_length=1, max_length=max_rows, description="rows of the input columns")),  # type: ignore[valid-type]
    )


class GenerateRequest(answer.Sampling):
    """A prompt and how to sample its continuation (`answer.Sampling`)."""

    prompt: str = Field("", max_length=answer.MAX_PROMPT, description="the text to continue")


def _identifier(name: str) -> str:
    cleaned = "".join(part.capitalize() for part in "".join(c if c.isalnum() else " " for c in name).split())
    return cleaned or "Model"
