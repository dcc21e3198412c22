"""Serving benchmark: `ensayo serve` against two peers serving the same run, on this machine, with the same
worker count and torch's default threads in all:
- `mlflow models serve` of the run exported as an MLflow pyfunc model (one model call per request);
- LitServe (the `bench` extra) serving the run through `ensayo.load_run` in the few lines of `litserve_main`,
  with its dynamic batching on the LitAPI (`max_batch_size=256`, `batch_timeout=0.002`), one worker, on
  127.0.0.1 (MeLi only).
MeLi is served twice: by torch, and by ONNX Runtime from the run's int8 export (`ensayo export --format onnx
--quantize int8`, then `ensayo serve --engine onnx`); LitServe serves the same int8 export through
`load_run(..., engine="onnx")` beside it. A bounded client on 127.0.0.1 (threads, each with its own keep-alive
connection, each sending its next request when the last one is answered) loads each server at 1, 8 and 32
concurrent clients with single-row and 64-row requests: MeLi titles (JSON) and spoken digits (WAV uploads for
ensayo, base64 WAVs in MLflow's JSON for the peer, as its protocol takes files). Reports requests and rows per
second, p50 / p95 / p99 latency, and the ratios to the peers; then torch, ONNX Runtime and int8 predicting the
MeLi test split (time, test balanced accuracy, top labels equal to torch's).

    python benchmarks/serving.py                    # trains the two runs first if benchmarks/out lacks them
    python benchmarks/serving.py --int8-weights     # only int8 with 8-bit against 7-bit weights, no servers
    python benchmarks/serving.py --startup --repeats 3 --before /tmp/head/src   # start-up and memory, no load
    python benchmarks/serving.py --data meli --servers ensayo,ensayo-int8 --concurrency 8,32 --before /tmp/head/src
    python benchmarks/serving.py --seconds 5 --concurrency 1,8 --servers ensayo,ensayo-int8,litserve-int8

Writes benchmarks/out/serving.md and serving.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
BIN = Path(sys.executable).parent
RUNS = {"meli": "product-titles-cnn", "digits": "spoken-digits-cnn"}


# ------------------------------------------------------------------------------------- the runs
def ensure_run(recipe: str) -> Path:
    run_dir = OUT / "runs" / recipe
    if not (run_dir / "metrics.json").is_file():
        print(f"training {recipe} (once; kept in {run_dir})", flush=True)
        subprocess.run([str(BIN / "ensayo"), "run", str(ROOT / "recipes" / f"{recipe}.yaml"), "--output",
                        str(run_dir), "--no-track", "--force"], check=True)
    return run_dir


def export(run_dir: Path, fmt: str, quantize: str | None = None) -> Path:
    """Exported afresh each time: an export of an older ensayo measures the older code."""
    target = OUT / "exports" / f"{run_dir.name}-{fmt}{'-' + quantize if quantize else ''}"
    shutil.rmtree(target, ignore_errors=True)
    more = ["--quantize", quantize] if quantize else []
    subprocess.run([str(BIN / "ensayo"), "export", str(run_dir), "--format", fmt, "--output", str(target), *more],
                   check=True, stdout=subprocess.DEVNULL)
    return target


def test_rows(run_dir: Path, count: int = 2000) -> list[dict[str, Any]]:
    """Rows of the run's test split, as a client would send them (audio: the file's bytes)."""
    from ensayo.data import load_splits
    from ensayo.runs import load_run

    run = load_run(run_dir)
    table = load_splits(run.recipe, ROOT / "recipes").test
    fields = [field.name for field in run.fields]
    rows = table.select(fields).head(count).to_dicts()
    for row in rows:
        for field in run.fields:
            if field.values.kind == "file":
                row[field.name] = Path(row[field.name]).read_bytes()
    return rows


# ------------------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(source: str | None = None) -> dict[str, str]:
    """This venv's commands first on the PATH; with `source`, a checkout's `src` to run ensayo from (another
    version's code)."""
    code = {"PYTHONPATH": source} if source else {}
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **code}


def start(kind: str, target: Path, workers: int, source: str | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    engine = "onnx" if kind.endswith("-int8") else "torch"
    if kind.startswith("ensayo"):
        command = [str(BIN / "ensayo"), "serve", f"model={target}", "--port", str(port), "--workers", str(workers),
                   "--engine", engine]
        probe = "/health"
    elif kind.startswith("litserve"):
        command = [sys.executable, __file__, "--litserve", str(target), "--engine", engine, "--port", str(port)]
        probe = "/health"
    else:
        command = [str(BIN / "mlflow"), "models", "serve", "-m", str(target), "--env-manager", "local", "--port",
                   str(port), "--workers", str(workers)]
        probe = "/ping"
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment(source),
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if requests.get(url + probe, timeout=1).status_code == 200:
                return server, url
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"{kind} did not start: {' '.join(command)}")


def litserve_main(run_dir: str, engine: str, port: int) -> None:
    """The LitServe peer: the saved run behind a LitAPI that batches requests as ensayo does (rows in, each
    row's top label and its probability out), one worker on the CPU, on 127.0.0.1."""
    api = SavedRunAPI(run_dir, engine, max_batch_size=256, batch_timeout=0.002)
    litserve.LitServer(api, accelerator="cpu", workers_per_device=1).run(
        host="127.0.0.1", port=port, num_api_servers=1, generate_client_file=False, log_level="warning")


try:  # the `bench` extra; LitServe's worker process imports this module again, and finds the class here
    import litserve
except ImportError:
    litserve = None

if litserve is not None:

    class SavedRunAPI(litserve.LitAPI):
        def __init__(self, run_dir: str, engine: str, **batching: Any) -> None:
            super().__init__(**batching)
            self.run_dir, self.engine = run_dir, engine

        def setup(self, device: str) -> None:
            from ensayo import load_run

            self.run = load_run(self.run_dir, engine=self.engine)

        def decode_request(self, request):  # unannotated: LitServe then reads the JSON body into it
            return request["rows"]

        def predict(self, batch: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
            from ensayo import predict

            labels, probabilities = predict(self.run, [row for rows in batch for row in rows], top_k=1)
            answers = [{"labels": row, "probabilities": p.tolist()} for row, p in zip(labels, probabilities,
                                                                                         strict=True)]
            ends = np.cumsum([len(rows) for rows in batch])
            return [answers[end - len(rows): end] for end, rows in zip(ends, batch, strict=True)]

        def encode_response(self, output: list[dict[str, Any]]) -> dict[str, Any]:
            return {"predictions": output}


def stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGINT)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------- start-up and memory
def startup(meli: Path, int8: Path, repeats: int, before: str | None) -> list[str]:
    """Each engine's `ensayo serve` from launch to its first answer, and the server's memory then (resident and
    peak, from /proc), and `ensayo predict` of one title; with `before`, the same from an older checkout's code,
    taking turns. Nothing else loads the machine."""
    title = OUT / "one-title.csv"
    title.write_text("title,label_quality,language,category\nTaladro percutor Bosch 13mm,reliable,spanish,DRILLS\n")
    sides = [("before", before), ("after", None)] if before else [("after", None)]
    found: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(repeats):
        for side, source in sides:
            for engine, target in (("torch", meli), ("onnx", int8)):
                found.setdefault((side, engine), []).append(serve_startup(engine, target, source) |
                                                            predict_startup(engine, target, title, source))
    lines = ["| code | engine | serve: first answer, s | server resident, MB | server peak, MB | torch loaded | "
             "predict one title, s | predict peak, MB |", "|---|---|---|---|---|---|---|---|"]
    columns = (("serve_seconds", 2), ("resident_mb", 0), ("peak_mb", 0), ("torch", None), ("predict_seconds", 2),
               ("predict_peak_mb", 0))
    for (side, engine), runs in found.items():
        lines.append(f"| {side} | {engine} | " + " | ".join(_cell(runs, key, digits) for key, digits in columns) + " |")
    return lines


def _cell(runs: list[dict[str, float]], key: str, digits: int | None) -> str:
    """Each round's figure, or for a yes-or-no figure (`digits` None) whether every round, none or some said yes."""
    if digits is None:
        said = {bool(run[key]) for run in runs}
        return "sometimes" if len(said) > 1 else "yes" if said == {True} else "no"
    return " / ".join(f"{run[key]:.{digits}f}" for run in runs)


def serve_startup(engine: str, target: Path, source: str | None) -> dict[str, float]:
    started = time.perf_counter()
    server, url = start("ensayo-int8" if engine == "onnx" else "ensayo", target, 1, source)
    try:
        answered = requests.post(**ensayo_request(url, [{"title": "Taladro percutor Bosch 13mm"}]), timeout=60)
        answered.raise_for_status()
        seconds = time.perf_counter() - started
        status = dict(line.split(":", 1) for line in Path(f"/proc/{server.pid}/status").read_text().splitlines())
        maps = Path(f"/proc/{server.pid}/maps").read_text()
    finally:
        stop(server)
    return {"serve_seconds": seconds, "resident_mb": int(status["VmRSS"].split()[0]) / 1024,
            "peak_mb": int(status["VmHWM"].split()[0]) / 1024, "torch": float("libtorch" in maps)}


def predict_startup(engine: str, target: Path, title: Path, source: str | None) -> dict[str, float]:
    done = subprocess.run(["/usr/bin/time", "-f", "%e %M", str(BIN / "ensayo"), "predict", str(target), "--input",
                           str(title), "--engine", engine], env=environment(source), capture_output=True, text=True,
                          check=True)
    seconds, peak = done.stderr.split()[-2:]
    return {"predict_seconds": float(seconds), "predict_peak_mb": int(peak) / 1024}


# ------------------------------------------------------------------------------------- requests
def request_for(kind: str, url: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    if kind.startswith("ensayo"):
        return ensayo_request(url, rows)
    if kind.startswith("litserve"):
        return {"url": url + "/predict", "json": {"rows": rows}}
    return mlflow_request(url, rows)


def ensayo_request(url: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    files = {k: v for k, v in rows[0].items() if isinstance(v, bytes)}
    if files and len(rows) == 1:
        return {"url": url + "/v1/models/model/predict", "files": {k: ("clip.wav", v) for k, v in files.items()},
                "data": {"top_k": 1}}
    if files:  # many files in one request: MLflow's protocol, base64, the only way both servers take them
        return mlflow_request(url, rows, "/v1/models/model/invocations")
    return {"url": url + "/v1/models/model/predict", "json": {"rows": rows, "top_k": 1}}


def mlflow_request(url: str, rows: list[dict[str, Any]], path: str = "/invocations") -> dict[str, Any]:
    records = [{k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in row.items()}
               for row in rows]
    return {"url": url + path, "json": {"dataframe_records": records, "params": {"top_k": 1}}}


def load(requests_: list[dict[str, Any]], clients: int, seconds: float) -> dict[str, float]:
    """`clients` threads send the prepared requests in turn for `seconds`; latencies of the answered ones."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop_at = time.perf_counter() + seconds

    def client(index: int) -> None:
        session = requests.Session()
        position = index
        while time.perf_counter() < stop_at:
            request = requests_[position % len(requests_)]
            position += clients
            started = time.perf_counter()
            answer = session.post(timeout=120, **request)
            if answer.status_code != 200:
                errors[index] += 1
                continue
            latencies[index].append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    every = np.array([x for client_latencies in latencies for x in client_latencies])
    if sum(errors) and not len(every):
        raise RuntimeError(f"every request failed ({sum(errors)})")
    return {"requests_per_s": len(every) / elapsed, "p50_ms": 1000 * float(np.percentile(every, 50)),
            "p95_ms": 1000 * float(np.percentile(every, 95)), "p99_ms": 1000 * float(np.percentile(every, 99)),
            "errors": float(sum(errors)), "answered": float(len(every))}


def model_calls(kind: str, url: str) -> tuple[int, int]:
    if not kind.startswith("ensayo"):
        return 0, 0
    stats = requests.get(url + "/v1/models/model", timeout=10).json()["stats"]
    return stats["model_calls"], stats["rows"]


def measure(name: str, run_dir: Path, rows: list[dict[str, Any]], args: argparse.Namespace,
            int8: Path | None = None) -> list[dict[str, Any]]:
    """Each server's cells; `int8`, the run's int8 export, adds the servers of it (MeLi). With `--before`, each
    ensayo server is measured first with the older checkout's code ("ensayo@before"), then with this one."""
    results = []
    targets = {"ensayo": run_dir, "mlflow": export(run_dir, "mlflow")}
    if int8 is not None:
        targets |= {"ensayo-int8": int8, "litserve": run_dir, "litserve-int8": int8}
    for kind, target in targets.items():
        if kind not in args.servers:
            continue
        if args.before and kind.startswith("ensayo"):
            results += server_cells(name, kind, target, rows, args, args.before)
        results += server_cells(name, kind, target, rows, args)
    return results


def server_cells(name: str, kind: str, target: Path, rows: list[dict[str, Any]], args: argparse.Namespace,
                 source: str | None = None) -> list[dict[str, Any]]:
    """One server's cells: 1 and 64 rows a request, from each number of clients; `source`, an older checkout's
    src folder to serve with (the server is then named KIND@before)."""
    results = []
    label = f"{kind}@before" if source else kind
    server, url = start(kind, target, args.workers, source)
    try:
        for size in (1, 64):
            batches = [rows[i: i + size] for i in range(0, len(rows) - size + 1, size)][:200]
            prepared = [request_for(kind, url, b) for b in batches]
            load(prepared[:20], 2, 1.0)  # warm both ends
            for clients in args.concurrency:
                before = model_calls(kind, url)
                figures = load(prepared, clients, args.seconds)
                figures["rows_per_s"] = figures["requests_per_s"] * size
                if kind.startswith("ensayo"):  # how many rows each model call answered: what batching gathered
                    calls, rows_ = (after - earlier for after, earlier in zip(model_calls(kind, url), before,
                                                                              strict=True))
                    figures["rows_per_call"] = rows_ / max(calls, 1)
                results.append({"data": name, "server": label, "rows": size, "clients": clients, **figures})
                print(f"  {name:6} {label:20} rows {size:2} clients {clients:2}: {figures['requests_per_s']:8.1f} "
                      f"req/s {figures['rows_per_s']:9.1f} rows/s  p50 {figures['p50_ms']:7.1f}  "
                      f"p99 {figures['p99_ms']:7.1f} ms  errors {int(figures['errors'])}  rows/call "
                      f"{figures.get('rows_per_call', float('nan')):.1f}", flush=True)
    finally:
        stop(server)
    return results


# ------------------------------------------------------------------------------------- onnx
def engines_on_the_test_split(run_dir: Path, int8: Path) -> dict[str, dict[str, float]]:
    """torch, ONNX Runtime and the int8 export predicting the MeLi test split: the best of three timings, test
    balanced accuracy, and how often the top label is torch's."""
    import torch
    from sklearn.metrics import balanced_accuracy_score

    from ensayo.data import load_splits
    from ensayo.runs import load_run

    runs = {"torch": load_run(run_dir), "onnx": load_run(export(run_dir, "onnx"), engine="onnx"),
            "int8": load_run(int8, engine="onnx")}
    test = load_splits(runs["torch"].recipe, ROOT / "recipes").test
    truth = test[runs["torch"].recipe.output.column].to_list()
    figures, answers = {}, {}
    for engine, run in runs.items():
        run.predict_proba(test.head(256))
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            with torch.inference_mode():
                probabilities = run.predict_proba(test)
            best = min(best, time.perf_counter() - started)
        answers[engine] = probabilities
        labels = [run.output.classes[i] for i in probabilities.argmax(axis=1)]
        figures[engine] = {"seconds": best, "balanced_accuracy": float(balanced_accuracy_score(truth, labels))}
    for engine in runs:
        figures[engine] |= {"speedup": figures["torch"]["seconds"] / figures[engine]["seconds"],
                            "top_label_equal": float((answers[engine].argmax(1) == answers["torch"].argmax(1)).mean()),
                            "max_difference": float(np.abs(answers[engine] - answers["torch"]).max()),
                            "rows": float(test.height)}
    return figures


def eight_bit_export(run_dir: Path) -> Path:
    """The run's fp32 ONNX export quantized with 8-bit weights, as `--quantize int8` did before it took 7
    (`reduce_range`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ensayo import layout

    target = OUT / "exports" / f"{run_dir.name}-onnx-int8-8bit"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(export(run_dir, "onnx"), target)
    network = target / layout.ONNX_MODEL
    quantize_dynamic(network, network.with_suffix(".8bit.onnx"), weight_type=QuantType.QInt8)
    network.with_suffix(".8bit.onnx").replace(network)
    described = json.loads((target / layout.ONNX_INPUTS).read_text())
    (target / layout.ONNX_INPUTS).write_text(json.dumps(described | {"quantized": "int8"}))
    return target


def compare_int8_weights() -> None:
    """The demo run's int8 export with 8-bit and with 7-bit weights on the MeLi test split, on this CPU."""
    meli = ensure_run(RUNS["meli"])
    for name, int8 in (("8-bit weights", eight_bit_export(meli)), ("7-bit weights", export(meli, "onnx", "int8"))):
        figures = engines_on_the_test_split(meli, int8)
        print(f"{name}: " + "; ".join(f"{engine} {e['seconds']:.2f} s, balanced accuracy {e['balanced_accuracy']:.4f}, "
                                      f"top label equal {e['top_label_equal']:.4f}, largest difference "
                                      f"{e['max_difference']:.3f}" for engine, e in figures.items()), flush=True)


# ------------------------------------------------------------------------------------- report
PEERS = {"ensayo": "litserve", "ensayo-int8": "litserve-int8"}  # LitServe with the same engine


def table(results: list[dict[str, Any]]) -> list[str]:
    cell = {(r["data"], r["rows"], r["clients"], r["server"]): r for r in results}
    lines = ["| data | rows/request | clients | server | requests/s | rows/s | p50 ms | p95 ms | p99 ms | "
             "rows/model call | x mlflow req/s | x mlflow p99 | x LitServe rows/s | x LitServe p99 | "
             "x torch path rows/s |", "|" + "---|" * 15]
    for r in sorted(results, key=lambda r: (r["data"], r["rows"], r["clients"], r["server"])):
        key = (r["data"], r["rows"], r["clients"])
        server, at = r["server"].partition("@")[::2]
        mlflow, litserve = cell.get((*key, "mlflow")), cell.get((*key, PEERS.get(server, "")))
        torch_path = cell.get((*key, "ensayo" + ("@" + at if at else ""))) if server == "ensayo-int8" else None
        lines.append(f"| {r['data']} | {r['rows']} | {r['clients']} | {r['server']} | {r['requests_per_s']:.1f} | "
                     f"{r['rows_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r.get('rows_per_call', float('nan')):.1f} | {ratio(r, mlflow, 'requests_per_s')} | "
                     f"{ratio(r, mlflow, 'p99_ms')} | {ratio(r, litserve, 'rows_per_s')} | "
                     f"{ratio(r, litserve, 'p99_ms')} | {ratio(r, torch_path, 'rows_per_s')} |")
    return lines


def ratio(row: dict[str, Any], other: dict[str, Any] | None, key: str) -> str:
    return f"{row[key] / other[key]:.2f}" if other else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="load per cell")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--workers", type=int, default=1, help="server processes, the same for all")
    parser.add_argument("--data", default="meli,digits")
    parser.add_argument("--servers", default="ensayo,ensayo-int8,mlflow,litserve,litserve-int8")
    parser.add_argument("--litserve", help=argparse.SUPPRESS)  # a run to serve by LitServe (the peer's process)
    parser.add_argument("--engine", default="torch", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--int8-weights", action="store_true", help="only the demo run's int8 export with 8-bit "
                        "against 7-bit weights on the test split (no servers)")
    parser.add_argument("--startup", action="store_true", help="only start-up and memory: each engine's server "
                        "to its first answer, and predicting one title (no load)")
    parser.add_argument("--repeats", type=int, default=3, help="--startup: rounds, taking turns")
    parser.add_argument("--before", help="an older checkout's src folder: its ensayo servers measured too, each "
                        "just before today's (with --startup: in turns)")
    args = parser.parse_args()
    if args.litserve:
        litserve_main(args.litserve, args.engine, args.port)
        return
    if not os.environ.get("ENSAYO_DATA"):
        os.environ["ENSAYO_DATA"] = str((ROOT.parent / "shared" / "data").resolve())
    if args.int8_weights:
        OUT.mkdir(parents=True, exist_ok=True)
        compare_int8_weights()
        return
    if args.startup:
        OUT.mkdir(parents=True, exist_ok=True)
        meli = ensure_run(RUNS["meli"])
        lines = startup(meli, export(meli, "onnx", "int8"), args.repeats, args.before)
        (OUT / "serving-startup.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.servers = args.servers.split(",")
    OUT.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    meli = ensure_run(RUNS["meli"])
    int8 = export(meli, "onnx", "int8")
    for name in args.data.split(","):
        run_dir = ensure_run(RUNS[name])
        rows = test_rows(run_dir)
        random.Random(0).shuffle(rows)
        results += measure(name, run_dir, rows, args, int8 if name == "meli" else None)
    engines = engines_on_the_test_split(meli, int8)
    import torch

    setup = (f"{os.cpu_count()} CPU cores; each server: {args.workers} worker process, torch's default threads "
             f"({torch.get_num_threads()}); client: threads with keep-alive connections on 127.0.0.1; "
             f"{args.seconds:g} s per cell")
    lines = ["# Serving: ensayo serve against mlflow models serve and LitServe", "", setup, "", *table(results), "",
             f"The MeLi test split ({int(engines['torch']['rows']):,} rows) by each engine:", "",
             "| engine | seconds | x torch | test balanced accuracy | top label equal to torch's | largest "
             "probability difference |", "|---|---|---|---|---|---|",
             *(f"| {name} | {e['seconds']:.2f} | {e['speedup']:.2f} | {e['balanced_accuracy']:.4f} | "
               f"{e['top_label_equal']:.4f} | {e['max_difference']:.1e} |" for name, e in engines.items())]
    (OUT / "serving.md").write_text("\n".join(lines) + "\n")
    (OUT / "serving.json").write_text(json.dumps({"setup": setup, "results": results, "engines": engines}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
