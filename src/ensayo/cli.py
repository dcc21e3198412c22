"""The `ensayo` command: run, validate, predict, evaluate, datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ensayo.config import RecipeError, load_recipe
from ensayo.data import DataError

app = typer.Typer(help="Declarative deep-learning experiments: one YAML recipe to a trained, tracked run.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
datasets_app = typer.Typer(help="The real data sets under ENSAYO_DATA.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
console = Console(stderr=True)
stdout = Console()


def _fail(message: str) -> None:
    console.print(f"[bold red]error[/]: {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


@app.command()
def run(
    recipe: Annotated[Path | None, typer.Argument(help="recipe YAML file")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key.path=value overrides")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="run directory")] = None,
    no_track: Annotated[bool, typer.Option("--no-track", help="do not log to MLflow")] = False,
    resume: Annotated[Path | None, typer.Option(help="continue the interrupted run in this directory")] = None,
) -> None:
    """Train, evaluate, track and save a recipe."""
    from ensayo.pipeline import run as run_recipe

    if recipe is None and resume is None:
        _fail("give a recipe, or --resume RUN_DIR")
    try:
        saved = run_recipe(recipe, output=output, overrides=overrides or [], track=not no_track,
                           resume=resume, console=console)
    except (RecipeError, DataError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None
    stdout.print(str(saved.path))


@app.command()
def validate(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML file")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key.path=value overrides")] = None,
) -> None:
    """Check a recipe against the schema without running anything."""
    try:
        loaded = load_recipe(recipe, overrides or [])
    except RecipeError as exc:
        _fail(str(exc))
    from ensayo.derive import leaking_inputs

    for name in leaking_inputs(loaded):
        console.print(f"[yellow]warning[/]: input {name!r} feeds the target {loaded.output.column!r} through "
                      "`derive`: the model can learn the formula instead of the task", soft_wrap=True)
    stdout.print(f"{recipe}: valid ({loaded.model.type} model, {len(loaded.inputs)} input(s), "
                 f"output {loaded.output.type} {', '.join(loaded.output.source_columns)})")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="saved run directory")],
    input: Annotated[Path, typer.Option("--input", "-i", help="file in the recipe's format; for a folder "
                                        "recipe (audio, images), one file or a folder")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="CSV to write; without it, every "
                                                "class's probability is printed")] = None,
    top_k: Annotated[int, typer.Option(help="labels per row in the CSV")] = 3,
    batch_size: Annotated[int, typer.Option(help="rows per batch")] = 4096,
) -> None:
    """Predict the rows of a file: the top-k labels to a CSV, or every class's probability on screen."""
    from ensayo.predict import predict_file, predict_rows
    from ensayo.runs import SavedRun

    try:
        saved = SavedRun.load(run_dir)
        if output is None:
            names, probabilities, bad = predict_rows(saved, input)
        else:
            with _progress() as progress:
                result = predict_file(saved, input, output, top_k, batch_size, progress)
            bad = result["bad_rows"]
    except (RecipeError, DataError, FileNotFoundError) as exc:
        _fail(str(exc))
    if bad:
        console.print(f"skipped {len(bad)} bad row(s): " + "; ".join(bad[:5]), soft_wrap=True)
    if output is not None:
        console.print(f"{result['rows']:,} rows -> {output}")
        return
    classes = saved.output.classes
    table = Table("row", "predicted", *classes, title=f"probabilities ({saved.recipe.output.column})")
    for name, row in zip(names, probabilities, strict=True):
        best = int(row.argmax())
        cells = [f"[bold]{p:.3f}[/]" if i == best else f"{p:.3f}" for i, p in enumerate(row)]
        table.add_row(name, f"[bold green]{classes[best]}[/] ({row[best]:.1%})", *cells)
    stdout.print(table)
    if not names:
        _fail(f"{input}: nothing to predict")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="saved run directory")],
    input: Annotated[Path, typer.Option("--input", "-i", help="labelled file in the recipe's format")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="metrics JSON to write")] = None,
) -> None:
    """Score a labelled file with the same metrics as a run."""
    from ensayo.predict import evaluate_file
    from ensayo.runs import SavedRun, write_json

    try:
        metrics, notes = evaluate_file(SavedRun.load(run_dir), input)
    except (RecipeError, DataError, FileNotFoundError) as exc:
        _fail(str(exc))
    for note in notes[:10]:
        console.print(f"note: {note}")
    table = Table("metric", "value")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}" if key != "rows" else f"{int(value):,}")
    stdout.print(table)
    if output:
        write_json(output, metrics)


@app.command()
def generate(
    run_dir: Annotated[Path, typer.Argument(help="saved run of a text-output recipe")],
    prompt: Annotated[str, typer.Option(help="text to continue")] = "",
    length: Annotated[int, typer.Option(help="tokens to generate (characters or words)")] = 300,
    temperature: Annotated[float, typer.Option(help="0 is greedy; higher is more varied")] = 0.8,
    top_k: Annotated[int | None, typer.Option(help="sample among the k likeliest tokens")] = None,
    top_p: Annotated[float | None, typer.Option(help="sample within this probability mass")] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Stream text from a trained language model."""
    from ensayo.language import GeneratorRun

    try:
        generator = GeneratorRun.load(run_dir)
    except (RecipeError, FileNotFoundError) as exc:
        _fail(str(exc))
    if generator.recipe.output.type != "text":
        _fail(f"{run_dir}: not a language model run (its output is {generator.recipe.output.type})")
    stdout.print(prompt, end="", highlight=False, markup=False)
    for piece in generator.generate(prompt, length, temperature, top_k, top_p, seed):
        stdout.print(piece, end="", highlight=False, markup=False)
        stdout.file.flush()
    stdout.print()


@app.command()
def explore(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML file")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key.path=value overrides")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="report folder")] = None,
) -> None:
    """Write a data report with plots for a recipe's data, before training on it."""
    from ensayo.explore import explore as explore_data

    try:
        loaded = load_recipe(recipe, overrides or [])
        report = explore_data(loaded, output or Path("explore") / loaded.name, recipe.resolve().parent, console)
    except (RecipeError, DataError, FileNotFoundError) as exc:
        _fail(str(exc))
    stdout.print(str(report))


@datasets_app.command("list")
def datasets_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show which of the bundled recipes' data sets are present."""
    from ensayo.config import default_data_dir
    from ensayo.datasets import list_datasets

    found = list_datasets()
    if as_json:
        stdout.print(json.dumps({info.name: str(path) if path else None for info, path in found}))
        return
    root = default_data_dir()
    table = Table("data set", "present", "path", "what", title=f"ENSAYO_DATA = {root or '(not set)'}")
    for info, path in found:
        table.add_row(info.name, "yes" if path else "no", str(path or "-"), info.description)
    stdout.print(table)
