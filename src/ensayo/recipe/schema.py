"""Recipe schema: the one YAML file a user writes, validated before any work starts.

It knows no registry. Sections that belong to a feature type (`inputs[].preprocessing`, the encoders)
or to a model type (`model.linear`, `model.ensemble`...) are kept as written here and validated by the
registered type at the resolve step (`ensayo.recipe.resolve`)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ensayo.errors import RecipeError as RecipeError  # re-exported: where callers find it

MAX_SEED = 2**32 - 1_000_000  # numpy and scikit-learn take seeds below 2**32; studies add repeats to a seed
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a recipe's, a study's or a served model's name


def check_name(name: str, names: str) -> str:
    """`name`, when it is a name: it names a folder (runs/<name>/, studies/<name>/), so it never leads out of one."""
    if not NAME.match(name):
        raise ValueError(f"{names} are letters, digits, '.', '_' and '-', starting with a letter or digit (it names "
                         f"a folder); got {name!r}")
    return name


def name_of_file(stem: str) -> str:
    """The name a recipe or study file gives when it sets none: its file name, made a name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")
    return cleaned or "recipe"


class Strict(BaseModel):
    """Every section: unknown keys are errors, and so are numbers that are not finite (`inf`, `nan`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


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
    seed: int = Field(42, ge=0, le=MAX_SEED)
    folds: int | None = Field(None, ge=2, le=100, description="cross-validation: train one model per fold, each "
                                                              "fold the test set once; `validation` is then the "
                                                              "share of the other folds each model validates on")
    fold: int | None = Field(None, ge=0, description="set by ensayo in the recipe of a cross-validated run's fold "
                                                     "run: the fold that run is tested on")
    hold_out_test: bool = Field(False, description="with folds: first hold out the test and validation rows of the "
                                "single split with this method, these train / validation / test shares and seed, and "
                                "cross-validate its training rows only, so that no fold model trains on the rows a "
                                "student with that split validates and tests on (train.teacher); the fold average is "
                                "also scored on the test rows")

    @model_validator(mode="after")
    def _check(self) -> SplitConfig:
        if self.fold is not None and (self.folds is None or self.fold >= self.folds):
            raise ValueError(f"fold: {self.fold} is not one of the {self.folds or 0} folds")
        if self.hold_out_test and (self.folds is None or not self.test):
            raise ValueError("hold_out_test: holds out the test share of a cross-validated split; set folds and test")
        if self.hold_out_test and abs(self.train + self.validation + self.test - 1.0) > 1e-6:
            raise ValueError(f"hold_out_test: train + validation + test (the student's single split) must add up to 1, "
                             f"got {self.train} + {self.validation} + {self.test}")
        if self.folds is not None:
            if self.method not in ("stratified", "random", "group"):
                raise ValueError(f"folds: cross-validation splits by method stratified, random or group, not "
                                 f"{self.method!r}")
            if self.method == "group" and not self.group_column:
                raise ValueError("method 'group' needs group_column")
            return self
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
    sample: float | int | None = Field(None, gt=0, description="rows (a whole number) or a fraction of them")
    limit: int | None = Field(None, gt=0)
    bad_rows: Literal["skip", "fail"] = "skip"
    split: SplitConfig = Field(default_factory=SplitConfig)

    @field_validator("sample")
    @classmethod
    def _rows_or_share(cls, sample: float | int | None) -> float | int | None:
        if isinstance(sample, float) and sample > 1 and not sample.is_integer():
            raise ValueError(f"a share of the rows (above 0, at most 1) or a number of rows (a whole number); "
                             f"got {sample}")
        return sample

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


class ModelConfig(BaseModel):
    """`type` names a registered model type; the other keys are that type's sections (`encoders` and
    `head` for `neural`, `linear` for `tfidf_linear`...), validated by it when the recipe is resolved."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    type: str = "neural"

    @property
    def sections(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})

    def section(self, key: str) -> Any:
        return (self.__pydantic_extra__ or {})[key]


# ---------------------------------------------------------------------------------------- training
class TeacherConfig(Strict):
    """A saved classifier run whose probabilities the student learns from beside the labels (distillation): the
    loss is (1 - weight) x the label's + weight x temperature^2 x the cross-entropy to the teacher's probabilities,
    both softened by `temperature`."""

    run: str = Field(description="the teacher's run directory (relative paths from the recipe's folder): a "
                     "cross-validated classifier run with data.split.hold_out_test, so that each training row's "
                     "probabilities come from a fold model that did not train on it")
    recipe: str | None = Field(None, description="the recipe that makes the teacher's run (relative paths from the "
                               "recipe's folder): named in the message when the run is missing")
    weight: float = Field(0.5, gt=0, le=1, description="the teacher's share of the loss")
    temperature: float = Field(2.0, gt=0, description="softens the teacher's and the student's probabilities")


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
    seed: int = Field(42, ge=0, le=MAX_SEED)
    threads: int | None = Field(None, ge=1)
    loader_workers: int = Field(2, ge=0, description="worker processes that read and encode the files of inputs "
                                                     "with preprocessing.in_memory: false (0: in this process)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16", "auto"] = Field(
        "fp32", description="the training step's arithmetic (autocast): bf16 where the device has it (a GPU, or a "
        "CPU with AVX512-BF16 or AMX), fp16 on a GPU with a gradient scaler; auto: bf16 where the device has it, "
        "else fp32. Weights, optimizer states, embedding bags and evaluation stay fp32")
    compile: bool = Field(False, description="the training step's network compiled by torch.compile (it takes "
                          "seconds to minutes to compile first; weights, checkpoints and resume are the same)")
    loss: Literal["cross_entropy", "focal"] = "cross_entropy"
    focal_gamma: float = Field(2.0, ge=0, description="focal loss: how much well-classified rows are discounted")
    class_weights: Literal["none", "balanced"] = Field("none", description="balanced: each class's loss weighted "
                                                                           "by its inverse training frequency")
    calibrate: Literal["auto", "temperature", "none"] = Field(
        "auto", description="auto: a classifier's probabilities are calibrated by one temperature, fitted on the "
        "validation split or, where there is none, on `calibration_share` of the training rows held out for it; "
        "temperature: fitted on the validation split only; none: the probabilities as the model gives them")
    calibration_share: float = Field(0.1, gt=0, lt=0.5, description="calibrate auto without a validation split: "
                                     "the share of the training rows held out to fit the temperature on")
    teacher: TeacherConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.loss == "focal" and self.label_smoothing:
            raise ValueError("label_smoothing: the focal loss takes no label smoothing; set one of them")
        return self


class EvaluateConfig(Strict):
    bootstrap: int = Field(1000, ge=0, description="resamples of the test split for each metric's interval (0: none)")
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = Field(0, ge=0, le=MAX_SEED, description="the bootstrap's own generator")


class TrackConfig(Strict):
    enabled: bool = True
    experiment: str | None = None
    uri: str | None = None
    artifacts: str | None = Field(None, description="where a new experiment keeps its runs' artifacts (a folder "
                                                    "or URI every worker sees); default: MLflow's, or mlartifacts "
                                                    "beside a SQLite store")
    required: bool = Field(True, description="a tracking store that cannot be reached fails the run before it "
                                             "trains; false: warn once and train untracked")


class Recipe(Strict):
    name: str = "recipe"
    description: str = ""
    data: DataConfig
    derive: list[DeriveConfig] = Field(default_factory=list)
    inputs: list[InputConfig] = Field(default_factory=list)
    output: OutputConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    track: TrackConfig = Field(default_factory=TrackConfig)

    @field_validator("name")
    @classmethod
    def _a_name(cls, name: str) -> str:
        return check_name(name, "recipe names")

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        """What holds whatever the model type; each type checks the rest when the recipe is resolved."""
        if self.output.type == "text" and "monitor" not in self.train.model_fields_set:
            self.train.monitor = "val/bits_per_char"
        names = [feature.name for feature in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be unique, got {names}")
        split = self.data.split
        if self.train.calibrate == "temperature" and split.method not in ("files", "filter") and not split.validation:
            raise ValueError("train.calibrate: the temperature is fitted on the validation split; set "
                             "data.split.validation above 0 (or calibrate: auto, which holds out training rows)")
        fed = [t.column for t in self.output.auxiliary if t.column in {self.column_of(f) for f in self.inputs}]
        if fed:
            raise ValueError(f"output.auxiliary: {fed} are also inputs; a target the model is given teaches nothing")
        if self.train.teacher is not None:
            self._check_teacher()
        return self

    def _check_teacher(self) -> None:
        split = self.data.split
        if self.output.type != "category":
            raise ValueError("train.teacher: a teacher's class probabilities teach a classifier, not a text output")
        if split.folds is not None:
            raise ValueError("train.teacher: a cross-validated student would test on rows its teacher trained on; "
                             "distil into a single split (the teacher cross-validates)")
        if split.method == "files" or self.data.format == "folder":
            raise ValueError("train.teacher: the teacher's probabilities are matched to the student's rows by line "
                             "of one data.source file; this recipe reads several files")

    def column_of(self, feature: InputConfig) -> str:
        return feature.column or feature.name

    @property
    def calibration_share(self) -> float:
        """The share of the training rows held out as the validation split to fit a temperature on: a classifier
        calibrated by default (`calibrate: auto`) whose split gives no validation rows."""
        split = self.data.split
        has_validation = (split.files or {}).get("validation") is not None if split.method == "files" \
            else bool(split.validation)
        calibrating = self.train.calibrate == "auto" and self.output.type == "category"
        return self.train.calibration_share if calibrating and not has_validation else 0.0


