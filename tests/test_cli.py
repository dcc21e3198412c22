import json
from pathlib import Path

from helpers.data import write_recipe
from typer.testing import CliRunner

from ensayo.cli import app

runner = CliRunner()


def test_validate_reports_the_bad_key(tmp_path: Path, titles_csv: Path) -> None:
    recipe = write_recipe(tmp_path, titles_csv)
    ok = runner.invoke(app, ["validate", str(recipe)])
    assert ok.exit_code == 0 and "valid" in ok.stdout
    bad = runner.invoke(app, ["validate", str(recipe), "train.epocs=3"])
    assert bad.exit_code == 2
    assert "train.epocs" in bad.output and "did you mean 'epochs'" in bad.output


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
