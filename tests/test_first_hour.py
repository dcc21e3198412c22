"""What a new user meets in the first hour, from the README and `--help` alone: the version, a recipe checked
against its data, predictions printed readably and joined back, consoles that say what is going on (in a log
too), a chance-level score called so, reports that tell runs apart, explore and explain pages."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from helpers.cli import refused, runner, said
from helpers.data import audio_recipe, make_clips, make_titles, recipe_dict, write_challenge_csv
from rich.console import Console

import ensayo
from ensayo import __version__
from ensayo.cli import app


def recipe_file(folder: Path, raw: dict[str, Any], name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_version_is_the_distributions() -> None:
    assert said(runner.invoke(app, ["--version"])) == f"ensayo {__version__} (the ensayo-ml distribution)"
    from importlib import metadata

    assert metadata.version("ensayo-ml") == __version__


@pytest.mark.subprocess
def test_the_command_starts_without_the_heavy_libraries() -> None:
    heavy = ("torch", "polars", "sklearn", "mlflow", "matplotlib", "scipy", "pandas")
    code = f"import sys, ensayo.cli; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.split() == []  # `ensayo --help`, `--version` and `datasets list` need none of them
    listed = subprocess.run([sys.executable, "-c", "import sys\nfrom ensayo.cli import app\n"
                             "sys.argv = ['ensayo', 'datasets', 'list', '--json']\n"
                             "try:\n    app()\nexcept SystemExit:\n    pass\n"
                             f"print(' '.join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)"],
                            capture_output=True, text=True, check=True)
    assert listed.stderr.split() == [] and listed.stdout.startswith("{")


@pytest.mark.subprocess
def test_validate_report_and_onnx_predict_leave_torch_and_predict_leaves_scikit_learn_unloaded(
        tmp_path: Path, titles_csv: Path, tiny_runs: dict[str, Path]) -> None:
    heavy = ("sklearn", "scipy", "pandas", "mlflow", "matplotlib")  # ~5 s of imports here (benchmarks/README.md)
    recipe = recipe_file(tmp_path, recipe_dict(titles_csv))
    source = tmp_path / "new.csv"
    pl.DataFrame({"title": ["Taladro percutor Bosch"]}).write_csv(source)
    exported = tmp_path / "onnx"
    ensayo.export(ensayo.load_run(tiny_runs["neural"]), "onnx", exported)
    for command, unused in ((["validate", str(recipe)], ("torch", *heavy)),
                            (["report", str(tiny_runs["neural"]), "--output", str(tmp_path / "report")],
                             ("torch", "sklearn", "pandas", "mlflow")),
                            (["predict", str(tiny_runs["neural"]), "--input", str(source)], heavy),
                            (["predict", str(exported), "--input", str(source), "--engine", "onnx", "--output",
                              str(tmp_path / "onnx.csv")], ("torch", *heavy))):
        code = ("import sys\nfrom ensayo.cli import app\n"
                f"sys.argv = ['ensayo', *{command!r}]\n"
                "try:\n    app()\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
                f"print('loaded:', *(m for m in {unused!r} if m in sys.modules), file=sys.stderr)")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stderr.splitlines()[-1] == "loaded:", (command[0], done.stderr)
    by_onnx = pl.read_csv(tmp_path / "onnx.csv")
    labels, chances = ensayo.predict(tiny_runs["neural"], [{"title": "Taladro percutor Bosch"}])
    assert by_onnx["label_1"].to_list() == [labels[0][0]]
    assert by_onnx["probability_1"].to_list() == pytest.approx([chances[0][0]], abs=1e-4)


def test_validate_reads_each_data_files_header(tmp_path: Path, titles_csv: Path) -> None:
    good = recipe_file(tmp_path, recipe_dict(titles_csv))
    assert runner.invoke(app, ["validate", str(good)]).exit_code == 0
    refused(["validate", good, "data.filters=[languag == spanish]"],
            "data.filters.0: column 'languag' is not in the data; did you mean 'language'?")
    refused(["validate", good, f"data.source={tmp_path / 'absent.csv'}"], "absent.csv: data file not found")
    refused(["validate", good, "inputs.0.column=titel"], "inputs.0 (title): column 'titel' is not in the data")


def test_predict_prints_the_top_k_of_each_row_and_keeps_columns_to_join_back(tmp_path: Path,
                                                                             tiny_runs: dict[str, Path]) -> None:
    source = tmp_path / "new.csv"
    pl.DataFrame({"id": ["a7", "b9"], "title": ["Taladro percutor Bosch", "Zapatillas Nike running"],
                  "shop": ["x", "y"]}).write_csv(source)
    printed = runner.invoke(app, ["predict", str(tiny_runs["neural"]), "--input",
                                                                str(source)])
    assert printed.exit_code == 0, printed.output
    header = next(line for line in printed.stdout.splitlines() if "1st" in line)
    assert "2nd" in header and "3rd" in header and "4th" not in header
    labels, chances = ensayo.predict(tiny_runs["neural"], [{"title": "Taladro percutor Bosch"}])
    assert f"{labels[0][0]} ({chances[0][0]:.1%})" in printed.stdout
    written = tmp_path / "p.csv"
    done = runner.invoke(app, ["predict", str(tiny_runs["neural"]), "--input", str(source), "--output",
                               str(written), "--keep", "id,shop"])
    assert done.exit_code == 0, done.output
    rows = list(csv.DictReader(written.open()))
    assert [(r["line"], r["id"], r["shop"]) for r in rows] == [("2", "a7", "x"), ("3", "b9", "y")]
    assert rows[0]["label_1"] == labels[0][0]
    refused(["predict", tiny_runs["neural"], "--input", source, "--output", tmp_path / "q.csv", "--keep", "idd"],
            "--keep: ", "has no column 'idd'")


def test_a_log_hears_from_a_long_run_and_figures_are_rounded(tmp_path: Path, titles_csv: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENSAYO_PROGRESS_SECONDS", "0")
    log = io.StringIO()
    ensayo.run(recipe_dict(titles_csv, epochs=2), output=tmp_path / "run", track=False,
               console=Console(file=log, width=200))
    text = log.getvalue()
    assert "fitting text input 'title' ..." in text
    assert "epoch 1/2: step 1/" in text and "examples/s, loss" in text
    summary = next(line for line in text.splitlines() if line.startswith("done:"))
    seconds = summary.split("fit_seconds ")[1].split()[0]
    assert len(seconds.split(".")[1]) == 1


def test_a_score_at_chance_level_is_called_so(tmp_path: Path) -> None:
    titles = make_titles(40, seed=3)
    shuffled = [(title, label) for (title, _), (_, label) in zip(titles, reversed(titles), strict=True)]
    source = write_challenge_csv(tmp_path / "noise.csv", shuffled)
    log = io.StringIO()
    ensayo.run(recipe_dict(source, epochs=1), output=tmp_path / "run", track=False,
               console=Console(file=log, width=300))
    text = " ".join(log.getvalue().split())
    assert "warning: 5 classes: chance is 0.2, and test/balanced_accuracy" in text and "at chance level" in text


@pytest.mark.subprocess
def test_mlflows_own_info_lines_stay_quiet(tmp_path: Path, titles_csv: Path) -> None:
    raw = recipe_dict(titles_csv, epochs=1)
    raw["track"] = {"enabled": True, "uri": f"sqlite:///{tmp_path / 'fresh.db'}"}  # MLflow makes its tables
    done = subprocess.run([sys.executable, "-m", "ensayo.cli", "run", str(recipe_file(tmp_path, raw)), "--output",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "INFO mlflow" not in done.stderr and "Creating initial MLflow database tables" not in done.stderr
    assert "mlflow:  run " in done.stderr


def test_a_report_of_different_runs_shows_what_tells_them_apart(tmp_path: Path, titles_csv: Path,
                                                                 cv_run: Path) -> None:
    cnn = recipe_dict(titles_csv, encoder={"type": "cnn", "embedding_dim": 8, "filters_count": 8}, epochs=1)
    linear = {**recipe_dict(titles_csv), "model": {"type": "tfidf_linear"}}
    runs = [ensayo.run(raw, output=tmp_path / name, track=False).path
            for name, raw in (("cnn", cnn), ("linear", linear))]
    page = ensayo.report([*runs, cv_run], output=tmp_path / "report")
    table = (tmp_path / "report" / "report.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| configuration"))
    assert "| model.type |" in header and "| title.type |" in header
    assert "(3-fold cross-validated: the mean and interval of its folds)" in table
    assert "learning curves" in page.read_text()  # the network's epochs are there, the linear model's are not


def test_explore_writes_a_page_shows_groups_and_leaves_the_label_out_of_correlations(tmp_path: Path) -> None:
    recipe = audio_recipe(make_clips(tmp_path / "clips", takes=4))
    report = ensayo.explore(recipe_file(tmp_path, recipe), output=tmp_path / "explore")
    page = (tmp_path / "explore" / "report.html").read_text()
    assert report.read_text().count("![") == page.count("<img")
    assert "Rows per <code>speaker</code> and split" in page and "<table>" in page
    assert "http" not in page.replace("http-equiv", "")
    numbers = pl.DataFrame({"label": [str(i % 3) for i in range(60)], "x": [float(i) for i in range(60)],
                            "y": [float(i % 7) for i in range(60)], "title": ["t"] * 60})
    numbers.write_csv(tmp_path / "numbers.csv")
    raw = {"name": "numbers", "data": {"source": str(tmp_path / "numbers.csv"), "split": {"train": 0.8,
           "validation": 0.1, "test": 0.1}}, "inputs": [{"name": "x", "type": "number"}],
           "output": {"column": "label"}, "model": {"encoders": {"x": {"type": "passthrough"}}}}
    text = ensayo.explore(recipe_file(tmp_path, raw, "numbers.yaml"), output=tmp_path / "numbers").read_text()
    assert "Correlations between `x`, `y`." in text  # `label` is written with digits, and left out


def test_explain_shows_the_text_as_typed_and_explains_the_class_asked_for(tmp_path: Path,
                                                                        tiny_runs: dict[str, Path]) -> None:
    source = write_challenge_csv(tmp_path / "new.csv", [("Taladro Percutor BOSCH 650w", "DRILLS")])
    page = ensayo.explain(tiny_runs["neural"], source, output=tmp_path / "why.html", label="TOYS").read_text()
    assert "as typed:" in page and ">BOSCH</span>" in page and "read as: bosch" in page
    assert "why <b>TOYS</b>" in page and "linear-gradient" in page
    (row,) = ensayo.load_run(tiny_runs["neural"]).explain(pl.DataFrame({"title": ["Taladro Percutor BOSCH 650w"]}),
                                                         label="TOYS")
    assert row.explained == "TOYS" and row.label == "TOYS"
    refused(["explain", tiny_runs["neural"], "--input", source, "--label", "SHOES!"], "no class 'SHOES!' to explain")
    assert json.loads(json.dumps(row.inputs[0].typed))[2][0] == "BOSCH"
