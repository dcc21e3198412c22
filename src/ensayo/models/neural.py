"""The `neural` model type: one encoder per input, their outputs concatenated, and an MLP head (plus, with
`output.auxiliary`, a linear side head on the head's last hidden layer that regresses number targets),
trained by the trainer; the preprocessing is fitted on the training split and saved beside the weights."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from ensayo import layout
from ensayo import metrics as ev
from ensayo.data import LINE, Splits
from ensayo.features import Feature, FileColumn, saved_run_loading
from ensayo.models.base import (
    FitContext,
    Fitted,
    available_if,
    read_state,
    register_model_type,
)
from ensayo.models.explanation import RowExplanation
from ensayo.models.neural_inputs import NeuralInputs
from ensayo.models.neural_schema import NeuralSchema
from ensayo.outputs.auxiliary import auxiliary_targets
from ensayo.outputs.category import CategoryOutput
from ensayo.outputs.teacher import TeacherProbabilities
from ensayo.progress import working
from ensayo.recipe import HeadConfig, Recipe
from ensayo.store import write_json
from ensayo.training import (
    Batches,
    EncodedSplit,
    RankRows,
    Trainer,
    classification_loss,
    distributed,
    encode_split,
    load_weights,
    pick_device,
    save_weights,
)


def mlp(in_dim: int, hidden: list[int], out_dim: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class EnsayoModel(nn.Module):
    def __init__(self, features: list[Feature], encoders: dict[str, Any], head: HeadConfig,
                 num_classes: int, auxiliary_weights: list[float] | None = None) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict({f.name: f.build_encoder(encoders[f.name]) for f in features})
        combined = sum(encoder.output_dim for encoder in self.encoders.values())
        self.head = mlp(combined, head.hidden, num_classes, head.dropout)
        self.auxiliary: nn.Linear | None = None
        if auxiliary_weights:
            shared = head.hidden[-1] if head.hidden else combined
            self.auxiliary = nn.Linear(shared, len(auxiliary_weights))
            self.register_buffer("auxiliary_weights", torch.tensor(auxiliary_weights), persistent=False)

    def forward(self, batch: dict[str, Any],
                auxiliary: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Class logits; with `auxiliary`, (logits, the auxiliary targets' predictions)."""
        combined = torch.cat([encoder(batch[name]) for name, encoder in self.encoders.items()], dim=-1)
        if not auxiliary:
            return self.head(combined)
        assert self.auxiliary is not None, "this model has no auxiliary targets"
        shared = self.head[:-1](combined)  # the head's last hidden layer, which both heads read
        return self.head[-1](shared), self.auxiliary(shared)

    def auxiliary_loss(self, predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Weighted mean squared error of each standardized target over the rows that have a value."""
        known = ~torch.isnan(targets)
        squared = torch.where(known, predicted - targets.nan_to_num(), 0.0) ** 2
        per_target = squared.sum(0) / known.sum(0).clamp(min=1)
        return (per_target * self.auxiliary_weights).sum()


def build_network(recipe: Recipe, features: list[Feature], num_classes: int) -> EnsayoModel:
    weights = [target.weight for target in recipe.output.auxiliary]
    return EnsayoModel(features, recipe.model.encoders, recipe.model.head, num_classes, weights)


def count_parameters(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


@torch.no_grad()
def network_probabilities(network: nn.Module, split: EncodedSplit, batch_size: int,
                          rows: np.ndarray | None = None) -> np.ndarray:
    """(rows, classes) probabilities of the split's rows (all of them, or those of `rows`)."""
    network.eval()
    device = next(network.parameters()).device
    total = len(split) if rows is None else len(rows)
    probabilities, start = np.zeros((0, 0), dtype=np.float32), 0
    for batch, _ in split.batches(batch_size, order=rows, device=device):
        part = torch.softmax(network(batch).float(), dim=-1).cpu().numpy()
        if start == 0:  # filled in place: a list of parts and their concatenation would hold it twice
            probabilities = np.empty((total, part.shape[1]), dtype=np.float32)
        probabilities[start: start + len(part)] = part
        start += len(part)
    return probabilities


@torch.no_grad()
def network_predictions(network: nn.Module, split: EncodedSplit, batch_size: int, rows: np.ndarray | None = None,
                        temperature: float = 1.0) -> np.ndarray:
    """The `metrics.ROW` record of the split's rows (all of them, or those of `rows`), a batch at a time: the
    (rows, classes) probabilities are never held whole (3.7 M titles' test split would take 1.9 GB)."""
    network.eval()
    device = next(network.parameters()).device
    parts = [ev.summarise(torch.softmax(network(batch).float(), dim=-1).cpu().numpy(), labels.cpu().numpy(),
                          temperature)
             for batch, labels in split.batches(batch_size, order=rows, device=device)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=ev.ROW)


def shared_predictions(network: nn.Module, split: EncodedSplit, batch_size: int,
                       temperature: float = 1.0) -> np.ndarray:
    """The `metrics.ROW` record of every row of a split, each rank of a distributed run scoring the share of it
    that it holds (`split`): the same on every rank as one process scoring them all."""
    return distributed.gather_shares(network_predictions(network, split, batch_size, None, temperature))


def shared_probabilities(network: nn.Module, split: EncodedSplit, batch_size: int) -> np.ndarray:
    """The probabilities of every row, shared across ranks like `shared_predictions` (to fit a temperature)."""
    return distributed.gather_shares(network_probabilities(network, split, batch_size))


def save_state(run_dir: Path, features: list[Feature], classes: CategoryOutput,
               extra: dict[str, Any]) -> dict[str, Any]:
    """The fitted preprocessing of the inputs and the output (features.json), and whatever the type adds; returns
    what it wrote."""
    state = {"inputs": {f.name: f.state() for f in features}, "output": classes.state(), **extra}
    write_json(run_dir / layout.STATE, state, compact=True)
    return state


@register_model_type("neural")
class NeuralClassifier(NeuralSchema, NeuralInputs):
    distributed = None

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        self.network: EnsayoModel | None = None
        self.train_columns: dict[str, Any] | None = None  # the training split as encoded while fitting

    # ------------------------------------------------------------------ training
    def fit(self, splits: Splits, context: FitContext) -> Fitted:
        started = time.perf_counter()
        self._fit_preprocessing(splits, context)
        recipe, console = self.recipe, context.console
        device = pick_device(recipe.train.device)
        # auxiliary targets are learned from the training rows only; evaluating and predicting do not need them
        targets = auxiliary_targets(splits.train, recipe.output.auxiliary) if recipe.output.auxiliary else None
        encoded = self._encoded_shares(splits, targets)
        if context.teacher is not None:
            encoded["train"].teacher = self._teacher_targets(context.teacher, splits.train)
        for split in encoded.values():
            split.workers = recipe.train.loader_workers
        columns = encoded["train"].columns
        for name, column in columns.items():
            if isinstance(column, FileColumn):
                columns[name] = dataclasses.replace(column, training=True)  # augmented as they are read
        preprocess_seconds = time.perf_counter() - started
        if distributed.world().distributed:  # rank 0 writes the report and says it
            held = {f"{name}_rows": len(split) for name, split in encoded.items()}
            shares = distributed.gather_on_main({"rank": distributed.world().rank,
                                                 "preprocess_seconds": preprocess_seconds, **held})
            if shares is not None:
                splits.report.ranks = shares
                console.print("each process encoded its share of the rows: " + ", ".join(
                    f"rank {share['rank']} {share['train_rows']:,} training rows in {share['preprocess_seconds']:.1f} s"
                    for share in shares))
        network = build_network(recipe, self.features, len(self.classes))
        sizes = count_parameters(network)
        console.print(f"model: {sizes['total']:,} parameters ({sizes['trainable']:,} trainable) on {device}")
        loss = classification_loss(recipe.train, encoded["train"].labels, len(self.classes))
        trainer = Trainer(network, recipe.train, context.run_dir, device, console, loss=loss)
        if context.resume and trainer.load_checkpoint():
            console.print(f"resuming after epoch {trainer.state.epoch}, step {trainer.state.step_in_epoch} of the next")
        validation = encoded["validation"]
        val_true = self.labels(splits.validation)
        size = recipe.train.eval_batch_size

        def evaluate(current: nn.Module) -> dict[str, float]:
            return ev.score_rows(shared_predictions(current, validation, size), val_true, self.classes, "val/")

        state = trainer.fit(self._training_rows(encoded["train"], splits.train.height),
                             evaluate if splits.validation.height else None, context.on_epoch)
        self.network = trainer.model  # type: ignore[assignment]
        if distributed.world().main:
            self.save(context.run_dir)
        metrics = {"fit_seconds": state.fit_seconds, "preprocess_seconds": preprocess_seconds,
                   "best_epoch": float(state.best_epoch),
                   "train/loss": state.history[-1]["train/loss"] if state.history else float("nan")}
        scores = self.score_splits(
            splits, lambda name, _: shared_probabilities(trainer.model, encoded[name], size),
            lambda name, _, __, temperature: shared_predictions(trainer.model, encoded[name], size, temperature))
        return Fitted(metrics | scores, state.history)

    def _fit_preprocessing(self, splits: Splits, context: FitContext) -> None:
        """Fit each input on the training split and save the state, keeping the training rows' encodings
        (`train_columns`); resuming, read the saved state instead. In a distributed run each rank keeps only its
        share of the training rows: the inputs that can (`shares_fit`) are fitted by every rank together, each
        tokenizing its own share, rank 0 fits the others on the whole column, and every rank encodes its share."""
        current = distributed.world()
        state_file = context.run_dir / layout.STATE
        if distributed.broadcast_object(bool(context.resume and state_file.is_file())):
            self._load_state(distributed.broadcast_object(read_state(context.run_dir) if current.main else None))
            return
        start, stop = distributed.share_bounds(splits.train.height)
        share = splits.train.slice(start, stop - start)
        together = [feature for feature in self.features if current.distributed and feature.shares_fit]
        columns: dict[str, Any] = {}
        for feature in self.features:
            with working(context.console, f"fitting {feature.type_name} input {feature.name!r}"):
                if feature in together:
                    columns[feature.name] = feature.fit_transform_shared(share[feature.column].to_list(),
                                                                         distributed.RankCollectives())
                elif current.distributed and current.main:
                    feature.fit(splits.train[feature.column].to_list())  # encoded below, a share on each rank
                elif current.main:
                    columns[feature.name] = feature.fit_transform(splits.train[feature.column].to_list())
            if current.main:
                described = ", ".join(f"{k} {v}" for k, v in feature.describe().items())
                context.console.print(f"  {feature.name}: {described}")
        state = None
        if current.main:
            self.classes.fit(self.labels(splits.train))
            self.derived = splits.bins.state() if splits.bins else {}
            state = save_state(context.run_dir, self.features, self.classes, {"derived": self.derived})
        if current.distributed:
            # the other ranks need what they did not fit themselves: the text vocabularies they already hold
            shared = {f.name for f in together}
            state = distributed.broadcast_object(state and {**state, "inputs": {
                name: fitted for name, fitted in state["inputs"].items() if name not in shared}})
            if not current.main:
                self._load_state(state, fitted_here=together)
            for feature in self.features:
                if feature not in together:
                    columns[feature.name] = feature.transform(share[feature.column].to_list())
        self.train_columns = columns

    def _encoded_shares(self, splits: Splits, targets: np.ndarray | None) -> dict[str, EncodedSplit]:
        """Each split's rows that this rank holds, encoded: a contiguous share of each in a distributed run
        (`distributed.share_bounds`), the whole split in one process. The training rows encoded while fitting
        are not encoded again."""
        encoded = {}
        for name, table in splits.items():
            start, stop = distributed.share_bounds(table.height)
            share = table.slice(start, stop - start)
            train = name == "train"
            encoded[name] = encode_split(self.features, share, self.classes.transform(self.labels(share)),
                                         targets[start:stop] if train and targets is not None else None,
                                         self.train_columns if train else None)
        return encoded

    def _teacher_targets(self, teacher: TeacherProbabilities, train: pl.DataFrame) -> np.ndarray:
        """The teacher's softened probabilities of the training rows this rank holds, by their lines."""
        start, stop = distributed.share_bounds(train.height)
        lines = train[LINE].slice(start, stop - start).to_numpy().astype(np.int64)
        config = self.recipe.train.teacher
        assert config is not None
        return teacher.for_lines(lines, self.classes, config.temperature)

    @staticmethod
    def _training_rows(train: EncodedSplit, rows: int) -> Batches:
        """What the trainer reads: the encoded training split, or in a distributed run this rank's share of its
        `rows` rows, with every row's length gathered so that each rank orders all rows as one process does."""
        if not distributed.world().distributed:
            return train
        lengths = distributed.all_gather(train.lengths())
        return RankRows(train, distributed.share_bounds(rows)[0], rows,
                        None if lengths[0] is None else np.concatenate(lengths))

    def save(self, run_dir: Path) -> None:
        assert self.network is not None, "fit or load the model first"
        save_weights(self.network, run_dir / layout.WEIGHTS)

    # ------------------------------------------------------------------ a trained model
    @classmethod
    def load(cls, run_dir: Path, recipe: Recipe) -> NeuralClassifier:
        model = cls.with_state(run_dir, recipe)
        weights = run_dir / layout.WEIGHTS
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: the run has no trained weights (did training finish? "
                                    "continue it with `ensayo run --resume`)")
        with saved_run_loading():
            network = build_network(recipe, model.features, len(model.classes))
        load_weights(network, weights)
        model.network = network.eval()
        return model

    @available_if(lambda self: self.network is not None)
    def to_device(self, device: torch.device) -> None:
        """Answer on `device`: the network moves there, and each batch with it."""
        assert self.network is not None
        self.network.to(device)

    def _predict_proba(self, table: pl.DataFrame, batch_size: int | None = None) -> np.ndarray:
        split = encode_split(self.features, table, np.zeros(table.height, dtype=np.int64))
        size = batch_size or self.recipe.train.eval_batch_size
        assert self.network is not None, "fit or load the model first"
        return network_probabilities(self.network, split, size)

    # ------------------------------------------------------------------ what a trained network can do
    def blocker(self, capability: str) -> str | None:
        if capability in ("onnx", "explain") and self.network is None:
            return "its network is not loaded; fit or load the run first"
        return self._onnx_problem() if capability == "onnx" else None

    def _onnx_problem(self) -> str | None:
        """Why an encoder of the network cannot be traced into ONNX, or None."""
        assert self.network is not None
        for name, encoder in self.network.encoders.items():
            for part in encoder.modules():  # an encoder, or a module inside it, may say why it cannot be exported
                if getattr(part, "onnx_problem", None):
                    return f"input {name!r}: its {type(encoder).__name__} {part.onnx_problem}"
        return None

    @available_if(lambda self: self.network is not None and self._onnx_problem() is None)
    def export_onnx(self, target: Path, quantize: str | None = None) -> None:
        """The network, calibrated, as `target`/model.onnx (with onnx.json), for `load_onnx`; `quantize="int8"`
        stores its weights in int8."""
        from ensayo.models.onnx import export_network

        export_network(self, target, quantize)

    @available_if(lambda self: self.network is not None)
    def explain(self, table: pl.DataFrame, label: str | None = None) -> list[RowExplanation]:
        """Each row's integrated gradients towards `label` (default: the class predicted for the row)."""
        from ensayo.models.attribution import neural_row

        target = None if label is None else self.classes.index[label]
        return [neural_row(self, table[i: i + 1], target=target) for i in range(table.height)]
