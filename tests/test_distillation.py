"""Distillation (`train.teacher`): a cross-validated teacher that holds out the student's test rows, the
student's copy of its teacher's out-of-fold probabilities, the loss that learns from them, resume, and the
refusals of teachers that cannot teach."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from helpers.cli import refused
from helpers.data import make_titles, recipe_dict, write_challenge_csv
from helpers.training import interrupt_training
from safetensors.torch import load_file

import ensayo
from ensayo import api, layout
from ensayo.data import DataError, load_splits
from ensayo.models import load_recipe
from ensayo.outputs import CategoryOutput, TeacherProbabilities, distillation_loss
from ensayo.recipe import RecipeError
from ensayo.runs import SavedRun
from ensayo.runs.teacher import run_identity
from ensayo.training import EncodedSplit

TFIDF = {"type": "tfidf_linear", "linear": {"word_ngrams": [1, 1], "char_ngrams": [2, 3]}}


def teacher_recipe(titles: Path, **split: Any) -> dict[str, Any]:
    """The tiny recipe's data and split (stratified 60 / 20 / 20, seed 1) cross-validated over 3 folds by a TF-IDF
    model, its validation and test rows held out."""
    recipe = {**recipe_dict(titles), "name": "tiny-teacher", "model": TFIDF}
    recipe["data"]["split"] = {"method": "stratified", "train": 0.6, "validation": 0.2, "test": 0.2, "folds": 3,
                               "seed": 1, "hold_out_test": True, **split}
    return recipe


def student_recipe(titles: Path, teacher: Path, **config: Any) -> dict[str, Any]:
    recipe = recipe_dict(titles, epochs=3)
    recipe["train"]["teacher"] = {"run": str(teacher), "weight": 0.7, "temperature": 2.0, **config}
    return recipe


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny titles, a teacher cross-validated on them, and a student of that teacher: read them, never write
    into them."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("taught")
    titles = write_challenge_csv(root / "titles.csv", make_titles(rows_per_class=40, seed=5))
    teacher = ensayo.run(teacher_recipe(titles), output=root / "teacher", track=False).path
    student = ensayo.run(student_recipe(titles, teacher), output=root / "student", track=False).path
    return {"titles": titles, "teacher": teacher, "student": student, "root": root}


def test_the_teacher_holds_out_the_students_test_rows_and_keeps_every_other_rows_probabilities(
        taught: dict[str, Path]) -> None:
    student = load_splits(load_recipe(student_recipe(taught["titles"], taught["teacher"])))
    with np.load(taught["teacher"] / layout.OUT_OF_FOLD_PROBABILITIES, allow_pickle=False) as stored:
        arrays = dict(stored)
    taught_lines = set(arrays["lines"].tolist())
    assert taught_lines == set(student.train["__line__"])
    assert not taught_lines & (set(student.test["__line__"]) | set(student.validation["__line__"]))
    report = json.loads((taught["teacher"] / layout.DATA_REPORT).read_text())
    assert report["held_out_rows"] == student.test.height
    metrics = json.loads((taught["teacher"] / layout.METRICS).read_text())
    assert 0 < metrics["held_out/balanced_accuracy"] <= 1
    assert metrics["held_out/balanced_accuracy_low"] <= metrics["held_out/balanced_accuracy_high"]
    # each row's probabilities are the ones of the fold model that held it out
    classes = arrays["classes"].tolist()
    for fold in range(3):
        fold_run = SavedRun.load(taught["teacher"] / layout.FOLDS / f"fold{fold}")
        tested = load_splits(fold_run.recipe).test
        expected = fold_run.predict_proba(tested)
        where = np.searchsorted(arrays["lines"], tested["__line__"].to_numpy())
        assert (arrays["lines"][where] == tested["__line__"].to_numpy()).all()
        for row, index in enumerate(where):
            for slot, column in enumerate(arrays["top_classes"][index]):
                name = classes[column]
                want = expected[row, fold_run.output.classes.index(name)] if name in fold_run.output.classes else 0
                assert arrays["top_probabilities"][index, slot] == pytest.approx(want, abs=1e-5)


def test_a_student_keeps_its_teachers_probabilities_of_its_training_rows_and_names_its_teacher(
        taught: dict[str, Path]) -> None:
    student, teacher = taught["student"], taught["teacher"]
    with np.load(student / layout.TEACHER, allow_pickle=False) as kept:
        lines = kept["lines"]
        assert str(kept["run_id"]) == run_identity(teacher)
    splits = load_splits(SavedRun.load(student).recipe)
    assert sorted(lines.tolist()) == sorted(splits.train["__line__"].to_list())
    record = json.loads((student / layout.TEACHER_RECORD).read_text())
    assert record["run"] == str(teacher.resolve()) and record["run_id"] == run_identity(teacher)
    assert record["teacher_metrics"]["held_out/balanced_accuracy"] > 0
    assert record["validation_rows_taught"] == 0  # held out of the teacher's folds, as the test rows are
    history = json.loads((student / layout.HISTORY).read_text())
    assert all(epoch["train/distilled_loss"] > 0 for epoch in history)
    assert SavedRun.load(student).metrics["test/balanced_accuracy"] > 0.5


def test_the_teacher_changes_what_the_student_learns(taught: dict[str, Path], tmp_path: Path) -> None:
    alone = recipe_dict(taught["titles"], epochs=3)
    ensayo.run(alone, output=tmp_path / "alone", track=False)
    with_teacher = load_file(str(taught["student"] / layout.WEIGHTS))
    without = load_file(str(tmp_path / "alone" / layout.WEIGHTS))
    assert any(not torch.allclose(with_teacher[key], without[key], atol=1e-4) for key in without)


def test_the_distillation_loss_is_the_cross_entropy_to_the_softened_teacher() -> None:
    torch.manual_seed(0)
    logits, teacher = torch.randn(4, 6), torch.softmax(torch.randn(4, 6), dim=-1)
    student = CategoryOutput("y").fit(list("abcdef"))
    probabilities = TeacherProbabilities("t", np.arange(4), np.array(list("abcdef")),
                                         np.tile(np.arange(6, dtype=np.int32), (4, 1)), teacher.numpy())
    targets = torch.from_numpy(probabilities.for_lines(np.arange(4), student, temperature=3.0))
    softened = teacher ** (1 / 3) / (teacher ** (1 / 3)).sum(dim=1, keepdim=True)
    expected = -(softened * torch.log_softmax(logits / 3, dim=-1)).sum(dim=1).mean() * 9
    assert distillation_loss(logits, targets, 3.0).item() == pytest.approx(expected.item(), rel=1e-5)
    # minimised where the student's softened probabilities are the teacher's
    matched = torch.log(softened) * 3
    assert distillation_loss(matched, targets, 3.0) < distillation_loss(logits, targets, 3.0)


def test_teacher_classes_the_student_lacks_are_dropped_and_missing_lines_are_named() -> None:
    student = CategoryOutput("y").fit(["a", "b"])
    probabilities = TeacherProbabilities("t", np.array([3, 7]), np.array(["a", "b", "c"]),
                                         np.array([[2, 0], [1, 2]], dtype=np.int32),
                                         np.array([[0.6, 0.3], [0.2, 0.7]], dtype=np.float32))
    targets = probabilities.for_lines(np.array([7, 3]), student, temperature=1.0)
    assert targets[0, :, 0].tolist() == [1, -1] and targets[0, :, 1].tolist() == pytest.approx([1.0, 0.0])
    assert targets[1, :, 0].tolist() == [-1, 0] and targets[1, :, 1].tolist() == pytest.approx([0.0, 1.0])
    with pytest.raises(DataError, match=r"no probabilities for 1 of the student's training rows \(lines 5\)"):
        probabilities.for_lines(np.array([3, 5]), student, temperature=1.0)


def test_an_interrupted_student_resumes_from_its_kept_probabilities_to_the_same_model(
        taught: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    teacher = tmp_path / "teacher"
    shutil.copytree(taught["teacher"], teacher)
    recipe = student_recipe(taught["titles"], teacher)
    ensayo.run(recipe, output=tmp_path / "whole", track=False)
    restore = interrupt_training(monkeypatch, EncodedSplit, at_batch=10)
    with pytest.raises(KeyboardInterrupt):
        ensayo.run(recipe, output=tmp_path / "cut", track=False)
    restore()
    assert (tmp_path / "cut" / layout.TEACHER).is_file() and (tmp_path / "cut" / layout.CHECKPOINT).is_file()
    shutil.rmtree(teacher)  # the student's copy is all it needs
    ensayo.run(None, resume=tmp_path / "cut", track=False)
    whole = load_file(str(tmp_path / "whole" / layout.WEIGHTS))
    resumed = load_file(str(tmp_path / "cut" / layout.WEIGHTS))
    for key in whole:
        torch.testing.assert_close(whole[key], resumed[key])


def test_a_student_whose_teacher_was_trained_again_does_not_resume(
        taught: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    teacher = tmp_path / "teacher"
    shutil.copytree(taught["teacher"], teacher)
    restore = interrupt_training(monkeypatch, EncodedSplit, at_batch=3)
    with pytest.raises(KeyboardInterrupt):
        ensayo.run(student_recipe(taught["titles"], teacher), output=tmp_path / "cut", track=False)
    restore()
    fmt = json.loads((teacher / layout.FORMAT).read_text())
    (teacher / layout.FORMAT).write_text(json.dumps({**fmt, "trained_at": "2030-01-01T00:00:00+00:00"}))
    with pytest.raises(RecipeError, match="no longer the run this student started learning from"):
        ensayo.run(None, resume=tmp_path / "cut", track=False)


def test_the_student_records_its_teacher_in_mlflow(taught: dict[str, Path], tmp_path: Path,
                                                   mlflow_db: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{mlflow_db}"
    recipe = student_recipe(taught["titles"], taught["teacher"])
    recipe["train"]["epochs"] = 1
    recipe["track"] = {"enabled": True, "uri": uri, "experiment": "distilled"}
    ensayo.run(recipe, output=tmp_path / "run", track=True)
    client = MlflowClient(uri)
    (found,) = client.search_runs([client.get_experiment_by_name("distilled").experiment_id])
    assert found.data.tags["ensayo.teacher"] == run_identity(taught["teacher"])
    assert found.data.params["train.teacher.run"] == str(taught["teacher"])
    assert "teacher.json" in {a.path for a in client.list_artifacts(found.info.run_id)}


# ------------------------------------------------------------------------------------------ refusals
def write(path: Path, recipe: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_missing_teacher_is_a_warning_to_validate_and_a_refusal_to_run_both_saying_how_to_make_it(
        taught: dict[str, Path], tmp_path: Path) -> None:
    maker = write(tmp_path / "teacher.yaml", teacher_recipe(taught["titles"]))
    recipe = student_recipe(taught["titles"], tmp_path / "not-yet", recipe="teacher.yaml")
    path = write(tmp_path / "student.yaml", recipe)
    checked = api.validate(path)
    assert any("not-yet is not made yet" in w and "ensayo run teacher.yaml --output not-yet" in w
               for w in checked.warnings)
    refused(["run", path], "train.teacher.run", "not-yet is not a saved run", "ensayo run teacher.yaml")
    assert not (tmp_path / "runs").exists()  # refused before anything was written
    assert maker.is_file()


@pytest.mark.parametrize(("teacher", "expected"), [
    ("language_model", "text generator; a teacher must be a classifier"),
    ("tfidf_linear", "was not cross-validated with data.split.hold_out_test"),
])
def test_teachers_that_cannot_teach_are_refused_by_validate(taught: dict[str, Path], tiny_runs: dict[str, Path],
                                                            tmp_path: Path, teacher: str, expected: str) -> None:
    path = write(tmp_path / "student.yaml", student_recipe(taught["titles"], tiny_runs[teacher]))
    refused(["validate", path], "the recipe's teacher cannot teach it", str(tiny_runs[teacher]), expected)


def test_a_cross_validated_teacher_that_trained_on_every_row_is_refused(taught: dict[str, Path],
                                                                        cv_run: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "student.yaml", student_recipe(taught["titles"], cv_run))
    refused(["validate", path], "memorised", "hold_out_test")


def test_a_teacher_of_other_classes_or_other_test_rows_is_refused(taught: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other-column"
    shutil.copytree(taught["teacher"], other)
    recipe = yaml.safe_load((other / layout.RECIPE).read_text())
    recipe["output"]["column"] = "label_quality"
    (other / layout.RECIPE).write_text(yaml.safe_dump(recipe))
    path = write(tmp_path / "student.yaml", student_recipe(taught["titles"], other))
    refused(["validate", path], "classes do not cover the student's", "column 'label_quality'")
    seeded = student_recipe(taught["titles"], taught["teacher"])
    seeded["data"]["split"]["seed"] = 2
    refused(["validate", write(tmp_path / "seeded.yaml", seeded)],
            "held out other rows than the student's split tests and validates on")


def test_a_teacher_whose_folds_saw_the_students_test_rows_is_refused_when_the_data_is_read(
        taught: dict[str, Path], tmp_path: Path) -> None:
    unfiltered = teacher_recipe(taught["titles"])
    unfiltered["data"]["filters"] = []  # other rows, so other held-out test rows
    teacher = ensayo.run(unfiltered, output=tmp_path / "teacher", track=False).path
    path = write(tmp_path / "student.yaml", student_recipe(taught["titles"], teacher))
    checked = api.validate(path)
    assert any("data.filters differ from the student's" in w for w in checked.warnings)
    with pytest.raises(DataError, match="fold models trained on .* of the student's .* test rows"):
        ensayo.run(path, output=tmp_path / "student", track=False)


def test_a_teacher_without_some_of_the_students_classes_is_refused(taught: dict[str, Path], tmp_path: Path) -> None:
    narrow = teacher_recipe(taught["titles"])
    narrow["data"]["filters"] = ["language == spanish", "category != TOYS"]
    teacher = ensayo.run(narrow, output=tmp_path / "teacher", track=False).path
    with pytest.raises(DataError, match=r"classes do not cover the student's: 1 training label\(s\) .*'TOYS'"):
        ensayo.run(student_recipe(taught["titles"], teacher), output=tmp_path / "student", track=False)


def test_only_a_network_learns_from_a_teacher_and_a_student_does_not_cross_validate(
        taught: dict[str, Path]) -> None:
    linear = {**student_recipe(taught["titles"], taught["teacher"]), "model": TFIDF}
    with pytest.raises(RecipeError, match="model.type tfidf_linear learns from labels only"):
        load_recipe(linear)
    folded = student_recipe(taught["titles"], taught["teacher"])
    folded["data"]["split"] = {"method": "stratified", "folds": 3, "validation": 0.25}
    with pytest.raises(RecipeError, match="a cross-validated student would test on rows its teacher trained on"):
        load_recipe(folded)


def test_the_bundled_student_validates_without_its_teacher_and_run_says_how_to_make_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    plain = write_challenge_csv(tmp_path / "titles.csv", make_titles(rows_per_class=8))
    (tmp_path / "data" / "meli").mkdir(parents=True)
    (tmp_path / "data" / "meli" / "spanish.csv.gz").write_bytes(gzip.compress(plain.read_bytes()))
    monkeypatch.setenv("ENSAYO_DATA", str(tmp_path / "data"))
    bundled = Path(__file__).resolve().parents[1] / "recipes" / "product-titles-distilled.yaml"
    checked = api.validate(bundled)
    assert any("product-titles-teacher is not made yet" in w and "recipes/product-titles-teacher.yaml" in w
               for w in checked.warnings)
    refused(["run", bundled, "--no-track"], "runs/product-titles-teacher is not a saved run",
            "make it with `ensayo run", "recipes/product-titles-teacher.yaml --output")


def test_a_teacher_split_that_is_not_a_whole_single_split_is_refused(taught: dict[str, Path]) -> None:
    with pytest.raises(RecipeError, match=r"hold_out_test: train \+ validation \+ test .* must add up to 1"):
        load_recipe(teacher_recipe(taught["titles"], train=0.5))
