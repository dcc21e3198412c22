"""Saved runs: one format for every model type, versioned, and runs saved before the version still load."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

import ensayo
from ensayo import layout
from ensayo.models import MODEL_TYPES
from ensayo.models.ensemble_schema import EnsembleConfig
from ensayo.models.language import LanguageModelConfig
from ensayo.models.linear import LinearConfig
from ensayo.recipe import HeadConfig, RecipeError
from ensayo.runs import SavedRun
from ensayo.store import read_json, write_json

TITLES = pl.DataFrame({"title": ["Taladro Bosch percutor 700 watts", "Novela tapa dura edicion 2",
                                 "Zapatillas Nike running talle 42"]})


def test_every_run_writes_its_format_and_loads_as_one_class(tiny_runs: dict[str, Path]) -> None:
    for kind, path in tiny_runs.items():
        written = read_json(path / layout.FORMAT)
        assert written == {"version": layout.FORMAT_VERSION, "model_type": kind, "trained_at": written["trained_at"]}
        saved = ensayo.load_run(path)
        assert saved.trained_at == written["trained_at"] and saved.run_id == path.name  # not tracked: its folder
        assert isinstance(saved, SavedRun) and saved.model_type == kind and saved.format_version == 2
        assert saved.can_generate == (kind == "language_model") and saved.can_predict == (kind != "language_model")
        assert saved.metrics and isinstance(saved.history, list)
    members = tiny_runs["ensemble"] / layout.MEMBERS
    assert {p.name for p in members.iterdir()} == {"member-bag", "member-tfidf"}


def test_a_run_refuses_what_its_model_type_cannot_do(tiny_runs: dict[str, Path]) -> None:
    with pytest.raises(TypeError, match=r"model type language_model does not predict classes \(use generate\)"):
        ensayo.load_run(tiny_runs["language_model"]).predict(TITLES)
    with pytest.raises(TypeError, match=r"model type neural does not generate text \(use predict\)"):
        ensayo.load_run(tiny_runs["neural"]).generate("Taladro")


def as_format_1(run_dir: Path) -> None:
    """Rewrite a run (and its members) the way ensayo 0.1.0 saved it: no format file, and every model type's
    section in the recipe, with their defaults, whatever the run's type."""
    for directory in [run_dir, *sorted((run_dir / layout.MEMBERS).glob("*"))]:
        (directory / layout.FORMAT).unlink()
        recipe = yaml.safe_load((directory / layout.RECIPE).read_text())
        defaults: dict[str, Any] = {"encoders": {}, "combiner": "concat", "head": HeadConfig().model_dump(mode="json"),
                                    "linear": LinearConfig().model_dump(mode="json"),
                                    "language_model": LanguageModelConfig().model_dump(mode="json"),
                                    "ensemble": EnsembleConfig().model_dump(mode="json")}
        recipe["model"] = {"type": recipe["model"]["type"], **defaults, **recipe["model"]}
        (directory / layout.RECIPE).write_text(yaml.safe_dump(recipe, sort_keys=False))


@pytest.mark.parametrize("kind", ["neural", "tfidf_linear", "ensemble", "language_model"])
def test_runs_saved_before_the_format_had_a_version_still_load_and_answer(kind: str, tiny_runs: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(tiny_runs[kind], old)
    as_format_1(old)
    assert set(yaml.safe_load((old / layout.RECIPE).read_text())["model"]) > set(MODEL_TYPES[kind].sections)
    loaded, current = ensayo.load_run(old), ensayo.load_run(tiny_runs[kind])
    assert loaded.format_version == 1 and loaded.recipe == current.recipe
    if kind == "language_model":
        assert "".join(loaded.generate("The bank", length=30, seed=1)) == \
            "".join(current.generate("The bank", length=30, seed=1))
    else:
        np.testing.assert_array_equal(loaded.predict_proba(TITLES), current.predict_proba(TITLES))


def test_a_run_of_a_newer_format_is_refused_by_name(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    newer = tmp_path / "newer"
    shutil.copytree(tiny_runs["neural"], newer)
    write_json(newer / layout.FORMAT, {"version": layout.FORMAT_VERSION + 1, "model_type": "neural"})
    with pytest.raises(RecipeError, match=f"{newer}: run format {layout.FORMAT_VERSION + 1} is newer"):
        ensayo.load_run(newer)


def test_a_folder_that_is_not_a_run_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: not a saved ensayo run"):
        ensayo.load_run(tmp_path)
