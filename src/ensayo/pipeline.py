"""One recipe end to end: table -> features -> model -> trainer -> evaluator -> tracker -> saved run."""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from rich.console import Console

from ensayo import ensemble, runs
from ensayo import evaluate as ev
from ensayo import language as lm
from ensayo.config import Recipe, load_recipe
from ensayo.data import DataReport, Splits, load_splits
from ensayo.features import Feature
from ensayo.features.category import CategoryOutput
from ensayo.features.number import auxiliary_targets
from ensayo.linear import LinearTextModel
from ensayo.model import build_model, count_parameters
from ensayo.tracking import Tracker
from ensayo.trainer import (
    BEST_WEIGHTS,
    CHECKPOINT,
    Trainer,
    encode_split,
    pick_device,
    save_weights,
    seed_everything,
)

TRACKING_FILE = "tracking.json"
EpochCallback = Callable[[dict[str, float]], None]


def _epoch_logger(tracker: Tracker, then: EpochCallback | None) -> EpochCallback:
    """Each epoch's record to MLflow, then to the caller's callback (a study's pruner)."""

    def on_epoch(record: dict[str, float]) -> None:
        tracker.log_metrics({k: v for k, v in record.items() if k != "epoch"}, int(record["epoch"]))
        if then:
            then(record)

    return on_epoch


def _labels(table: pl.DataFrame, recipe: Recipe) -> list[str]:
    return table[recipe.output.column].cast(pl.String).to_list()


class Experiment:
    """The state of one run while it is being made; `run()` below is the public entry point."""

    def __init__(self, recipe: Recipe, run_dir: Path, tracker: Tracker, console: Console) -> None:
        self.recipe = recipe
        self.run_dir = run_dir
        self.tracker = tracker
        self.console = console
        # an ensemble's inputs are its members' to prepare: it fits no feature of its own
        self.features: list[Feature] = [] if recipe.model.type == "ensemble" else runs.make_features(recipe)
        self.output = CategoryOutput(recipe.output.column)
        self.test_predictions: tuple[list[str], list[str]] | None = None  # (true, predicted) for the report
        self.on_epoch: EpochCallback | None = None
        self.derived: dict[str, list[float]] = {}  # bin edges fitted on the training split
        self.train_columns: dict[str, Any] | None = None  # the training split as encoded while fitting
        self.base: Path | None = None  # the recipe's folder: relative paths in it start there

    def train(self, splits: Splits, resume: bool) -> tuple[dict[str, float], list[dict[str, float]]]:
        self.fit_preprocessing(splits, resume)
        if self.recipe.model.type == "tfidf_linear":
            return self.train_linear(splits)
        if self.recipe.model.type == "ensemble":
            return self.train_ensemble(splits, resume)
        return self.train_neural(splits, resume)

    # -------------------------------------------------------------------------------------- stages
    def fit_preprocessing(self, splits: Splits, resume: bool) -> None:
        state_file = self.run_dir / runs.STATE
        if resume and state_file.is_file():
            state = runs.read_json(state_file)
            for feature in self.features:
                feature.load_state(state["inputs"][feature.name])
            self.output = CategoryOutput.from_state(state["output"])
            self.derived = state.get("derived", {})
            return
        self.output.fit(_labels(splits.train, self.recipe))
        self.derived = splits.bins.state() if splits.bins else {}
        if self.recipe.model.type in ("tfidf_linear", "ensemble"):
            return  # the vectorizers are fitted with the classifier; an ensemble's members fit their own
        columns: dict[str, Any] = {}
        for feature in self.features:
            with self.console.status(f"fitting {feature.type_name} input {feature.name!r}"):
                columns[feature.name] = feature.fit_transform(splits.train[feature.column].to_list())
            described = ", ".join(f"{k} {v}" for k, v in feature.describe().items())
            self.console.print(f"  {feature.name}: {described}")
        self.train_columns = columns
        runs.save_state(self.run_dir, self.features, self.output, {"derived": self.derived})

    def train_neural(self, splits: Splits, resume: bool) -> tuple[dict[str, float], list[dict[str, float]]]:
        recipe = self.recipe
        device = pick_device(recipe.train.device)
        # auxiliary targets are learned from the training rows only; evaluating and predicting do not need them
        targets = auxiliary_targets(splits.train, recipe.output.auxiliary) if recipe.output.auxiliary else None
        encoded = {name: encode_split(self.features, table, self.output.transform(_labels(table, recipe)),
                                      targets if name == "train" else None,
                                      self.train_columns if name == "train" else None)
                   for name, table in splits.items()}
        model = build_model(recipe, self.features, len(self.output))
        sizes = count_parameters(model)
        self.console.print(f"model: {sizes['total']:,} parameters ({sizes['trainable']:,} trainable) on {device}")
        trainer = Trainer(model, recipe.train, self.run_dir, device, self.console)
        if resume and trainer.load_checkpoint():
            self.console.print(f"resuming after epoch {trainer.state.epoch}, "
                               f"step {trainer.state.step_in_epoch} of the next")
        validation = encoded["validation"]
        val_true = _labels(splits.validation, recipe)

        def evaluate(current: torch.nn.Module) -> dict[str, float]:
            probabilities = runs.predict_proba(current, validation, recipe.train.eval_batch_size)
            return ev.score(probabilities, val_true, self.output, "val/")

        state = trainer.fit(encoded["train"], evaluate if len(validation) else None,
                            _epoch_logger(self.tracker, self.on_epoch))
        save_weights(trainer.model, self.run_dir / runs.WEIGHTS)
        metrics = {"fit_seconds": state.fit_seconds, "best_epoch": float(state.best_epoch),
                   "train/loss": state.history[-1]["train/loss"] if state.history else float("nan")}
        size = recipe.train.eval_batch_size
        scores = self._score_splits(splits, lambda name, _: runs.predict_proba(trainer.model, encoded[name], size))
        return metrics | scores, state.history

    def train_linear(self, splits: Splits) -> tuple[dict[str, float], list[dict[str, float]]]:
        model = LinearTextModel(self.features, self.recipe.model.linear, self.recipe.train.seed)  # type: ignore[arg-type]
        train_true = _labels(splits.train, self.recipe)
        with self.console.status("fitting the vectorizers and the linear classifier"):
            train_probabilities = model.fit(splits.train, self.output.transform(train_true))
        self.console.print(f"  {model.n_features:,} sparse features, fit in {model.fit_seconds:.1f} s")
        model.save(self.run_dir)
        runs.save_state(self.run_dir, self.features, self.output, {"linear": model.state(), "derived": self.derived})
        metrics = {"fit_seconds": model.fit_seconds,
                   "train/loss": ev.log_loss(train_probabilities, self.output.transform(train_true))}
        metrics |= self._score_splits(splits, lambda _, table: model.predict_proba(table))
        return metrics, []

    def train_ensemble(self, splits: Splits, resume: bool) -> tuple[dict[str, float], list[dict[str, float]]]:
        """Train (or, resuming, finish or reuse) each member in `members/<name>`, fit the members' weights on
        the validation split, then score the pooled model like any other."""
        metrics: dict[str, float] = {"fit_seconds": 0.0}
        members: list[runs.SavedRun] = []
        for member in ensemble.member_recipes(self.recipe, self.base):
            member_dir = self.run_dir / ensemble.MEMBERS / member.name
            self.console.rule(f"member {member.name}")
            if (member_dir / runs.METRICS).is_file():
                saved = runs.SavedRun.load(member_dir)
            elif resume and (member_dir / runs.RECIPE).is_file():
                saved = run(member, track=False, resume=member_dir, console=self.console, base=self.base)
            else:
                saved = run(member, output=member_dir, track=False, console=self.console, base=self.base)
            assert isinstance(saved, runs.SavedRun)
            members.append(saved)
            metrics["fit_seconds"] += saved.metrics["fit_seconds"]
            for key in ("test/balanced_accuracy", "val/balanced_accuracy", "fit_seconds"):
                metrics[f"{ensemble.MEMBERS}/{saved.recipe.name}/{key}"] = saved.metrics[key]
        if members[0].output.classes != self.output.classes:
            raise ValueError(f"the members' classes differ from the ensemble's training labels ({self.run_dir})")
        val_true = self.output.transform(_labels(splits.validation, self.recipe))
        started = time.perf_counter()
        val_log_probabilities = [ensemble.member_log_probabilities(m, splits.validation) for m in members]
        weights = ensemble.fit_weights(val_log_probabilities, val_true)
        for member, weight in zip(members, weights, strict=True):
            metrics[f"{ensemble.MEMBERS}/{member.recipe.name}/weight"] = weight
        model = ensemble.EnsembleModel(members, weights)
        metrics["fit_seconds"] += time.perf_counter() - started
        runs.save_state(self.run_dir, [], self.output, {"ensemble": model.state(), "derived": self.derived})
        train_true = self.output.transform(_labels(splits.train, self.recipe))
        metrics["train/loss"] = ev.log_loss(model.predict_proba(splits.train), train_true)
        pooled_validation = model.pool(val_log_probabilities)  # the members have just scored these rows
        metrics |= self._score_splits(splits, lambda name, table: pooled_validation if name == "validation"
                                      else model.predict_proba(table))
        return metrics, []

    def _score_splits(self, splits: Splits, predict: Callable[[str, pl.DataFrame], np.ndarray]) -> dict[str, float]:
        """Final metrics of the validation and test splits; `predict(split_name, table)` gives probabilities."""
        metrics: dict[str, float] = {}
        for name, prefix in (("validation", "val/"), ("test", "test/")):
            table = getattr(splits, name)
            if table.height == 0:
                continue
            started = time.perf_counter()
            probabilities = predict(name, table)
            true = _labels(table, self.recipe)
            metrics |= ev.score(probabilities, true, self.output, prefix)
            metrics[f"{prefix}predict_seconds"] = time.perf_counter() - started
            if name == "test" or self.test_predictions is None:
                self.test_predictions = (true, self.output.inverse(probabilities.argmax(axis=1)))
        return metrics

    def write_report(self, metrics: dict[str, float], history: list[dict[str, float]], report: DataReport) -> None:
        run_dir = self.run_dir
        runs.write_json(run_dir / runs.METRICS, dict(sorted(metrics.items())))
        runs.write_json(run_dir / runs.HISTORY, history)
        runs.write_json(run_dir / "data_report.json", report.to_dict())
        if history:
            ev.plot_learning_curves(history, run_dir / "learning_curves.png")
        if self.test_predictions:
            true, predicted = self.test_predictions
            ev.plot_confusion(true, predicted, run_dir / "confusion.png")
            (run_dir / "confusion.txt").write_text(ev.confusion_text(true, predicted) + "\n")
            with open(run_dir / "per_class.csv", "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=["label", "precision", "recall", "f1", "support"])
                writer.writeheader()
                writer.writerows(ev.per_class_report(true, predicted))


class LanguageExperiment:
    """A text output: tokenizer fitted on the training documents, a language model trained by the same
    Trainer (checkpoints, resume, early stopping), bits per character on validation and test, samples."""

    SAMPLE_PROMPTS = ("The ", "Stocks ")

    def __init__(self, recipe: Recipe, run_dir: Path, tracker: Tracker, console: Console) -> None:
        self.recipe = recipe
        self.run_dir = run_dir
        self.tracker = tracker
        self.console = console
        self.on_epoch: EpochCallback | None = None

    def train(self, splits: Splits, resume: bool) -> tuple[dict[str, float], list[dict[str, float]]]:
        recipe, output = self.recipe, self.recipe.output
        texts = {name: lm.documents(table, output) for name, table in splits.items()}
        state_file = self.run_dir / runs.STATE
        if resume and state_file.is_file():
            tokenizer = lm.Tokenizer.from_state(runs.read_json(state_file)["output"])
        else:
            tokenizer = lm.Tokenizer.fit(texts["train"], output)
            runs.write_json(state_file, {"inputs": {}, "output": tokenizer.state()})
        spelling = lm.Spelling(tokenizer.rare_words(texts["train"]))
        windows = {}
        for name, documents in texts.items():
            stream, characters = tokenizer.stream(documents)
            spelling_bits = spelling.bits(tokenizer.unknown_words(documents))
            windows[name] = lm.TokenWindows(stream, output.context, characters, spelling_bits)
        self.console.print(f"  {output.level} vocabulary {len(tokenizer):,}; training stream "
                           f"{len(windows['train'].stream):,} tokens in {len(windows['train']):,} windows")
        device = pick_device(recipe.train.device)
        model = lm.build_language_model(recipe, len(tokenizer))
        sizes = count_parameters(model)
        architecture = recipe.model.language_model.architecture
        self.console.print(f"model: {architecture}, {sizes['total']:,} parameters on {device}")
        trainer = Trainer(model, recipe.train, self.run_dir, device, self.console)
        if resume and trainer.load_checkpoint():
            self.console.print(f"resuming after epoch {trainer.state.epoch}, step {trainer.state.step_in_epoch}")
        size = recipe.train.eval_batch_size
        validation = windows["validation"]

        def evaluate(current: torch.nn.Module) -> dict[str, float]:
            return lm.language_metrics(current, validation, size, "val/")

        state = trainer.fit(windows["train"], evaluate if len(validation) else None,
                            _epoch_logger(self.tracker, self.on_epoch))
        save_weights(trainer.model, self.run_dir / runs.WEIGHTS)
        metrics = {"fit_seconds": state.fit_seconds, "best_epoch": float(state.best_epoch),
                   "train/loss": state.history[-1]["train/loss"] if state.history else float("nan"),
                   "parameters": float(sizes["total"]), "vocabulary": float(len(tokenizer))}
        for name, prefix in (("validation", "val/"), ("test", "test/")):
            if len(windows[name]):
                metrics |= lm.language_metrics(trainer.model, windows[name], size, prefix)
        return metrics, state.history

    def write_report(self, metrics: dict[str, float], history: list[dict[str, float]], report: DataReport) -> None:
        runs.write_json(self.run_dir / runs.METRICS, dict(sorted(metrics.items())))
        runs.write_json(self.run_dir / runs.HISTORY, history)
        runs.write_json(self.run_dir / "data_report.json", report.to_dict())
        if history:
            ev.plot_learning_curves(history, self.run_dir / "learning_curves.png", metric="bits_per_char")
        generator = lm.GeneratorRun.load(self.run_dir)
        samples = []
        for seed, prompt in enumerate(self.SAMPLE_PROMPTS):
            text = "".join(generator.generate(prompt, length=300 if self.recipe.output.level == "char" else 60,
                                              temperature=0.8, seed=seed))
            samples.append(f"--- prompt {prompt!r}, temperature 0.8, seed {seed}\n{prompt}{text}\n")
        (self.run_dir / "samples.txt").write_text("\n".join(samples))


def _set_threads(recipe: Recipe) -> None:
    threads = recipe.train.threads or int(os.environ.get("ENSAYO_THREADS", "0")) or None
    if threads:
        torch.set_num_threads(threads)


def run(recipe: Recipe | str | Path | dict, output: str | Path | None = None, overrides: list[str] | None = None,
        track: bool = True, resume: str | Path | None = None, console: Console | None = None,
        base: Path | None = None, parent_id: str | None = None, tags: dict[str, str] | None = None,
        on_epoch: EpochCallback | None = None) -> runs.SavedRun | lm.GeneratorRun:
    """Train, evaluate, track and save one recipe; returns the saved run.

    With `resume`, continue the interrupted run in that directory from its last checkpoint. A study
    passes its MLflow `parent_id` and `tags`, and `on_epoch` (which may raise to stop the run).
    """
    console = console or Console(stderr=True)
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / runs.RECIPE).is_file():
            raise FileNotFoundError(f"{run_dir}: no {runs.RECIPE}; not a run directory to resume")
        if (run_dir / runs.METRICS).is_file():
            raise ValueError(f"{run_dir}: this run has finished (it has {runs.METRICS}); nothing to resume")
        recipe = load_recipe(run_dir / runs.RECIPE)
    else:
        if isinstance(recipe, dict):
            recipe = load_recipe(recipe, overrides)
        elif not isinstance(recipe, Recipe):
            base = base or Path(recipe).resolve().parent
            recipe = load_recipe(recipe, overrides)
        if recipe.model.type == "ensemble":
            recipe = ensemble.resolve(recipe, base)
        run_dir = Path(output) if output else runs.new_run_dir(recipe)
    _set_threads(recipe)
    seed_everything(recipe.train.seed)
    splits = load_splits(recipe, base)  # before the run directory exists: bad data leaves no half run
    if resume is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        runs.save_recipe(recipe, run_dir)
    console.print(f"[bold]{recipe.name}[/]: run directory {run_dir}")
    for line in splits.report.summary_lines():
        console.print(f"  {line}")

    tracker = Tracker(recipe.track, enabled=track)
    tracking_file = run_dir / TRACKING_FILE
    previous = runs.read_json(tracking_file).get("run_id") if resume and tracking_file.is_file() else None
    run_id = tracker.start(recipe, run_dir.name, resume_id=previous, parent_id=parent_id, tags=tags)
    if run_id:
        runs.write_json(tracking_file, {"run_id": run_id, "tracking_uri": tracker.uri})

    generating = recipe.output.type == "text"
    experiment = (LanguageExperiment if generating else Experiment)(recipe, run_dir, tracker, console)
    experiment.on_epoch = on_epoch
    if isinstance(experiment, Experiment):
        experiment.base = base
    try:
        metrics, history = experiment.train(splits, resume=resume is not None)
        experiment.write_report(metrics, history, splits.report)
    except KeyboardInterrupt:
        tracker.end("KILLED")
        raise
    except Exception:
        tracker.end("FAILED")
        raise
    tracker.log_metrics(metrics, step=len(history))  # the final scores sit after the last epoch
    tracker.log_artifacts(run_dir, skip=(CHECKPOINT, BEST_WEIGHTS))
    tracker.end()
    for leftover in (CHECKPOINT, BEST_WEIGHTS):
        (run_dir / leftover).unlink(missing_ok=True)
    _print_summary(console, metrics, run_dir, tracker)
    return lm.GeneratorRun.load(run_dir) if generating else runs.SavedRun.load(run_dir)


def _print_summary(console: Console, metrics: dict[str, float], run_dir: Path, tracker: Tracker) -> None:
    shown = [k for k in ("test/balanced_accuracy", "test/accuracy", "test/macro_f1", "val/balanced_accuracy",
                         "test/bits_per_char", "test/perplexity", "fit_seconds") if k in metrics]
    console.print("[bold green]done[/]: " + "  ".join(f"{k} {metrics[k]:.4f}" for k in shown))
    console.print(f"  metrics: {run_dir / runs.METRICS}")
    made = [name for name in ("learning_curves.png", "confusion.png", "per_class.csv", "samples.txt")
            if (run_dir / name).is_file()]
    console.print(f"  report:  {run_dir}/ ({', '.join(made)})")
    if tracker.run_id:
        console.print(f"  mlflow:  run {tracker.run_id} in {tracker.uri}; "
                      f"browse with `mlflow ui --backend-store-uri {tracker.uri}`", soft_wrap=True)
