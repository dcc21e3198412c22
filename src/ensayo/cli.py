"""The `ensayo` command: run, validate, predict, evaluate, explain, generate, explore, sweep, report, embeddings,
datasets. It parses arguments, calls `ensayo.api` and prints what comes back; nothing else. Each command
imports the API when it runs, so that `ensayo --help` stays light."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ensayo import DISTRIBUTION, __version__, layout
from ensayo.errors import DataError, LaunchFailed, Locked, RecipeError, TrackingError
from ensayo.runs import answer

app = typer.Typer(help="Declarative deep-learning experiments: one YAML recipe to a trained, tracked run.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
datasets_app = typer.Typer(help="The real data sets under ENSAYO_DATA.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
embeddings_app = typer.Typer(help="Self-trained word vectors.", no_args_is_help=True)
app.add_typer(embeddings_app, name="embeddings")
console = Console(stderr=True)
stdout = Console()


def _version(asked: bool) -> None:
    if asked:
        stdout.print(f"ensayo {__version__} (the {DISTRIBUTION} distribution)", highlight=False)
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                              help="print ensayo's version and exit")] = False) -> None:
    """Declarative deep-learning experiments: one YAML recipe to a trained, tracked run."""


def _fail(message: str) -> NoReturn:
    console.print(f"[bold red]error[/]: {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


@contextlib.contextmanager
def _reported(interrupted: str = "") -> Iterator[None]:
    """A user's mistake, bad data, a damaged run or a full disk ends the command with one line naming the
    culprit and exit code 2; a signal with 128 + its number."""
    try:
        yield
    except LaunchFailed as exc:
        console.print(f"[bold red]error[/]: {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=exc.exit_code) from None
    except KeyboardInterrupt as exc:
        if interrupted:
            console.print(f"[yellow]{interrupted}[/]")
        raise typer.Exit(code=128 + getattr(exc, "signal_number", signal.SIGINT)) from None
    except OSError as exc:  # the disk is full, a file cannot be written...
        _fail(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc))
    except (RecipeError, DataError, ValueError, Locked, TrackingError) as exc:
        _fail(str(exc))


@app.command()
def run(
    recipe: Annotated[Path | None, typer.Argument(help="recipe YAML file")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key.path=value overrides")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="run directory")] = None,
    no_track: Annotated[bool, typer.Option("--no-track", help="do not log to MLflow")] = False,
    resume: Annotated[Path | None, typer.Option(help="continue the interrupted run in this directory")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace what --output holds (a run, other files)")] = False,
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="train on N processes of this machine "
                                       "(torch.distributed through torchrun; gloo on CPUs, nccl on GPUs)")] = 1,
) -> None:
    """Train, evaluate, track and save a recipe."""
    from ensayo import api

    if recipe is None and resume is None:
        _fail("give a recipe, or --resume RUN_DIR")
    if nproc > 1:
        if nproc > (os.cpu_count() or 1):
            console.print(f"[yellow]warning[/]: {nproc} processes on {os.cpu_count()} cores share them: each holds the "
                          "model and reads the data, and on a CPU the run goes no faster than with one per core",
                          soft_wrap=True)
        with _reported():
            path = api.launch_run(nproc, recipe, output=output, overrides=overrides or [], track=not no_track,
                                  resume=resume, force=force, entrypoint=_rank)
        stdout.print(str(path))
        return
    with _reported():
        saved = api.run(recipe, output=output, overrides=overrides or [], track=not no_track, resume=resume,
                        console=console, force=force)
    if distributed_rank() == 0:  # under torchrun, every rank returns the run; rank 0 says where it is
        stdout.print(str(saved.path))


def distributed_rank() -> int:
    """This process's rank among those torchrun started (0 when it started none)."""
    return int(os.environ.get("RANK", "0"))


def _rank(*arguments: Any) -> str:
    """One rank of `ensayo run --nproc`: its errors end it as they end `ensayo run`, with one line and a code."""
    from ensayo import api

    try:
        with _reported():
            return api.run_rank(*arguments)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)


@app.command()
def validate(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML file")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key.path=value overrides")] = None,
) -> None:
    """Check a recipe against the schema without running anything."""
    from ensayo import api

    with _reported():
        checked = api.validate(recipe, overrides or [])
    for warning in checked.warnings:
        console.print(f"[yellow]warning[/]: {warning}", soft_wrap=True)
    stdout.print(f"{recipe}: {checked.summary()}")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="saved run directory")],
    input: Annotated[Path, typer.Option("--input", "-i", help="file in the recipe's format; for a folder "
                                        "recipe (audio, images), one file or a folder")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="CSV to write; without it, the top-k "
                                                "of each row are printed")] = None,
    top_k: Annotated[int, typer.Option(help="labels per row, best first", min=1)] = answer.TOP_K,
    keep: Annotated[str | None, typer.Option(help="columns of the input to copy into the CSV beside each "
                                             "row's line, to join the predictions back (--keep id,title)")] = None,
    batch_size: Annotated[int, typer.Option(help="rows per batch", min=1)] = 4096,
    engine: Annotated[str, typer.Option(help="torch, or onnx: the network exported by `ensayo export "
                                        "--format onnx`, run by ONNX Runtime")] = "torch",
    device: Annotated[str, typer.Option(help="where the model answers: cpu, cuda, or auto (cuda where there "
                                        "is one)")] = "cpu",
) -> None:
    """Predict the rows of a file: the top-k labels of each row to a CSV, or on screen."""
    from ensayo import api

    with _reported():
        saved = api.load_run(run_dir, engine, device)
        if output is None:
            names, probabilities, notes, bad = api.predict_rows(saved, input)
        else:
            with _progress() as progress:
                result = api.predict_to_file(saved, input, output, top_k, batch_size, progress,
                                             keep=[c.strip() for c in keep.split(",") if c.strip()] if keep else [])
            bad = result["bad_rows"]
    if bad:
        console.print(f"skipped {len(bad)} bad row(s): " + "; ".join(bad[:5]), soft_wrap=True)
    if output is not None:
        console.print(f"{result['rows']:,} rows -> {output}")
        return
    labels, chances = answer.rank(probabilities, saved.output.classes, top_k)
    places = [_ordinal(place) for place in range(1, len(labels[0]) + 1)] if labels else []
    noted = any(notes)
    table = Table("row", *places, *(["note"] if noted else []),
                  title=f"the likeliest {saved.recipe.output.column} of each row, best first")
    for name, row_labels, row_chances, note in zip(names, labels, chances, notes, strict=True):
        cells = [f"{escape(label)} ({chance:.1%})" for label, chance in zip(row_labels, row_chances, strict=True)]
        table.add_row(escape(name), f"[bold]{cells[0]}[/]", *cells[1:], *([escape(note or "")] if noted else []))
    stdout.print(table)
    if not names:
        _fail(f"{input}: nothing to predict")


def _ordinal(place: int) -> str:
    return f"{place}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(place if place < 20 else place % 10, 'th') }"


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="saved run directory")],
    input: Annotated[Path, typer.Option("--input", "-i", help="labelled file in the recipe's format")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="metrics JSON to write")] = None,
    device: Annotated[str, typer.Option(help="where the model answers: cpu, cuda, or auto (cuda where there "
                                        "is one)")] = "cpu",
    engine: Annotated[str, typer.Option(help="torch, or onnx: the network exported by `ensayo export "
                                        "--format onnx` (an int8 export's own accuracy, say)")] = "torch",
) -> None:
    """Score a labelled file with the same metrics as a run."""
    from ensayo import api

    with _reported():
        metrics, notes = api.evaluate(run_dir, input, output, device, engine)
    for note in notes[:10]:
        console.print(f"note: {note}")
    table = Table("metric", "value")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}" if key != "rows" else f"{int(value):,}")
    stdout.print(table)


@app.command()
def generate(
    run_dir: Annotated[Path, typer.Argument(help="saved run of a text-output recipe")],
    prompt: Annotated[str, typer.Option(help="text to continue")] = "",
    length: Annotated[int, typer.Option(help="tokens to generate (characters or words)", min=1,
                                        max=answer.MAX_LENGTH)] = answer.LENGTH,
    temperature: Annotated[float, typer.Option(help="0 is greedy; higher is more varied", min=0.0,
                                               max=answer.MAX_TEMPERATURE)] = answer.TEMPERATURE,
    top_k: Annotated[int, typer.Option(help="sample among the k likeliest tokens (0: all of them)",
                                       min=0)] = answer.SAMPLE_TOP_K,
    top_p: Annotated[float, typer.Option(help="sample within this probability mass (0 to 1]; 1: all of it",
                                         min=0.0, max=1.0)] = answer.TOP_P,
    seed: Annotated[int, typer.Option(help="random seed", min=0, max=answer.MAX_SEED)] = answer.SEED,
) -> None:
    """Stream text from a trained language model."""
    from ensayo import api

    with _reported():
        pieces = api.generate(run_dir, prompt, length, temperature, top_k, top_p, seed)
    stdout.print(prompt, end="", highlight=False, markup=False)
    for piece in pieces:
        stdout.print(piece, end="", highlight=False, markup=False)
        stdout.file.flush()
    stdout.print()


@app.command()
def serve(
    runs: Annotated[list[str], typer.Argument(help="[NAME=]RUN: saved runs to serve, each named by its recipe "
                                              "unless NAME= gives another")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on", min=0, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="server processes, each holding every model", min=1)] = 1,
    max_rows: Annotated[int, typer.Option(help="rows in one request, at most", min=1)] = 1024,
    max_upload_mb: Annotated[float, typer.Option(help="size of one request body, at most (MiB)", min=0.001)] = 16.0,
    batch_rows: Annotated[int, typer.Option(help="rows gathered into one model call, at most", min=1)] = 2048,
    batch_wait_ms: Annotated[float, typer.Option(help="how long a model call waits for more requests (when the "
                                                 "last call answered several)", min=0)] = 2.0,
    access_log: Annotated[bool, typer.Option(help="log every request")] = False,
    device: Annotated[str, typer.Option(help="where the model answers: cpu, cuda, or auto (cuda where there "
                                        "is one)")] = "cpu",
    engine: Annotated[str, typer.Option(help="torch, or onnx: each run's network as `ensayo export --format "
                                        "onnx` wrote it (int8 too), run by ONNX Runtime")] = "torch",
) -> None:
    """Serve runs over HTTP: a JSON API, MLflow's /invocations, and a page at / to try each model."""
    from ensayo import api

    with _reported():
        api.serve(runs, host, port, workers, max_rows, max_upload_mb, batch_rows, batch_wait_ms, access_log,
                  device, engine)


@app.command()
def explain(
    run_dir: Annotated[Path, typer.Argument(help="saved run directory")],
    input: Annotated[Path, typer.Option("--input", "-i", help="file in the recipe's format; for a folder "
                                        "recipe (audio, images), one file or a folder")],
    rows: Annotated[int, typer.Option(help="rows to explain, from the top", min=1)] = 5,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="HTML page to write (default: "
                                                "explanation.html in the run)")] = None,
    label: Annotated[str | None, typer.Option(help="the class to explain (default: each row's answer)")] = None,
    device: Annotated[str, typer.Option(help="where the model answers: cpu, cuda, or auto (cuda where there "
                                        "is one)")] = "cpu",
) -> None:
    """Show why a run answered as it did: integrated gradients over words, spectrograms, photos and values."""
    from ensayo import api

    with _reported(), console.status(f"explaining {rows} row(s) with integrated gradients"):
        page = api.explain(run_dir, input, rows, output, label, device)
    stdout.print(str(page))


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="saved run directory")],
    format: Annotated[str, typer.Option("--format", "-f", help="mlflow (any model type) or onnx (a neural "
                                        "classifier's network)")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="folder to write (mlflow: RUN/mlflow-model;"
                                                " onnx: the run itself)")] = None,
    register: Annotated[str | None, typer.Option(help="mlflow: register the logged model under this name")] = None,
    quantize: Annotated[str | None, typer.Option(help="onnx: int8 stores the network's weights in int8 "
                                                  "(smaller and faster; answers within a few thousandths)")] = None,
) -> None:
    """Export a run as an MLflow pyfunc model or as ONNX."""
    from ensayo import api

    with _reported():
        exported = api.export(run_dir, format, output, register, quantize)
    if exported.model_uri:
        console.print(f"logged to MLflow as {exported.model_uri}", soft_wrap=True)
    if exported.registered:
        console.print(f"registered as {exported.registered}")
    stdout.print(str(exported.path))


@app.command()
def explore(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML file")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key.path=value overrides")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="report folder")] = None,
) -> None:
    """Write a data report with plots for a recipe's data, before training on it."""
    from ensayo import api

    with _reported():
        report = api.explore(recipe, output, overrides or [], console)
    console.print(f"page: {report.with_suffix('.html')}", highlight=False)
    stdout.print(str(report))


@app.command()
def sweep(
    study: Annotated[Path, typer.Argument(help="study YAML (a recipe plus a sweep), or a plain recipe with --grid")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="study directory (default "
                                                "studies/NAME); rerun with the same one to continue")] = None,
    grid: Annotated[list[str] | None, typer.Option("--grid", help="key.path=v1,v2 (repeatable): sweep the "
                                                   "full grid of these values instead")] = None,
    repeats: Annotated[int | None, typer.Option(help="seeds per configuration", min=1)] = None,
    smoke: Annotated[bool, typer.Option("--smoke", help="the study's small-data mode")] = False,
    no_track: Annotated[bool, typer.Option("--no-track", help="do not log to MLflow")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="run failed trials again")] = False,
    storage: Annotated[str | None, typer.Option(help="a database every worker reaches (postgresql://...): "
                                                "start this command on as many machines as you like; they share "
                                                "the study's trials through it")] = None,
) -> None:
    """Run a study: every configuration x repeat, each an MLflow child run; then its report."""
    from ensayo import api

    with _reported("interrupted: run the same command again to continue the study"):
        directory = api.sweep(study, output, smoke=smoke, track=not no_track, grid=grid or [], repeats=repeats,
                              console=console, retry_failed=retry_failed, storage=storage)
    console.print(f"report: {directory / layout.REPORT_HTML} and {layout.REPORT_MARKDOWN}")
    stdout.print(str(directory))


@app.command()
def report(
    sources: Annotated[list[str], typer.Argument(help="a study directory, or run directories / MLflow run ids")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="folder for report.html and "
                                                "report.md (default: the study directory)")] = None,
    metric: Annotated[str, typer.Option(help="metric for runs (a study uses its own)")] = "test/balanced_accuracy",
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow store of bare run ids")] = None,
) -> None:
    """Write the HTML and Markdown report of a study, or of runs compared side by side."""
    from ensayo import api

    with _reported():
        page = api.report(sources, output, metric, tracking_uri)
    stdout.print(str(page))


@embeddings_app.command("train")
def embeddings_train(
    source: Annotated[Path, typer.Argument(help="CSV / JSONL / Parquet file with a text column")],
    output: Annotated[Path, typer.Option("--output", "-o", help="word2vec text file to write (.vec)")],
    column: Annotated[str, typer.Option(help="text column")] = "title",
    method: Annotated[str, typer.Option(help="word2vec or fasttext")] = "word2vec",
    dim: Annotated[int, typer.Option(help="vector size")] = 100,
    window: Annotated[int, typer.Option(help="context window")] = 5,
    min_count: Annotated[int, typer.Option(help="ignore rarer words")] = 2,
    epochs: Annotated[int, typer.Option(help="passes over the texts")] = 5,
    normalize: Annotated[bool, typer.Option(help="the text feature's default normalization (lowercase, no "
                                            "accents or punctuation); --no-normalize keeps words as written")] = True,
    numbers: Annotated[str, typer.Option(help="keep, zero or remove digits, as the recipe will")] = "keep",
    filters: Annotated[list[str] | None, typer.Option("--filter", help="row filter, as in recipes")] = None,
    limit: Annotated[int | None, typer.Option(help="at most this many texts")] = None,
) -> None:
    """Train word vectors on a text column, for a recipe's `preprocessing.embeddings`."""
    from pydantic import ValidationError

    from ensayo import api

    with _reported():
        try:
            with console.status(f"training {method} vectors on {source}:{column}"):
                report = api.train_embeddings(source, output, column, method, dim, window, min_count, epochs,
                                              normalize, numbers, filters or [], limit)
        except ValidationError as exc:
            _fail("; ".join(f"--{e['loc'][0].replace('_', '-')}: {e['msg']}" for e in exc.errors()))
    console.print(f"{report['words']:,} words x {report['dimension']} from {report['texts']:,} texts "
                  f"({report['tokens']:,} tokens) in {report['seconds']} s")
    stdout.print(str(output))


@datasets_app.command("list")
def datasets_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show which of the bundled recipes' data sets are present."""
    from ensayo.datasets import list_datasets  # the API would load torch for a listing
    from ensayo.recipe import default_data_dir

    found = list_datasets()
    if as_json:
        stdout.print(json.dumps({info.name: str(path) if path else None for info, path in found}))
        return
    root = default_data_dir()
    table = Table("data set", "present", "path", "what", title=f"ENSAYO_DATA = {root or '(not set)'}")
    for info, path in found:
        table.add_row(info.name, "yes" if path else "no", str(path or "-"), info.description)
    stdout.print(table)


if __name__ == "__main__":
    app()
