"""How cost grows with work, and what a second process buys: the MeLi CNN recipe (`product-titles-cnn`).

A COST measurement, not an accuracy one: the larger sets are the real 57 k Spanish titles resampled with
replacement, with a few characters of each copy changed (so that the vocabulary grows as a real larger set's
would, a little). For each size, one epoch in its own process: seconds per 1,000 titles for reading (rows
read), fitting the preprocessing and encoding the splits (rows read), the epoch (training rows) and
predicting (test rows), and the peak memory (max RSS), each as a ratio to the first size's row.

    python benchmarks/scaling.py                       # 57 k, 920 k, 3.7 M titles
    python benchmarks/scaling.py --sizes 57000,920000
    python benchmarks/scaling.py --ddp                 # 1 process x 2 threads against 2 processes x 1 thread
    python benchmarks/scaling.py --memory --sizes 920000   # resident memory after each stage of one run
    python benchmarks/scaling.py --preprocessing --sizes 230000 --repeats 3   # reading and preprocessing only
    python benchmarks/scaling.py --ranks 1,2 --sizes 230000 --repeats 3   # the same on each of N processes

The generated sets are kept in benchmarks/out/scaling/ (git-ignored) and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "scaling"
RECIPE = ROOT / "recipes" / "product-titles-cnn.yaml"
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def source() -> Path:
    data = Path(os.environ.get("ENSAYO_DATA", ROOT.parent / "shared" / "data"))
    return data / "meli" / "spanish.csv.gz"


def resampled(rows: int, seed: int = 0) -> Path:
    """`rows` titles drawn with replacement from the real set; past the first copy of each, two characters of
    each title are replaced by random letters. Written once as CSV."""
    import numpy as np
    import polars as pl

    path = OUT / f"titles-{rows}.csv"
    if path.is_file():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    real = pl.read_csv(source(), infer_schema_length=0)
    rng = np.random.default_rng(seed)
    picked = real[rng.integers(0, real.height, rows)] if rows != real.height else real
    titles = picked["title"].to_list()
    if rows != real.height:
        letters = rng.integers(0, len(LETTERS), (rows, 2))
        places = rng.random((rows, 2))
        for i, title in enumerate(titles):
            chars = list(title)
            for k in range(2):
                chars[int(places[i, k] * len(chars))] = LETTERS[letters[i, k]]
            titles[i] = "".join(chars)
    picked.with_columns(pl.Series("title", titles)).write_csv(path)
    return path


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(data: Path, output: Path, epochs: int, threads: int) -> dict:
    """One run of the recipe on `data`, in this process; its stage timings and peak memory."""
    import ensayo

    started = time.perf_counter()
    saved = ensayo.run(RECIPE, output=output, overrides=[f"data.source={data}", f"train.epochs={epochs}",
                                                         f"train.threads={threads}"], track=False, force=True)
    report = json.loads((saved.path / "data_report.json").read_text())
    return {**{k: v for k, v in saved.metrics.items() if not isinstance(v, str)},
            "run_seconds": time.perf_counter() - started, "rows_read": report["rows_read"],
            "split_sizes": report["split_sizes"], "peak_mb": peak_mb()}


def run_child(data: Path, output: Path, epochs: int, threads: int) -> dict:
    arguments = [sys.executable, __file__, "--child", str(data), str(output), str(epochs), str(threads)]
    done = subprocess.run(arguments, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"{data} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_distributed(data: Path, output: Path, epochs: int, nproc: int) -> dict:
    """`ensayo run --nproc N`, 1 thread a process; peak memory is the largest rank's (RUSAGE_CHILDREN)."""
    started = time.perf_counter()
    arguments = [sys.executable, "-m", "ensayo.cli", "run", str(RECIPE), f"data.source={data}",
                 f"train.epochs={epochs}", "train.threads=1", "--nproc", str(nproc), "--no-track", "--force",
                 "--output", str(output)]
    done = subprocess.run(arguments, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"--nproc {nproc} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((output / "metrics.json").read_text())
    report = json.loads((output / "data_report.json").read_text())
    return {**metrics, "run_seconds": time.perf_counter() - started, "split_sizes": report["split_sizes"],
            "rows_read": report["rows_read"],
            "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def preprocessing_child(data: Path | str) -> dict:
    """Reading, fitting the preprocessing, encoding the splits and the words' subword table (which the code
    before issue 30 built in the first training batch), timed in this process; no training. Under `--ranks`, what
    this rank does of it (`_encoded_shares`: its share of each split); code from before the ranks shared their
    rows (no `_encoded_shares`) is measured as it ran then: every rank encodes every split whole."""
    import tempfile

    import sklearn.model_selection  # noqa: F401  (ensayo imports it when it splits; the reading is timed, not the import)

    from ensayo.data.load import load_splits
    from ensayo.models import load_recipe
    from ensayo.models.base import FitContext
    from ensayo.models.neural import NeuralClassifier
    from ensayo.training import encode_split

    recipe = load_recipe(RECIPE, [f"data.source={data}"])
    started = time.perf_counter()
    splits = load_splits(recipe)
    read = time.perf_counter() - started
    model = NeuralClassifier(recipe)
    with tempfile.TemporaryDirectory() as folder:
        model._fit_preprocessing(splits, FitContext(Path(folder)))
        if hasattr(model, "_encoded_shares"):
            encoded = model._encoded_shares(splits, None)
        else:
            encoded = {name: encode_split(model.features, table, model.classes.transform(model.labels(table)), None,
                                          model.train_columns if name == "train" else None)
                       for name, table in splits.items()}
        for feature in model.features:
            if getattr(feature, "subword_vocab", None) is not None:
                # bc13daf named it _subword_index and built it in the first training batch
                (getattr(feature, "vocabulary_subwords", None) or feature._subword_index)()
    rows = sum(table.height for _, table in splits.items())
    return {"rows": rows, "train_rows": len(encoded["train"]), "read_seconds": read,
            "preprocess_seconds": time.perf_counter() - started - read}


def preprocessing_rank(data: str) -> list[dict]:
    """One rank of `--ranks`: `preprocessing_child` as `ensayo run --nproc N` does it before it trains, timed on
    this rank; rank 0 returns every rank's."""
    import torch.distributed

    from ensayo.training import distributed

    current = distributed.start("cpu")
    try:
        done = {"rank": current.rank, **preprocessing_child(data)}
        if not current.distributed:
            return [done]
        every: list = [None] * current.size  # torch's own collective: the code before issue 30's sharing had none
        torch.distributed.all_gather_object(every, done)
        return every
    finally:
        distributed.stop()


def ranks_table(data: Path, ranks: list[int], repeats: int) -> None:
    """Seconds per 1,000 titles (of the whole set) that each rank spends reading and preprocessing, on N processes
    of one thread each."""
    from ensayo.training import distributed

    os.environ["OMP_NUM_THREADS"] = "1"
    print("| processes | run | rank | training rows encoded | read s/1k | preprocess s/1k | read + preprocess s/1k |"
          "\n|---|---|---|---|---|---|---|")
    for nproc in ranks:
        for repeat in range(1, repeats + 1):
            if nproc == 1:
                done = subprocess.run([sys.executable, __file__, "--rank-child", str(data)], capture_output=True,
                                      text=True, check=True)
                shares = json.loads(done.stdout.strip().splitlines()[-1])
            else:
                shares = distributed.launch(nproc, preprocessing_rank, str(data), report=False)
            for share in shares:
                read, preprocess = (share[k] / share["rows"] * 1000 for k in ("read_seconds", "preprocess_seconds"))
                print(f"| {nproc} | {repeat} | {share['rank']} | {share['train_rows']:,} | {read:.4f} | "
                      f"{preprocess:.4f} | {read + preprocess:.4f} |", flush=True)


def memory_stages(data: Path) -> list[tuple[str, float, float]]:
    """(stage, resident MB after it, peak MB so far) through the stages of the neural model's fit, with the
    first training steps (SparseAdam allocates its moments at its first step) and the final scoring."""
    import tempfile

    import numpy as np

    from ensayo.data import load_splits
    from ensayo.models import FitContext, load_recipe
    from ensayo.models.neural import NeuralClassifier, build_network, network_predictions
    from ensayo.training import Trainer, encode_split

    def resident() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    stages = []
    recipe = load_recipe(RECIPE, [f"data.source={data}", "train.epochs=1"])
    splits = load_splits(recipe)
    stages.append(("read and split", resident(), peak_mb()))
    model = NeuralClassifier(recipe)
    with tempfile.TemporaryDirectory() as folder:
        model._fit_preprocessing(splits, FitContext(Path(folder)))
        stages.append(("fit preprocessing (train encoded)", resident(), peak_mb()))
        encoded = {name: encode_split(model.features, table, model.classes.transform(model.labels(table)),
                                      None, model.train_columns if name == "train" else None)
                   for name, table in splits.items()}
        model.train_columns = None
        stages.append(("encode validation and test", resident(), peak_mb()))
        network = build_network(recipe, model.features, len(model.classes))
        trainer = Trainer(network, recipe.train, Path(folder), torch_device())
        stages.append((f"network ({sum(p.numel() for p in network.parameters()):,} parameters)", resident(),
                       peak_mb()))
        order = np.random.default_rng(0).permutation(len(encoded["train"]))
        for batch, labels in encoded["train"].iterate([order[i * 256: (i + 1) * 256] for i in range(20)],
                                                      torch_device()):
            loss, _ = trainer._loss(batch, labels)
            for optimizer in trainer.optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for optimizer in trainer.optimizers:
                optimizer.step()
        stages.append(("20 training steps (Adam moments)", resident(), peak_mb()))
        trainer.save_checkpoint()
        stages.append(("a checkpoint written", resident(), peak_mb()))
        for optimizer in trainer.optimizers:  # as Trainer.fit does once training ends
            optimizer.state.clear()
        scored = {name: network_predictions(network, encoded[name], recipe.train.eval_batch_size)
                  for name in ("validation", "test")}
        size = sum(rows.nbytes for rows in scored.values()) / 2**20
        stages.append((f"moments released; validation and test scored ({size:.0f} MB of row records)", resident(),
                       peak_mb()))
    return stages


def torch_device():
    import torch

    return torch.device("cpu")


def cost_table(results: dict[int, dict]) -> str:
    def per_thousand(r: dict) -> dict[str, float]:
        sizes = r["split_sizes"]
        return {"read": r["read_seconds"] / r["rows_read"] * 1000,
                "preprocess": r["preprocess_seconds"] / r["rows_read"] * 1000,
                "epoch": r["fit_seconds"] / sizes["train"] * 1000,
                "predict": r["test/predict_seconds"] / sizes["test"] * 1000}

    first = next(iter(results.values()))
    base = per_thousand(first)
    header = ("| titles | train rows | read s/1k | preprocess s/1k | epoch s/1k | predict s/1k | peak MB | "
              "read x | preprocess x | epoch x | predict x | memory x | run s |")
    rows = [header, "|" + "---|" * 13]
    for size, r in results.items():
        cost = per_thousand(r)
        ratios = [f"{cost[k] / base[k]:.2f}" for k in ("read", "preprocess", "epoch", "predict")]
        rows.append(f"| {size:,} | {r['split_sizes']['train']:,} | {cost['read']:.3f} | {cost['preprocess']:.3f} | "
                    f"{cost['epoch']:.3f} | {cost['predict']:.3f} | {r['peak_mb']:,.0f} | " + " | ".join(ratios) +
                    f" | {r['peak_mb'] / first['peak_mb']:.2f} | {r['run_seconds']:.0f} |")
    return "\n".join(rows)


def ddp_table(results: dict[str, dict], epochs: int) -> str:
    rate = {name: r["split_sizes"]["train"] * epochs / r["fit_seconds"] for name, r in results.items()}
    base = rate[next(iter(results))]
    rows = ["| set-up | titles/s (training) | x | test balanced acc. | fit s | run s | peak MB |", "|" + "---|" * 7]
    for name, r in results.items():
        rows.append(f"| {name} | {rate[name]:,.0f} | {rate[name] / base:.2f} | {r['test/balanced_accuracy']:.4f} | "
                    f"{r['fit_seconds']:.1f} | {r['run_seconds']:.0f} | {r['peak_mb']:,.0f} |")
    return "\n".join(rows)


def sizes_of(args: argparse.Namespace) -> list[int]:
    return [int(size) for size in args.sizes.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="57311,920000,3700000", help="titles per set, comma-separated")
    parser.add_argument("--ddp", action="store_true", help="1 process x 2 threads against 2 processes x 1 thread")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--memory", action="store_true", help="resident memory after each stage, one size")
    parser.add_argument("--preprocessing", action="store_true", help="reading and preprocessing only, each size "
                                                                       "in a fresh process, --repeats times")
    parser.add_argument("--ranks", help="reading and preprocessing on each of N processes, e.g. 1,2 (one size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rank-child", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--preprocessing-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_child:
        print(json.dumps(preprocessing_rank(args.rank_child)))
        return
    if args.ranks:
        ranks_table(resampled(sizes_of(args)[0]), [int(n) for n in args.ranks.split(",")], args.repeats)
        return
    if args.preprocessing_child:
        print(json.dumps(preprocessing_child(Path(args.preprocessing_child))))
        return
    if args.child:
        data, output, epochs, threads = args.child
        print(json.dumps(child(Path(data), Path(output), int(epochs), int(threads))))
        return
    sizes = sizes_of(args)
    if args.memory:
        print("| stage | resident MB | peak MB so far |\n|---|---|---|")
        for stage, now, peak in memory_stages(resampled(sizes[0])):
            print(f"| {stage} | {now:,.0f} | {peak:,.0f} |", flush=True)
        return
    if args.preprocessing:
        print("| titles | run | read s/1k | preprocess s/1k | read + preprocess s/1k |\n|---|---|---|---|---|")
        for size in sizes:
            data = resampled(size)
            for repeat in range(1, args.repeats + 1):
                done = subprocess.run([sys.executable, __file__, "--preprocessing-child", str(data)],
                                      capture_output=True, text=True, check=True)
                r = json.loads(done.stdout.strip().splitlines()[-1])
                read, preprocess = (r[k] / r["rows"] * 1000 for k in ("read_seconds", "preprocess_seconds"))
                print(f"| {size:,} | {repeat} | {read:.4f} | {preprocess:.4f} | {read + preprocess:.4f} |", flush=True)
        return
    if args.ddp:
        data = resampled(sizes[0])
        results = {"1 process x 2 threads": run_child(data, OUT / "runs" / "ddp-1", args.epochs, 2),
                   "2 processes x 1 thread": run_distributed(data, OUT / "runs" / "ddp-2", args.epochs, 2)}
        print(ddp_table(results, args.epochs))
        (OUT / "ddp.json").write_text(json.dumps(results, indent=1))
        return
    results = {}
    for size in sizes:
        results[size] = run_child(resampled(size), OUT / "runs" / f"titles-{size}", args.epochs, 2)
        print(f"{size:,} titles: {json.dumps({k: results[size][k] for k in ('run_seconds', 'peak_mb')})}",
              flush=True)
    print(cost_table(results))
    (OUT / "cost.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
