"""Text output: language models over a corpus, bits per character, generation from a saved run."""

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from helpers.benchmarks import benchmark
from helpers.data import lm_recipe, write_corpus
from helpers.training import explore_report, interrupt_training
from typer.testing import CliRunner

import ensayo
from ensayo.cli import app
from ensayo.layout import CHECKPOINT
from ensayo.models import load_recipe
from ensayo.models.language import LanguageModelConfig
from ensayo.models.language.networks import (
    HashedNgrams,
    RecurrentLanguageModel,
    TransformerLanguageModel,
    rotate,
    rotation_rows,
    scored_stride,
)
from ensayo.models.language.scoring import language_metrics, picker
from ensayo.outputs.text import Spelling, Tokenizer, TokenWindows, documents
from ensayo.recipe import OutputConfig, RecipeError

news_generation = benchmark("news_generation")  # its windowed sampler: how the Transformer sampled before its cache


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "news.csv")


def test_documents_repair_markup_and_join_columns() -> None:
    table = pl.DataFrame({"title": ["Bank #39;s rise"],
                          "description": ["Up  #36;5 &lt;b&gt;today&lt;/b&gt;\\\\Down later"]})
    output = OutputConfig(type="text", columns=["title", "description"], separator="\n")
    assert documents(table, output) == ["Bank's rise\nUp $5 today Down later"]


def test_tokenizers_round_trip_and_count_characters() -> None:
    texts = ["Stocks rose (again), it's said.", "Oil fell."]
    chars = Tokenizer.fit(texts, OutputConfig(type="text", columns=["t"], level="char"))
    assert chars.decode(chars.encode(texts[0])) == texts[0]
    stream, characters = chars.stream(texts)
    assert len(stream) == characters == len(texts[0]) + len(texts[1]) + 2
    assert stream[len(texts[0])] == 1  # the end-of-document mark
    words = Tokenizer.fit(texts, OutputConfig(type="text", columns=["t"], level="word", max_vocab=6))
    assert len(words) == 8  # <unk>, <eod> and the six commonest
    assert words.encode("Stocks zebra")[1] == 0
    full = Tokenizer.fit(texts, OutputConfig(type="text", columns=["t"], level="word"))
    assert full.decode(full.encode(texts[0])) == texts[0]  # spacing restored around punctuation


def test_windows_predict_the_next_token() -> None:
    windows = TokenWindows(torch.arange(50), context=8, characters=50)
    assert len(windows) == 6
    (batch, labels), = list(windows.batches(6))
    assert batch["tokens"].shape == (6, 8)
    torch.testing.assert_close(labels, (batch["tokens"] + 1).reshape(-1))


@pytest.mark.parametrize("stride", [8, 3, 1])
def test_bits_per_char_of_a_uniform_model_is_log2_of_the_vocabulary(stride: int) -> None:
    class Uniform(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))

        def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return torch.zeros(batch["tokens"].numel(), 16)

    windows = TokenWindows(torch.randint(0, 16, (65,)), context=8, characters=65)
    metrics = language_metrics(Uniform(), windows, 4, "test/", stride=stride)
    assert metrics["test/bits_per_char"] == pytest.approx(4.0)
    assert metrics["test/perplexity"] == pytest.approx(16.0)
    # a word model's tokens stand for more characters: the same loss is fewer bits per character
    words = TokenWindows(windows.stream, 8, characters=4 * 65)
    assert language_metrics(Uniform(), words, 4, stride=stride)["bits_per_char"] == pytest.approx(1.0)
    # and what spelling its unknown words costs is added, per character
    spelt = language_metrics(Uniform(), TokenWindows(windows.stream, 8, 4 * 65, spelling_bits=130.0), 4,
                             stride=stride)
    assert spelt["bits_per_char"] == pytest.approx(1.5)
    assert spelt["spelling_bits_per_char"] == pytest.approx(0.5)
    assert spelt["unknown_share"] == pytest.approx(float((windows.stream == 0).float().mean()))


def test_unknown_words_are_charged_their_spelling() -> None:
    tokenizer = Tokenizer("word", ["<unk>", "<eod>", "the", "bank"])
    assert tokenizer.unknown_words(["The bank lent zorbas", "the bank"]) == ["The", "lent", "zorbas"]
    assert Tokenizer("char", ["<unk>", "<eod>", "a"]).unknown_words(["ab"]) == []
    assert sorted(tokenizer.rare_words(["the bank lent", "the lent bank zorbas"])) == ["lent", "lent", "zorbas"]
    # a distribution over words: all the words of up to eight letters over its alphabet and the unseen
    # characters ("~" stands for each of the 65,536) hold at most all of the mass, and nearly all of it
    short = Spelling(["ab", "ba", "a", "abba"])
    words = ["".join(letters) for n in range(9) for letters in itertools.product("ab~", repeat=n)]
    mass = sum(2.0 ** -(short.bits([w]) - Spelling.UNSEEN_BITS * w.count("~")) for w in words)
    assert 0.95 < mass <= 1.0 + 1e-9
    spelling = Spelling(["lent", "loan", "lend", "zorbas"])
    assert spelling.bits(["lent"]) < spelling.bits(["tnel"])  # seen bigrams are cheaper
    assert spelling.bits(["lent", "loan"]) == pytest.approx(spelling.bits(["lent"]) + spelling.bits(["loan"]))


def test_ranks_score_disjoint_shares_of_the_windows_and_add_up_to_one_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ranks as two threads: each scores its own windows, the sums cross the ranks, and both get the one
    process's metrics."""
    import threading

    from ensayo.training import distributed

    class Bigram(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = torch.nn.Embedding(16, 16)

        def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return self.table(batch["tokens"]).reshape(-1, 16)

    torch.manual_seed(0)
    network = Bigram()
    windows = TokenWindows(torch.randint(0, 16, (203,)), context=8, characters=203)
    alone = language_metrics(network, windows, 4, "val/")
    local, barrier = threading.local(), threading.Barrier(2)
    sums: dict[int, list[float]] = {}
    shares: dict[int, np.ndarray] = {}
    share_of = distributed.row_share

    def sum_over_ranks(values: list[float], device: torch.device) -> list[float]:
        sums[local.rank] = values
        barrier.wait()
        return [a + b for a, b in zip(sums[0], sums[1], strict=True)]

    def row_share(rows: int, current: distributed.World | None = None) -> np.ndarray:
        shares[local.rank] = share_of(rows, current)
        return shares[local.rank]

    monkeypatch.setattr(distributed, "world", lambda: distributed.World(local.rank, 2))
    monkeypatch.setattr(distributed, "sum_over_ranks", sum_over_ranks)
    monkeypatch.setattr(distributed, "row_share", row_share)
    results: dict[int, dict[str, float]] = {}

    def rank(number: int) -> None:
        local.rank = number
        results[number] = language_metrics(network, windows, 4, "val/")

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(shares[0]) and len(shares[1]) and not set(shares[0]) & set(shares[1])
    starts = len(range(0, len(windows.stream) - 8, 2))  # a window every context // 4 tokens
    assert sorted(np.concatenate([shares[0], shares[1]]).tolist()) == list(range(starts))
    assert results[0] == results[1] == pytest.approx(alone)


def test_overlapping_windows_score_every_token_once_with_long_contexts() -> None:
    class Counting(torch.nn.Module):
        """Loss 1 nat for a token seen with fewer than 6 tokens before it in its window, else 0."""

        def __init__(self) -> None:
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))

        def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            rows, length = batch["tokens"].shape
            logits = torch.zeros(rows, length, 2)
            logits[:, 6:, 0] = 50.0  # confident (and right: every label is 0) once the context is long
            return logits.flatten(0, 1)

    windows = TokenWindows(torch.zeros(81, dtype=torch.long), context=8, characters=81)
    plain = language_metrics(Counting(), windows, 4, stride=8)
    sliding = language_metrics(Counting(), windows, 4, stride=2)
    # non-overlapping windows: 6 of every 8 tokens are seen with a short context, each costing ln 2
    assert plain["loss"] == pytest.approx(6 / 8 * math.log(2), rel=1e-4)
    # windows every 2 tokens, scoring their last 2: only the first window's 6 short-context tokens cost
    assert sliding["loss"] == pytest.approx(6 * math.log(2) / (8 + 2 * 36), rel=1e-4)


def test_sampling_respects_top_k_and_top_p() -> None:
    logits = torch.tensor([0.0, 5.0, 4.0, 1.0, 0.5])
    generator = torch.Generator().manual_seed(0)
    assert {picker(1.0, 1, None, generator)(logits) for _ in range(20)} == {1}
    assert {picker(1.0, None, 0.6, generator)(logits) for _ in range(50)} == {1}
    assert {picker(1.0, 2, None, generator)(logits) for _ in range(200)} == {1, 2}
    assert picker(0.0, None, None, generator)(logits) == 1
    assert 0 not in {picker(5.0, None, None, generator)(torch.tensor([9.0, 0, 0, 0])) for _ in range(50)}


@pytest.mark.parametrize("vocabulary", [5, 90, 3000])
def test_the_picker_draws_what_torch_multinomial_drew(vocabulary: int) -> None:
    # the same seed writes the same text as the sampler did with torch.multinomial (news_generation keeps it)
    torch.manual_seed(vocabulary)
    for settings in [(0.8, None, 0.95), (1.0, None, None), (0.5, 10, None), (1.2, 4, 0.7), (0.0, None, None)]:
        for seed in range(5):
            ours = picker(*settings, torch.Generator().manual_seed(seed))
            before = news_generation.multinomial_picker(*settings, torch.Generator().manual_seed(seed))
            for _ in range(20):
                logits = torch.randn(vocabulary) * 3
                assert ours(logits) == before(logits), settings


def test_rotation_rows_rotate_as_rotate_does() -> None:
    angles = torch.outer(torch.arange(6).float(), torch.rand(4) * 3)
    cos, sin = angles.cos(), angles.sin()
    scale, shift = rotation_rows(cos, sin)
    x = torch.randn(3, 6, 8)
    for position in range(6):
        rows = x[:, position]
        torch.testing.assert_close(rows * scale[position] + rows.roll(4, -1) * shift[position],
                                   rotate(rows, cos[position], sin[position]))


@pytest.mark.parametrize("model", [
    {"architecture": "lstm"},
    {"architecture": "gru", "layers": 2},
    {"architecture": "transformer", "layers": 2, "positions": "learned"},
    {"architecture": "transformer", "layers": 2, "positions": "rotary"},
    {"architecture": "lstm", "level": "word"},
    {"architecture": "gru", "ngrams": [2, 3], "ngram_buckets": 512},
    {"architecture": "transformer", "layers": 1, "positions": "rotary", "ngrams": [2, 3, 4], "ngram_buckets": 1024},
])
@pytest.mark.slow
def test_language_models_learn_the_corpus_and_generate(corpus: Path, tmp_path: Path, model: dict) -> None:
    word = model.get("level") == "word"
    saved = ensayo.run(load_recipe(lm_recipe(corpus, **model)), output=tmp_path / "run", track=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"test/bits_per_char", "test/perplexity", "test/loss", "val/bits_per_char", "fit_seconds"} <= set(metrics)
    vocabulary = metrics["vocabulary"]
    # far below a uniform guess over the vocabulary, in bits per character
    assert metrics["test/bits_per_char"] < (0.5 if word else 0.6) * math.log2(vocabulary)
    assert metrics["test/perplexity"] == pytest.approx(math.exp(metrics["test/loss"]), rel=1e-6)
    assert "#39;" not in (tmp_path / "run" / "samples.txt").read_text()

    first = "".join(saved.generate("The bank", length=40, seed=3))
    assert first == "".join(ensayo.generate(tmp_path / "run", "The bank", length=40, seed=3))
    assert first != "".join(saved.generate("The bank", length=40, seed=4))
    result = CliRunner().invoke(app, ["generate", str(tmp_path / "run"), "--prompt", "The bank", "--length", "40",
                                      "--seed", "3", "--top-k", "5", "--top-p", "0.9", "--temperature", "0.7"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("The bank") and len(result.stdout) > len("The bank") + 20


def test_hashed_ngrams_see_exactly_their_order_and_continue_across_windows() -> None:
    torch.manual_seed(0)
    ngrams = HashedNgrams([2, 4], buckets=4096, dim=8)
    tokens = torch.tensor([[5, 6, 7, 8, 9, 10]])
    full = ngrams(tokens)
    # a window that starts later, told the tokens before it, embeds its positions as the long window did
    assert torch.allclose(ngrams(tokens[:, 3:], tokens[:, :3]), full[:, 3:])
    # the last position's longest n-gram is (7, 8, 9, 10): the token four back does not reach it, three back does
    far, near = tokens.clone(), tokens.clone()
    far[0, 1], near[0, 2] = 50, 50
    assert torch.equal(ngrams(far)[0, -1], full[0, -1])
    assert not torch.allclose(ngrams(near)[0, -1], full[0, -1])


def test_ngram_dropout_drops_whole_orders_in_training_only() -> None:
    torch.manual_seed(0)
    ngrams = HashedNgrams([2], buckets=4096, dim=8, dropout=0.5)
    tokens = torch.randint(0, 30, (4, 200))
    kept = ngrams.eval()(tokens)
    dropped = ngrams.train()(tokens)
    gone = (dropped == 0).all(dim=-1)
    assert 0.4 < float(gone.float().mean()) < 0.6
    # the positions kept are scaled up, so that a position's expected embedding is what evaluation sees
    torch.testing.assert_close(dropped[~gone], kept[~gone] * 2)


def test_a_recurrent_model_with_ngrams_generates_as_it_was_trained() -> None:
    torch.manual_seed(0)
    config = LanguageModelConfig(architecture="gru", dim=16, hidden_size=16, layers=1, dropout=0.0,
                                 ngrams=[2, 3], ngram_buckets=512)
    model = RecurrentLanguageModel(20, config, context=16).eval()
    seen: list[torch.Tensor] = []

    def greedy(logits: torch.Tensor) -> int:
        seen.append(logits.clone())
        return int(logits.argmax())

    prompt = [3, 4, 5]
    generated = list(model.sample(prompt, 6, greedy))
    # one token at a time (state + the n-gram history) gives the logits of one pass over the whole text
    whole, _ = model({"tokens": torch.tensor([prompt + generated])}, flat=False)
    assert torch.allclose(torch.stack(seen), whole[0, len(prompt) - 1: -1], atol=1e-5)


def recording(pick: Any, seen: list[torch.Tensor]) -> Any:
    def recorded(logits: torch.Tensor) -> int:
        seen.append(logits.clone())
        return pick(logits)

    return recorded


@pytest.mark.parametrize(("positions", "ngrams", "prompt"), [
    ("rotary", [2, 3], [3, 4, 5, 6]), ("learned", [2, 3], [3, 4, 5, 6]), ("rotary", [], [3, 4, 5, 6]),
    ("learned", [5], [3])])  # 5-grams after one token: the first steps hash padding before the prompt
def test_a_cached_transformer_writes_the_windowed_text_while_the_context_lasts(positions: str, ngrams: list[int],
                                                                               prompt: list[int]) -> None:
    torch.manual_seed(0)
    config = LanguageModelConfig(architecture="transformer", dim=32, layers=2, heads=4, positions=positions,
                                 dropout=0.0, ngrams=ngrams, ngram_buckets=512)
    model = TransformerLanguageModel(30, config, context=16).eval()
    within = model.context - len(prompt) + 1  # the last of these is predicted from a full context
    cached_logits: list[torch.Tensor] = []
    windowed_logits: list[torch.Tensor] = []
    cached = list(model.sample(prompt, within, recording(picker(1.0, None, None, torch.Generator().manual_seed(7)),
                                                          cached_logits)))
    windowed = list(news_generation.windowed_sample(model, prompt, within, recording(
        picker(1.0, None, None, torch.Generator().manual_seed(7)), windowed_logits)))
    assert cached == windowed  # the same seed samples the same text
    torch.testing.assert_close(torch.stack(cached_logits), torch.stack(windowed_logits), atol=1e-5, rtol=1e-5)


def test_past_its_context_a_cached_transformer_restarts_its_window_as_bits_are_scored() -> None:
    torch.manual_seed(1)
    config = LanguageModelConfig(architecture="transformer", dim=32, layers=2, heads=4, positions="rotary",
                                 dropout=0.0, ngrams=[2, 3], ngram_buckets=512)
    model = TransformerLanguageModel(30, config, context=16).eval()
    prompt, steps = [3, 4, 5], 40
    seen: list[torch.Tensor] = []
    generated = list(model.sample(prompt, steps, recording(lambda logits: int(logits.argmax()), seen)))
    text = prompt + generated
    keep = model.context - scored_stride(model.context) + 1
    # each logit equals one pass over the window the rule states: the whole text until the context is full,
    # then restarted from the last `keep` tokens and grown back to the full context
    window = len(prompt)
    for step in range(steps):
        if step and window == model.context:
            window = keep
        elif step:
            window += 1
        end = len(prompt) + step
        expected = model({"tokens": torch.tensor([text[end - window: end]])}, flat=False)[0, -1]
        torch.testing.assert_close(seen[step], expected, atol=1e-5, rtol=1e-5)
    # past the context the rule is not the windowed sampler's: some step sees a shorter window than it would
    assert any(not torch.allclose(seen[step], model({"tokens": torch.tensor(
        [text[len(prompt) + step - model.context: len(prompt) + step]])}, flat=False)[0, -1], atol=1e-5)
        for step in range(model.context, steps))


def test_ngram_orders_are_checked(corpus: Path) -> None:
    for orders in ([1, 2], [2, 2], [7]):
        with pytest.raises(RecipeError, match="n-gram orders"):
            load_recipe(lm_recipe(corpus, ngrams=orders))


@pytest.mark.slow
def test_language_model_training_resumes_after_an_interrupt(corpus: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = load_recipe(lm_recipe(corpus))
    ensayo.run(recipe, output=tmp_path / "whole", track=False)
    restore = interrupt_training(monkeypatch, TokenWindows, at_batch=30)  # in the second epoch
    with pytest.raises(KeyboardInterrupt):
        ensayo.run(recipe, output=tmp_path / "cut", track=False)
    restore()
    assert (tmp_path / "cut" / CHECKPOINT).is_file()
    ensayo.run(None, resume=tmp_path / "cut", track=False)
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert resumed["test/bits_per_char"] == pytest.approx(whole["test/bits_per_char"], rel=1e-5)


def test_text_output_recipes_are_checked(corpus: Path) -> None:
    raw = lm_recipe(corpus)
    raw["model"]["type"] = "neural"
    with pytest.raises(RecipeError, match="language_model"):
        load_recipe(raw)
    raw = lm_recipe(corpus)
    raw["output"]["columns"] = []
    with pytest.raises(RecipeError, match="columns"):
        load_recipe(raw)
    raw = lm_recipe(corpus)
    raw["model"]["language_model"]["architecure"] = "gru"
    with pytest.raises(RecipeError, match="did you mean 'architecture'"):
        load_recipe(raw)
    raw = lm_recipe(corpus, architecture="transfomer")
    with pytest.raises(RecipeError, match="did you mean 'transformer'"):
        load_recipe(raw)
    assert load_recipe(lm_recipe(corpus)).train.monitor == "val/bits_per_char"


def test_explore_a_corpus(corpus: Path, tmp_path: Path) -> None:
    report = explore_report(lm_recipe(corpus), tmp_path)
    assert "words per sentence" in report and "Most frequent words" in report and "`the`" in report
    assert "#39;" not in report
    assert (tmp_path / "report" / "corpus_lengths.png").stat().st_size > 1000
    assert np.isfinite(float(report.split("words per text | ")[1].split(" |")[0]))


def test_a_stream_left_unfinished_leaves_every_threads_gradients_on(tiny_runs: dict[str, Path]) -> None:
    """A server streams text step by step on pool threads, and a client may leave halfway: no thread may be
    left with gradients off (the test suite's next training run would learn nothing)."""
    from concurrent.futures import ThreadPoolExecutor

    stream = ensayo.load_run(tiny_runs["language_model"]).generate("The ", 20)
    next(stream)  # one step on this thread, as a server's pool thread runs one
    assert torch.is_grad_enabled()
    with ThreadPoolExecutor(1) as pool:  # then the stream is abandoned, and closed on another thread
        assert pool.submit(lambda: (stream.close(), torch.is_grad_enabled())[1]).result()
    assert torch.is_grad_enabled()
