import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import make_titles, recipe_dict, write_challenge_csv
from typer.testing import CliRunner

from ensayo.cli import app

runner = CliRunner()


def write_recipe(tmp_path: Path, source: Path, **train) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe_dict(source, **train)))
    return path


def test_validate_reports_the_bad_key(tmp_path: Path, titles_csv: Path) -> None:
    recipe = write_recipe(tmp_path, titles_csv)
    ok = runner.invoke(app, ["validate", str(recipe)])
    assert ok.exit_code == 0 and "valid" in ok.stdout
    bad = runner.invoke(app, ["validate", str(recipe), "train.epocs=3"])
    assert bad.exit_code == 2
    assert "train.epocs" in bad.output and "did you mean 'epochs'" in bad.output


def test_run_predict_evaluate(tmp_path: Path, titles_csv: Path) -> None:
    recipe = write_recipe(tmp_path, titles_csv)
    result = runner.invoke(app, ["run", str(recipe), "train.epochs=5", "--no-track", "--output", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith(str(tmp_path / "r"))
    assert yaml.safe_load((tmp_path / "r" / "recipe.yaml").read_text())["train"]["epochs"] == 5

    new = write_challenge_csv(tmp_path / "new.csv", make_titles(4, seed=11), extra_lines=["broken,row"])
    predicted = runner.invoke(app, ["predict", str(tmp_path / "r"), "--input", str(new), "--output",
                                    str(tmp_path / "p.csv"), "--top-k", "2", "--batch-size", "7"])
    assert predicted.exit_code == 0, predicted.output
    assert "new.csv:22" in predicted.output  # the malformed line is named, the rest is predicted
    with open(tmp_path / "p.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 20
    assert list(rows[0]) == ["line", "label_1", "probability_1", "label_2", "probability_2"]
    truth = [label for _, label in make_titles(4, seed=11)]
    hits = sum(row["label_1"] == label for row, label in zip(rows, truth, strict=True))
    assert hits >= 18
    assert all(float(r["probability_1"]) >= float(r["probability_2"]) for r in rows)

    scored = runner.invoke(app, ["evaluate", str(tmp_path / "r"), "--input", str(new), "--output",
                                 str(tmp_path / "m.json")])
    assert scored.exit_code == 0, scored.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    spanish = [i for i in range(20) if i % 10 != 9]  # evaluation applies the recipe's language filter
    assert metrics["rows"] == len(spanish)
    spanish_hits = sum(rows[i]["label_1"] == truth[i] for i in spanish)
    assert metrics["accuracy"] == pytest.approx(spanish_hits / len(spanish))
    assert "balanced_accuracy" in scored.stdout


def test_run_errors_are_one_clear_line(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, tmp_path / "absent.csv")
    result = runner.invoke(app, ["run", str(recipe), "--no-track"])
    assert result.exit_code == 2
    assert "absent.csv: data file not found" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()  # nothing half-made is left behind


def test_datasets_list(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "ag_news").mkdir()
    (tmp_path / "ag_news" / "test.csv").write_text("x")
    monkeypatch.setenv("ENSAYO_DATA", str(tmp_path))
    result = runner.invoke(app, ["datasets", "list", "--json"])
    listed = json.loads(result.stdout)
    assert listed["ag_news"] == str(tmp_path / "ag_news" / "test.csv")
    assert listed["meli"] is None
