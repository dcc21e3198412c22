"""The model-type contract, as scikit-learn's `parametrize_with_checks` is the estimator's: what every registered
model type does, checked on tiny data it is given here. `assert_model_type_contract(name, folder)` runs it for
one type; `tests/test_model_type_contract.py` runs it over the registry, and a test that registers a type of
its own calls it too.

The checks: the recipe validates; the type fits; the saved run loads and answers exactly as the trained model
(a classifier: finite probabilities that sum to one; a generator: the same text for the same seed); each export
it can do works and answers within 1e-4 (the MLflow model: as the run does); it explains when it says it does;
a run interrupted and resumed ends as the uninterrupted one; and what it does not do is refused by name.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

import ensayo
from ensayo.models import CAPABILITIES, MODEL_TYPES, ModelType, refusal
from ensayo.runs.saved import SavedRun, WrongKindOfRun

from .data import ENSEMBLE_MEMBERS, lm_recipe, make_titles, recipe_dict, write_challenge_csv, write_corpus

TOLERANCE = 1e-4  # an export's answers against the run's
TIMINGS = ("fit_seconds", "preprocess_seconds", "read_seconds", "val/predict_seconds", "test/predict_seconds")
CENTRES = {"north": (0.0, 5.0), "south": (0.0, -5.0), "east": (5.0, 0.0)}


def write_points(path: Path, per_class: int = 40, seed: int = 0) -> Path:
    """Two number columns around three centres, the label the centre's name."""
    rng = random.Random(seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x", "y", "place"])
        for place, (x, y) in CENTRES.items():
            for _ in range(per_class):
                writer.writerow([round(x + rng.gauss(0, 1), 3), round(y + rng.gauss(0, 1), 3), place])
    return path


# ------------------------------------------------------------------------------------ the tiny data
def _classifier_recipe(kind: type[ModelType], folder: Path) -> tuple[dict[str, Any], pl.DataFrame]:
    """A recipe of the inputs the type reads (titles as text, else points as numbers), its sections at their
    defaults and a first encoder per input; and rows to ask it."""
    reads = kind.input_types
    if reads is None or "text" in reads:
        recipe = recipe_dict(write_challenge_csv(folder / "titles.csv", make_titles(30)), epochs=2)
        rows = pl.DataFrame({"title": ["Taladro percutor Bosch", "Zapatillas Nike running", "x", "Libro tapa dura"]})
    else:
        recipe = {"name": "points", "data": {"source": str(write_points(folder / "points.csv")),
                                             "split": {"train": 0.6, "validation": 0.2, "test": 0.2, "seed": 0}},
                  "inputs": [{"name": "x", "type": "number"}, {"name": "y", "type": "number"}],
                  "output": {"column": "place"}, "train": {"epochs": 2, "batch_size": 16, "seed": 3}}
        rows = pl.DataFrame({"x": [0.2, 5.1, -0.3, 40.0], "y": [4.8, 0.1, -5.2, 40.0]})
    from ensayo.features import FEATURES

    sections = {}
    for key, schema in kind.sections.items():
        sections[key] = {spec["name"]: {"type": next(iter(FEATURES[spec["type"]].encoders))}
                         for spec in recipe["inputs"]} if schema is None else {}
    recipe["model"] = {"type": kind.name, **sections}
    return recipe, rows


def _ensemble(folder: Path, recipe: dict[str, Any]) -> dict[str, Any]:
    """Two members (a network and a linear model) as recipe files beside the ensemble's."""
    members = []
    for name, model in ENSEMBLE_MEMBERS.items():
        member = {**recipe, "name": name, "inputs": recipe_dict(Path("unused"))["inputs"]}
        member["model"] = model if model["type"] != "neural" else recipe_dict(Path("unused"))["model"]
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(member))
        members.append(str(folder / f"{name}.yaml"))
    return {**recipe, "inputs": [], "model": {"type": "ensemble", "ensemble": {"members": members}}}


# the built-in types that need more than their sections' defaults (as scikit-learn's checks keep a table of
# constructor parameters per estimator)
EXAMPLES: dict[str, Callable[[Path, dict[str, Any]], dict[str, Any]]] = {"ensemble": _ensemble}


def example(name: str, folder: Path, model: dict[str, Any] | None = None) -> tuple[dict[str, Any], pl.DataFrame]:
    """A tiny recipe the model type trains on in seconds, and rows (or prompts) to ask the trained model."""
    kind = MODEL_TYPES[name]
    folder.mkdir(parents=True, exist_ok=True)
    if kind.output == "text":
        recipe = lm_recipe(write_corpus(folder / "news.csv", rows=60), level="word")  # its report writes words
        recipe["model"] = {"type": name, **(model or {})}
        recipe["train"] |= {"epochs": 2, "batch_size": 64}
        return recipe, pl.DataFrame({"prompt": ["The ", ""]})
    recipe, rows = _classifier_recipe(kind, folder)
    if name in EXAMPLES:
        recipe = EXAMPLES[name](folder, recipe)
    if model:
        recipe["model"] = {"type": name, **model}
    recipe["track"] = {"enabled": False}
    return recipe, rows


# ------------------------------------------------------------------------------------ the checks
def assert_model_type_contract(name: str, folder: Path, model: dict[str, Any] | None = None) -> None:
    """Every check of the contract for the registered model type `name`, its runs written under `folder`;
    `model` gives its `model` section where the defaults cannot train."""
    kind = MODEL_TYPES[name]
    recipe, rows = example(name, folder, model)
    recipe_file = folder / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe))
    assert ensayo.validate(recipe_file).recipe.model.type == name

    trained = ensayo.run(recipe_file, output=folder / "run", track=False)
    loaded = ensayo.load_run(trained.path)
    assert type(loaded.model) is type(trained.model) is kind, name
    _answers_alike(trained, loaded, rows)
    _exports(kind, loaded, rows, folder)
    _explains(loaded, rows)
    _resumes(kind, recipe_file, trained, rows, folder)
    _refuses_by_name(kind, loaded, rows, folder)


def _answer(run: SavedRun, rows: pl.DataFrame) -> Any:
    """What the run says to the rows: every class's probability, or each prompt's text (seeded)."""
    if run.can_predict:
        return run.predict_proba(rows)
    return ["".join(run.generate(prompt, length=40, seed=seed)) for seed, prompt in enumerate(rows["prompt"])]


def _answers_alike(trained: SavedRun, loaded: SavedRun, rows: pl.DataFrame) -> None:
    given, again = _answer(trained, rows), _answer(loaded, rows)
    if trained.can_predict:
        assert np.isfinite(given).all() and np.allclose(given.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(given, again, err_msg=f"{trained.model_type}: loaded answers differ")
    else:
        assert given == again and all(given), f"{trained.model_type}: the loaded model writes other text"


def _exports(kind: type[ModelType], run: SavedRun, rows: pl.DataFrame, folder: Path) -> None:
    import mlflow

    exported = mlflow.pyfunc.load_model(str(ensayo.export(run, "mlflow", folder / "mlflow").path))
    if run.can_predict:
        labels, probabilities = run.predict(rows)
        given = exported.predict(rows.to_pandas()).to_dict(orient="records")
        assert [list(r["labels"]) for r in given] == labels
        assert np.abs(np.array([list(r["probabilities"]) for r in given]) - probabilities).max() <= TOLERANCE
    else:
        settings = {"length": 40, "seed": 2}
        assert exported.predict(rows.to_pandas(), params=settings) == [
            "".join(run.generate(p, **settings)) for p in rows["prompt"]]
    if "onnx" in kind.capabilities() and hasattr(run.model, "export_onnx"):
        ensayo.export(run, "onnx", folder / "onnx")
        on_onnx = ensayo.load_run(folder / "onnx", "onnx")
        assert np.abs(on_onnx.predict_proba(rows) - run.predict_proba(rows)).max() <= TOLERANCE


def _explains(run: SavedRun, rows: pl.DataFrame) -> None:
    if not hasattr(run.model, "explain"):
        return
    explained = run.explain(rows)
    labels, probabilities = run.predict(rows, top_k=1)
    assert [row.predicted for row in explained] == [names[0] for names in labels]
    assert np.allclose([row.probability for row in explained], probabilities[:, 0], atol=1e-5)
    assert all(row.inputs for row in explained)


def _resumes(kind: type[ModelType], recipe_file: Path, trained: SavedRun, rows: pl.DataFrame, folder: Path) -> None:
    """Interrupted after its first epoch (or, fitted in one go, just before its report), then resumed: the run
    the uninterrupted one is."""
    stopped = folder / "stopped"

    def stop(record: dict[str, float]) -> None:
        raise KeyboardInterrupt

    if trained.history:
        with pytest.raises(KeyboardInterrupt):
            ensayo.run(recipe_file, output=stopped, track=False, on_epoch=stop)
    else:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(kind, "write_report", lambda self, run_dir: stop({}))
            with pytest.raises(KeyboardInterrupt):
                ensayo.run(recipe_file, output=stopped, track=False)
    resumed = ensayo.run(None, resume=stopped, track=False)
    scores = {k: v for k, v in resumed.metrics.items() if not k.endswith(TIMINGS)}
    expected = {k: v for k, v in trained.metrics.items() if not k.endswith(TIMINGS)}
    assert scores == expected, {k: (v, expected.get(k)) for k, v in scores.items() if v != expected.get(k)}
    again = ensayo.load_run(stopped)
    if trained.can_predict:
        np.testing.assert_array_equal(_answer(again, rows), _answer(trained, rows))
    else:
        assert _answer(again, rows) == _answer(trained, rows)


def _refuses_by_name(kind: type[ModelType], run: SavedRun, rows: pl.DataFrame, folder: Path) -> None:
    """What the type cannot do is refused in a sentence that names it."""
    asks: dict[str, Callable[[], object]] = {
        "predict": lambda: run.predict(rows), "generate": lambda: run.generate("x"),
        "explain": lambda: run.explain(rows), "onnx": lambda: ensayo.export(run, "onnx", folder / "no-onnx")}
    for capability in CAPABILITIES:
        if capability in kind.capabilities():
            continue
        said = refusal(kind, capability)
        assert said and f"model type {kind.name} " in said
        with pytest.raises((WrongKindOfRun, ValueError), match=f"model type {kind.name} "):
            asks[capability]()
