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
    stdout.print(f"{recipe}: valid ({loaded.model.type} model, {len(loaded.inputs)} input(s), "
                 f"output {loaded.output.column!r})")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="saved run directory")],
    input: Annotated[Path, typer.Option("--input", "-i", help="file in the recipe's format")],
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV to write")],
    top_k: Annotated[int, typer.Option(help="labels per row")] = 3,
    batch_size: Annotated[int, typer.Option(help="rows per batch")] = 4096,
) -> None:
    """Write the top-k labels with probabilities for every row of a file."""
    from ensayo.predict import predict_file
    from ensayo.runs import SavedRun

    try:
        saved = SavedRun.load(run_dir)
        with _progress() as progress:
            result = predict_file(saved, input, output, top_k, batch_size, progress)
    except (RecipeError, DataError, FileNotFoundError) as exc:
        _fail(str(exc))
    if result["bad_rows"]:
        console.print(f"skipped {len(result['bad_rows'])} bad row(s): " + "; ".join(result["bad_rows"][:5]))
    console.print(f"{result['rows']:,} rows -> {output}")


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
