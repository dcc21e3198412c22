"""The study file: a base recipe, the keys set in every trial, a sweep (grid, list, random, Optuna),
repeats, word vectors to train first, and a smoke mode; and the command line's `--grid`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from ensayo.recipe import RecipeError, Strict, error_lines
from ensayo.recipe.safe_yaml import load_yaml
from ensayo.recipe.schema import check_name, name_of_file
from ensayo.studies.embeddings import EmbeddingJob


class Experiment(Strict):
    """One configuration of an explicit list: a name and the recipe keys it sets."""

    name: str = Field(pattern=r"^[\w.+-]+$")
    set: dict[str, Any] = Field(default_factory=dict)


class Distribution(Strict):
    """A search dimension: `choices`, or a `low`..`high` range (integers when both are, `log` scale)."""

    choices: list[Any] | None = None
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> Distribution:
        if self.choices is None and (self.low is None or self.high is None):
            raise ValueError("give choices: [...] or low and high")
        if self.choices is None and self.low >= self.high:  # type: ignore[operator]
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)


class SweepConfig(Strict):
    method: Literal["grid", "list", "random", "optuna"] = "grid"
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="grid: every combination")
    experiments: list[Experiment] = Field(default_factory=list, description="list: these configurations")
    space: dict[str, Distribution] = Field(default_factory=dict, description="random / optuna search space")
    trials: int | None = Field(None, ge=1, description="random / optuna: how many configurations")
    objective: str | None = Field(None, description="what optuna optimizes; default: the recipe's monitor")
    pruning: bool = True
    storage: str | None = Field(None, description="optuna storage URL; default sqlite in the study directory")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> SweepConfig:
        if self.method == "grid" and not self.grid:
            raise ValueError("method 'grid' needs grid: {key: [values]}")
        if self.method == "list" and not self.experiments:
            raise ValueError("method 'list' needs experiments: [{name, set: {key: value}}]")
        if self.method in ("random", "optuna"):
            if not (self.space or self.grid):
                raise ValueError(f"method '{self.method}' needs space: {{key: {{low, high}} or {{choices}}}}")
            if self.trials is None:
                raise ValueError(f"method '{self.method}' needs trials: N")
        names = [e.name for e in self.experiments]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment names must be unique, got {names}")
        return self


class SmokeConfig(Strict):
    """What `--smoke` changes: a few configurations on a little data, for tests and a first look."""

    set: dict[str, Any] = Field(default_factory=dict)
    experiments: list[str] | None = None
    repeats: int = Field(1, ge=1)
    trials: int | None = Field(None, ge=1)
    embeddings: dict[str, Any] = Field(default_factory=dict, description="set on every embedding job")


class StudyConfig(Strict):
    name: str
    description: str = ""
    recipe: str = Field(description="the base recipe, relative to the study file")
    set: dict[str, Any] = Field(default_factory=dict, description="recipe keys set in every trial")
    sweep: SweepConfig
    repeats: int = Field(1, ge=1, description="seeds per configuration")
    metric: str = Field("test/balanced_accuracy", description="the metric the report ranks by")
    embeddings: dict[str, EmbeddingJob] = Field(default_factory=dict,
                                                description="word vectors trained before the trials")
    smoke: SmokeConfig = Field(default_factory=SmokeConfig)
    # with --smoke: the smoke mode's own keys, set after each configuration's so that they win
    _set_last: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _a_name(cls, name: str) -> str:
        return check_name(name, "study names")

    @property
    def set_last(self) -> dict[str, Any]:
        return self._set_last


def load_study(path: str | Path, smoke: bool = False) -> tuple[StudyConfig, Path]:
    """A study file, or a plain recipe (then a one-configuration study to which the CLI adds a sweep)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: study file not found")
    raw = load_yaml(path.read_text(), str(path)) or {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a study must be a mapping")
    if smoke and "smoke" not in raw:
        raise RecipeError(f"{path}: --smoke needs the study's smoke section (smoke: {{set: ..., repeats: ...}}), "
                          f"which {'a plain recipe' if 'sweep' not in raw else 'this study'} does not have; "
                          "without --smoke every configuration trains on all the data")
    if "sweep" not in raw and "data" in raw:  # a recipe
        raw = {"name": raw.get("name", name_of_file(path.stem)), "recipe": path.name,
               "sweep": {"method": "list", "experiments": [{"name": "base"}]}}
    raw.setdefault("name", name_of_file(path.stem))
    try:
        study = StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError("\n".join([f"{path}: the study is not valid", *error_lines(exc, StudyConfig)])) from None
    if smoke:
        study = apply_smoke(study)
    return study, path.resolve().parent


def apply_smoke(study: StudyConfig) -> StudyConfig:
    smoke = study.smoke
    study = study.model_copy(deep=True)
    study._set_last = dict(smoke.set)
    study.repeats = smoke.repeats
    if smoke.experiments is not None:
        known = {e.name for e in study.sweep.experiments}
        unknown = [name for name in smoke.experiments if name not in known]
        if unknown:
            raise RecipeError(f"smoke.experiments names unknown experiments {unknown}; known: {sorted(known)}")
        study.sweep.experiments = [e for e in study.sweep.experiments if e.name in smoke.experiments]
        wanted = _referenced_embeddings(study)
        study.embeddings = {k: v for k, v in study.embeddings.items() if k in wanted}
    if smoke.trials is not None:
        study.sweep.trials = smoke.trials
    study.embeddings = {k: v.model_copy(update=smoke.embeddings) for k, v in study.embeddings.items()}
    return study


def _referenced_embeddings(study: StudyConfig) -> set[str]:
    text = json.dumps([study.set, study.set_last, [e.set for e in study.sweep.experiments]])
    return {name for name in study.embeddings if f"embeddings/{name}." in text}


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """CLI `--grid train.lr=1e-3,4e-3` -> {'train.lr': [0.001, 0.004]}."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise RecipeError(f"--grid {item!r} is not of the form key.path=v1,v2")
        key, values = (part.strip() for part in item.split("=", 1))
        if key in grid:
            raise RecipeError(f"--grid {key} is given twice; give all its values once: --grid {key}=v1,v2,...")
        grid[key] = [load_yaml(v, f"--grid {item!r}") for v in _top_level_split(values)]
    return grid


def _top_level_split(text: str) -> list[str]:
    """Split on commas outside brackets, so that `[8,16],[32]` is two values."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


