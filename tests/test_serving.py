"""`ensayo serve`: a real uvicorn server on 127.0.0.1 answering what `ensayo predict` and `ensayo generate`
answer, in JSON, multipart and MLflow's protocol; batching concurrent requests; refusing bad input with a 4xx
that names the field; its OpenAPI schema fuzzed by schemathesis."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import soundfile as sf
from helpers.data import RATE, make_titles, tone
from PIL import Image

import ensayo
from ensayo.runs import load_run

pytestmark = [pytest.mark.server]

TITLES = ["Celular Samsung Galaxy libre", "Zapatillas Nike running talle 42", "Taladro percutor Bosch 600 watts",
          "Libro novela tapa dura", "Lego bloques didactico niños"]


def post(server: Any, path: str, **kwargs: Any) -> requests.Response:
    return requests.post(server.url + path, timeout=30, **kwargs)


def expected(run_dir: Path, rows: list[dict[str, Any]], k: int) -> tuple[list[list[str]], np.ndarray]:
    return ensayo.predict(run_dir, rows, top_k=k)


# ------------------------------------------------------------------------------ describing itself
def test_health_and_models_say_what_each_model_takes(live_server: Any, tiny_runs: dict[str, Path]) -> None:
    assert requests.get(live_server.url + "/health", timeout=10).json() == {
        "status": "ok", "models": ["neural", "tfidf-linear", "ensemble", "language-model", "tones", "pois"]}
    models = {m["name"]: m for m in requests.get(live_server.url + "/v1/models", timeout=10).json()["models"]}
    neural = models["neural"]
    assert neural["inputs"] == [{"name": "title", "kind": "text", "input_types": ["text"], "multi": None,
                                 "media": None, "suffixes": None}]
    assert neural["classes"] == sorted(neural["classes"]) and len(neural["classes"]) == 5
    assert neural["run_id"] == tiny_runs["neural"].name and neural["trained_at"].startswith("20")
    scores = load_run(tiny_runs["neural"]).metrics
    assert neural["metrics"]["test/balanced_accuracy"] == scores["test/balanced_accuracy"]
    assert models["language-model"]["level"] == "char" and "generate" in models["language-model"]["endpoints"]
    pois = {i["name"]: i for i in models["pois"]["inputs"]}
    assert pois["image"]["kind"] == "file" and pois["image"]["media"] == "image"
    assert pois["categories"]["multi"] is True and pois["xps"]["kind"] == "number"
    assert models["pois"]["content_type"] == "multipart/form-data"
    assert models["tones"]["inputs"][0]["media"] == "audio"
    missing = requests.get(live_server.url + "/v1/models/nope", timeout=10)
    assert missing.status_code == 404 and "nope" in missing.json()["detail"][0]["msg"]


def test_the_schema_describes_each_models_inputs(live_server: Any) -> None:
    schema = requests.get(live_server.url + "/openapi.json", timeout=10).json()
    components = schema["components"]["schemas"]
    row = components["NeuralRow"]
    assert row["properties"]["title"]["type"] == "string" and row["properties"]["title"]["minLength"] == 1
    assert row["additionalProperties"] is False
    upload = components["Body_predict_pois"]["properties"]
    assert upload["image"]["contentMediaType"] == "application/octet-stream"
    assert "/v1/models/language-model/generate" in schema["paths"]
    assert "text/event-stream" in json.dumps(schema["paths"]["/v1/models/language-model/generate"])
    assert requests.get(live_server.url + "/docs", timeout=10).status_code == 200


# ------------------------------------------------------------------------------------- answers
@pytest.mark.parametrize("name", ["neural", "tfidf_linear", "ensemble"])
def test_json_rows_get_what_ensayo_predict_gives_in_request_order(live_server: Any, tiny_runs: dict[str, Path],
                                                                  name: str) -> None:
    rows = [{"title": t} for t in TITLES]
    answer = post(live_server, f"/v1/models/{name.replace('_', '-')}/predict", json={"rows": rows, "top_k": 2})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    labels, probabilities = expected(tiny_runs[name], rows, 2)
    assert [p["labels"] for p in body["predictions"]] == labels
    assert np.allclose([p["probabilities"] for p in body["predictions"]], probabilities, atol=1e-6)
    assert body["model"]["name"] == name.replace("_", "-") and body["model"]["run_id"] == tiny_runs[name].name
    every = post(live_server, "/v1/models/neural/predict", json={"rows": rows[:1], "all_classes": True}).json()
    assert len(every["predictions"][0]["labels"]) == 5
    assert abs(sum(every["predictions"][0]["probabilities"]) - 1) < 1e-4


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    data = np.stack([samples] * channels, axis=1) if channels > 1 else samples
    sf.write(buffer, data, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def test_audio_uploads_at_any_rate_and_format_get_what_predicting_the_file_gives(
        live_server: Any, file_runs: dict[str, Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    clip = tone("high", rng, rate=RATE, gain=0.5)
    path = tmp_path / "high.wav"
    sf.write(path, clip, RATE, subtype="PCM_16")
    labels, probabilities = expected(file_runs["tones"], [{"path": str(path)}], 3)
    answer = post(live_server, "/v1/models/tones/predict", files={"path": ("high.wav", path.read_bytes())})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0]["labels"] == labels[0]
    assert np.allclose(answer.json()["predictions"][0]["probabilities"], probabilities[0], atol=1e-6)
    # the same sound at 16 kHz in stereo FLAC, and as OGG, is still heard as 'high'
    fast = np.interp(np.arange(len(clip) * 2) / 2, np.arange(len(clip)), clip).astype(np.float32)
    for data in (wav_bytes(fast, 2 * RATE, 2, fmt="FLAC"), wav_bytes(fast, 2 * RATE, 1, "VORBIS", "OGG")):
        heard = post(live_server, "/v1/models/tones/predict", files={"path": ("clip", data)})
        assert heard.status_code == 200 and heard.json()["predictions"][0]["labels"][0] == "high", heard.text


def png_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_photo_with_its_metadata_is_one_multipart_form(live_server: Any, file_runs: dict[str, Path],
                                                         tmp_path: Path) -> None:
    photo = tmp_path / "poi.png"
    photo.write_bytes(png_bytes((220, 50, 40)))
    row = {"image": str(photo), "categories": "['Historia', 'Arte']", "xps": 500.0}
    labels, probabilities = expected(file_runs["pois"], [row], 3)
    form = {"categories": json.dumps(["Historia", "Arte"]), "xps": "500"}
    answer = post(live_server, "/v1/models/pois/predict", files={"image": ("poi.png", photo.read_bytes())}, data=form)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0]["labels"] == labels[0]
    assert np.allclose(answer.json()["predictions"][0]["probabilities"], probabilities[0], atol=1e-6)


def test_mlflow_protocol_in_every_format_gives_the_same_answer(live_server: Any, tiny_runs: dict[str, Path]) -> None:
    rows = [{"title": t} for t in TITLES[:3]]
    labels, _ = expected(tiny_runs["neural"], rows, 3)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerows([["title"], *[[r["title"]] for r in rows]])
    requests_ = [
        {"json": {"dataframe_split": {"columns": ["title"], "data": [[r["title"]] for r in rows]}}},
        {"json": {"dataframe_records": rows}},
        {"json": {"instances": rows}},
        {"json": {"inputs": {"title": [r["title"] for r in rows]}}},
        {"data": text.getvalue(), "headers": {"content-type": "text/csv"}},
    ]
    for request in requests_:
        for path in ("/invocations", "/v1/models/neural/invocations"):
            answer = post(live_server, path, **request)
            assert answer.status_code == 200, (request, answer.text)
            assert [p["labels"] for p in answer.json()["predictions"]] == labels
    top1 = post(live_server, "/invocations", json={"dataframe_records": rows, "params": {"top_k": 1}}).json()
    assert [p["labels"] for p in top1["predictions"]] == [[label[0]] for label in labels]


def test_mlflow_protocol_takes_files_as_base64_and_never_a_path(live_server: Any, file_runs: dict[str, Path]) -> None:
    clip = wav_bytes(tone("low", np.random.default_rng(3), gain=0.5), RATE)
    answer = post(live_server, "/v1/models/tones/invocations",
                  json={"dataframe_records": [{"path": base64.b64encode(clip).decode()}]})
    assert answer.status_code == 200 and answer.json()["predictions"][0]["labels"][0] == "low", answer.text
    a_path = next(file_runs["clips"].glob("low_*.wav"))
    refused = post(live_server, "/v1/models/tones/invocations", json={"dataframe_records": [{"path": str(a_path)}]})
    assert refused.status_code == 422 and "path is never read" in refused.json()["message"]


def test_generation_streams_what_ensayo_generate_prints(live_server: Any, tiny_runs: dict[str, Path]) -> None:
    request = {"prompt": "The ", "length": 40, "temperature": 0.8, "seed": 5}
    events = []
    with requests.post(live_server.url + "/v1/models/language-model/generate", json=request, stream=True,
                       timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    tokens = [data for kind, data in events if kind == "token"]
    printed = "".join(ensayo.generate(tiny_runs["language_model"], "The ", 40, 0.8, seed=5))
    assert len(tokens) == 40 and "".join(tokens) == printed
    assert events[-1][0] == "done" and events[-1][1]["text"] == printed
    other = post(live_server, "/v1/models/language-model/invocations",
                 json={"dataframe_records": [{"prompt": "The "}], "params": {"length": 40, "seed": 5}})
    assert other.json()["predictions"] == [printed]


# ------------------------------------------------------------------------------------- batching
def test_concurrent_single_rows_share_model_calls_and_get_their_own_answers(live_server: Any) -> None:
    rows = [{"title": title} for title, _ in make_titles(4, seed=11)]
    alone = [post(live_server, "/v1/models/neural/predict", json={"rows": [row], "top_k": 3}).json()["predictions"][0]
             for row in rows]
    before = requests.get(live_server.url + "/v1/models/neural", timeout=10).json()["stats"]
    with ThreadPoolExecutor(len(rows)) as pool:
        together = list(pool.map(lambda row: post(live_server, "/v1/models/neural/predict",
                                                  json={"rows": [row], "top_k": 3}).json()["predictions"][0], rows))
    after = requests.get(live_server.url + "/v1/models/neural", timeout=10).json()["stats"]
    calls = after["model_calls"] - before["model_calls"]
    assert after["requests"] - before["requests"] == len(rows)
    assert calls < len(rows), f"{len(rows)} concurrent requests made {calls} model calls"
    for one, many in zip(alone, together, strict=True):
        assert one["labels"] == many["labels"]
        assert np.allclose(one["probabilities"], many["probabilities"], atol=1e-6)


# ------------------------------------------------------------------------------------ bad input
def detail(response: requests.Response) -> list[dict[str, Any]]:
    assert 400 <= response.status_code < 500, response.text
    return response.json()["detail"]


def test_bad_json_rows_get_a_4xx_naming_the_row_and_field(live_server: Any) -> None:
    url = "/v1/models/neural/predict"
    cases = {
        "missing": {"rows": [{"title": "ok"}, {}]},
        "extra": {"rows": [{"title": "ok", "price": 3}]},
        "wrong type": {"rows": [{"title": 42}]},
        "empty text": {"rows": [{"title": "   "}]},
        "too many rows": {"rows": [{"title": "x"}] * 65},
        "no rows": {"rows": []},
        "top_k": {"rows": [{"title": "x"}], "top_k": 0},
    }
    where = {name: detail(post(live_server, url, json=body))[0]["loc"] for name, body in cases.items()}
    assert where["missing"] == ["body", "rows", 1, "title"]
    assert where["extra"] == ["body", "rows", 0, "price"]
    assert where["wrong type"] == ["body", "rows", 0, "title"]
    assert where["empty text"] == ["body", "rows", 0, "title"]
    assert where["too many rows"] == ["body", "rows"] and where["no rows"] == ["body", "rows"]
    assert where["top_k"] == ["body", "top_k"]
    assert post(live_server, url, data="{not json", headers={"content-type": "application/json"}).status_code == 422
    assert post(live_server, "/v1/models/nope/predict", json={"rows": []}).status_code == 404


def test_bad_files_get_a_4xx_naming_the_field_and_file(live_server: Any) -> None:
    url = "/v1/models/tones/predict"
    good = wav_bytes(tone("high", np.random.default_rng(1), gain=0.5), RATE)
    not_audio = detail(post(live_server, url, files={"path": ("notes.txt", b"just some text")}))
    assert not_audio[0]["loc"] == ["body", "path"] and "notes.txt" in not_audio[0]["msg"]
    cut = detail(post(live_server, url, files={"path": ("cut.wav", good[: len(good) // 2])}))
    assert "truncated" in cut[0]["msg"] and "cut.wav" in cut[0]["msg"]
    assert detail(post(live_server, url, files={"path": ("empty.wav", b"")}))[0]["loc"][-1] == "path"
    assert detail(post(live_server, url, data={"other": "x"}))[0]["loc"] == ["body", "path"]
    too_big = post(live_server, url, files={"path": ("big.wav", b"\0" * (2 * 2**20))})
    assert too_big.status_code == 413 and "at most" in too_big.json()["detail"][0]["msg"]
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, format="PNG")
    bombed = detail(post(live_server, "/v1/models/pois/predict", files={"image": ("bomb.png", bomb.getvalue())},
                         data={"categories": "Arte", "xps": "1"}))
    assert bombed[0]["loc"] == ["body", "image"] and "bomb.png" in bombed[0]["msg"]
    typed = detail(post(live_server, "/v1/models/pois/predict", files={"image": ("a.png", png_bytes((1, 2, 3)))},
                        data={"xps": "many"}))
    assert typed[0]["loc"] == ["body", "xps"]


def test_bad_mlflow_requests_get_a_4xx_in_mlflows_error_shape(live_server: Any) -> None:
    cases = [
        ({"json": {"rows": [{"title": "x"}]}}, 400),
        ({"json": {"dataframe_records": [{"title": "x"}], "instances": [{"title": "x"}]}}, 400),
        ({"json": {"dataframe_records": [{"titel": "x"}]}}, 422),
        ({"json": {"dataframe_records": [{"title": ""}]}}, 422),
        ({"json": {"dataframe_records": [{"title": "x"}] * 65}}, 422),
        ({"json": {"dataframe_records": [{"title": "x"}], "params": {"top_k": 0}}}, 422),
        ({"data": b"\xff\xfe", "headers": {"content-type": "application/json"}}, 400),
        ({"data": "title\n", "headers": {"content-type": "text/plain"}}, 415),
    ]
    for request, status in cases:
        answer = post(live_server, "/invocations", **request)
        assert answer.status_code == status, (request, answer.text)
        assert answer.json()["error_code"] and answer.json()["message"]


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(live_server: Any) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

    schema = schemathesis.openapi.from_url(live_server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        @settings(max_examples=8, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=live_server.url, timeout=30)
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance,
                                                     status_code_conformance])

        check()


# ------------------------------------------------------------------------------------ the command
@pytest.mark.subprocess
def test_ensayo_serve_runs_worker_processes_until_interrupted(tiny_runs: dict[str, Path]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "ensayo.cli", "serve", f"titles={tiny_runs['neural']}",
               str(tiny_runs["tfidf_linear"]), "--port", str(port), "--workers", "2"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline, health = time.monotonic() + 180, None  # two workers each import ensayo and load both runs
        while health is None:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
            except requests.ConnectionError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "the server did not answer in 180 s"
                time.sleep(0.1)
        assert health["models"] == ["titles", "tiny"]
        answer = requests.post(f"http://127.0.0.1:{port}/v1/models/titles/predict",
                               json={"rows": [{"title": TITLES[2]}]}, timeout=10).json()
        assert answer["predictions"][0]["labels"][0] == "DRILLS" and answer["model"]["name"] == "titles"
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=30)[0]
    assert server.returncode == 0, output


def test_a_worker_keeps_what_it_loaded_out_of_the_collectors_full_passes(tiny_runs: dict[str, Path],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's app is made once its runs are loaded and warmed up; what they hold is frozen then, so that the
    collector's full passes under load do not walk it (they stalled every request in flight)."""
    import gc

    from ensayo.serving import server
    from ensayo.serving.options import ServeOptions

    monkeypatch.setenv(server.CONFIG_VARIABLE, json.dumps({"runs": {"titles": str(tiny_runs["neural"])},
                                                           "options": server.asdict(ServeOptions())}))
    switch = sys.getswitchinterval()
    try:
        server.app_from_environment()
        assert gc.get_freeze_count() > 10_000
        assert not any(type(o).__name__ == "TextFeature" for o in gc.get_objects())  # frozen ones are not listed
    finally:
        gc.unfreeze()
        sys.setswitchinterval(switch)


@pytest.mark.subprocess
def test_ensayo_serve_answers_with_the_int8_onnx_engine(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ensayo.cli import app
    from ensayo.runs import load_run

    exported = tmp_path / "int8"
    result = CliRunner().invoke(app, ["export", str(tiny_runs["neural"]), "--format", "onnx", "--output",
                                      str(exported), "--quantize", "int8"])
    assert result.exit_code == 0, result.output
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "ensayo.cli", "serve", f"titles={exported}", "--port", str(port),
                               "--engine", "onnx"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rows = [{"title": title} for title in TITLES]
    try:
        deadline, answer = time.monotonic() + 120, None
        while answer is None:
            try:
                answer = requests.post(f"http://127.0.0.1:{port}/v1/models/titles/predict",
                                       json={"rows": rows, "top_k": 2}, timeout=10).json()
            except requests.ConnectionError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "the server did not answer in 120 s"
                time.sleep(0.1)
        mapped = Path(f"/proc/{server.pid}/maps").read_text()  # the libraries the server process has loaded
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    assert "onnxruntime" in mapped and "libtorch" not in mapped  # the ONNX engine answers without torch
    labels, probabilities = ensayo.predict(load_run(exported, engine="onnx"), rows, top_k=2)
    assert [p["labels"] for p in answer["predictions"]] == labels
    assert np.allclose([p["probabilities"] for p in answer["predictions"]], probabilities, atol=1e-4)


def test_ensayo_serve_refuses_an_engine_a_run_cannot_answer_with(tiny_runs: dict[str, Path]) -> None:
    from typer.testing import CliRunner

    from ensayo.cli import app

    for run, message in [(tiny_runs["neural"], "ensayo export"), (tiny_runs["tfidf_linear"], "no ONNX engine")]:
        result = CliRunner().invoke(app, ["serve", str(run), "--engine", "onnx"])
        assert result.exit_code == 2 and message in result.output, result.output


def test_ensayo_serve_refuses_clashing_names_and_missing_runs(tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ensayo.cli import app

    clash = CliRunner().invoke(app, ["serve", str(tiny_runs["neural"]), str(tiny_runs["tfidf_linear"])])
    assert clash.exit_code == 2 and "two runs are named 'tiny'" in clash.output
    missing = CliRunner().invoke(app, ["serve", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no such run directory" in missing.output
    odd = CliRunner().invoke(app, ["serve", f"a/b={tiny_runs['neural']}"])
    assert odd.exit_code == 2
