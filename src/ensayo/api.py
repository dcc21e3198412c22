"""The Python API: every `ensayo` command as a function a notebook calls the same way. The CLI parses
arguments, calls these and prints what they return."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ensayo import layout
from ensayo.datasets import DatasetInfo, list_datasets
from ensayo.errors import DataError
from ensayo.lazy import exports
from ensayo.models import load_recipe
from ensayo.recipe import Recipe, RecipeError
from ensayo.runs import answer
from ensayo.store import output_file, output_folder, write_json

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    from rich.console import Console
    from rich.progress import Progress

    from ensayo.exporting import Exported
    from ensayo.runs.saved import SavedRun

# what a command needs is imported when it runs: `validate` and `report` load no torch, `datasets` not even polars
_EXPORTS = {"run": "ensayo.pipeline", "SavedRun": "ensayo.runs.saved", "load_run": "ensayo.runs.saved",
            "predict_rows": "ensayo.runs.predict", "Validation": "ensayo.runs.validation",
            "validate": "ensayo.runs.validation"}
__getattr__ = exports(__name__, _EXPORTS)

__all__ = ["DataError", "DatasetInfo", "Recipe", "RecipeError", "datasets", "evaluate", "explore", "export",
           "explain", "generate", "launch_run", "load_recipe", "predict", "predict_to_file", "report", "serve", "sweep",
           "train_embeddings", *_EXPORTS]


def launch_run(nproc: int, recipe: str | Path | None, output: str | Path | None = None,
               overrides: list[str] | None = None, track: bool = True, resume: str | Path | None = None,
               force: bool = False, entrypoint: Callable[..., str | None] | None = None,
               start_method: str = "forkserver") -> Path:
    """`run` on `nproc` processes of this machine (torch.distributed, launched by torchrun's launcher): the recipe
    is checked, and its run directory chosen, before any process starts; each rank calls `entrypoint` (by
    default `run_rank`) with the same arguments, in processes started by `start_method` (see
    `ensayo.training.distributed.launch`). Returns the run directory."""
    from ensayo.models import model_type_of, run_recipe
    from ensayo.pipeline import check_output, distributed_problem, new_run_dir
    from ensayo.runs.teacher import check_teacher
    from ensayo.training.distributed import launch

    if resume is not None:
        loaded = run_recipe(Path(resume))
        run_dir = Path(resume)
    else:
        if recipe is None:
            raise ValueError("give a recipe, or --resume RUN_DIR")
        loaded = load_recipe(Path(recipe), overrides)
        loaded = model_type_of(loaded).prepare(loaded, Path(recipe).resolve().parent)
        run_dir = Path(output) if output else new_run_dir(loaded)
        check_output(run_dir, force)
        if loaded.train.teacher is not None:
            check_teacher(loaded, Path(recipe).resolve().parent)
    problem = distributed_problem(loaded, nproc)
    if problem:
        raise ValueError(problem)
    return Path(launch(nproc, entrypoint or run_rank, recipe, run_dir, overrides, track, resume, force,
                       start_method=start_method))


def run_rank(recipe: str | Path | None, run_dir: Path, overrides: list[str] | None, track: bool,
             resume: str | Path | None, force: bool) -> str:
    """One rank of `launch_run`: the run directory (rank 0's is the one `launch_run` returns)."""
    from ensayo.pipeline import run

    saved = run(recipe if resume is None else None, output=None if resume is not None else run_dir,
                overrides=overrides, track=track, resume=resume, force=force)
    return str(saved.path)


def predict(run_dir: str | Path | SavedRun, rows: pl.DataFrame | list[dict[str, Any]], top_k: int = answer.TOP_K,
            all_classes: bool = False) -> tuple[list[list[str]], np.ndarray]:
    """The top-k labels and probabilities of in-memory rows (a polars table, or a list of mappings of the
    recipe's input columns), best first; every class with `all_classes`."""
    from ensayo.runs.predict import predict_table

    return predict_table(_saved(run_dir), rows, top_k, all_classes)


def evaluate(run_dir: str | Path | SavedRun, source: str | Path, output: str | Path | None = None,
             device: str = "cpu", engine: str = "torch") -> tuple[dict[str, float], list[str]]:
    """Score a labelled file in the recipe's format with the same metrics as a run: (metrics, notes); with
    `output`, the metrics are also written there as JSON. `device`: cpu, cuda or auto; `engine`: torch, or onnx
    (the run's `ensayo export --format onnx`)."""
    from ensayo.runs.predict import evaluate_file

    if output is not None:
        output_file(Path(output))
    metrics, notes = evaluate_file(_saved(run_dir, device, engine), Path(source))
    if output is not None:
        write_json(Path(output), metrics)
    return metrics, notes


def generate(run_dir: str | Path | SavedRun, prompt: str = "", length: int = answer.LENGTH,
             temperature: float = answer.TEMPERATURE, top_k: int | None = None, top_p: float | None = None,
             seed: int = answer.SEED) -> Iterator[str]:
    """Stream text from the language model saved in `run_dir` (what `ensayo generate` prints)."""
    return _saved(run_dir).generate(prompt, length, temperature, top_k, top_p, seed)


def explore(recipe: str | Path, output: str | Path | None = None, overrides: list[str] | None = None,
            console: Console | None = None) -> Path:
    """Write a data report with plots for a recipe's data, before training on it; returns report.md."""
    from ensayo.exploration import explore as write_data_report

    path = Path(recipe)
    loaded = load_recipe(path, overrides or [])
    target = output_folder(Path(output) if output else Path("explore") / loaded.name)
    return write_data_report(loaded, target, path.resolve().parent, console)


def sweep(study: str | Path, output: str | Path | None = None, smoke: bool = False, track: bool = True,
          grid: list[str] | dict[str, list[Any]] | None = None, repeats: int | None = None,
          console: Console | None = None, retry_failed: bool = False, storage: str | None = None) -> Path:
    """Run (or continue) a study, or a plain recipe over a `grid` (`["train.lr=1e-3,4e-3"]`); returns its
    directory, which holds report.html and report.md. With `storage` (a database URL, such as
    `postgresql://host/optuna`; else the study's `sweep.storage`), this is one of many workers sharing the
    study's trials through it."""
    from ensayo.studies import parse_grid, run_study

    parsed = parse_grid(grid) if isinstance(grid, list) else grid
    if output is not None:
        output_folder(Path(output))
    return run_study(study, output, smoke=smoke, track=track, grid=parsed or None, repeats=repeats, console=console,
                     retry_failed=retry_failed, storage=storage)


def report(sources: list[str | Path], output: str | Path | None = None, metric: str = "test/balanced_accuracy",
           tracking_uri: str | None = None) -> Path:
    """The HTML and Markdown report of a study directory, or of runs (directories or MLflow run ids) side by
    side; returns the HTML page."""
    from ensayo.studies import write_runs_report, write_study_report

    if output is not None:
        output_folder(Path(output))
    first = Path(sources[0])
    if len(sources) == 1 and (first / layout.STUDY).is_file():
        return write_study_report(first, Path(output) if output else None)
    return write_runs_report([str(s) for s in sources], Path(output) if output else Path("report"), metric,
                             tracking_uri)


def train_embeddings(source: str | Path, output: str | Path, column: str = "title", method: str = "word2vec",
                     dim: int = 100, window: int = 5, min_count: int = 2, epochs: int = 5, normalize: bool = True,
                     numbers: str = "keep", filters: list[str] | None = None,
                     limit: int | None = None) -> dict[str, Any]:
    """Train word vectors on a text column and write them as a `.vec` file for `preprocessing.embeddings`."""
    from ensayo.studies.embeddings import EmbeddingJob, read_texts, train_word_vectors

    output_file(Path(output))
    job = EmbeddingJob(source=str(source), column=column, method=method, dim=dim, window=window,
                       min_count=min_count, epochs=epochs, normalize=normalize, numbers=numbers)
    return train_word_vectors(read_texts(Path(source), column, filters or [], limit), job, Path(output))


def datasets(root: Path | None = None) -> list[tuple[DatasetInfo, Path | None]]:
    """The bundled recipes' data sets with their paths under ENSAYO_DATA (None where absent)."""
    return list_datasets(root)


def predict_to_file(run_dir: str | Path | SavedRun, source: str | Path, destination: str | Path,
                    top_k: int = answer.TOP_K, batch_size: int = 4096, progress: Progress | None = None,
                    all_classes: bool = False, keep: list[str] | None = None) -> dict[str, Any]:
    """Write the top-k labels with probabilities of every row of `source` to the CSV `destination`, with the
    columns of `source` named in `keep` beside each row's line."""
    from ensayo.runs.predict import predict_file

    output_file(Path(destination))
    return predict_file(_saved(run_dir), Path(source), Path(destination), top_k, batch_size, progress, all_classes,
                        keep or [])


def serve(runs: list[str | Path], host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          max_rows: int = 1024, max_upload_mb: float = 16.0, batch_rows: int = 2048, batch_wait_ms: float = 2.0,
          access_log: bool = False, device: str = "cpu", engine: str = "torch") -> None:
    """Serve runs (`"NAME=RUN"` or `RUN`) over HTTP until interrupted: a JSON API, MLflow's /invocations, a
    page at / to try each model. Needs `ensayo-ml[serve]`. `device`: cpu, cuda or auto; `engine`: torch, or
    onnx (each run's network as `ensayo export --format onnx` wrote it, run by ONNX Runtime)."""
    from ensayo.serving import ServeOptions, parse_targets
    from ensayo.serving import serve as start

    options = ServeOptions(max_rows=max_rows, max_upload_mb=max_upload_mb, batch_rows=batch_rows,
                           batch_wait_ms=batch_wait_ms, device=device, engine=engine)
    start(parse_targets([str(r) for r in runs]), host, port, workers, options, access_log)


def export(run_dir: str | Path | SavedRun, format: str, output: str | Path | None = None,
           register: str | None = None, quantize: str | None = None) -> Exported:
    """Export a run: `mlflow` (a pyfunc model folder, logged to the run's MLflow run and registered as
    `register`) or `onnx` (the network beside the run's state; `quantize="int8"` stores its weights in int8);
    says what it wrote (`.path`), where it logged it (`.model_uri`) and registered it (`.registered`)."""
    from ensayo.exporting import FORMATS, export_mlflow, export_onnx

    saved = _saved(run_dir)
    target = output_folder(Path(output)) if output else None
    if format == "mlflow":
        if quantize:
            raise ValueError("--quantize is for the onnx format")
        return export_mlflow(saved, target, register)
    if format == "onnx":
        if register:
            raise ValueError("--register is for the mlflow format")
        return export_onnx(saved, target, quantize)
    raise ValueError(f"format {format!r}: choose {' or '.join(FORMATS)}")


def explain(run_dir: str | Path | SavedRun, source: str | Path, rows: int = 5,
            output: str | Path | None = None, label: str | None = None, device: str = "cpu") -> Path:
    """Explain a run's answers on the first `rows` rows of `source` (for their predicted class, or for `label`);
    returns the HTML page written (default: explanation.html in the run directory). `device`: cpu, cuda, auto."""
    from ensayo.explaining import explain_file

    if rows < 1:
        raise ValueError(f"rows is {rows}: explain one row or more")
    if output is not None:
        output_file(Path(output))
    return explain_file(_saved(run_dir, device), Path(source), rows, Path(output) if output else None, label)


def _saved(run_dir: str | Path | SavedRun, device: str = "cpu", engine: str = "torch") -> SavedRun:
    """A saved run as given, or loaded from its directory onto `device`, answering with `engine`."""
    from ensayo.runs.saved import SavedRun, load_run

    return run_dir if isinstance(run_dir, SavedRun) else load_run(run_dir, engine, device)
