"""News generation benchmark (seed 004, part 2): the three language-model recipes on AG News against
a character 5-gram model with interpolated Kneser-Ney smoothing on the same document split: test bits
per character, training time, and three samples from a fixed prompt and seed.

    python benchmarks/news_generation.py                     # the baseline and every recipe
    python benchmarks/news_generation.py --only kn,char-transformer
    python benchmarks/news_generation.py --only char-transformer --run char-transformer=runs/news-char-transformer

Each recipe's generation is timed too: tokens per second while writing 500 characters (or 100 words) from
a fixed prompt, five seeds, after one warm-up; for the Transformer, beside the sampler it had before its
key-value cache (a pass over the last `context` tokens per token, with the picker of that time), on the same
weights, the two taking turns seed by seed.

Writes benchmarks/out/news_generation.json (merged with earlier runs of other parts).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
RECIPES = {"char-lstm": "news-char-lstm.yaml", "word-lstm": "news-word-lstm.yaml",
           "char-transformer": "news-char-transformer.yaml"}
PROMPT = "The company said"
GENERATED = {"char": 500, "word": 100}  # tokens written per timed sample


# ------------------------------------------------------------------------------- Kneser-Ney n-grams
class KneserNey:
    """Interpolated Kneser-Ney over token ids (Chen & Goodman 1998, one discount per order): the highest
    order uses counts, lower orders continuation counts (how many distinct tokens precede an n-gram),
    and the unigram level is interpolated with a uniform distribution, so no token has probability 0."""

    def __init__(self, order: int, vocabulary: int) -> None:
        self.order = order
        self.vocabulary = vocabulary
        self.tables: list[dict[str, np.ndarray]] = []

    def _codes(self, ids: np.ndarray, k: int) -> np.ndarray:
        codes = np.zeros(len(ids) - k + 1, dtype=np.int64)
        for j in range(k):
            codes = codes * self.vocabulary + ids[j: len(ids) - k + 1 + j]
        return codes

    def fit(self, ids: np.ndarray) -> KneserNey:
        ids = ids.astype(np.int64)
        longer = None  # the distinct (k + 1)-grams of the text
        per_order = []
        for k in range(self.order, 0, -1):
            if longer is None:
                grams, counts = np.unique(self._codes(ids, k), return_counts=True)
                longer = grams
            else:  # continuation counts: how many distinct tokens precede each k-gram
                grams, counts = np.unique(longer % self.vocabulary**k, return_counts=True)
                longer = np.unique(self._codes(ids, k))
            n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
            discount = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
            histories, inverse = np.unique(grams // self.vocabulary, return_inverse=True)
            per_order.append({"grams": grams, "counts": counts.astype(np.float64), "discount": discount,
                              "histories": histories,
                              "totals": np.bincount(inverse, weights=counts).astype(np.float64),
                              "types": np.bincount(inverse).astype(np.float64)})
        self.tables = per_order[::-1]  # index k - 1 holds order k
        return self

    @staticmethod
    def _lookup(keys: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        position = np.clip(np.searchsorted(table, keys), 0, len(table) - 1)
        return position, table[position] == keys

    def log2_probabilities(self, ids: np.ndarray) -> np.ndarray:
        """log2 P(token t | up to order-1 tokens before it), for every token after the first."""
        ids = ids.astype(np.int64)
        targets = ids[1:]
        unigram = self.tables[0]
        position, found = self._lookup(targets, unigram["grams"])
        counts = np.where(found, unigram["counts"][position], 0.0)
        total, discount = unigram["totals"][0], unigram["discount"]
        probability = (np.maximum(counts - discount, 0) + discount * unigram["types"][0] / self.vocabulary) / total
        for k in range(2, self.order + 1):
            table = self.tables[k - 1]
            index = np.arange(1, len(ids))
            usable = index >= k - 1  # enough tokens before this one for a history of k - 1
            history = np.zeros(len(index), dtype=np.int64)
            for j in range(k - 1, 0, -1):
                history = history * self.vocabulary + ids[np.maximum(index - j, 0)]
            gram = history * self.vocabulary + targets
            h_position, h_found = self._lookup(history, table["histories"])
            g_position, g_found = self._lookup(gram, table["grams"])
            h_found &= usable
            totals = np.where(h_found, table["totals"][h_position], 1.0)
            types = np.where(h_found, table["types"][h_position], 0.0)
            counts = np.where(g_found & h_found, table["counts"][g_position], 0.0)
            d = table["discount"]
            higher = np.maximum(counts - d, 0) / totals + d * types / totals * probability
            probability = np.where(h_found, higher, probability)
        return np.log2(probability)


def kneser_ney_baseline(recipe_name: str, order: int = 5) -> dict:
    from ensayo.data import load_splits
    from ensayo.models import load_recipe
    from ensayo.outputs.text import Tokenizer, documents

    recipe = load_recipe(ROOT / "recipes" / recipe_name)
    splits = load_splits(recipe)
    tokenizer = Tokenizer.fit(documents(splits.train, recipe.output), recipe.output)
    train, _ = tokenizer.stream(documents(splits.train, recipe.output))
    test, characters = tokenizer.stream(documents(splits.test, recipe.output))
    started = time.perf_counter()
    model = KneserNey(order, len(tokenizer)).fit(train.numpy())
    fit_seconds = time.perf_counter() - started
    bits = -model.log2_probabilities(test.numpy()).sum()
    return {"test_bits_per_char": float(bits / (characters * (len(test) - 1) / len(test))),
            "fit_seconds": fit_seconds, "order": order, "train_tokens": len(train), "test_tokens": len(test)}


# ---------------------------------------------------------------------------------------- generation
def windowed_sample(network, prompt: list[int], steps: int, pick):
    """The Transformer's sampler before the key-value cache: one pass over the last `context` tokens for
    each new token (kept here as the speed baseline)."""
    import torch

    tokens = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            token = pick(network({"tokens": torch.tensor([tokens[-network.context:]])}, flat=False)[0, -1])
            tokens.append(token)
            yield token


def multinomial_picker(temperature: float, top_k: int | None, top_p: float | None, generator):
    """The token picker from before the key-value cache (`torch.multinomial` on renormalised probabilities),
    kept with `windowed_sample` as the speed baseline; it picks the tokens `ensayo`'s picker picks."""
    import torch

    def pick(logits) -> int:
        logits = logits.float().clone()
        logits[0] = -math.inf
        if temperature <= 0:
            return int(logits.argmax())
        logits /= temperature
        if top_k:
            threshold = torch.topk(logits, min(top_k, len(logits))).values[-1]
            logits[logits < threshold] = -math.inf
        probabilities = torch.softmax(logits, dim=-1)
        if top_p is not None and top_p < 1.0:
            ordered, order = torch.sort(probabilities, descending=True)
            outside = ordered.cumsum(0) - ordered > top_p
            probabilities[order[outside]] = 0.0
            probabilities /= probabilities.sum()
        return int(torch.multinomial(probabilities, 1, generator=generator))

    return pick


def generation_speed(run, seeds: tuple[int, ...] = (0, 1, 2, 3, 4)) -> dict:
    """Tokens per second for the run's own sampler and, for a Transformer, the windowed one before it (with
    its own picker); the samplers take turns seed by seed, so that a slower spell of the machine weighs on
    both, and the ratio is given over all seeds and as the median of the seeds' own."""
    import torch

    from ensayo.models.language.scoring import picker

    model = run.model
    length = GENERATED[run.recipe.output.level]
    prompt = model.tokenizer.encode(PROMPT.lower() if run.recipe.output.lowercase else PROMPT)
    samplers = {"cached": (model.network.sample, picker)}
    if hasattr(model.network, "context"):
        samplers["windowed"] = (lambda ids, steps, pick: windowed_sample(model.network, ids, steps, pick),
                                multinomial_picker)
    seconds: dict[str, list[float]] = {name: [] for name in samplers}
    written: dict[str, list[int]] = {}
    for sample, picks in samplers.values():  # warm-up
        for _ in sample(prompt, 20, picks(0.8, None, 0.95, torch.Generator().manual_seed(0))):
            pass
    for seed in seeds:
        for name, (sample, picks) in samplers.items():
            started = time.perf_counter()
            written[name] = list(sample(prompt, length, picks(0.8, None, 0.95, torch.Generator().manual_seed(seed))))
            seconds[name].append(time.perf_counter() - started)
            assert len(written[name]) == length
    result: dict[str, float] = {"tokens": length, "threads": torch.get_num_threads()}
    if "windowed" in written:  # the same text while the context lasts (the last seed's)
        within = min(model.network.context - len(prompt) + 1, length)
        result["same_text_within_context"] = written["cached"][:within] == written["windowed"][:within]
    result |= {f"{name}_tokens_per_second": length * len(seeds) / sum(spent) for name, spent in seconds.items()}
    if "windowed" in samplers:
        result["speedup"] = result["cached_tokens_per_second"] / result["windowed_tokens_per_second"]
        result["speedup_median_of_seeds"] = float(np.median(np.divide(seconds["windowed"], seconds["cached"])))
    return result


# ------------------------------------------------------------------------------------------ recipes
def train_recipe(recipe: str, output: Path, existing: Path | None = None) -> dict:
    """Train the recipe (or read a finished run of it in `existing`) and sample from it."""
    import ensayo

    if existing is not None:
        run = ensayo.load_run(existing)
        if run.recipe.name != Path(recipe).stem:
            raise SystemExit(f"{existing} is a run of {run.recipe.name}, not of {recipe}")
        output = existing
    else:
        run = ensayo.run(ROOT / "recipes" / recipe, output=output, track=False)
    metrics = run.metrics
    samples = ["".join(run.generate(PROMPT, length=240 if run.recipe.output.level == "char" else 45,
                                    temperature=0.8, top_k=None, top_p=0.95, seed=seed)) for seed in (0, 1, 2)]
    return {"test_bits_per_char": metrics["test/bits_per_char"], "test_perplexity": metrics["test/perplexity"],
            "fit_seconds": metrics["fit_seconds"], "epochs": len(json.loads((output / "history.json").read_text())),
            "parameters": int(metrics["parameters"]),
            # runs made before word models were charged for spelling their <unk> words have neither (null)
            "test_unknown_share": metrics.get("test/unknown_share"),
            "test_spelling_bits_per_char": metrics.get("test/spelling_bits_per_char"),
            "samples": [PROMPT + s for s in samples], "generation": generation_speed(run)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="kn," + ",".join(RECIPES))
    parser.add_argument("--run", action="append", default=[], metavar="NAME=DIR",
                        help="use the finished run in DIR for NAME instead of training it again")
    args = parser.parse_args()
    existing = {name: Path(path) for name, path in (item.split("=", 1) for item in args.run)}
    OUT.mkdir(parents=True, exist_ok=True)
    result_file = OUT / "news_generation.json"
    results = json.loads(result_file.read_text()) if result_file.is_file() else {}
    parts = args.only.split(",")
    if "kn" in parts:
        results["char-5gram-kn"] = kneser_ney_baseline(RECIPES["char-transformer"])
        print("kn", results["char-5gram-kn"], flush=True)
        result_file.write_text(json.dumps(results, indent=2) + "\n")
    with tempfile.TemporaryDirectory() as temporary:
        for name, recipe in RECIPES.items():
            if name in parts:
                results[name] = train_recipe(recipe, Path(temporary) / name, existing.get(name))
                print(name, json.dumps(results[name], indent=1), flush=True)
                result_file.write_text(json.dumps(results, indent=2) + "\n")  # each part as soon as it is done
    print("| model | test bits/char | fit seconds | tokens/s generating | before the cache |\n|---|---|---|---|---|")
    for name, value in results.items():
        speed = value.get("generation", {})
        print(f"| {name} | {value['test_bits_per_char']:.3f} | {value['fit_seconds']:.0f} "
              f"| {speed.get('cached_tokens_per_second', float('nan')):.0f} "
              f"| {speed.get('windowed_tokens_per_second', float('nan')):.0f} |")
    print(f"-> {result_file}")
    assert math.isfinite(results.get("char-5gram-kn", {}).get("test_bits_per_char", 0.0))


if __name__ == "__main__":
    sys.exit(main())
