"""`ensayo export`: an MLflow pyfunc model of every model type that `mlflow models serve` serves with the answers
of `ensayo predict` and `ensayo generate`, logged and registered in MLflow; and ONNX networks that ONNX Runtime
runs to within 1e-4 of torch, used by `ensayo predict --engine onnx`."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import requests
import yaml
from helpers.data import audio_recipe, make_clips, make_titles, recipe_dict, write_challenge_csv
from typer.testing import CliRunner

import ensayo
from ensayo import layout
from ensayo.cli import app
from ensayo.data import load_folds, load_splits
from ensayo.runs import load_run

TITLES = ["Celular Samsung Galaxy libre", "Zapatillas Nike running talle 42", "Taladro percutor Bosch 600 watts",
          "Libro novela tapa dura", "Lego bloques didactico niños"]


def export(run_dir: Path, fmt: str, output: Path, *more: str) -> str:
    result = CliRunner().invoke(app, ["export", str(run_dir), "--format", fmt, "--output", str(output), *more])
    assert result.exit_code == 0, result.output
    return result.output


def predicted_csv(run_dir: Path, source: Path, output: Path, *more: str) -> list[list[str]]:
    result = CliRunner().invoke(app, ["predict", str(run_dir), "--input", str(source), "--output", str(output),
                                      "--top-k", "3", *more])
    assert result.exit_code == 0, result.output
    with open(output) as handle:
        return list(csv.reader(handle))[1:]


def titles_file(folder: Path) -> Path:
    return write_challenge_csv(folder / "new.csv", [(t, "BOOKS") for t in TITLES])


# ------------------------------------------------------------------------------------------ mlflow
@pytest.mark.parametrize("kind", ["ensemble", "language_model"])
def test_an_exported_model_holds_no_pickle_and_no_code(tiny_runs: dict[str, Path], tmp_path: Path, kind: str) -> None:
    model_dir = tmp_path / "model"
    export(tiny_runs[kind], "mlflow", model_dir)
    described = yaml.safe_load((model_dir / "MLmodel").read_text())
    flavour = described["flavors"]["python_function"]
    assert flavour["loader_module"] == "ensayo.exporting.pyfunc" and "python_model" not in flavour
    stored = [p.relative_to(model_dir) for p in model_dir.rglob("*") if p.is_file()]
    assert not [p for p in stored if p.suffix in (".pkl", ".pickle", ".pt", ".py", ".cloudpickle")], stored
    assert layout.LOCK not in {p.name for p in stored} and layout.RECIPE in {p.name for p in stored}
    # what answers is checked for every model type by the contract suite (helpers.contract)


@pytest.mark.slow
@pytest.mark.subprocess
def test_an_exported_model_carries_the_wheel_of_this_ensayo_and_requires_nothing_else(
        tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    import subprocess
    import venv

    model_dir = tmp_path / "model"
    export(tiny_runs["neural"], "mlflow", model_dir)
    requirements = (model_dir / "requirements.txt").read_text().split()
    wheels = list((model_dir / "wheels").glob("*.whl"))
    assert len(wheels) == 1 and wheels[0].name.startswith(f"ensayo_ml-{ensayo.__version__}-")
    assert requirements == [f"wheels/{wheels[0].name}"]
    assert f"wheels/{wheels[0].name}" in (model_dir / "conda.yaml").read_text()
    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=True)
    resolved = subprocess.run([str(fresh / "bin" / "python"), "-m", "pip", "install", "--dry-run", "--no-deps",
                               "--no-index", "--find-links", "wheels", "-r", "requirements.txt"],
                              cwd=model_dir, capture_output=True, text=True, timeout=300)
    assert resolved.returncode == 0, resolved.stderr
    assert f"Would install ensayo-ml-{ensayo.__version__}" in resolved.stdout, resolved.stdout
    with zipfile.ZipFile(wheels[0]) as wheel:
        assert "ensayo/exporting/pyfunc.py" in wheel.namelist() and "ensayo/runs/answer.py" in wheel.namelist()


def mlflow_serve(model_dir: Path) -> tuple[subprocess.Popen, str]:
    """`mlflow models serve` of a model folder on a free local port, started (not yet answering)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mlflow = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen([str(mlflow), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
                               "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PATH": f"{mlflow.parent}{os.pathsep}{os.environ['PATH']}"})
    return server, f"http://127.0.0.1:{port}"


def wait_until_up(server: subprocess.Popen, url: str) -> None:
    for _ in range(900):
        try:
            if requests.get(url + "/ping", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("mlflow models serve did not start")


@pytest.mark.subprocess
@pytest.mark.server
def test_mlflow_models_serve_answers_what_ensayo_predict_and_generate_give(tiny_runs: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    export(tiny_runs["neural"], "mlflow", tmp_path / "classifier")
    export(tiny_runs["language_model"], "mlflow", tmp_path / "generator")
    servers = [mlflow_serve(tmp_path / "classifier"), mlflow_serve(tmp_path / "generator")]  # both start at once
    try:
        rows = predicted_csv(tiny_runs["neural"], titles_file(tmp_path), tmp_path / "predicted.csv")
        for server, url in servers:
            wait_until_up(server, url)
        (_, classifier), (_, generator) = servers
        answer = requests.post(classifier + "/invocations", json={
            "dataframe_split": {"columns": ["title"], "data": [[t] for t in TITLES]}, "params": {"top_k": 3}},
                               timeout=30)
        assert answer.status_code == 200, answer.text
        served = answer.json()["predictions"]
        generated = requests.post(generator + "/invocations", json={"dataframe_records": [{"prompt": "The "}],
                                                                    "params": {"length": 25, "seed": 4}}, timeout=30)
    finally:
        for server, _ in servers:
            server.terminate()
            server.wait(20)
    assert [p["labels"] for p in served] == [[row[1], row[3], row[5]] for row in rows]
    assert np.allclose([p["probabilities"] for p in served], [[float(row[i]) for i in (2, 4, 6)] for row in rows],
                       atol=1e-6)
    printed = CliRunner().invoke(app, ["generate", str(tiny_runs["language_model"]), "--prompt", "The ",
                                       "--length", "25", "--seed", "4"]).output
    assert generated.status_code == 200 and "The " + generated.json()["predictions"][0] == printed.rstrip("\n")


def test_a_tracked_run_logs_its_model_and_registers_it(tmp_path: Path, mlflow_db: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{mlflow_db}"
    recipe = {**recipe_dict(write_challenge_csv(tmp_path / "titles.csv", make_titles())),
              "track": {"enabled": True, "uri": uri, "experiment": "export"}}
    run = ensayo.run(recipe, output=tmp_path / "run")
    output = export(run.path, "mlflow", tmp_path / "model", "--register", "titles-classifier")
    assert "registered as titles-classifier version 1" in output and "logged to MLflow as models:/" in output
    client = MlflowClient(uri)
    version = client.get_latest_versions("titles-classifier")[0]
    assert version.run_id == run.run_id
    mlflow.set_tracking_uri(uri)
    registered = mlflow.pyfunc.load_model("models:/titles-classifier/1")
    answer = registered.predict(pl.DataFrame({"title": TITLES[:2]}).to_pandas())
    assert answer["labels"].tolist() == ensayo.predict(run, [{"title": t} for t in TITLES[:2]], top_k=3)[0]


def test_untracked_runs_cannot_be_registered_and_taken_folders_are_kept(tiny_runs: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", str(tiny_runs["neural"]), "--format", "mlflow", "--output",
                                      str(tmp_path / "m"), "--register", "x"])
    assert result.exit_code == 2 and "not tracked" in result.output
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(app, ["export", str(tiny_runs["neural"]), "--format", "mlflow", "--output",
                                      str(tmp_path / "taken")])
    assert result.exit_code == 2 and "already holds files" in result.output
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    result = CliRunner().invoke(app, ["export", str(tiny_runs["neural"]), "--format", "pickle"])
    assert result.exit_code == 2 and "mlflow or onnx" in result.output


# -------------------------------------------------------------------------------------------- onnx
def test_onnx_runtime_matches_torch_on_a_test_split_and_serves_predict(tiny_runs: dict[str, Path],
                                                                       file_runs: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    source = titles_file(tmp_path)
    for name, run_dir in [("neural", tiny_runs["neural"]), ("tones", file_runs["tones"]),
                          ("pois", file_runs["pois"])]:
        out = tmp_path / f"{name}-onnx"
        export(run_dir, "onnx", out)
        assert {layout.ONNX_MODEL, layout.ONNX_INPUTS, layout.STATE, layout.RECIPE} <= {p.name for p in out.iterdir()}
        assert not (out / layout.WEIGHTS).exists()
        torch_run, onnx_run = load_run(run_dir), load_run(out, engine="onnx")
        test = load_splits(torch_run.recipe, None).test  # the test split, read as the run read it
        gap = np.abs(torch_run.predict_proba(test) - onnx_run.predict_proba(test)).max()
        assert test.height > 5 and gap < 1e-4, (name, gap)
        with pytest.raises(TypeError, match="this neural model cannot explain its answers: its network runs in "
                                            "ONNX Runtime .* load the run with the torch engine"):
            onnx_run.explain(test.head(1))
    pois = load_run(file_runs["pois"])  # a photo, numbers and categories: answered without torch too
    test = load_splits(pois.recipe, None).test
    test.write_parquet(tmp_path / "pois-test.parquet")
    code = ("import sys\nimport polars as pl\nfrom ensayo import load_run\n"
            f"run = load_run({str(tmp_path / 'pois-onnx')!r}, engine='onnx')\n"
            f"print(run.predict_proba(pl.read_parquet({str(tmp_path / 'pois-test.parquet')!r})).sum(), "
            "'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    total, torch_loaded = done.stdout.split()
    assert float(total) == pytest.approx(test.height, abs=1e-3) and torch_loaded == "False", done.stdout
    by_torch = predicted_csv(tiny_runs["neural"], source, tmp_path / "torch.csv")
    by_onnx = predicted_csv(tmp_path / "neural-onnx", source, tmp_path / "onnx.csv", "--engine", "onnx")
    assert [r[1::2] for r in by_torch] == [r[1::2] for r in by_onnx]
    assert np.allclose([[float(x) for x in r[2::2]] for r in by_torch], [[float(x) for x in r[2::2]]
                                                                         for r in by_onnx], atol=1e-4)
    labelled = str(load_run(tiny_runs["neural"]).recipe.data.source)
    scores = {engine: CliRunner().invoke(app, ["evaluate", str(tmp_path / "neural-onnx"), "--input", labelled,
                                               "--output", str(tmp_path / f"{engine}.json"), "--engine", engine])
              for engine in ("torch", "onnx")}
    assert "no trained weights" in scores["torch"].output  # an export holds the network for ONNX Runtime only
    assert scores["onnx"].exit_code == 0, scores["onnx"].output
    by_engine = json.loads((tmp_path / "onnx.json").read_text())
    as_trained = ensayo.evaluate(tiny_runs["neural"], labelled)[0]
    assert by_engine["rows"] == as_trained["rows"] > 5
    assert all(abs(by_engine[key] - as_trained[key]) < 1e-4 for key in as_trained), (by_engine, as_trained)


def test_onnx_export_into_the_run_itself_and_the_engine_needs_it(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_runs["neural"], run_dir)
    missing = CliRunner().invoke(app, ["predict", str(run_dir), "--input", str(titles_file(tmp_path)),
                                       "--engine", "onnx"])
    assert missing.exit_code == 2 and "ensayo export" in missing.output
    result = CliRunner().invoke(app, ["export", str(run_dir), "--format", "onnx"])
    assert result.exit_code == 0 and (run_dir / layout.ONNX_MODEL).is_file()
    assert load_run(run_dir, "onnx").predict(pl.DataFrame({"title": TITLES}))[0] == \
        load_run(run_dir).predict(pl.DataFrame({"title": TITLES}))[0]


def int8_weights(path: Path) -> list[str]:
    import onnx

    return [w.name for w in onnx.load(str(path)).graph.initializer if w.data_type == onnx.TensorProto.INT8]


def test_an_int8_export_answers_as_the_fp32_network_does(tiny_runs: dict[str, Path], file_runs: dict[str, Path],
                                                         cv_run: Path, tmp_path: Path) -> None:
    agreement = {}
    for name, run_dir in [("neural", tiny_runs["neural"]), ("pois", file_runs["pois"]), ("cv", cv_run)]:
        fp32, int8 = tmp_path / f"{name}-fp32", tmp_path / f"{name}-int8"
        export(run_dir, "onnx", fp32)
        export(run_dir, "onnx", int8, "--quantize", "int8")
        networks = sorted(p.relative_to(int8) for p in int8.rglob(layout.ONNX_MODEL))
        assert networks == sorted(p.relative_to(fp32) for p in fp32.rglob(layout.ONNX_MODEL))
        for network in networks:  # every network written (each fold's too) is quantized, and says so
            assert int8_weights(int8 / network) and not int8_weights(fp32 / network)
            assert json.loads((int8 / network.parent / layout.ONNX_INPUTS).read_text())["quantized"] == "int8"
            assert "quantized" not in json.loads((fp32 / network.parent / layout.ONNX_INPUTS).read_text())
        recipe = load_run(run_dir).recipe
        test = load_folds(recipe)[0].test if name == "cv" else load_splits(recipe, None).test
        by_fp32, by_int8 = load_run(fp32, engine="onnx").predict_proba(test), \
            load_run(int8, engine="onnx").predict_proba(test)
        assert np.allclose(by_int8.sum(axis=1), 1.0, atol=1e-5)
        assert np.abs(by_fp32 - by_int8).max() < 0.05, name  # close, not within the contract's 1e-4
        agreement[name] = float((by_fp32.argmax(axis=1) == by_int8.argmax(axis=1)).mean())
    assert min(agreement.values()) >= 0.99, agreement


def test_only_onnx_exports_quantize_and_only_to_int8(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    for fmt, quantize, message in [("onnx", "int4", "choose int8"), ("mlflow", "int8", "for the onnx format")]:
        result = CliRunner().invoke(app, ["export", str(tiny_runs["neural"]), "--format", fmt, "--output",
                                          str(tmp_path / fmt), "--quantize", quantize])
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "onnx" / layout.ONNX_MODEL).exists()


@pytest.mark.parametrize(("kind", "reason"), [
    ("tfidf_linear", "not a network"), ("ensemble", "pools its members"), ("language_model", "one token at a time")])
def test_model_types_that_do_not_export_to_onnx_say_why(tiny_runs: dict[str, Path], kind: str, reason: str) -> None:
    result = CliRunner().invoke(app, ["export", str(tiny_runs[kind]), "--format", "onnx"])
    assert result.exit_code == 2 and reason in result.output


@pytest.mark.parametrize(("encoder", "preprocessing", "exported"), [
    ({"type": "cnn", "embedding_dim": 8, "filters_count": 8}, {}, True),
    ({"type": "cnn", "embedding_dim": 8, "filters_count": 8}, {"char_ngrams": [3, 4]}, True),  # the demo's
    ({"type": "rnn", "embedding_dim": 8, "hidden_size": 8, "pooling": "max"}, {}, True),
    ({"type": "rnn", "embedding_dim": 8, "hidden_size": 8, "pooling": "last"}, {}, False),
    ({"type": "bag", "embedding_dim": 8}, {"char_ngrams": [3, 4]}, True),
])
def test_encoders_export_to_onnx_or_say_why_not(tmp_path: Path, encoder: dict[str, Any],
                                                preprocessing: dict[str, Any], exported: bool) -> None:
    recipe = recipe_dict(write_challenge_csv(tmp_path / "titles.csv", make_titles(20)), encoder=encoder, epochs=1)
    recipe["inputs"][0]["preprocessing"].update(preprocessing)
    run = ensayo.run(recipe, output=tmp_path / "run", track=False)
    result = CliRunner().invoke(app, ["export", str(run.path), "--format", "onnx", "--output", str(tmp_path / "o")])
    if not exported:
        assert result.exit_code == 2, result.output
        assert "cannot export to ONNX: this neural model cannot be exported to onnx: input 'title'" in result.output
        return
    assert result.exit_code == 0, result.output
    table = pl.DataFrame({"title": [*TITLES, "x", "una sola palabra con muchas mas palabras que el resto " * 3]})
    gap = np.abs(run.predict_proba(table) - load_run(tmp_path / "o", "onnx").predict_proba(table)).max()
    assert gap < 1e-4


@pytest.mark.parametrize("encoder", [{"type": "rnn", "hidden_size": 8, "layers": 1},
                                     {"type": "cnn_rnn", "channels": [4], "hidden_size": 8, "pooling": "last"}])
def test_audio_encoders_export_to_onnx(tmp_path: Path, encoder: dict[str, Any]) -> None:
    recipe = audio_recipe(make_clips(tmp_path / "clips", takes=4), encoder, train={"epochs": 1})
    run = ensayo.run(recipe, output=tmp_path / "run", track=False)
    export(run.path, "onnx", tmp_path / "o")
    clips = pl.DataFrame({"path": [str(p) for p in sorted((tmp_path / "clips").glob("*.wav"))[:9]]})
    assert np.abs(run.predict_proba(clips) - load_run(tmp_path / "o", "onnx").predict_proba(clips)).max() < 1e-4
