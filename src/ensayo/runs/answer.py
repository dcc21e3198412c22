"""One way to answer. A classifier's probabilities become ranked labels here, and the settings of predicting
and generating have their defaults here: the CLI, the Python API, the server, its page (through the
server's model description) and the exported MLflow model all answer through this module, so that the same
request gets the same answer from each.

It imports NumPy and pydantic and nothing else of ensayo's, so that the CLI reads the defaults without loading
a model.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

TOP_K = 3  # labels per row, best first
DECIMALS = 6  # probabilities as answered: in JSON, in a CSV, in an MLflow model's table
LENGTH = 200  # tokens to generate
TEMPERATURE = 0.8  # 0 is greedy
SAMPLE_TOP_K = 0  # sample among the k likeliest tokens; 0: among all of them
TOP_P = 1.0  # sample within this probability mass; 1: the whole of it
SEED = 0
MAX_LENGTH = 5000  # tokens one request may ask for
MAX_PROMPT = 10_000  # characters of one prompt sent to a server
MAX_TEMPERATURE = 10.0
MAX_SEED = 2**32 - 1  # numpy's and torch's generators take seeds below 2**32


def labels_per_row(top_k: int, all_classes: bool, classes: int) -> int:
    """How many labels each row gets: every class with `all_classes`, else `top_k` (at most every class)."""
    if all_classes:
        return classes
    if top_k < 1:
        raise ValueError(f"top_k is {top_k}: ask for one label or more")
    return min(top_k, classes)


def rank(probabilities: np.ndarray, classes: Sequence[str], top_k: int = TOP_K,
         all_classes: bool = False) -> tuple[list[list[str]], np.ndarray]:
    """Each row's likeliest labels, best first, with their probabilities. Tied classes keep the classes' order
    (a stable sort), whatever the number of classes."""
    k = labels_per_row(top_k, all_classes, len(classes))
    order = _best_first(probabilities, k)
    return [[classes[i] for i in row] for row in order], np.take_along_axis(probabilities, order, axis=1)


def _best_first(probabilities: np.ndarray, k: int) -> np.ndarray:
    """The first `k` columns of a stable descending argsort of each row. A served request of 64 titles over
    632 classes spent a fifth of the server's time sorting every class; the k best are picked in linear time
    and only they are sorted, and the rows with a tie across the k-th place (which class wins it depends on
    the classes' order) are sorted whole as before."""
    classes = probabilities.shape[1]
    if k >= classes or not len(probabilities):
        return np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    if k == 1:  # argmax answers the first of tied classes, as the stable sort does
        return probabilities.argmax(axis=1)[:, None]
    best = np.argpartition(probabilities, classes - k, axis=1)[:, classes - k:]
    values = np.take_along_axis(probabilities, best, axis=1)
    order = np.take_along_axis(best, np.lexsort((best, -values), axis=1), axis=1)
    tied = (probabilities >= values.min(axis=1, keepdims=True)).sum(axis=1) > k
    if tied.any():
        order[tied] = np.argsort(-probabilities[tied], axis=1, kind="stable")[:, :k]
    return order


def rounded(probabilities: np.ndarray) -> list[list[float]]:
    """Probabilities as every answer gives them: Python floats of `DECIMALS` decimals."""
    return np.round(np.asarray(probabilities, dtype=np.float64), DECIMALS).tolist()


def records(labels: list[list[str]], probabilities: np.ndarray,
            notes: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
    """Ranked rows as answers: `{"labels": [...], "probabilities": [...]}` each, with a row's `note` where it has one
    (how its file was heard, say)."""
    answers = [{"labels": names, "probabilities": values}
               for names, values in zip(labels, rounded(probabilities), strict=True)]
    for answer, note in zip(answers, notes or [], strict=False):
        if note:
            answer["note"] = note
    return answers


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def checked(cls, **settings: Any) -> Self:
        """The settings, or a ValueError that names each bad one in a line a person reads."""
        try:
            return cls(**settings)
        except ValidationError as error:
            raise ValueError("; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                                       + (f" (got {e['input']!r})" if e["type"] != "missing" else "")
                                       for e in error.errors())) from None


class Ranking(Settings):
    """How many labels a classifier answers per row."""

    top_k: int = Field(TOP_K, ge=1, description="labels per row, best first (at most every class)")
    all_classes: bool = Field(False, description="every class, best first (overrides top_k)")


class Sampling(Settings):
    """How a generator writes: `length` tokens at `temperature`, among the `top_k` likeliest tokens (0: all)
    within the `top_p` mass (1: all of it), from `seed`."""

    length: int = Field(LENGTH, ge=1, le=MAX_LENGTH, description="tokens to sample")
    temperature: float = Field(TEMPERATURE, ge=0, le=MAX_TEMPERATURE, description="0 is greedy")
    top_k: int = Field(SAMPLE_TOP_K, ge=0, description="sample among the k likeliest tokens; 0: among all")
    top_p: float = Field(TOP_P, gt=0, le=1, description="sample within this probability mass; 1: all of it")
    seed: int = Field(SEED, ge=0, le=MAX_SEED, description="the same seed gives the same text everywhere")

    @field_validator("top_k", "top_p", mode="before")
    @classmethod
    def _none_does_not_limit(cls, value: Any, info: Any) -> Any:
        """None, as the Python API and JSON's null say it, means the limit's default: not limited."""
        return (SAMPLE_TOP_K if info.field_name == "top_k" else TOP_P) if value is None else value

    @classmethod
    def of(cls, top_k: int | None = None, top_p: float | None = None, **settings: Any) -> Sampling:
        """Settings as the Python API takes them (None: `top_k` and `top_p` do not limit)."""
        return cls.checked(top_k=top_k, top_p=top_p, **settings)

    @property
    def limits(self) -> tuple[int | None, float | None]:
        """(top_k, top_p) as a generator samples with them: None where they do not limit."""
        return (self.top_k or None), (self.top_p if self.top_p < 1 else None)


def defaults(can_predict: bool) -> dict[str, Any]:
    """The settings a client may send, with their defaults: what the server's model description gives its page
    and what an exported MLflow model declares as its parameters."""
    return (Ranking() if can_predict else Sampling()).model_dump()


def inference_mode() -> contextlib.AbstractContextManager[Any]:
    """torch's inference mode, where torch is loaded (a network that answers in it, for which autograd keeps
    nothing); nothing where it is not (an ONNX engine), which an answer does not load torch for."""
    torch = sys.modules.get("torch")
    return torch.inference_mode() if torch is not None else contextlib.nullcontext()
