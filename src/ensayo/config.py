"""Recipe schema: the one YAML file a user writes, validated before any work starts."""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class RecipeError(ValueError):
    """A recipe that cannot be run; the message names the key path and what was expected."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------------------------- data
class SplitConfig(Strict):
    """`filter` sends the rows matching `test_filter` to test (FSDD's official split: `index < 5`) and
    splits the rest into train and validation, `validation` being a share of those rows."""

    method: Literal["stratified", "random", "group", "files", "filter"] = "stratified"
    train: float = Field(0.8, gt=0, le=1)
    validation: float = Field(0.0, ge=0, lt=1)
    test: float = Field(0.2, ge=0, lt=1)
    group_column: str | None = None
    files: dict[Literal["train", "validation", "test"], str] | None = None
    test_filter: str | None = None
    seed: int = 42

    @model_validator(mode="after")
    def _check(self) -> SplitConfig:
        if self.method == "files":
            if not self.files or "train" not in self.files:
                raise ValueError("method 'files' needs files: {train: ..., validation: ..., test: ...}")
            return self
        if self.method == "filter":
            if not self.test_filter:
                raise ValueError("method 'filter' needs test_filter, e.g. 'index < 5'")
            return self
        if abs(self.train + self.validation + self.test - 1.0) > 1e-6:
            raise ValueError(
                f"train + validation + test must add up to 1, got "
                f"{self.train} + {self.validation} + {self.test}"
            )
        if self.method == "group" and not self.group_column:
            raise ValueError("method 'group' needs group_column")
        return self


class DataConfig(Strict):
    source: str | None = None
    format: Literal["auto", "csv", "parquet", "jsonl", "folder"] = "auto"
    # folder: one row per file; `pattern` names the columns that the file name carries
    pattern: str | None = Field(None, description="e.g. '{digit}_{speaker}_{index}.wav'")
    path_column: str = "path"
    header: bool = True
    columns: list[str] | None = None
    separator: str = ","
    filters: list[str] = Field(default_factory=list)
    sample: float | int | None = None
    limit: int | None = Field(None, gt=0)
    bad_rows: Literal["skip", "fail"] = "skip"
    split: SplitConfig = Field(default_factory=SplitConfig)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.source is None and self.split.method != "files":
            raise ValueError("data needs a source, or split.method 'files' with files per split")
        if self.format == "folder" and not self.pattern:
            raise ValueError("format 'folder' needs pattern, e.g. '{label}_{take}.wav'")
        if not self.header and not self.columns and self.format != "folder":
            raise ValueError("a file without header needs columns: [name, ...]")
        return self


# ------------------------------------------------------------------------------------------ derive
class BinConfig(Strict):
    """Cut a numeric column into classes: by `quantiles` (equal-frequency, edges fitted on the training
    split) or by given inner `edges`; `labels` name the classes from lowest to highest."""

    column: str
    quantiles: int | None = Field(None, ge=2)
    edges: list[float] | None = Field(None, min_length=1)
    labels: list[str] | None = None

    @model_validator(mode="after")
    def _check(self) -> BinConfig:
        if (self.quantiles is None) == (self.edges is None):
            raise ValueError("give either quantiles (a count) or edges (inner bin edges)")
        if self.edges is not None and sorted(self.edges) != self.edges:
            raise ValueError(f"edges must increase, got {self.edges}")
        bins = self.quantiles if self.quantiles is not None else len(self.edges or []) + 1
        if self.labels is not None and len(self.labels) != bins:
            raise ValueError(f"{bins} bins need {bins} labels, got {len(self.labels)}")
        return self


class DeriveConfig(Strict):
    """A new column: an arithmetic `expression` over other columns, a `bin` of one, or the text of several
    `join`ed by `separator` (e.g. a title and its description, for one sentence encoder to read whole)."""

    name: str
    expression: str | None = Field(None, description="e.g. ((Likes * Bookmarks**2 - Dislikes) / Visits) * (1 / tier)")
    bin: BinConfig | None = None
    join: list[str] | None = Field(None, min_length=2, description="columns whose text is joined, in this order")
    separator: str = Field(" ", description="put between the joined texts")

    @model_validator(mode="after")
    def _check(self) -> DeriveConfig:
        if sum(kind is not None for kind in (self.expression, self.bin, self.join)) != 1:
            raise ValueError("a derived column needs exactly one of expression, bin or join")
        return self


# ----------------------------------------------------------------------------------------- features
class InputConfig(Strict):
    """One input feature. `preprocessing` is validated by the feature type's own schema
    (see ensayo.features), so a new modality needs no edit here."""

    name: str
    type: str
    column: str | None = None
    preprocessing: Any = Field(default_factory=dict)


class AuxiliaryConfig(Strict):
    """A number column the network also learns to predict while it trains (multi-task learning): a side head
    on the shared layers regresses it, standardized, by mean squared error times `weight`. It is not an
    input and is not needed to predict; a row without a value adds nothing to that loss."""

    column: str
    weight: float = Field(0.5, gt=0)


class OutputConfig(Strict):
    """`category`: one label column to classify, optionally with `auxiliary` number targets learned beside it.
    `text`: a language model over the text of `columns` (joined by `separator` into one document per row), at
    the level of characters or words."""

    type: Literal["category", "text"] = "category"
    column: str | None = None
    columns: list[str] = Field(default_factory=list)
    separator: str = "\n"
    level: Literal["char", "word"] = "char"
    context: int = Field(256, ge=2, description="tokens a model sees at once")
    max_vocab: int | None = Field(None, gt=0, description="word level: the most frequent words; the rest <unk>")
    min_count: int = Field(1, ge=1)
    lowercase: bool = False
    auxiliary: list[AuxiliaryConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> OutputConfig:
        if self.type == "category" and not self.column:
            raise ValueError("a category output needs column: the label column")
        if self.auxiliary and self.type != "category":
            raise ValueError("output.auxiliary: auxiliary targets go with a category output")
        columns = [target.column for target in self.auxiliary]
        if len(set(columns)) != len(columns) or self.column in columns:
            raise ValueError(f"output.auxiliary: each target needs its own column, other than the label; "
                             f"got {columns}")
        if self.type == "text" and not self.columns:
            raise ValueError("a text output needs columns: [the text column(s) to model]")
        return self

    @property
    def source_columns(self) -> list[str]:
        return list(self.columns) if self.type == "text" else [self.column or ""]


# -------------------------------------------------------------------------------------------- model
class HeadConfig(Strict):
    hidden: list[int] = Field(default_factory=list)
    dropout: float = Field(0.2, ge=0, lt=1)


class LinearConfig(Strict):
    """Sparse baseline: bag of words or TF-IDF over word and character n-grams + a linear classifier."""

    weighting: Literal["tfidf", "count", "binary"] = "tfidf"
    word_ngrams: tuple[int, int] | None = (1, 2)
    char_ngrams: tuple[int, int] | None = (2, 5)
    min_df: int = Field(1, ge=1)
    max_features: int | None = None
    classifier: Literal["linear_svm", "logistic_regression", "sgd"] = "linear_svm"
    C: float = Field(1.0, gt=0)
    sentence_weight: float = Field(1.0, gt=0, description=(
        "scale of each sentence input's (unit-length) vector beside the n-gram blocks (each of unit length)"))


class LanguageModelConfig(Strict):
    """A next-token model: a stacked LSTM / GRU or a decoder-only Transformer (pre-norm, causal attention)."""

    architecture: str = Field("lstm", description="a registered language model: lstm, gru, transformer")
    dim: int = Field(256, gt=0, description="embedding (and Transformer) width")
    hidden_size: int = Field(512, gt=0, description="recurrent state width")
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    positions: Literal["learned", "rotary"] = "learned"
    dropout: float = Field(0.1, ge=0, lt=1)
    tie_weights: bool = True
    ngrams: list[int] = Field(default_factory=list, description=(
        "hashed n-gram input embeddings: for each order n listed (2-6), the n tokens ending at a position "
        "are hashed into `ngram_buckets` rows of their own table and added to that position's embedding"))
    ngram_buckets: int = Field(65536, ge=16, description="rows of each hashed n-gram table")
    ngram_dropout: float = Field(0.0, ge=0, lt=1, description=(
        "in training, each order's n-gram embedding is dropped at this share of positions, so that the model "
        "learns to fall back on shorter n-grams and its own context instead of memorising long ones"))

    @field_validator("ngrams")
    @classmethod
    def _orders(cls, value: list[int]) -> list[int]:
        if any(not 2 <= n <= 6 for n in value) or len(set(value)) != len(value):
            raise ValueError("n-gram orders are distinct integers from 2 to 6")
        return sorted(value)


class EnsembleConfig(Strict):
    """Member recipes (paths, relative to this recipe's folder) trained on this recipe's data and split;
    their log-probabilities are summed with one weight per member, the weights fitted together on the
    validation split."""

    members: list[str] = Field(default_factory=list, description="classifier recipes, two or more")


class ModelConfig(Strict):
    type: Literal["neural", "tfidf_linear", "language_model", "ensemble"] = "neural"
    # One encoder per input, validated by that input's feature type (its `type` key picks the encoder).
    encoders: dict[str, Any] = Field(default_factory=dict)
    combiner: Literal["concat"] = "concat"
    head: HeadConfig = Field(default_factory=HeadConfig)
    linear: LinearConfig = Field(default_factory=LinearConfig)
    language_model: LanguageModelConfig = Field(default_factory=LanguageModelConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)


# ---------------------------------------------------------------------------------------- training
class TrainConfig(Strict):
    optimizer: Literal["adam", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1024, ge=1)
    schedule: Literal["constant", "cosine", "step"] = "constant"
    warmup_epochs: float = Field(0.0, ge=0)
    step_size: int = Field(5, ge=1)
    step_gamma: float = Field(0.5, gt=0, le=1)
    grad_clip: float | None = Field(None, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    early_stopping: int | None = Field(None, ge=1)
    monitor: str = "val/balanced_accuracy"
    seed: int = 42
    threads: int | None = Field(None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"


class TrackConfig(Strict):
    enabled: bool = True
    experiment: str | None = None
    uri: str | None = None


class Recipe(Strict):
    name: str = "recipe"
    description: str = ""
    data: DataConfig
    derive: list[DeriveConfig] = Field(default_factory=list)
    inputs: list[InputConfig] = Field(default_factory=list)
    output: OutputConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    track: TrackConfig = Field(default_factory=TrackConfig)

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        generating = self.output.type == "text"
        if generating != (self.model.type == "language_model"):
            raise ValueError("a text output needs model.type 'language_model', and that model needs a text output")
        if generating:
            if self.inputs:
                raise ValueError("a language model has no inputs: its text comes from output.columns")
            if "monitor" not in self.train.model_fields_set:
                self.train.monitor = "val/bits_per_char"
            return self
        if self.output.auxiliary and self.model.type != "neural":
            raise ValueError(f"output.auxiliary: model.type {self.model.type} has no shared layers to train "
                             "on auxiliary targets; use a neural model")
        if self.model.type == "ensemble":
            return self._check_ensemble()
        if not self.inputs:
            raise ValueError("inputs: a classifier needs at least one input")
        names = [feature.name for feature in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be unique, got {names}")
        unknown = set(self.model.encoders) - set(names)
        if unknown:
            raise ValueError(f"model.encoders names unknown inputs {sorted(unknown)}; inputs are {names}")
        if self.model.type == "tfidf_linear":
            unusable = [f"{f.name!r} ({f.type})" for f in self.inputs if f.type not in ("text", "sentence")]
            if unusable:
                raise ValueError(f"model.type tfidf_linear reads text and sentence inputs only, "
                                 f"not {', '.join(unusable)}")
        if self.model.type == "neural":
            missing = [n for n in names if n not in self.model.encoders]
            if missing:
                raise ValueError(f"model.encoders has no encoder for inputs {missing}")
        fed = [t.column for t in self.output.auxiliary if t.column in {self.column_of(f) for f in self.inputs}]
        if fed:
            raise ValueError(f"output.auxiliary: {fed} are also inputs; a target the model is given teaches nothing")
        return self

    def _check_ensemble(self) -> Recipe:
        if len(self.model.ensemble.members) < 2:
            raise ValueError("model.ensemble.members: an ensemble needs two or more member recipes")
        if self.model.encoders:
            raise ValueError("model.encoders: an ensemble's encoders are its members'; leave encoders out")
        split = self.data.split
        if (split.files or {}).get("validation") is None and (split.method == "files" or split.validation == 0):
            raise ValueError("data.split: an ensemble fits its members' weights on a validation split; give one")
        return self

    def column_of(self, feature: InputConfig) -> str:
        return feature.column or feature.name


# ------------------------------------------------------------------------------------------ loading
def default_data_dir() -> Path | None:
    """ENSAYO_DATA, else ../shared/data when it exists (the layout of a developer checkout)."""
    if env := os.environ.get("ENSAYO_DATA"):
        return Path(env)
    for candidate in (Path.cwd() / "../shared/data", Path(__file__).resolve().parents[2] / "../shared/data"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


_VAR = re.compile(r"\$\{(\w+)\}")


def expand_path(value: str, base: Path | None = None) -> Path:
    """Expand ${ENSAYO_DATA} and other environment variables; relative paths are taken from `base`."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "ENSAYO_DATA":
            data_dir = default_data_dir()
            if data_dir is None:
                raise RecipeError("the recipe uses ${ENSAYO_DATA}, but ENSAYO_DATA is not set "
                                  "and ../shared/data does not exist")
            return str(data_dir)
        if name not in os.environ:
            raise RecipeError(f"the recipe uses ${{{name}}}, which is not set in the environment")
        return os.environ[name]

    path = Path(_VAR.sub(substitute, value)).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path


def _parse_scalar(text: str) -> Any:
    return yaml.safe_load(text) if text != "" else ""


def set_key(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Set `a.b.c` to `value` in a raw recipe; list items are addressed by index (`inputs.0.name`)."""
    parts = key.strip().split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _list_item(node, part, key)
            continue
        if part not in node or node[part] is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict | list):
            raise RecipeError(f"{key}: {'.'.join(parts[: depth + 1])} is not a section")
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, key)] = value
    else:
        node[last] = value
    return raw


def _index(items: list[Any], part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise RecipeError(f"{key}: {part!r} is not an index of a list of {len(items)}")
    return int(part)


def _list_item(items: list[Any], part: str, key: str) -> Any:
    return items[_index(items, part, key)]


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides, the value read as YAML."""
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override {item!r} is not of the form key.path=value")
        key, value = item.split("=", 1)
        set_key(raw, key, _parse_scalar(value))
    return raw


def _field_names(model: type[BaseModel] | None, location: tuple[Any, ...]) -> list[str]:
    """The valid keys at `location` inside `model`, for 'did you mean' hints."""
    current: Any = model
    for part in location:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return []
        current = _first_model(fields[part].annotation)
    return list(getattr(current, "model_fields", {}))


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _error_lines(error: ValidationError, schema: type[BaseModel], prefix: tuple[Any, ...] = ()) -> list[str]:
    lines = []
    for item in error.errors():
        location = tuple(item["loc"])
        path = ".".join(str(p) for p in prefix + location)
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            valid = _field_names(schema, location[:-1])
            close = difflib.get_close_matches(str(location[-1]), valid, n=1, cutoff=0.5)
            message = "unknown key" + (f"; did you mean '{close[0]}'?" if close else "")
            if valid:
                message += f" (valid keys: {', '.join(valid)})"
        elif "input" in item and item["type"] != "missing":
            message += f" (got {item['input']!r})"
        lines.append(f"  {path or '<root>'}: {message}")
    return lines


def _choice_error(path: str, kind: str, value: Any, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"  {path}: unknown {kind} {value!r}{hint} (known: {', '.join(sorted(choices))})"


def _resolve_features(recipe: Recipe) -> list[str]:
    """Validate each input's preprocessing and encoder with its feature type's own schemas."""
    from ensayo.features import FEATURES

    problems: list[str] = []
    for index, spec in enumerate(recipe.inputs):
        feature = FEATURES.get(spec.type)
        if feature is None:
            problems.append(_choice_error(f"inputs.{index}.type", "input type", spec.type, list(FEATURES)))
            continue
        try:
            spec.preprocessing = feature.Preprocessing.model_validate(spec.preprocessing or {})
        except ValidationError as exc:
            problems += _error_lines(exc, feature.Preprocessing, ("inputs", index, "preprocessing"))
        encoder = recipe.model.encoders.get(spec.name)
        if encoder is None:
            continue
        if isinstance(encoder, BaseModel):
            continue
        kind = (encoder or {}).get("type")
        if kind not in feature.encoders:
            problems.append(_choice_error(f"model.encoders.{spec.name}.type", f"{spec.type} encoder",
                                          kind, list(feature.encoders)))
            continue
        schema = feature.encoders[kind].Config
        try:
            recipe.model.encoders[spec.name] = schema.model_validate(encoder)
        except ValidationError as exc:
            problems += _error_lines(exc, schema, ("model", "encoders", spec.name))
    return problems


def load_recipe(source: str | Path | dict[str, Any], overrides: list[str] | None = None,
                label: str = "<recipe>") -> Recipe:
    """Read, override and validate a recipe; raises RecipeError naming every bad key (and `label`, the
    recipe's origin, when `source` is a mapping)."""
    if isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise RecipeError(f"{path}: recipe file not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise RecipeError(f"{path}: not valid YAML: {exc}") from exc
        label = str(path)
        if not isinstance(raw, dict):
            raise RecipeError(f"{path}: a recipe must be a mapping of sections, got {type(raw).__name__}")
        raw.setdefault("name", path.stem)
    raw = apply_overrides(raw, overrides or [])
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError("\n".join([f"{label}: the recipe is not valid", *_error_lines(exc, Recipe)])) from None
    problems = _resolve_features(recipe)
    if recipe.model.type == "language_model":
        from ensayo.language import LANGUAGE_MODELS

        architecture = recipe.model.language_model.architecture
        if architecture not in LANGUAGE_MODELS:
            problems.append(_choice_error("model.language_model.architecture", "architecture", architecture,
                                          list(LANGUAGE_MODELS)))
    if problems:
        raise RecipeError("\n".join([f"{label}: the recipe is not valid", *problems]))
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    return recipe.model_dump(mode="json")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists of mappings are indexed."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for index, item in enumerate(value):
                flat.update(flatten(item, f"{name}.{index}."))
        else:
            flat[name] = value
    return flat
