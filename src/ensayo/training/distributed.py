"""Data-parallel training over torch.distributed: the process group torchrun describes in the environment,
each rank's share of a global batch, and the few collectives the rest of ensayo needs.

One process per rank, as torchrun starts them (`ensayo run --nproc N` calls torchrun's launcher). Every
rank reads the data file and holds the whole model, but encodes and trains on only its contiguous share of
the rows (`share_bounds`, `rank_batches(held=...)`); rank 0 alone writes the run directory, checkpoints and
MLflow. Dense gradients are averaged by DistributedDataParallel; embedding tables with sparse gradients
are left out of it (NCCL has no sparse all-reduce, and gloo's densifies them) and their gradients are
gathered as (row indices, rows) with all_gather and summed, which every backend does.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ensayo.errors import LaunchFailed

TIMEOUT_VARIABLE = "ENSAYO_COLLECTIVE_TIMEOUT"  # seconds a collective waits for a rank before failing
LAUNCH_VARIABLE = "ENSAYO_LAUNCH_DIR"  # where `launch`'s ranks say how far they got: rank<k>.started, .arrived
REPORT_SECONDS = 5.0  # how often `launch` says what it still waits for


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank among `size` processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


_WORLD = World()


def world() -> World:
    return _WORLD


def launched() -> bool:
    """Whether torchrun started this process as one of several."""
    return launched_size() > 1


def launched_size() -> int:
    """How many processes torchrun started (1 when it started none)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def start(device: str = "auto") -> World:
    """Join the process group torchrun set up (gloo on CPU, nccl on GPUs); one process: nothing to join."""
    global _WORLD
    if not launched():
        return _WORLD
    if dist.is_initialized():
        return _WORLD
    gpu = device != "cpu" and torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if gpu:
        torch.cuda.set_device(local_rank)
    timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_VARIABLE, "600")))
    _mark("arrived")  # at the rendezvous: the process group forms once every rank has arrived
    dist.init_process_group("nccl" if gpu else "gloo", timeout=timeout)
    _WORLD = World(dist.get_rank(), dist.get_world_size(), local_rank)
    return _WORLD


def _mark(stage: str) -> None:
    """Tell the launcher this rank reached `stage` (a file in its launch folder; nothing outside `launch`)."""
    folder = os.environ.get(LAUNCH_VARIABLE)
    if folder:
        Path(folder, f"rank{os.environ.get('RANK', '0')}.{stage}").touch()


FAILURE_GRACE_SECONDS = 1.0


@contextlib.contextmanager
def failing_after_the_cause() -> Iterator[None]:
    """A rank that fails waits a moment before it ends. torchrun's launcher reports the first rank to end, and
    when one rank is killed the others fail at once on their next collective: without the wait, the launcher
    could name a survivor's "connection closed" instead of the killed rank."""
    try:
        yield
    except BaseException:
        if launched():
            time.sleep(FAILURE_GRACE_SECONDS)
        raise


def stop() -> None:
    global _WORLD
    if dist.is_initialized():
        dist.destroy_process_group()
    _WORLD = World()


# ------------------------------------------------------------------------------------ batches
def rank_batches(order: np.ndarray, batch_size: int, current: World | None = None,
                 held: tuple[int, int] | None = None) -> list[tuple[np.ndarray, float]]:
    """This rank's rows of each global batch of `order`, with the weight its mean loss takes so that the
    ranks' average gradient is the global batch's: every rank gets the same number of steps and a disjoint
    share of each batch. A last batch with fewer rows than ranks is left out on every rank.

    Without `held`, every rank holds every row and takes a strided slice of each batch (so that a
    length-bucketed batch stays bucketed). With `held` = (start, stop), this rank holds only those rows
    (`RankRows`) and takes the rows of each batch that fall in them, numbered from `start`. A batch with none
    of them gives the rank row 0 at weight 0: it still takes the step (the collectives need every rank), and
    adds nothing to the gradients or the loss."""
    current = current or world()
    batches = [order[start: start + batch_size] for start in range(0, len(order), batch_size)]
    if not current.distributed:
        return [(batch, 1.0) for batch in batches]
    batches = [batch for batch in batches if len(batch) >= current.size]
    if held is None:
        parts = [batch[current.rank:: current.size] for batch in batches]
    else:
        parts = [batch[(batch >= held[0]) & (batch < held[1])] - held[0] for batch in batches]
    return [(part, current.size * len(part) / len(batch)) if len(part) else (np.zeros(1, dtype=order.dtype), 0.0)
            for part, batch in zip(parts, batches, strict=True)]


def steps_per_epoch(rows: int, batch_size: int, current: World | None = None) -> int:
    current = current or world()
    steps = -(-rows // batch_size)
    if current.distributed and steps and rows - (steps - 1) * batch_size < current.size:
        steps -= 1
    return steps


def share_bounds(rows: int, current: World | None = None) -> tuple[int, int]:
    """Where this rank's contiguous share of `rows` rows starts and stops (the shares, in rank order, are the
    rows in order)."""
    current = current or world()
    bounds = np.linspace(0, rows, current.size + 1).round().astype(int)
    return int(bounds[current.rank]), int(bounds[current.rank + 1])


def row_share(rows: int, current: World | None = None) -> np.ndarray:
    """This rank's contiguous share of `rows` rows (for scoring a split across ranks)."""
    return np.arange(*share_bounds(rows, current))


# ------------------------------------------------------------------------------------ collectives
def broadcast_object(value: Any) -> Any:
    """Rank 0's `value` on every rank (a plain Python value: the fitted preprocessing, a run directory)."""
    if not world().distributed:
        return value
    box = [value if world().main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(value: Any) -> list[Any]:
    """Every rank's `value` (a plain Python value), in rank order, on every rank."""
    if not world().distributed:
        return [value]
    values: list[Any] = [None] * world().size
    dist.all_gather_object(values, value)
    return values


def gather_on_main(value: Any) -> list[Any] | None:
    """Every rank's `value` (a plain Python value), in rank order, on rank 0; None on the other ranks."""
    if not world().distributed:
        return [value]
    values: list[Any] | None = [None] * world().size if world().main else None
    dist.gather_object(value, values, dst=0)
    return values


def gather_shares(share: np.ndarray) -> np.ndarray:
    """The ranks' shares of rows (each rank's `row_share`, computed there) as one array, the same on every rank."""
    if not world().distributed:
        return share
    parts = all_gather(share)
    return np.concatenate([p for p in parts if len(p)] or parts[:1])


class RankCollectives:
    """This process's place and the collectives that a feature fitted across ranks needs (`features.Ranks`)."""

    @property
    def main(self) -> bool:
        return world().main

    @staticmethod
    def gather(value: Any) -> list[Any] | None:
        return gather_on_main(value)

    @staticmethod
    def broadcast(value: Any) -> Any:
        return broadcast_object(value)


def sum_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """Each value summed over the ranks (float64, so that a sum of losses loses nothing)."""
    if not world().distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_module(module: nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (the best weights, found and written by rank 0)."""
    if not world().distributed:
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor.data if isinstance(tensor, nn.Parameter) else tensor, src=0)


# ------------------------------------------------------------------------------------ the model
def sparse_parameter_names(model: nn.Module, sparse: list[nn.Parameter]) -> list[str]:
    ids = {id(p) for p in sparse}
    return [name for name, p in model.named_parameters() if id(p) in ids]


def wrap(model: nn.Module, sparse: list[nn.Parameter], device: torch.device) -> nn.Module:
    """The model as DistributedDataParallel over its dense parameters; on GPUs, BatchNorm layers share their
    statistics across ranks (torch's SyncBatchNorm runs on GPUs only: on CPUs each rank normalizes its share)."""
    from torch.nn.parallel import DistributedDataParallel

    names = sparse_parameter_names(model, sparse)
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)
    for parameter in sparse:  # DDP broadcasts what it owns from rank 0; the sparse tables, we do
        dist.broadcast(parameter.data, src=0)
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index or 0])
    return DistributedDataParallel(model)


def average_sparse_gradients(sparse: list[nn.Parameter], contributes: bool = True) -> None:
    """Replace each sparse gradient by its mean over the ranks, as DDP does for dense ones: every rank's
    (row indices, rows) are gathered, padded to the longest, and summed into one coalesced gradient. A rank
    that does not contribute (a step at weight 0) sends no rows: zero rows would still move their Adam moments."""
    size = world().size
    for parameter in sparse:
        grad = parameter.grad
        if grad is None or not contributes:
            grad = torch.sparse_coo_tensor(torch.zeros(1, 0, dtype=torch.long, device=parameter.device),
                                           torch.zeros(0, *parameter.shape[1:], device=parameter.device),
                                           parameter.shape)
        grad = grad.coalesce()
        indices, values = grad.indices()[0], grad.values()
        count = torch.tensor([len(indices)], device=parameter.device)
        counts = [torch.zeros_like(count) for _ in range(size)]
        dist.all_gather(counts, count)
        longest = int(max(c.item() for c in counts))
        padded_indices = torch.zeros(longest, dtype=indices.dtype, device=parameter.device)
        padded_values = torch.zeros(longest, *values.shape[1:], dtype=values.dtype, device=parameter.device)
        padded_indices[: len(indices)], padded_values[: len(values)] = indices, values
        all_indices = [torch.empty_like(padded_indices) for _ in range(size)]
        all_values = [torch.empty_like(padded_values) for _ in range(size)]
        dist.all_gather(all_indices, padded_indices)
        dist.all_gather(all_values, padded_values)
        kept = [int(c.item()) for c in counts]
        rows = torch.cat([i[:k] for i, k in zip(all_indices, kept, strict=True)])
        vectors = torch.cat([v[:k] for v, k in zip(all_values, kept, strict=True)]) / size
        parameter.grad = torch.sparse_coo_tensor(rows[None], vectors, parameter.shape).coalesce()


# ------------------------------------------------------------------------------------ the launcher
def launch(nproc: int, entrypoint: Callable[..., Any], *arguments: Any, start_method: str = "spawn",
           report: bool = True) -> Any:
    """`entrypoint(*arguments)` on `nproc` processes of this machine through torchrun's launcher (elastic_launch,
    a standalone rendezvous on a free local port). A rank that fails stops the others. Returns what rank 0
    returned. `forkserver` starts each rank from a server process that imported ensayo and torch's distributed
    modules once, and is safe from anywhere (a notebook too): 64 ranks on two cores start in seconds. `fork`
    saves the server (what the ranks import is imported here first), and is safe only from a process that runs
    no other thread, since a child inherits whatever lock another thread held; `spawn` imports everything in
    every rank. While ranks are still starting, the launcher says on
    standard error every few seconds how many have arrived to form the process group and which it waits for
    (`report`); a launch that fails names the ranks that never arrived."""
    import tempfile
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if start_method == "fork":  # what every rank imports, imported once and shared instead of 64 times over
        import torch.nn.parallel  # noqa: F401  (DistributedDataParallel, and torch._dynamo beneath it)
    if start_method == "forkserver":  # a server that imported ensayo and torch once forks each rank
        import multiprocessing

        multiprocessing.set_forkserver_preload(["ensayo.api", "torch.nn.parallel"])
    # each rank gets its share of the cores unless the recipe's train.threads says otherwise
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, start_method=start_method,
                          monitor_interval=0.1)
    with tempfile.TemporaryDirectory(prefix="ensayo-launch-") as folder, _watching(Path(folder), nproc, report):
        os.environ[LAUNCH_VARIABLE] = folder
        try:
            returned = elastic_launch(config, _started)(entrypoint, *arguments)
        except ChildFailedError as exc:
            # a rank killed by a signal is the cause, the others' errors its consequence; else the earliest failure
            failures = sorted(exc.failures.items(), key=lambda item: (item[1].exitcode >= 0, item[1].timestamp))
            said = "; ".join(f"rank {rank} of {nproc} stopped with exit code {failure.exitcode}"
                             for rank, failure in failures)
            code = next((f.exitcode for _, f in failures if f.exitcode > 0), 1)
            missing = _not_arrived(Path(folder), nproc)
            absent = f"; ranks {_ranges(missing)} had not arrived to form the process group" if missing else ""
            raise LaunchFailed(f"{said}{absent}; the other ranks were stopped with it (their own messages are "
                               "above)", code) from None
        finally:
            os.environ.pop(LAUNCH_VARIABLE, None)
    return returned[0]


def _started(entrypoint: Callable[..., Any], *arguments: Any) -> Any:
    """A rank's first step: say it started, then run its work."""
    _mark("started")
    return entrypoint(*arguments)


def _not_arrived(folder: Path, nproc: int) -> list[int]:
    return [rank for rank in range(nproc) if not (folder / f"rank{rank}.arrived").exists()]


def _ranges(ranks: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    parts, start = [], None
    for index, rank in enumerate(ranks):
        start = rank if start is None else start
        if index + 1 == len(ranks) or ranks[index + 1] != rank + 1:
            parts.append(str(start) if start == rank else f"{start}-{rank}")
            start = None
    return ", ".join(parts)


@contextlib.contextmanager
def _watching(folder: Path, nproc: int, report: bool) -> Iterator[None]:
    """Every few seconds while ranks are still starting: how many have, how many arrived, which are awaited. The
    ranks may be forked meanwhile: the watcher takes no lock a child could inherit held (it lists a folder and
    writes to the standard error's descriptor, nothing else)."""
    import threading

    done = threading.Event()
    timeout = os.environ.get(TIMEOUT_VARIABLE, "600")

    def watch() -> None:
        while not done.wait(REPORT_SECONDS):
            names = os.listdir(folder)
            missing = [rank for rank in range(nproc) if f"rank{rank}.arrived" not in names]
            if not missing:
                return
            started = sum(name.endswith(".started") for name in names)
            os.write(2, (f"waiting for the ranks to form the process group: {nproc - len(missing)} of {nproc} "
                         f"arrived, {started} started (each imports torch and reads the data first); waiting "
                         f"for ranks {_ranges(missing)}; the group fails if they have not arrived {timeout} s "
                         f"after the first ({TIMEOUT_VARIABLE})\n").encode())

    thread = threading.Thread(target=watch, name="ensayo-launch-watch", daemon=True) if report else None
    if thread:
        thread.start()
    try:
        yield
    finally:
        done.set()
        if thread:
            thread.join()
