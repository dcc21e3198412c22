"""A student's teacher (`train.teacher`): which saved runs may teach, and the teacher's probabilities of the
student's training rows, taken once from the teacher's out-of-fold probabilities and kept in the student's run.

A teacher must not hand a student its memorised answers: each training row's probabilities must come from a
model that did not train on that row, and no teacher model may have trained on the rows the student tests or
validates on. A cross-validated run with `data.split.hold_out_test` is exactly that: it holds out the test and
validation rows of the student's split (same method, shares and seed) and predicts each of the student's
training rows with the fold model that held it out. Its rows are matched to the student's by line of the same
data file (checked by the file's digest)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from ensayo import layout
from ensayo.data import FILE, LINE, DataError, Splits
from ensayo.models import run_recipe
from ensayo.recipe import Recipe, RecipeError, expand_path
from ensayo.store import atomic_path, read_json, write_json

if TYPE_CHECKING:
    from ensayo.outputs.teacher import TeacherProbabilities

SAME_ROWS = ("filters", "sample", "limit")  # the data keys that decide which rows a split has


def teacher_dir(recipe: Recipe, base: Path | None) -> Path:
    assert recipe.train.teacher is not None
    return shown(expand_path(recipe.train.teacher.run, base))


def shown(path: Path) -> Path:
    """A path as a person would type it: from the current folder when it is under it."""
    path = path.resolve()
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def how_to_make(recipe: Recipe, base: Path | None) -> str:
    """What to run to make the recipe's missing teacher."""
    assert recipe.train.teacher is not None
    path, maker = teacher_dir(recipe, base), recipe.train.teacher.recipe
    if maker:
        return f"make it with `ensayo run {shown(expand_path(maker, base))} --output {path}`"
    return ("make it by running a classifier recipe with the student's data and split, cross-validated "
            f"(data.split.folds: 5, hold_out_test: true), with --output {path}")


def teacher_problems(recipe: Recipe, base: Path | None) -> list[str]:
    """Why the recipe's teacher cannot teach it, read from the teacher's run without the student's data: a
    missing run (with how to make it), a text generator, a run whose probabilities of the training rows would be
    memorised, or classes that are not the student's."""
    path = teacher_dir(recipe, base)
    if not (path / layout.RECIPE).is_file():
        return [f"train.teacher.run: {path} is not a saved run; {how_to_make(recipe, base)}"]
    teacher = run_recipe(path)
    if teacher.output.type != "category":
        return [f"train.teacher.run: {path} is a {teacher.model.type} text generator; a teacher must be a "
                "classifier"]
    split, mine = teacher.data.split, recipe.data.split
    if not split.folds or not split.hold_out_test:
        return [f"train.teacher.run: {path} was not cross-validated with data.split.hold_out_test, so its "
                "probabilities of the student's training rows would be memorised (or its models trained on the "
                f"student's test rows); {how_to_make(recipe, base)}"]
    problems = []
    if not (path / layout.METRICS).is_file():
        problems.append(f"train.teacher.run: {path} has not finished; finish it with `ensayo run --resume {path}`")
    elif not (path / layout.OUT_OF_FOLD_PROBABILITIES).is_file():
        problems.append(f"train.teacher.run: {path} has no {layout.OUT_OF_FOLD_PROBABILITIES} (made by ensayo "
                        f"before distillation); run its recipe again")
    if teacher.output.column != recipe.output.column or _derived(teacher) != _derived(recipe):
        problems.append(f"train.teacher.run: {path}'s classes do not cover the student's: it classifies column "
                        f"{teacher.output.column!r}, the student {recipe.output.column!r}")
    rule = ("method", "train", "validation", "test", "seed", "group_column")
    if any(getattr(split, key) != getattr(mine, key) for key in rule):
        problems.append(f"train.teacher.run: {path} held out other rows than the student's split tests and "
                        "validates on "
                        f"(data.split {', '.join(rule)}: teacher "
                        f"{', '.join(str(getattr(split, key)) for key in rule)}, student "
                        f"{', '.join(str(getattr(mine, key)) for key in rule)})")
    return problems


def _derived(recipe: Recipe) -> Any:
    """How the label is derived (binned from another column), if it is."""
    return [d.model_dump() for d in recipe.derive if d.name == recipe.output.column]


def teacher_warnings(recipe: Recipe, base: Path | None) -> list[str]:
    """What is checked only once the student's rows are read: rows chosen otherwise than the teacher's."""
    path = teacher_dir(recipe, base)
    if not (path / layout.RECIPE).is_file():
        return []
    teacher = run_recipe(path).data
    differing = [key for key in SAME_ROWS if getattr(teacher, key) != getattr(recipe.data, key)]
    if teacher.source != recipe.data.source:
        differing.insert(0, "source")
    if not differing:
        return []
    return [f"train.teacher: the teacher's data.{', data.'.join(differing)} differ from the student's; its rows "
            "are matched to the student's by line when the run reads its data"]


def check_teacher(recipe: Recipe, base: Path | None) -> None:
    """Refuse, before any data is read, a teacher that cannot teach this recipe."""
    problems = teacher_problems(recipe, base)
    if problems:
        raise RecipeError("\n".join(problems))


def teacher_for(recipe: Recipe, base: Path | None, run_dir: Path, splits: Splits) -> TeacherProbabilities:
    """The teacher's probabilities of the student's training rows: kept in the run (`layout.TEACHER`) the first
    time, read back from it when the run resumes (the teacher run may be gone by then; if it is there, it must
    be the same run)."""
    from ensayo.outputs.teacher import TeacherProbabilities  # here: validating a student's recipe needs no torch
    from ensayo.runs.folds import file_digest

    config = recipe.train.teacher
    assert config is not None
    kept = run_dir / layout.TEACHER
    if kept.is_file():
        with np.load(kept, allow_pickle=False) as arrays:
            teacher = TeacherProbabilities.from_arrays(dict(arrays))
        recorded = read_json(run_dir / layout.TEACHER_RECORD)
        path = Path(recorded["run"])
        if (path / layout.RECIPE).is_file() and run_identity(path) != teacher.run_id:
            raise RecipeError(f"train.teacher.run: {path} is no longer the run this student started learning from "
                              f"({teacher.run_id}, now {run_identity(path)}); train the student again")
        return teacher
    check_teacher(recipe, base)
    path = teacher_dir(recipe, base).resolve()
    with np.load(path / layout.OUT_OF_FOLD_PROBABILITIES, allow_pickle=False) as arrays:
        stored = dict(arrays)
    source = _source_file(splits)
    if str(stored["source_digest"]) != file_digest(source):
        raise DataError(f"train.teacher.run: {path} learnt from another file than {source} (its digest differs); "
                        "a teacher's rows are matched to the student's by line of the same file")
    _refuse_uncovered_classes(path, stored["classes"], splits, recipe)
    order = np.argsort(stored["lines"], kind="stable")
    lines = stored["lines"][order]
    _refuse_taught_test_rows(path, lines, splits.test)
    train_lines = np.sort(splits.train[LINE].to_numpy().astype(np.int64))
    where = np.clip(np.searchsorted(lines, train_lines), 0, len(lines) - 1)
    keep = order[where[lines[where] == train_lines]]  # the student's training rows the teacher has
    # validation rows a teacher's folds trained on (none, with the same split): its probabilities of near-duplicate
    # training rows would carry their labels, and the student's validation figures would be optimistic
    taught_validation = int(np.isin(splits.validation[LINE].to_numpy().astype(np.int64), lines).sum())
    teacher = TeacherProbabilities(run_identity(path), stored["lines"][keep], stored["classes"],
                                   stored["top_classes"][keep], stored["top_probabilities"][keep])
    with atomic_path(kept) as temporary, open(temporary, "wb") as file:
        np.savez_compressed(file, **teacher.arrays())
    write_json(run_dir / layout.TEACHER_RECORD, {
        "run": str(path), "run_id": teacher.run_id, "weight": config.weight, "temperature": config.temperature,
        "rows": len(keep), "validation_rows_taught": taught_validation,
        "source_digest": str(stored["source_digest"]),
        "teacher_metrics": _teacher_figures(path)})
    return teacher


def run_identity(path: Path) -> str:
    """A run's MLflow id, else its folder's name and when it finished training."""
    tracking = path / layout.TRACKING
    run_id = read_json(tracking).get("run_id") if tracking.is_file() else None
    if run_id:
        return str(run_id)
    finished = read_json(path / layout.FORMAT).get("trained_at") if (path / layout.FORMAT).is_file() else None
    return f"{path.name}@{finished or (path / layout.METRICS).stat().st_mtime}"


def _source_file(splits: Splits) -> str:
    if FILE not in splits.train.columns or not splits.train.height:
        raise DataError("train.teacher: the student's rows carry no data file to match the teacher's lines to")
    return str(splits.train[FILE][0])


def _refuse_uncovered_classes(path: Path, classes: np.ndarray, splits: Splits, recipe: Recipe) -> None:
    labels = set(splits.train[recipe.output.column or ""].cast(pl.String).unique().to_list())
    uncovered = sorted(labels - set(classes.tolist()))
    if uncovered:
        raise DataError(f"train.teacher.run: {path}'s classes do not cover the student's: {len(uncovered)} training "
                        f"label(s) it never predicts ({', '.join(map(repr, uncovered[:5]))}"
                        f"{', ...' if len(uncovered) > 5 else ''})")


def _refuse_taught_test_rows(path: Path, teacher_lines: np.ndarray, test: pl.DataFrame) -> None:
    test_lines = test[LINE].to_numpy().astype(np.int64)
    taught = np.isin(test_lines, teacher_lines)
    if taught.any():
        raise DataError(f"train.teacher.run: {path}'s fold models trained on {int(taught.sum()):,} of the student's "
                        f"{len(test_lines):,} test rows (lines {', '.join(map(str, test_lines[taught][:5].tolist()))}"
                        "...), so the student's test score would not be honest; the teacher's split must hold out "
                        "the student's test rows (the same data, method, test share and seed)")


def _teacher_figures(path: Path) -> dict[str, float]:
    """The teacher's own scores, for the student's record: its held-out test rows' and its out-of-fold ones."""
    metrics = read_json(path / layout.METRICS) if (path / layout.METRICS).is_file() else {}
    keys = ("held_out/balanced_accuracy", "held_out/accuracy", "test/balanced_accuracy", "fit_seconds")
    return {key: float(metrics[key]) for key in keys if key in metrics}
