"""The ensemble model: members trained on one split, calibrated on validation, averaged in log space."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from helpers.data import recipe_dict
from scipy.special import log_softmax, softmax

import ensayo
from ensayo import metrics as ev
from ensayo.data import load_splits
from ensayo.models import load_recipe
from ensayo.models.ensemble import fit_weights
from ensayo.models.ensemble_schema import member_recipes, with_members
from ensayo.models.registry import run_recipe
from ensayo.recipe import RecipeError
from ensayo.runs import SavedRun
from ensayo.store import read_json


def test_fitted_weights_undo_a_flattening_and_ignore_noise() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 5))
    true = np.array([rng.choice(5, p=p) for p in softmax(logits, axis=1)])
    # one member: temperature scaling
    assert fit_weights([log_softmax(logits / 3, axis=1)], true)[0] == pytest.approx(3, rel=0.1)
    assert fit_weights([log_softmax(logits * 2, axis=1)], true)[0] == pytest.approx(0.5, rel=0.1)
    # two members: a flattened informative one keeps its scale, pure noise gets next to no weight
    noise = log_softmax(rng.normal(0, 2, (4000, 5)), axis=1)
    informative, useless = fit_weights([log_softmax(logits / 2, axis=1), noise], true)
    assert informative == pytest.approx(2, rel=0.15) and useless < 0.05


def write_members(folder: Path, titles_csv: Path) -> dict:
    linear = recipe_dict(titles_csv) | {"name": "svm", "model": {"type": "tfidf_linear"}}
    neural = recipe_dict(titles_csv, epochs=3) | {"name": "bag"}
    folder.mkdir()
    for member in (linear, neural):
        (folder / f"{member['name']}.yaml").write_text(yaml.safe_dump(member))
    ensemble = recipe_dict(titles_csv)
    del ensemble["inputs"]
    ensemble["name"] = "both"
    ensemble["model"] = {"type": "ensemble", "ensemble": {"members": ["svm.yaml", "bag.yaml"]}}
    (folder / "both.yaml").write_text(yaml.safe_dump(ensemble))
    return ensemble


@pytest.mark.slow
def test_an_ensemble_trains_its_members_and_averages_their_calibrated_scores(titles_csv: Path,
                                                                             tmp_path: Path) -> None:
    write_members(tmp_path / "recipes", titles_csv)
    saved = ensayo.run(tmp_path / "recipes" / "both.yaml", output=tmp_path / "run", track=False)
    members = {name: SavedRun.load(tmp_path / "run" / "members" / name) for name in ("svm", "bag")}
    metrics = saved.metrics
    assert metrics["test/balanced_accuracy"] >= 0.9
    assert metrics["members/svm/test/balanced_accuracy"] == members["svm"].metrics["test/balanced_accuracy"]
    # a linear SVM's scores lie within about +-1: their softmax is far too flat, and its temperature sharpens it
    assert members["svm"].model.temperature < 0.5
    assert [spec.name for spec in saved.recipe.inputs] == ["title"]  # the members' inputs, for reading rows

    table = pl.DataFrame({"title": ["Zapatillas Nike running talle 42", "Lego bloques juguete", "Taladro Bosch"]})
    pooled = softmax(sum(metrics[f"members/{name}/weight"] * np.log(run.predict_proba(table))
                         for name, run in members.items()), axis=1)
    expected = ev.temper(pooled, saved.model.temperature)  # the ensemble is calibrated too
    np.testing.assert_allclose(saved.predict_proba(table), expected, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(ensayo.load_run(tmp_path / "run").predict_proba(table), expected, rtol=1e-5, atol=1e-9)

    # interrupted after its first member: resuming keeps that member and trains the other
    first = (tmp_path / "run" / "members" / "svm" / "linear.safetensors").stat().st_mtime_ns
    (tmp_path / "run" / "metrics.json").unlink()
    second = tmp_path / "run" / "members" / "bag"
    (second / "metrics.json").unlink()
    resumed = ensayo.run(None, resume=tmp_path / "run", track=False)
    assert (tmp_path / "run" / "members" / "svm" / "linear.safetensors").stat().st_mtime_ns == first
    assert resumed.metrics["test/balanced_accuracy"] == pytest.approx(metrics["test/balanced_accuracy"])


@pytest.mark.slow
def test_a_cross_validated_ensemble_trains_its_members_on_each_fold_and_averages_the_folds(titles_csv: Path,
                                                                                           tmp_path: Path) -> None:
    ensemble = write_members(tmp_path / "recipes", titles_csv)
    ensemble["data"]["split"] |= {"folds": 3, "validation": 0.2}
    saved = ensayo.run(ensemble, base=tmp_path / "recipes", output=tmp_path / "run", track=False)
    tests = []
    for fold in range(3):
        folder = tmp_path / "run" / "folds" / f"fold{fold}"
        splits = load_splits(run_recipe(folder))
        tests.append(set(splits.test["__line__"].to_list()))
        for name in ("svm", "bag"):  # each member trained on this fold's split, not on its own recipe's
            member = run_recipe(folder / "members" / name)
            assert member.data.split.fold == fold and member.data.split.folds == 3
            assert read_json(folder / "members" / name / "metrics.json")["test/balanced_accuracy"] == \
                read_json(folder / "metrics.json")[f"members/{name}/test/balanced_accuracy"]
    assert not any(a & b for i, a in enumerate(tests) for b in tests[i + 1:])
    out_of_fold = pl.read_csv(tmp_path / "run" / "out_of_fold.csv")
    assert sorted(out_of_fold["line"].to_list()) == sorted(set().union(*tests))
    assert saved.metrics["cv/balanced_accuracy_mean"] >= 0.9
    table = pl.DataFrame({"title": ["Zapatillas Nike running talle 42", "Lego bloques juguete", "Taladro Bosch"]})
    folds = [ensayo.load_run(tmp_path / "run" / "folds" / f"fold{k}") for k in range(3)]
    np.testing.assert_allclose(ensayo.load_run(tmp_path / "run").predict_proba(table),
                               np.mean([fold.predict_proba(table) for fold in folds], axis=0), atol=1e-7)


def test_ensemble_recipes_are_checked(titles_csv: Path, tmp_path: Path) -> None:
    ensemble = write_members(tmp_path / "recipes", titles_csv)
    base = tmp_path / "recipes"
    ensemble["model"]["ensemble"]["members"] = ["svm.yaml"]
    with pytest.raises(RecipeError, match="two or more member recipes"):
        load_recipe(ensemble)
    ensemble["model"]["ensemble"]["members"] = ["svm.yaml", "bag.yaml"]
    ensemble["data"]["split"].update(train=0.8, validation=0.0)
    with pytest.raises(RecipeError, match="fits its members' weights on a validation split"):
        load_recipe(ensemble)
    ensemble["data"]["split"].update(train=0.6, validation=0.2)
    ensemble["model"]["ensemble"]["members"] = ["svm.yaml", "missing.yaml"]
    with pytest.raises(RecipeError, match=r"members.1 \(missing.yaml\).*not found"):
        ensayo.run(ensemble, base=base, output=tmp_path / "run", track=False)
    ensemble["model"]["ensemble"]["members"] = ["svm.yaml", "bag.yaml"]
    other = yaml.safe_load((base / "bag.yaml").read_text())
    other["output"]["auxiliary"] = [{"column": "price"}]  # a member's own side targets: still the same label
    (base / "bag.yaml").write_text(yaml.safe_dump(other))
    assert member_recipes(load_recipe(ensemble), base)[1].output.auxiliary[0].column == "price"
    other["output"]["column"] = "language"
    (base / "bag.yaml").write_text(yaml.safe_dump(other))
    with pytest.raises(RecipeError, match="its output \\('language'\\) is not the ensemble's \\('category'\\)"):
        ensayo.run(ensemble, base=base, output=tmp_path / "run", track=False)
    assert not (tmp_path / "run").exists()


def test_an_ensemble_reads_the_columns_its_members_derive(titles_csv: Path, tmp_path: Path) -> None:
    ensemble = write_members(tmp_path / "recipes", titles_csv)
    base = tmp_path / "recipes"
    joined = yaml.safe_load((base / "bag.yaml").read_text())
    joined["derive"] = [{"name": "text", "join": ["title", "language"]}]
    joined["inputs"] = [{"name": "text", "type": "text"}]
    joined["model"]["encoders"] = {"text": joined["model"]["encoders"].pop("title")}
    (base / "bag.yaml").write_text(yaml.safe_dump(joined))
    ensemble["derive"] = [{"name": "shout", "join": ["category", "category"]}]
    resolved = with_members(load_recipe(ensemble), base)
    assert [spec.name for spec in resolved.inputs] == ["title", "text"]
    assert {d.name for d in resolved.derive} == {"shout", "text"}
    members = {m.name: m for m in member_recipes(resolved, base)}
    assert {d.name for d in members["bag"].derive} == {"shout", "text"}
    assert members["svm"].data == resolved.data and not members["svm"].track.enabled
