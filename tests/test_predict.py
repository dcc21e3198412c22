"""Predicting and scoring with a saved run: files through the CLI, in-memory rows through the API."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.data import make_titles, write_challenge_csv, write_recipe
from typer.testing import CliRunner

from ensayo.cli import app

runner = CliRunner()


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


def test_in_memory_rows_get_what_a_file_gets(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    import polars as pl

    import ensayo

    rows = [{"title": title} for title, _ in make_titles(3, seed=5)]
    new = tmp_path / "new.csv"
    pl.DataFrame(rows).write_csv(new)
    for kind in ("neural", "tfidf_linear", "ensemble"):
        labels, probabilities = ensayo.predict(tiny_runs[kind], rows, top_k=2)
        written = runner.invoke(app, ["predict", str(tiny_runs[kind]), "--input", str(new), "--output",
                                      str(tmp_path / f"{kind}.csv"), "--top-k", "2"])
        assert written.exit_code == 0, written.output
        from_file = pl.read_csv(tmp_path / f"{kind}.csv")
        assert [row[0] for row in labels] == from_file["label_1"].to_list()
        np.testing.assert_allclose(probabilities[:, 0], from_file["probability_1"].to_numpy(), atol=1e-6)
        assert sum(row[0] == label for row, (_, label) in zip(labels, make_titles(3, seed=5), strict=True)) >= 13
    with pytest.raises(ValueError, match=r"the rows lack the input column\(s\) \['title'\]"):
        ensayo.predict(tiny_runs["neural"], [{"name": "Taladro"}])
