"""The trainer: determinism, exact resume after an interrupt, early stopping, the kept epoch."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers.cli import refused
from helpers.data import lm_recipe, make_titles, recipe_dict, write_challenge_csv, write_corpus
from helpers.training import interrupt_training
from safetensors.torch import load_file

import ensayo
from ensayo.layout import CHECKPOINT
from ensayo.models import load_recipe
from ensayo.training import EncodedSplit
from ensayo.training.trainer import TrainingError, autocast_dtype, has_bf16, pick_device


@pytest.mark.slow
def test_training_is_deterministic(titles_csv: Path, tmp_path: Path) -> None:
    recipe = load_recipe(recipe_dict(titles_csv, {"type": "cnn", "embedding_dim": 8, "filters_count": 8}))
    ensayo.run(recipe, output=tmp_path / "a", track=False)
    ensayo.run(recipe, output=tmp_path / "b", track=False)
    first = load_file(str(tmp_path / "a" / "model.safetensors"))
    second = load_file(str(tmp_path / "b" / "model.safetensors"))
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_model(titles_csv: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    raw = recipe_dict(titles_csv, {"type": "cnn", "embedding_dim": 8, "filters_count": 8, "dropout": 0.3},
                      epochs=3, schedule="cosine", warmup_epochs=0.5)
    recipe = load_recipe(raw)
    ensayo.run(recipe, output=tmp_path / "whole", track=False)

    # the interrupt lands mid-way through epoch 2
    restore = interrupt_training(monkeypatch, EncodedSplit, at_batch=15)
    with pytest.raises(KeyboardInterrupt):
        ensayo.run(recipe, output=tmp_path / "cut", track=False)
    restore()
    assert (tmp_path / "cut" / CHECKPOINT).is_file()
    assert not (tmp_path / "cut" / "metrics.json").exists()
    checkpoint = torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)
    # 11 batches an epoch: the signal came as the 15th was asked for, and training stopped once it was done
    assert checkpoint["state"]["epoch"] == 1 and checkpoint["state"]["step_in_epoch"] == 4

    ensayo.run(None, resume=tmp_path / "cut", track=False)
    with pytest.raises(ValueError, match="has finished"):
        ensayo.run(None, resume=tmp_path / "cut", track=False)
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert resumed["test/loss"] == pytest.approx(whole["test/loss"], rel=1e-6)
    first = load_file(str(tmp_path / "whole" / "model.safetensors"))
    second = load_file(str(tmp_path / "cut" / "model.safetensors"))
    for key in first:
        torch.testing.assert_close(first[key], second[key])


def test_early_stopping_keeps_the_best_epoch(titles_csv: Path, tmp_path: Path) -> None:
    raw = recipe_dict(titles_csv, epochs=30, early_stopping=2, lr=0.05, calibrate="none")  # val/loss as in training
    ensayo.run(load_recipe(raw), output=tmp_path / "run", track=False)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(history) < 30
    best = max(h["val/balanced_accuracy"] for h in history)
    best_epoch = int(metrics["best_epoch"])
    assert history[best_epoch - 1]["val/balanced_accuracy"] == best
    assert all(h["val/balanced_accuracy"] <= best for h in history[best_epoch:])
    assert len(history) == best_epoch + 2
    # the saved model is the best epoch's, not the last one's
    assert metrics["val/loss"] == pytest.approx(history[best_epoch - 1]["val/loss"], rel=1e-5)


def test_without_validation_the_lowest_training_loss_is_kept(titles_csv: Path, tmp_path: Path) -> None:
    raw = recipe_dict(titles_csv, epochs=4, calibrate="none")  # no rows held out to calibrate: no validation at all
    raw["data"]["split"].update(train=0.8, validation=0.0, test=0.2)
    ensayo.run(load_recipe(raw), output=tmp_path / "run", track=False)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    losses = [h["train/loss"] for h in history]
    assert losses[-1] < losses[0]
    assert int(metrics["best_epoch"]) == 1 + losses.index(min(losses))


@pytest.fixture(scope="module")
def signalled_recipe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A recipe that trains for a few seconds with a checkpoint every step, and its uninterrupted weights."""
    root = tmp_path_factory.mktemp("signals")
    raw = recipe_dict(write_challenge_csv(root / "titles.csv", make_titles()),
                      {"type": "cnn", "embedding_dim": 8, "filters_count": 8, "dropout": 0.3},
                      epochs=8, schedule="cosine", warmup_epochs=0.5)
    recipe = root / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    torch.set_num_threads(1)
    ensayo.run(load_recipe(raw), output=root / "whole", track=False)
    return recipe, load_file(str(root / "whole" / "model.safetensors"))


# SIGINT is deferred as SIGTERM is (test_interrupted_training_resumes_to_the_same_model sends it in process)
SIGNALS = [
    (signal.SIGTERM, 0.3, 143),  # inside a step, or while a checkpoint is written: one is, every step
    (signal.SIGKILL, 0.5, -9),   # no chance to save: it resumes from the last whole checkpoint
]


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_real_signal_anywhere_then_resume_gives_the_uninterrupted_weights(
        signalled_recipe: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path) -> None:
    """Each signal stops its own `ensayo run` process, both started at once (their imports overlap)."""
    recipe, whole = signalled_recipe
    env = {**os.environ, "ENSAYO_THREADS": "1", "ENSAYO_CHECKPOINT_SECONDS": "0"}  # a checkpoint every step
    started = {}
    for stop, delay, code in SIGNALS:
        cut = tmp_path / stop.name
        process = subprocess.Popen([sys.executable, "-m", "ensayo", "run", str(recipe), "--no-track", "--output",
                                    str(cut)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started[stop] = (process, cut, delay, code)
    deadline, training_since = time.monotonic() + 120, {}
    waiting = dict(started)
    while waiting:  # training has started once the first checkpoint is there; the signal comes `delay` later
        for stop, (process, cut, delay, _) in list(waiting.items()):
            if stop not in training_since and ((cut / CHECKPOINT).is_file() or process.poll() is not None):
                training_since[stop] = time.monotonic()
            if stop in training_since and time.monotonic() - training_since[stop] >= delay:
                process.send_signal(stop)
                del waiting[stop]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    for stop, (process, cut, _, code) in started.items():
        assert process.wait(timeout=120) == code, stop.name
        assert not (cut / "metrics.json").exists(), "the signal came after training ended: lower the delay"
    for stop, (_, cut, _, _) in started.items():
        ensayo.run(None, resume=cut, track=False)
        resumed = load_file(str(cut / "model.safetensors"))
        for key in whole:
            torch.testing.assert_close(resumed[key], whole[key], rtol=0, atol=0, msg=f"{stop.name}: {key}")
        assert not [p.name for p in cut.iterdir() if ".tmp" in p.name]


# ------------------------------------------------------------------------------------------ precision
needs_bf16 = pytest.mark.skipif(not has_bf16(torch.device("cpu")), reason="this CPU has no bf16 arithmetic")


@needs_bf16
def test_bf16_autocast_learns_what_fp32_learns(titles_csv: Path, tmp_path: Path) -> None:
    encoder = {"type": "cnn", "embedding_dim": 16, "filters_count": 16}
    metrics = {precision: ensayo.run(load_recipe(recipe_dict(titles_csv, encoder, precision=precision, seed=1)),
                                     output=tmp_path / precision, track=False).metrics
               for precision in ("fp32", "bf16")}
    for key in ("test/balanced_accuracy", "val/balanced_accuracy"):
        assert abs(metrics["bf16"][key] - metrics["fp32"][key]) <= 0.01, key
    # both learned the task (seed 3, the helper's, leaves fp32 and bf16 alike stuck at 0.8 and a loss of 0.3-0.6)
    assert metrics["bf16"]["test/loss"] < 0.2 and metrics["fp32"]["test/loss"] < 0.2
    # the weights stay fp32 (a bf16 run loads, predicts and exports as any other), and bf16 did the arithmetic
    bf16, fp32 = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("bf16", "fp32"))
    assert {t.dtype for t in bf16.values()} == {torch.float32}
    assert not all(torch.equal(bf16[key], fp32[key]) for key in fp32)


def test_precision_and_device_a_machine_lacks_are_refused_by_name() -> None:
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("auto", cpu) == (torch.bfloat16 if has_bf16(cpu) else None)
    with pytest.raises(TrainingError, match="train.precision: fp16 trains on a GPU only"):
        autocast_dtype("fp16", cpu)
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="device 'cuda': this machine has no CUDA device"):
            pick_device("cuda")
    if not has_bf16(cpu):
        with pytest.raises(TrainingError, match="train.precision: bf16"):
            autocast_dtype("bf16", cpu)


def test_a_refused_precision_ends_the_command_in_one_line(titles_csv: Path, tmp_path: Path) -> None:
    raw = recipe_dict(titles_csv, {"type": "cnn", "embedding_dim": 8, "filters_count": 8}, precision="fp16")
    (tmp_path / "fp16.yaml").write_text(yaml.safe_dump(raw))
    refused(["run", tmp_path / "fp16.yaml", "--no-track", "--output", tmp_path / "run"],
            "train.precision: fp16 trains on a GPU only")


def _sparse_steps(optimizer_class: type, table: torch.nn.EmbeddingBag, batches: list[torch.Tensor],
                  state: dict | None = None) -> torch.optim.Optimizer:
    optimizer = optimizer_class(table.parameters(), lr=0.01)
    if state is not None:
        optimizer.load_state_dict(state)
    for ids in batches:
        optimizer.zero_grad()
        (table(ids.view(1, -1)) ** 2).sum().backward()
        optimizer.step()
    return optimizer


def test_the_cpu_dropout_drops_its_share_in_every_lane_keeps_the_mean_and_masks_the_gradient() -> None:
    from ensayo.features.networks import Dropout

    dropout = Dropout(0.2)
    x = torch.ones(1000, 1001, requires_grad=True)  # an odd size: the last 64-bit draw is used in part
    torch.manual_seed(0)
    y = dropout(x)
    dropped = (y == 0).view(-1)[:1_000_000].view(-1, 4).float().mean(0)  # each 16-bit lane of the draws
    assert torch.all((dropped - 0.2).abs() < 0.004), dropped
    assert abs(y.mean().item() - 1.0) < 0.005
    assert y.unique().tolist() == [0.0, pytest.approx(1 / (1 - 13107 / 65536))]  # 0.2 rounded to 1/65,536
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient passes where the element was kept, scaled alike
    torch.manual_seed(0)
    assert torch.equal(dropout(x), y)  # seeded: a resumed run draws the same masks
    assert not torch.equal(dropout(x), y)
    assert torch.equal(dropout.eval()(x), x)
    for p, expected in ((0.0, x), (1.0, torch.zeros_like(x))):  # torch's own at the ends
        assert torch.equal(Dropout(p)(x), expected)


def test_row_adam_moves_embedding_tables_as_sparse_adam_does_and_takes_over_its_state() -> None:
    from ensayo.training.optimizers import RowAdam

    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 50, (40,), generator=generator) for _ in range(6)]  # rows repeat within a batch
    tables = {}
    for optimizer_class in (torch.optim.SparseAdam, RowAdam):
        torch.manual_seed(1)
        tables[optimizer_class] = torch.nn.EmbeddingBag(50, 8, mode="sum", sparse=True)
        _sparse_steps(optimizer_class, tables[optimizer_class], batches)
    start = torch.nn.EmbeddingBag(50, 8, mode="sum", sparse=True)
    assert not torch.equal(tables[RowAdam].weight, start.weight)
    assert torch.allclose(tables[RowAdam].weight, tables[torch.optim.SparseAdam].weight, atol=1e-7)
    # a checkpoint's SparseAdam state continues under RowAdam as under SparseAdam (resuming an earlier run)
    torch.manual_seed(1)
    resumed = torch.nn.EmbeddingBag(50, 8, mode="sum", sparse=True)
    state = _sparse_steps(torch.optim.SparseAdam, resumed, batches[:3]).state_dict()
    _sparse_steps(RowAdam, resumed, batches[3:], state)
    assert torch.allclose(resumed.weight, tables[torch.optim.SparseAdam].weight, atol=1e-7)


@pytest.mark.parametrize("width", [128, 5])
def test_row_adam_gives_the_plain_formulas_weights_and_moments_to_the_bit(width: int) -> None:
    """RowAdam reuses its working rows between steps and moves rows of 128 floats as 16-byte elements (5 floats
    cannot be): the tables and moments are those of the formula written plainly, as batches use more rows and
    fewer."""
    from ensayo.training.optimizers import RowAdam

    generator = torch.Generator().manual_seed(0)
    start = torch.randn(300, width, generator=generator)
    table = torch.nn.Parameter(start.clone())
    optimizer = RowAdam([table], lr=0.05)
    weights, mean, square = start.clone(), torch.zeros_like(start), torch.zeros_like(start)
    for step, count in enumerate((20, 150, 40, 290, 7), start=1):
        rows = torch.randperm(300, generator=generator)[:count].sort().values
        values = torch.randn(count, width, generator=generator)
        table.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), values, start.shape)
        optimizer.step()
        moved_mean = mean.index_select(0, rows).lerp_(values, 0.1)
        moved_square = square.index_select(0, rows).lerp_(values.square(), 0.001)
        mean.index_copy_(0, rows, moved_mean)
        square.index_copy_(0, rows, moved_square)
        step_size = 0.05 * math.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
        weights.index_add_(0, rows, moved_mean.div(moved_square.sqrt().add(1e-8)).mul(-step_size))
        state = optimizer.state[table]
        for got, expected in ((table.detach(), weights), (state["exp_avg"], mean), (state["exp_avg_sq"], square)):
            assert torch.equal(got.view(torch.int32), expected.view(torch.int32))
    assert not torch.equal(weights, start)
    assert set(optimizer.state_dict()["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}  # no working rows saved


def test_row_adam_moves_rows_as_16_byte_elements_only_where_they_are_whole_and_aligned() -> None:
    from ensayo.training.optimizers import _as_wide_elements

    flat = torch.arange(4 * 129, dtype=torch.float32)
    aligned = flat[: 4 * 128].view(4, 128)
    wide = _as_wide_elements(aligned)
    assert wide.dtype == torch.complex128 and wide.shape == (4, 32) and wide.data_ptr() == aligned.data_ptr()
    shifted = flat[1: 1 + 4 * 128].view(4, 128)  # starts 4 bytes into the storage, as a table read from a file may
    for table in (shifted, flat[: 4 * 5].view(4, 5), flat[: 4 * 129].view(4, 129)[:, :128]):
        assert _as_wide_elements(table) is table
    # copying through the view moves the same bits as the float copy
    rows, source = torch.tensor([0, 2]), torch.randn(2, 128)
    expected = aligned.clone().index_copy_(0, rows, source)
    _as_wide_elements(aligned).index_copy_(0, rows, _as_wide_elements(source))
    assert torch.equal(aligned.view(torch.int32), expected.view(torch.int32))


@pytest.mark.parametrize("repeated", [False, True])
def test_row_adam_takes_increasing_rows_as_they_come_and_sums_repeated_ones(repeated: bool) -> None:
    from ensayo.training.optimizers import RowAdam

    rows = torch.tensor([3, 3, 7, 1]) if repeated else torch.tensor([1, 3, 7, 9])
    values = torch.arange(32, dtype=torch.float32).view(4, 8) / 10
    moved = []
    for coalesced in (False, True):
        table = torch.nn.Parameter(torch.zeros(10, 8))
        gradient = torch.sparse_coo_tensor(rows.unsqueeze(0), values, (10, 8))
        table.grad = gradient.coalesce() if coalesced else gradient
        assert table.grad.is_coalesced() == coalesced
        RowAdam([table], lr=0.1).step()
        moved.append(table.detach())
    torch.testing.assert_close(moved[0], moved[1], rtol=0, atol=0)
    assert sorted(moved[0].abs().sum(1).nonzero().view(-1).tolist()) == sorted(set(rows.tolist()))


def test_subword_sums_learnt_from_each_row_once_equal_the_plain_bags() -> None:
    from ensayo.features import build_feature
    from ensayo.features.text.encoders import TokenEmbedding
    from ensayo.features.text.preprocessing import TextPreprocessing

    feature = build_feature("text", "title", "title", TextPreprocessing(char_ngrams=(2, 4), subword_min_count=1))
    titles = [title for title, _ in make_titles(20, seed=3)][:60]
    batch = feature.collate(feature.fit_transform(titles), list(range(60)))
    torch.manual_seed(0)
    embedding = TokenEmbedding(feature, 16, freeze=False)
    gradients = {}
    for training in (True, False):
        embedding.train(training)
        embedding.zero_grad()
        with embedding.layer_by_layer():  # evaluating, the plain bags (as an attribution runs them)
            embedded, _ = embedding(batch)
        (embedded * torch.linspace(-1, 1, 16)).pow(2).sum().backward()
        gradients[training] = (embedded.detach(), embedding.subwords.weight.grad.coalesce().to_dense())
    assert torch.equal(gradients[True][0], gradients[False][0])
    assert torch.allclose(gradients[True][1], gradients[False][1], atol=1e-6)
    assert gradients[True][1].abs().sum() > 0
    # the learnt bags look their rows up without a padding filter: subword ids start past the padding's row
    assert int(batch["sub_ids"].min()) >= 1 and not gradients[True][1][0].any()
    # answering, each word's vector is one row of a table composed from the same bags
    with torch.no_grad():
        composed, _ = embedding.eval()(batch)
    torch.testing.assert_close(composed, gradients[False][0], rtol=0, atol=1e-7)
    with torch.no_grad():  # and the table follows the weights as they change
        embedding.subwords.weight.add_(0.5)
        moved, _ = embedding(batch)
    assert not torch.allclose(moved, composed)
    with torch.no_grad(), embedding.layer_by_layer():
        torch.testing.assert_close(moved, embedding(batch)[0], rtol=0, atol=1e-7)


@pytest.mark.slow
def test_a_compiled_transformer_with_hashed_ngrams_learns_what_the_eager_one_learns(tmp_path: Path) -> None:
    """Inductor cannot compile an embedding with sparse gradients: the n-gram lookups stay eager (they failed
    the whole step with 'Cannot access storage of SparseTensorImpl') and the rest is compiled."""
    corpus = write_corpus(tmp_path / "news.csv")
    raw = lm_recipe(corpus, architecture="transformer", ngrams=[2, 3], ngram_buckets=512, ngram_dropout=0.3,
                    positions="rotary", tie_weights=True)
    raw["train"] = {**raw["train"], "epochs": 1}
    scores = {}
    for compile_ in (False, True):
        recipe = load_recipe({**raw, "train": {**raw["train"], "compile": compile_}})
        saved = ensayo.run(recipe, output=tmp_path / f"compile-{compile_}", track=False)
        scores[compile_] = saved.metrics["test/bits_per_char"]
    assert scores[True] == pytest.approx(scores[False], abs=0.02), scores


@pytest.mark.slow
def test_a_compiled_training_step_trains_and_resumes_exactly(titles_csv: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    raw = recipe_dict(titles_csv, {"type": "cnn", "embedding_dim": 8, "filters_count": 8, "dropout": 0.3},
                      epochs=2, compile=True)
    recipe = load_recipe(raw)
    whole = ensayo.run(recipe, output=tmp_path / "whole", track=False)
    assert whole.metrics["test/accuracy"] > 0.3  # 5 classes: it learnt something
    restore = interrupt_training(monkeypatch, EncodedSplit, at_batch=15)
    with pytest.raises(KeyboardInterrupt):
        ensayo.run(recipe, output=tmp_path / "cut", track=False)
    restore()
    ensayo.run(None, resume=tmp_path / "cut", track=False)
    first = load_file(str(tmp_path / "whole" / "model.safetensors"))
    second = load_file(str(tmp_path / "cut" / "model.safetensors"))
    for key in first:
        torch.testing.assert_close(first[key], second[key])
