"""Any nn.Module -> a trained one: the training loop, schedules, early stopping, checkpoints and resume."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from ensayo.layout import BEST_WEIGHTS, CHECKPOINT
from ensayo.outputs.auxiliary import AUXILIARY
from ensayo.outputs.teacher import TEACHER, distillation_loss
from ensayo.progress import every as progress_every
from ensayo.recipe import TrainConfig
from ensayo.store import atomic_path
from ensayo.training import distributed
from ensayo.training.batches import Batches, bucketed_order
from ensayo.training.best import higher_is_better
from ensayo.training.optimizers import RowAdam
from ensayo.training.weights import load_weights, save_weights

# the training losses are summed on the device and read every READ_EVERY steps (and whenever they are shown,
# logged or checkpointed): reading one waits for the device, and under DDP is one more collective
READ_EVERY = 32
SHOWN = ("train/loss", "train/auxiliary_loss", "val/loss", "val/accuracy", "val/balanced_accuracy", "val/macro_f1",
         "val/bits_per_char")


class Interrupted(KeyboardInterrupt):
    """Training stopped by SIGINT or SIGTERM once the step under way was done, its checkpoint saved."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


class TrainingError(ValueError):
    """Training that cannot go on (a loss that is no longer a number); the message names where it stopped."""


def pick_device(name: str) -> torch.device:
    """The device a recipe or a command names; `cuda` on a machine without one is refused by name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r}: this machine has no CUDA device (torch {torch.__version__}); use cpu "
                            "or auto")
    return torch.device(name)


def has_bf16(device: torch.device) -> bool:
    """Whether the device computes in bf16 natively: a GPU that says so, or a CPU with AVX512-BF16 or AMX (elsewhere
    torch emulates it, slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own probes of the CPU's flags
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype the training step autocasts to (None: fp32), or a refusal naming `train.precision`."""
    if precision == "fp32" or (precision == "auto" and not has_bf16(device)):
        return None
    if precision == "fp16" and device.type != "cuda":
        raise TrainingError("train.precision: fp16 trains on a GPU only (on a CPU, bf16 where the CPU has it)")
    if precision in ("bf16", "auto") and not has_bf16(device):
        raise TrainingError(f"train.precision: bf16: this {device.type.upper()} has no bf16 arithmetic (AVX512-BF16 or "
                            "AMX on a CPU); use fp32 or auto")
    return torch.float16 if precision == "fp16" else torch.bfloat16


def compiled(network: nn.Module) -> nn.Module:
    """`torch.compile(network)`, the modules that look up tables with sparse gradients left to run eagerly: inductor
    cannot compile a sparse gradient ('Cannot access storage of SparseTensorImpl'), and such lookups often take a
    batch's data-dependent set of rows. Marked here, not where they are defined: `torch.compiler.disable` imports
    torch._dynamo, 1.3 s of every command's start."""
    for module in _sparse_table_owners(network):
        module.forward = torch.compiler.disable(module.forward)
    return torch.compile(network)


def _is_sparse_table(module: nn.Module) -> bool:
    return isinstance(module, nn.Embedding | nn.EmbeddingBag) and module.sparse


def _sparse_table_owners(network: nn.Module) -> list[nn.Module]:
    """The modules whose forward looks up a sparse table: each table's nearest parent that has a forward of its own
    (a ModuleList or ModuleDict only holds), or the table itself at the top."""
    parents = {id(child): module for module in network.modules() for child in module.children()}
    owners: dict[int, nn.Module] = {}
    for table in filter(_is_sparse_table, network.modules()):
        owner = parents.get(id(table), table)
        while isinstance(owner, nn.ModuleList | nn.ModuleDict):
            owner = parents[id(owner)]
        owners[id(owner)] = owner
    return list(owners.values())


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # seeds the CUDA generators too
    np.random.seed(seed)


# --------------------------------------------------------------------------------------- schedules
def lr_multiplier(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    warmup = int(config.warmup_epochs * steps_per_epoch)
    total = config.epochs * steps_per_epoch

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "cosine":
            progress = (step - warmup) / max(total - warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        if config.schedule == "step":
            return config.step_gamma ** ((step // steps_per_epoch) // config.step_size)
        return 1.0

    return multiplier


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Trainable parameters as (dense, sparse): sparse ones are embedding tables with sparse gradients,
    of which a batch updates only the rows it uses."""
    sparse = []
    for module in filter(_is_sparse_table, model.modules()):
        sparse += [p for p in module.parameters(recurse=False) if p.requires_grad]
    sparse_ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if p.requires_grad and id(p) not in sparse_ids]
    return dense, sparse


def make_optimizers(dense: list[nn.Parameter], sparse: list[nn.Parameter],
                    config: TrainConfig) -> list[torch.optim.Optimizer]:
    """Adam(W) for dense weights; SparseAdam's arithmetic (RowAdam) for embedding tables, whose dense update would
    cost more than the whole forward and backward pass on a CPU (tens of millions of rows, a few used per batch)."""
    kind = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    optimizers: list[torch.optim.Optimizer] = []
    if dense:
        # a parameter may carry `lr_scale` (pretrained layers learn slower): one group per scale
        scales = sorted({getattr(p, "lr_scale", 1.0) for p in dense}, reverse=True)
        groups = [{"params": [p for p in dense if getattr(p, "lr_scale", 1.0) == scale], "lr": config.lr * scale}
                  for scale in scales]
        optimizers.append(kind(groups, lr=config.lr, weight_decay=config.weight_decay))
    if sparse:
        optimizers.append(RowAdam(sparse, lr=config.lr))
    return optimizers


# -------------------------------------------------------------------------------------- the loop
@dataclass
class TrainState:
    """What a checkpoint holds besides the tensors: enough to continue exactly where training stopped."""

    epoch: int = 0  # epochs fully done
    step_in_epoch: int = 0  # batches done in the current epoch
    loss_sum: float = 0.0  # running training loss of the current epoch (the label's alone)
    auxiliary_sum: float = 0.0  # running weighted loss of the auxiliary targets, when there are some
    seen: int = 0
    best_score: float | None = None
    best_epoch: int = 0
    stale_epochs: int = 0
    fit_seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


Evaluate = Callable[[nn.Module], dict[str, float]]


class Trainer:
    def __init__(self, model: nn.Module, config: TrainConfig, run_dir: Path, device: torch.device,
                 console: Console | None = None, checkpoint_seconds: float | None = None,
                 loss: nn.Module | None = None) -> None:
        self.model = model.to(device)
        self.config = config
        self.run_dir = run_dir
        self.device = device
        self.console = console or Console(stderr=True)
        # Besides every epoch's end and a signal: at most this much training (ENSAYO_CHECKPOINT_SECONDS) is lost
        # to a kill -9. A count of steps would rewrite a checkpoint (weights and Adam moments, 160 MB for the MeLi
        # CNN) needlessly often.
        self.checkpoint_seconds = float(os.environ.get("ENSAYO_CHECKPOINT_SECONDS", 300)) \
            if checkpoint_seconds is None else checkpoint_seconds
        self._last_checkpoint = time.monotonic()
        self.dense_parameters, self.sparse_parameters = split_parameters(model)
        self.optimizers = make_optimizers(self.dense_parameters, self.sparse_parameters, config)
        self.world = distributed.world()
        # what the training step calls: the model itself, or its DistributedDataParallel wrapper
        self.network = distributed.wrap(self.model, self.sparse_parameters, device) if self.world.distributed \
            else self.model
        if config.compile:  # the training step only: evaluation and checkpoints use the module itself
            self.network = compiled(self.network)
        self.state = TrainState()
        self.schedulers: list[torch.optim.lr_scheduler.LambdaLR] = []
        self._pending: dict[str, Any] | None = None
        self._signal: int | None = None  # SIGINT or SIGTERM received: stop after the step under way
        self.loss_fn = (loss or nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)).to(device)
        self.autocast = autocast_dtype(config.precision, device)
        # fp16's narrow range needs the loss scaled up before backward and the gradients down before the step
        self.scaler = torch.amp.GradScaler(device.type) if self.autocast == torch.float16 else None

    # checkpoints: tensors and plain values only, so that torch.load(weights_only=True) reads them
    def save_checkpoint(self) -> None:
        self._last_checkpoint = time.monotonic()
        if not self.world.main:
            return
        payload = {
            "model": self.model.state_dict(),
            "optimizers": [optimizer.state_dict() for optimizer in self.optimizers],
            "schedulers": [scheduler.state_dict() for scheduler in self.schedulers],
            "state": self.state.to_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "world_size": self.world.size,
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
        }
        with atomic_path(self.run_dir / CHECKPOINT) as temporary:
            torch.save(payload, temporary)

    def load_checkpoint(self) -> bool:
        """Continue from the run's checkpoint, if it has one. Rank 0 reads it and hands it to the other ranks,
        which need not see the run directory."""
        payload = self._read_checkpoint() if self.world.main else None
        payload = distributed.broadcast_object(payload)
        if payload is None:
            return False
        saved_size = payload.get("world_size", 1)
        if saved_size != self.world.size:
            raise TrainingError(f"{self.run_dir}: this run trained on {saved_size} process(es); resume it on as many "
                                f"(it was asked to go on with {self.world.size})")
        self.model.load_state_dict(payload["model"])
        self.state = TrainState(**payload["state"])
        torch.set_rng_state(payload["torch_rng"].cpu())
        if payload.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([state.cpu() for state in payload["cuda_rng"]])
        # optimizer and scheduler states are applied in fit(), after the schedulers exist: a LambdaLR
        # made after loading would take the decayed learning rate as its base.
        if self.scaler is not None and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self._pending = payload
        return True

    def _read_checkpoint(self) -> dict[str, Any] | None:
        path = self.run_dir / CHECKPOINT
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds for a cut or foreign file; none is read in part
            raise TrainingError(f"{path}: the last checkpoint is damaged and was not read "
                                f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); delete it to train "
                                "this run again from the start") from None

    def _save_best(self) -> None:
        if self.world.main:
            save_weights(self.model, self.run_dir / BEST_WEIGHTS)

    def _improved(self, score: float, monitor: str) -> bool:
        best = self.state.best_score
        if best is None:
            return True
        return score > best if higher_is_better(monitor) else score < best

    def fit(self, train: Batches, evaluate: Evaluate | None,
            on_epoch: Callable[[dict[str, float]], None] | None = None) -> TrainState:
        config = self.config
        steps_per_epoch = distributed.steps_per_epoch(len(train), config.batch_size)
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lr_multiplier(config, steps_per_epoch))
                           for o in self.optimizers]
        if self._pending is not None:
            for optimizer, saved in zip(self.optimizers, self._pending["optimizers"], strict=True):
                optimizer.load_state_dict(saved)
            for scheduler, saved in zip(self.schedulers, self._pending["schedulers"], strict=True):
                scheduler.load_state_dict(saved)
            self._pending = None
        monitor = config.monitor if evaluate is not None else "train/loss"
        state = self.state
        with self._signals_deferred(), self._progress() as progress:
            while state.epoch < config.epochs and not self._should_stop():
                started = time.perf_counter()
                self._train_epoch(train, steps_per_epoch, progress)
                record = {"epoch": state.epoch + 1, "train/loss": state.loss_sum / max(state.seen, 1),
                          **self._auxiliary_record(),
                          "lr": self.optimizers[0].param_groups[0]["lr"]}
                state.fit_seconds += time.perf_counter() - started
                record["fit_seconds"] = state.fit_seconds
                if evaluate is not None:
                    record.update(evaluate(self.model))
                self._end_epoch(record, monitor)
                if self.world.distributed:  # the ranks agree on stopping: a signal may reach one of them only
                    signalled = distributed.sum_over_ranks([float(self._signal is not None)], self.device)[0]
                    self._signal = self._signal or (signal.SIGTERM if signalled else None)
                self._stop_if_signalled(saved=True)
                if on_epoch:
                    on_epoch(record)
        for optimizer in self.optimizers:
            # the moments are in the last checkpoint; loading the best weights and scoring need the memory
            # (2.2 GB of Adam moments for 3.7 M titles' vocabulary)
            optimizer.state.clear()
        if self.world.main and (self.run_dir / BEST_WEIGHTS).is_file():
            load_weights(self.model, self.run_dir / BEST_WEIGHTS, self.device)
        distributed.broadcast_module(self.model)  # rank 0 kept the best weights
        return state

    @contextlib.contextmanager
    def _signals_deferred(self) -> Iterator[None]:
        """SIGINT and SIGTERM stop training once the step under way is done and its checkpoint saved, so that a
        resumed run is exactly the uninterrupted one; a second signal stops at once (from the last checkpoint)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}

        def defer(number: int, frame: Any) -> None:
            if self._signal is not None:
                raise Interrupted(number)
            self._signal = number

        for number in previous:
            signal.signal(number, defer)
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _stop_if_signalled(self, saved: bool = False) -> None:
        if self._signal is None:
            return
        if not saved:
            self.save_checkpoint()
        state = self.state
        self.console.print(f"[yellow]stopped by {signal.Signals(self._signal).name} after epoch {state.epoch}, step "
                           f"{state.step_in_epoch} of the next: checkpoint saved in {self.run_dir}; continue with "
                           f"`ensayo run --resume {self.run_dir}`[/]")
        raise Interrupted(self._signal)

    def _should_stop(self) -> bool:
        patience = self.config.early_stopping
        return patience is not None and self.state.stale_epochs >= patience

    def _end_epoch(self, record: dict[str, float], monitor: str) -> None:
        state = self.state
        score = record.get(monitor)
        if score is None:
            raise KeyError(f"train.monitor is {monitor!r}, which is not among the epoch's metrics: "
                           f"{', '.join(sorted(record))}")
        if self._improved(score, monitor):
            state.best_score, state.best_epoch, state.stale_epochs = float(score), state.epoch + 1, 0
            self._save_best()
        else:
            state.stale_epochs += 1
        state.history.append({k: float(v) for k, v in record.items()})
        state.epoch += 1
        state.step_in_epoch, state.loss_sum, state.auxiliary_sum, state.seen = 0, 0.0, 0.0, 0
        self.save_checkpoint()
        shown = "  ".join(f"{k} {record[k]:.4f}" for k in SHOWN if k in record)
        marker = " *" if state.best_epoch == state.epoch else ""
        self.console.print(f"epoch {state.epoch}/{self.config.epochs}  {shown}{marker}")

    def _train_epoch(self, train: Batches, steps: int, progress: Progress) -> None:
        config, state = self.config, self.state
        rng = np.random.default_rng(config.seed + state.epoch)  # the same order on every rank
        lengths = train.lengths()
        order = rng.permutation(len(train)) if lengths is None else bucketed_order(lengths, config.batch_size, rng)
        shares = distributed.rank_batches(order, config.batch_size, held=train.held)[state.step_in_epoch:]
        task = progress.add_task(f"epoch {state.epoch + 1}/{config.epochs}", total=steps,
                                 completed=state.step_in_epoch, rate="")
        self.model.train()
        tick, examples = time.perf_counter(), 0
        shown, pending = tick, 0
        logged, log_every = tick, progress_every() if self.world.main and not self.console.is_terminal else None
        weights = [weight for _, weight in shares]
        running = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss x rows, label loss x rows
        unread, unread_rows = 0, 0  # steps (and their rows) whose losses are in `running`, not yet read
        for (batch, labels), weight in zip(train.iterate([index for index, _ in shares], self.device), weights,
                                           strict=True):
            # training labels are all known (the classes come from them); for a language model, the labels are
            # the next tokens and len(labels) counts tokens
            loss, label_loss = self._loss(batch, labels)
            for optimizer in self.optimizers:
                optimizer.zero_grad(set_to_none=True)
            (loss * weight if self.scaler is None else self.scaler.scale(loss * weight)).backward()
            if self.world.distributed and self.sparse_parameters:
                distributed.average_sparse_gradients(self.sparse_parameters, contributes=weight > 0)
            if config.grad_clip:
                if self.scaler is not None:  # the gradients back to their scale before they are clipped
                    for optimizer in self.optimizers:
                        self.scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(self.dense_parameters, config.grad_clip)
            for optimizer, scheduler in zip(self.optimizers, self.schedulers, strict=True):
                if self.scaler is None:
                    optimizer.step()
                else:
                    self.scaler.step(optimizer)
                scheduler.step()
            if self.scaler is not None:
                self.scaler.update()
            trained = len(labels) if weight else 0  # a rank's step at weight 0 trained on none of its rows
            running += torch.stack([loss.detach(), label_loss.detach()]).to(torch.float64) * trained
            state.step_in_epoch += 1
            unread, unread_rows = unread + 1, unread_rows + trained
            now = time.perf_counter()
            shown_due = now - shown >= 0.25 and self.console.is_terminal  # a language model takes thousands of steps
            logged_due = log_every is not None and now - logged >= log_every
            checkpoint_due = time.monotonic() - self._last_checkpoint > self.checkpoint_seconds
            if self.world.distributed:  # a read is a collective: every rank reads at the same steps
                read = unread >= READ_EVERY or state.step_in_epoch == steps
                shown_due, logged_due, checkpoint_due = shown_due and read, logged_due and read, checkpoint_due and read
            else:
                read = unread >= READ_EVERY or state.step_in_epoch == steps or shown_due or logged_due \
                    or checkpoint_due or self._signal is not None
            signalled = False
            if read:
                rows, signalled = self._read_losses(running, unread, unread_rows)
                examples, unread, unread_rows = examples + rows, 0, 0
            if checkpoint_due:
                self.save_checkpoint()
            # under DDP a rank stops only when the read says that some rank was signalled (a signal that came
            # after the read waits for the next one, on every rank alike)
            if signalled or not self.world.distributed:
                self._stop_if_signalled()
            pending += 1
            if shown_due:
                progress.update(task, advance=pending, rate=f"{examples / max(now - tick, 1e-9):,.0f} ex/s "
                                                            f"loss {state.loss_sum / max(state.seen, 1):.3f}")
                pending, shown = 0, now
            if logged_due:  # no live bar in a log: a line instead
                self.console.print(f"epoch {state.epoch + 1}/{config.epochs}: step {state.step_in_epoch}/{steps} "
                                   f"({state.step_in_epoch / max(steps, 1):.0%}), {examples / (now - tick):,.0f} "
                                   f"examples/s, loss {state.loss_sum / max(state.seen, 1):.3f}", highlight=False)
                logged = now
        progress.remove_task(task)

    def _read_losses(self, running: torch.Tensor, steps: int, rows: int) -> tuple[int, bool]:
        """The losses of the last `steps` steps (`rows` rows), summed on the device, read once (summed over the
        ranks, with whether any rank was signalled: every rank stops at the same step); a loss that is no longer
        a number stops training here, naming where. Returns the rows read and whether some rank was signalled."""
        state = self.state
        total, label_sum, rows, signalled = distributed.sum_over_ranks(
            [*running.tolist(), float(rows), float(self._signal is not None)], self.device)
        running.zero_()
        if not math.isfinite(total):
            first = state.step_in_epoch - steps + 1
            where = f"step {first}" if steps == 1 else f"steps {first}-{state.step_in_epoch}"
            raise TrainingError(f"the training loss became {total / max(rows, 1)} at epoch {state.epoch + 1}, {where} "
                                f"(learning rate {self.optimizers[0].param_groups[0]['lr']:.3g}); training stopped. "
                                "Lower train.lr, set train.grad_clip, or look for extreme input values")
        state.loss_sum += label_sum
        state.auxiliary_sum += total - label_sum
        state.seen += int(rows)
        if signalled and self._signal is None:
            self._signal = signal.SIGTERM
        return int(rows), bool(signalled)

    def _loss(self, batch: dict[str, Any], labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss to minimize, the label's part of it): train/loss stays comparable with val/loss. With a
        teacher, the label's loss and the teacher's are mixed by `train.teacher.weight`."""
        targets = batch.pop(AUXILIARY, None)
        taught = batch.pop(TEACHER, None)
        with torch.autocast(self.device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None):
            if targets is None:
                logits, predicted = self.network(batch), None
            else:
                logits, predicted = self.network(batch, auxiliary=True)
        logits = logits.float()  # the losses in fp32: bf16 rounds a sum of 256 terms
        label_loss = self.loss_fn(logits, labels)
        loss = label_loss
        teacher = self.config.teacher
        if taught is not None and teacher is not None:
            loss = (1 - teacher.weight) * label_loss + teacher.weight * distillation_loss(logits, taught,
                                                                                          teacher.temperature)
        if predicted is not None:
            loss = loss + self.model.auxiliary_loss(predicted.float(), targets)
        return loss, label_loss

    def _auxiliary_record(self) -> dict[str, float]:
        """The loss beside the label's: the auxiliary targets', or with a teacher the whole loss minimized."""
        if self.config.teacher is not None:
            return {"train/distilled_loss": (self.state.loss_sum + self.state.auxiliary_sum) / max(self.state.seen, 1)}
        if getattr(self.model, "auxiliary", None) is None:
            return {}
        return {"train/auxiliary_loss": self.state.auxiliary_sum / max(self.state.seen, 1)}

    def _progress(self) -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=self.console,
                        transient=True, disable=not self.world.main)
