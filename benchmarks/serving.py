"""Serving benchmark: `ensayo serve` against `mlflow models serve` of the same run exported as an MLflow pyfunc
model, on this machine, with the same worker count and torch's default threads in both. A bounded client on
127.0.0.1 (threads, each with its own keep-alive connection, each sending its next request when the last one is
answered) loads each server at 1, 8 and 32 concurrent clients with single-row and 64-row requests: MeLi titles
(JSON) and spoken digits (WAV uploads for ensayo, base64 WAVs in MLflow's JSON for the peer, as its protocol
takes files). Reports requests and rows per second, p50 / p95 / p99 latency, and each as a ratio to the peer;
then ONNX Runtime against torch predicting the MeLi test split.

    python benchmarks/serving.py                    # trains the two runs first if benchmarks/out lacks them
    python benchmarks/serving.py --seconds 5 --concurrency 1,8

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


def export(run_dir: Path, fmt: str) -> Path:
    """Exported afresh each time: an export of an older ensayo measures the older code."""
    target = OUT / "exports" / f"{run_dir.name}-{fmt}"
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([str(BIN / "ensayo"), "export", str(run_dir), "--format", fmt, "--output", str(target)],
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


def start(kind: str, target: Path, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    if kind == "ensayo":
        command = [str(BIN / "ensayo"), "serve", f"model={target}", "--port", str(port), "--workers", str(workers)]
        probe = "/health"
    else:
        command = [str(BIN / "mlflow"), "models", "serve", "-m", str(target), "--env-manager", "local", "--port",
                   str(port), "--workers", str(workers)]
        probe = "/ping"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if requests.get(url + probe, timeout=1).status_code == 200:
                return server, url
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"{kind} did not start: {' '.join(command)}")


def stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGINT)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------- requests
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
    if kind != "ensayo":
        return 0, 0
    stats = requests.get(url + "/v1/models/model", timeout=10).json()["stats"]
    return stats["model_calls"], stats["rows"]


def measure(name: str, run_dir: Path, rows: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    model = export(run_dir, "mlflow")
    for kind, target in (("ensayo", run_dir), ("mlflow", model)):
        server, url = start(kind, target, args.workers)
        try:
            for size in (1, 64):
                batches = [rows[i: i + size] for i in range(0, len(rows) - size + 1, size)][:200]
                prepared = [ensayo_request(url, b) if kind == "ensayo" else mlflow_request(url, b) for b in batches]
                load(prepared[:20], 2, 1.0)  # warm both ends
                for clients in args.concurrency:
                    before = model_calls(kind, url)
                    figures = load(prepared, clients, args.seconds)
                    figures["rows_per_s"] = figures["requests_per_s"] * size
                    if kind == "ensayo":  # how many rows each model call answered: what batching gathered
                        calls, rows_ = (after - earlier for after, earlier in zip(model_calls(kind, url), before,
                                                                                  strict=True))
                        figures["rows_per_call"] = rows_ / max(calls, 1)
                    results.append({"data": name, "server": kind, "rows": size, "clients": clients, **figures})
                    print(f"  {name:6} {kind:6} rows {size:2} clients {clients:2}: {figures['requests_per_s']:8.1f} "
                          f"req/s {figures['rows_per_s']:9.1f} rows/s  p50 {figures['p50_ms']:7.1f}  "
                          f"p99 {figures['p99_ms']:7.1f} ms  errors {int(figures['errors'])}  rows/call "
                          f"{figures.get('rows_per_call', 1):.1f}", flush=True)
        finally:
            stop(server)
    return results


# ------------------------------------------------------------------------------------- onnx
def onnx_against_torch(run_dir: Path) -> dict[str, float]:
    import torch

    from ensayo.data import load_splits
    from ensayo.runs import load_run

    exported = export(run_dir, "onnx")
    by_torch, by_onnx = load_run(run_dir), load_run(exported, engine="onnx")
    test = load_splits(by_torch.recipe, ROOT / "recipes").test
    timings = {}
    for engine, run in (("torch", by_torch), ("onnx", by_onnx)):
        run.predict_proba(test.head(256))
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            with torch.inference_mode():
                probabilities = run.predict_proba(test)
            best = min(best, time.perf_counter() - started)
        timings[engine] = best
        timings[f"{engine}_probabilities"] = probabilities
    gap = float(np.abs(timings.pop("torch_probabilities") - timings.pop("onnx_probabilities")).max())
    return {"rows": float(test.height), "torch_s": timings["torch"], "onnx_s": timings["onnx"],
            "onnx_speedup": timings["torch"] / timings["onnx"], "max_difference": gap}


# ------------------------------------------------------------------------------------- report
def table(results: list[dict[str, Any]]) -> list[str]:
    peer = {(r["data"], r["rows"], r["clients"]): r for r in results if r["server"] == "mlflow"}
    lines = ["| data | rows/request | clients | server | requests/s | rows/s | p50 ms | p95 ms | p99 ms | "
             "rows/model call | x peer req/s | x peer p99 |", "|" + "---|" * 12]
    for r in sorted(results, key=lambda r: (r["data"], r["rows"], r["clients"], r["server"])):
        other = peer[(r["data"], r["rows"], r["clients"])]
        lines.append(f"| {r['data']} | {r['rows']} | {r['clients']} | {r['server']} | {r['requests_per_s']:.1f} | "
                     f"{r['rows_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r.get('rows_per_call', r['rows']):.1f} | "
                     f"{r['requests_per_s'] / other['requests_per_s']:.2f} | {r['p99_ms'] / other['p99_ms']:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="load per cell")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--workers", type=int, default=1, help="server processes, the same for both")
    parser.add_argument("--data", default="meli,digits")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if not os.environ.get("ENSAYO_DATA"):
        os.environ["ENSAYO_DATA"] = str((ROOT.parent / "shared" / "data").resolve())
    OUT.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    for name in args.data.split(","):
        run_dir = ensure_run(RUNS[name])
        rows = test_rows(run_dir)
        random.Random(0).shuffle(rows)
        results += measure(name, run_dir, rows, args)
    onnx = onnx_against_torch(ensure_run(RUNS["meli"]))
    import torch

    setup = (f"{os.cpu_count()} CPU cores; each server: {args.workers} worker process, torch's default threads "
             f"({torch.get_num_threads()}); client: threads with keep-alive connections on 127.0.0.1; "
             f"{args.seconds:g} s per cell")
    lines = ["# Serving: ensayo serve against mlflow models serve", "", setup, "", *table(results), "",
             f"ONNX Runtime against torch, predicting the MeLi test split ({int(onnx['rows']):,} rows): torch "
             f"{onnx['torch_s']:.2f} s, ONNX Runtime {onnx['onnx_s']:.2f} s ({onnx['onnx_speedup']:.2f}x); "
             f"largest probability difference {onnx['max_difference']:.1e}"]
    (OUT / "serving.md").write_text("\n".join(lines) + "\n")
    (OUT / "serving.json").write_text(json.dumps({"setup": setup, "results": results, "onnx": onnx}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
