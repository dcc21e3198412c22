"""What a client of a saved run sends it (the server, its page, an exported MLflow model): one value per input
column, files as bytes (or base64 text), never as paths. `rows_to_table` checks each value against the
column's kind, writes the files into a folder the caller owns, and names the row and field of anything wrong."""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import soundfile as sf
from PIL import Image

from ensayo.data.derive import reads
from ensayo.features.base import Values, feature_type
from ensayo.recipe import InputConfig, Recipe


@dataclass(frozen=True)
class InputField:
    """One column a row holds: its name, what it holds, and the recipe inputs that read it."""

    name: str
    values: Values
    inputs: tuple[InputConfig, ...]

    @property
    def input_types(self) -> list[str]:
        return sorted({spec.type for spec in self.inputs})

    def describe(self) -> dict[str, Any]:
        values = self.values
        described: dict[str, Any] = {"name": self.name, "kind": values.kind, "input_types": self.input_types}
        if values.kind == "category":
            described["multi"] = values.multi
        if values.kind == "file":
            described |= {"media": values.media, "suffixes": list(values.suffixes)}
        return described


class InputError(ValueError):
    """A value a client sent that the model cannot take, with the row and field it was in."""

    def __init__(self, message: str, row: int | None = None, field: str | None = None) -> None:
        self.message, self.row, self.field = message, row, field
        where = ", ".join(part for part in (f"row {row}" if row is not None else "",
                                            f"field {field!r}" if field else "") if part)
        super().__init__(f"{where}: {message}" if where else message)


def input_fields(recipe: Recipe) -> list[InputField]:
    """The columns a row must hold, in the recipe's input order. An input read from a derived column asks
    for the columns it is derived from instead: text for a join, numbers for an expression."""
    derived = {spec.name: spec for spec in recipe.derive if spec.bin is None}
    fields: dict[str, InputField] = {}

    def add(column: str, values: Values, spec: InputConfig) -> None:
        if column in derived:
            source = Values("text") if derived[column].join is not None else Values("number")
            for name in sorted(reads(derived[column])):
                add(name, source, spec)
            return
        known = fields.get(column)
        fields[column] = InputField(column, values, (*known.inputs, spec) if known else (spec,))

    for spec in recipe.inputs:
        add(recipe.column_of(spec), feature_type(spec.type).values_of(spec.preprocessing), spec)
    return list(fields.values())


def rows_to_table(fields: Sequence[InputField], rows: Sequence[Any], files: Path) -> pl.DataFrame:
    """The rows as a table the run predicts from; file values are written into the folder `files`."""
    names = [f.name for f in fields]
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InputError(f"a row is an object of the input columns {names}, not {type(row).__name__}", index)
        missing = [name for name in names if name not in row]
        if missing:
            raise InputError(f"missing input column (inputs: {names})", index, missing[0])
        extra = [str(key) for key in row if key not in columns]
        if extra:
            raise InputError(f"not an input of this model (inputs: {names})", index, extra[0])
        for position, field in enumerate(fields):
            value = row[field.name]
            if field.values.kind == "file":
                columns[field.name].append(_file(field, value, index, files / f"row{index}-{position}"))
            else:
                columns[field.name].append(_value(field, value, index))
    return pl.DataFrame({f.name: pl.Series(f.name, columns[f.name], dtype=_dtype(f.values)) for f in fields})


def _dtype(values: Values) -> pl.DataType:
    return pl.Float64() if values.kind == "number" else pl.String()


def _value(field: InputField, value: Any, row: int) -> Any:
    kind = field.values.kind
    if kind == "text":
        return _text(value, row, field.name)
    if kind == "number":
        return _number(value, row, field.name)
    return _category(value, field.values.multi, row, field.name)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value: Any, row: int, name: str) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and not _is_missing(value):
        value = str(value)  # a title of digits that a CSV reader took for a number
    if not isinstance(value, str):
        raise InputError(f"text expected, got {_kind(value)}", row, name)
    if not value.strip():
        raise InputError("empty text: there is nothing to classify", row, name)
    return value


def _number(value: Any, row: int, name: str) -> float | None:
    if _is_missing(value):
        return None  # a missing number is filled as in training
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputError(f"a number expected, got {_kind(value)}", row, name)
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"a number expected, got {value!r}", row, name) from None
    if not math.isfinite(number):
        raise InputError(f"a finite number expected, got {value!r}", row, name)
    return number


def _category(value: Any, multi: bool, row: int, name: str) -> str | None:
    """A category name; a list of them is kept as the JSON text the feature reads from a file."""
    if _is_missing(value):
        return None
    if multi and isinstance(value, list | tuple):
        if not all(isinstance(item, str | int) and not isinstance(item, bool) for item in value):
            raise InputError("a list of category names expected", row, name)
        return json.dumps([str(item) for item in value])
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InputError(f"a category name{'s' if multi else ''} expected, got {_kind(value)}", row, name)
    return str(value)


def _file(field: InputField, value: Any, row: int, file: Path) -> str:
    media = field.values.media or "file"
    if isinstance(value, str):
        try:
            value = base64.b64decode("".join(value.split()), validate=True)  # line breaks are allowed
        except (binascii.Error, ValueError):
            raise InputError(f"an {media} file expected as base64 text (a path is never read)", row,
                             field.name) from None
    if not isinstance(value, bytes | bytearray):
        raise InputError(f"an {media} file expected, got {_kind(value)}", row, field.name)
    if not value:
        raise InputError(f"an empty file is not {media}", row, field.name)
    path = file.with_suffix(f".{media}")
    path.write_bytes(value)
    checks = {spec.preprocessing.file_problems.__func__: spec.preprocessing for spec in field.inputs}
    for preprocessing in checks.values():  # two inputs reading one photo check it once
        problems = preprocessing.file_problems([str(path)])
        if problems:
            raise InputError(problems[0], row, field.name)
    return str(path)


def _vowel(seconds: float, rate: int) -> np.ndarray:
    """An 'ah' a voice detector takes for speech (a tone is not): pulses at 120 Hz through the vowel's three
    formant resonators, with 0.2 s of silence either side."""
    import scipy.signal

    voice = (np.arange(int(seconds * rate)) % (rate // 120) == 0).astype(np.float64)
    for frequency, bandwidth in ((700, 80), (1220, 90), (2600, 120)):
        radius = np.exp(-np.pi * bandwidth / rate)
        voice = scipy.signal.lfilter([1 - radius], [1, -2 * radius * np.cos(2 * np.pi * frequency / rate), radius**2],
                                     voice)
    silence = np.zeros(rate // 5)
    return np.concatenate([silence, 0.3 * voice * np.hanning(len(voice)) / np.abs(voice).max(), silence]).astype(
        np.float32)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "true or false", type(None): "null"}.get(
        type(value), type(value).__name__)


def records_of(data: Any) -> list[dict[str, Any]]:
    """Rows from whatever an MLflow client sends once parsed: a pandas or polars table, a mapping of columns,
    or a list of row mappings; NumPy values become Python's."""
    if isinstance(data, pl.DataFrame):
        return data.to_dicts()
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas, without importing it
        return [{str(k): _plain(v) for k, v in row.items()} for row in data.to_dict(orient="records")]
    data = _plain(data)
    if isinstance(data, Mapping):
        columns = {str(k): v if isinstance(v, list) else [v] for k, v in data.items()}
        sizes = {len(v) for v in columns.values()}
        if len(sizes) > 1:
            counts = {k: len(v) for k, v in columns.items()}
            raise InputError(f"the columns hold different numbers of values: {counts}")
        count = sizes.pop() if sizes else 0
        return [{name: values[i] for name, values in columns.items()} for i in range(count)]
    if isinstance(data, list):
        return data
    raise InputError(f"rows expected: a table, a mapping of columns or a list of rows, not {_kind(data)}")


def prompts_of(rows: Sequence[Any]) -> list[str]:
    """A generator's prompts: each row a text, or a mapping whose `prompt` is one (none, or null: no prompt)."""
    prompts = []
    for index, row in enumerate(rows):
        prompt = row.get("prompt") if isinstance(row, Mapping) else row
        if prompt is None or (isinstance(prompt, float) and math.isnan(prompt)):
            prompt = ""
        if not isinstance(prompt, str):
            raise InputError(f"a prompt is text, not {_kind(prompt)}", index, "prompt")
        prompts.append(prompt)
    return prompts


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        value = value.tolist()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def example_rows(fields: Sequence[InputField], count: int = 1, short: bool = False) -> list[dict[str, Any]]:
    """`count` rows of plausible values for any model's inputs: for the warm-up prediction of a server, and for
    tracing a network (`short` rows have shorter texts, to tell which tensor dimensions vary)."""
    words = ["uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho"]
    rows = []
    for index in range(count):
        text = " ".join(words[: 2 if short else 3 + index])
        rows.append({field.name: _example(field, text, index) for field in fields})
    return rows


def _example(field: InputField, text: str, index: int) -> Any:
    kind = field.values.kind
    if kind == "text":
        return text
    if kind == "number":
        return float(index)
    if kind == "category":
        return None
    buffer = io.BytesIO()
    if field.values.media == "audio":
        sf.write(buffer, _vowel(0.5 + 0.1 * index, 8000), 8000, format="WAV", subtype="PCM_16")
    else:
        Image.new("RGB", (32 + index, 32), (100 + 10 * index, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()
