from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from ensayo.features.text import (
    BagEncoder,
    BagEncoderConfig,
    CnnEncoder,
    CnnEncoderConfig,
    EmbeddingsConfig,
    RnnEncoder,
    RnnEncoderConfig,
    TextFeature,
    TextPipeline,
    TextPreprocessing,
    normalize,
    repair_markup,
    subwords,
)


def feature(**options) -> TextFeature:
    return TextFeature("title", "title", TextPreprocessing(**options))


def test_normalization_options() -> None:
    text = "Oferta!!! Cómoda 4 Cajones, Niño 120cm &amp; más"
    assert normalize(text, TextPreprocessing()) == "oferta comoda 4 cajones nino 120cm mas"
    assert normalize(text, TextPreprocessing(numbers="zero")) == "oferta comoda 0 cajones nino 000cm mas"
    assert normalize(text, TextPreprocessing(numbers="remove")) == "oferta comoda cajones nino cm mas"
    kept = normalize(text, TextPreprocessing(lowercase=False, strip_accents=False, remove_punctuation=False))
    assert kept == "Oferta!!! Cómoda 4 Cajones, Niño 120cm & más"


def test_markup_repair_of_ag_news_debris() -> None:
    assert repair_markup("Sven #39;s team doesn #39;t") == "Sven's team doesn't"
    assert repair_markup("the makers #39; efforts in the #39;90s") == "the makers' efforts in the '90s"
    assert repair_markup("the #36;10 million \\$5 prize") == "the $10 million $5 prize"
    assert repair_markup("a second\\team #151; done") == "a second team — done"
    assert repair_markup("Intel &lt;INTC.O&gt;") == "Intel <INTC.O>"  # a ticker, not a tag
    assert repair_markup("In  quot;helping themselves, quot; AT amp;T") == 'In  "helping themselves, " AT &T'
    assert repair_markup("a liquot; of equal;") == "a liquot; of equal;"  # inside a word: not debris
    link = 'see &lt;A HREF="http://x.com/y"&gt;Reuters&lt;/A&gt; now'
    assert " ".join(repair_markup(link).split()) == "see Reuters now"


def test_tokens_stems_lemmas_and_ngrams() -> None:
    assert TextPipeline(TextPreprocessing())("Perros, perras y perritos") == ["perros", "perras", "y", "perritos"]
    stems = TextPipeline(TextPreprocessing(stem="es"))("Perros perras")
    assert stems == ["perr", "perr"]
    assert TextPipeline(TextPreprocessing(lemmatize="es"))("peces") == ["pez"]
    assert TextPipeline(TextPreprocessing(word_ngrams=2))("a b c") == ["a", "b", "c", "a_b", "b_c"]
    assert TextPipeline(TextPreprocessing(tokenizer="chars"))("Ab c") == ["a", "b", " ", "c"]
    assert subwords("sol", 2, 3) == ["<s", "so", "ol", "l>", "<so", "sol", "ol>"]


def test_vocabulary_min_count_max_size_and_unknowns() -> None:
    text = feature(min_count=2).fit(["a a b", "a c c", "d"])
    assert text.vocab.tokens == ["<pad>", "<unk>", "a", "c"]
    capped = feature(max_vocab=3).fit(["a a b", "a c c", "d"])
    assert capped.vocab.tokens == ["<pad>", "<unk>", "a"]
    encoded = text.transform(["a b c", "zzz", ""])
    assert encoded.ids.tolist() == [[2, 1, 3], [1, 0, 0], [1, 0, 0]]
    assert encoded.lengths.tolist() == [3, 1, 1]


def test_truncation_and_batch_padding_to_longest() -> None:
    text = feature(max_length=4).fit(["a b c d e f", "a"])
    encoded = text.transform(["a b c d e f", "a", "a b"])
    assert encoded.ids.shape == (3, 4)
    batch = text.collate(encoded, np.array([1, 2]))
    assert batch["ids"].shape == (2, 2)
    assert batch["lengths"].tolist() == [1, 2]


def test_subword_batches_point_at_each_tokens_ngrams() -> None:
    text = feature(char_ngrams=(2, 3), subword_min_count=1).fit(["sol luna", "sol"])
    encoded = text.transform(["luna sol", "sol"])
    batch = text.collate(encoded, np.array([0, 1]))
    words = text.vocab.tokens
    counts, offsets, ids = batch["sub_counts"], batch["sub_offsets"], batch["sub_ids"]
    flat_ids = batch["ids"].reshape(-1).tolist()
    for position, word_id in enumerate(flat_ids):
        start, count = int(offsets[position]), int(counts[position])
        got = [text.subword_vocab.tokens[i] for i in ids[start: start + count].tolist()]
        expected = subwords(words[word_id], 2, 3) if word_id > 1 else []
        assert got == expected


def write_vectors(path: Path, words: dict[str, list[float]], header: bool) -> Path:
    lines = [f"{len(words)} {len(next(iter(words.values())))}"] if header else []
    lines += [" ".join([w, *map(str, v)]) for w, v in words.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("header", [True, False])
def test_pretrained_vectors_coverage_and_initialisation(tmp_path: Path, header: bool) -> None:
    vectors = {"celular": [1.0, 2.0, 3.0], "samsung": [0.5, 0.5, 0.5], "extra": [9.0, 9.0, 9.0]}
    path = write_vectors(tmp_path / "vec.txt", vectors, header)
    text = feature(embeddings=EmbeddingsConfig(path=str(path))).fit(["celular samsung", "celular nuevo"])
    assert text.coverage["vocabulary_found"] == pytest.approx(2 / 3)
    assert text.coverage["tokens_found"] == pytest.approx(3 / 4)
    encoder = BagEncoder(text, BagEncoderConfig(type="bag", embedding_dim=3, freeze_embeddings=True))
    weights = encoder.embed.words.weight
    assert weights[text.vocab.index["celular"]].tolist() == [1.0, 2.0, 3.0]
    assert not weights.requires_grad
    with pytest.raises(ValueError, match="embedding_dim is 8 but the word vectors"):
        BagEncoder(text, BagEncoderConfig(type="bag", embedding_dim=8))


def test_binary_word2vec_is_read(tmp_path: Path) -> None:
    from gensim.models import KeyedVectors

    keyed = KeyedVectors(vector_size=4)
    keyed.add_vectors(["taladro", "bosch"], np.ones((2, 4), dtype=np.float32))
    keyed.save_word2vec_format(str(tmp_path / "v.bin"), binary=True)
    text = feature(embeddings=EmbeddingsConfig(path=str(tmp_path / "v.bin"))).fit(["taladro bosch rojo"])
    assert text.coverage["dimension"] == 4
    assert text.coverage["vocabulary_found"] == pytest.approx(2 / 3)


def test_unreadable_vectors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.vec"
    bad.write_text("2 3\nhola 1 2\n")
    with pytest.raises(ValueError, match="bad.vec"):
        feature(embeddings=EmbeddingsConfig(path=str(bad))).fit(["hola"])


ENCODERS = [
    (BagEncoder, BagEncoderConfig(type="bag", embedding_dim=8, pooling="mean_max"), 16),
    (CnnEncoder, CnnEncoderConfig(type="cnn", embedding_dim=8, filter_widths=[2, 3], filters_count=5), 10),
    (RnnEncoder, RnnEncoderConfig(type="rnn", embedding_dim=8, hidden_size=6), 12),
    (RnnEncoder, RnnEncoderConfig(type="rnn", embedding_dim=8, hidden_size=6, cell="gru", pooling="last"), 12),
]


@pytest.mark.parametrize(("cls", "config", "width"), ENCODERS)
@pytest.mark.parametrize("subword", [False, True])
def test_encoders_ignore_padding(cls, config, width: int, subword: bool) -> None:
    """A row encodes the same alone as in a batch padded for a longer row."""
    torch.manual_seed(0)
    options = {"char_ngrams": (2, 3), "subword_min_count": 1} if subword else {}
    text = feature(**options).fit(["uno dos tres cuatro cinco seis", "uno"])
    encoder = cls(text, config).eval()
    assert encoder.output_dim == width
    encoded = text.transform(["uno", "uno dos tres cuatro cinco seis"])
    alone = encoder(text.collate(encoded, np.array([0])))
    together = encoder(text.collate(encoded, np.array([0, 1])))
    assert alone.shape == (1, width)
    torch.testing.assert_close(alone[0], together[0])
    assert not torch.allclose(together[0], together[1])


@pytest.mark.parametrize("precision", [torch.float32, torch.bfloat16])
def test_cnn_training_forward_gives_the_plain_formulas_values_and_gradients(precision: torch.dtype) -> None:
    """Training, the CNN builds its windows and pools through its own autograd functions (the ReLU after the
    max-pooling, the windows written in the product's dtype): the values and every gradient, the embeddings'
    included, are torch's for unfold, ReLU, masking and amax, to the last bit, ties between windows too."""
    torch.manual_seed(0)
    text = feature().fit(["uno dos tres cuatro cinco seis siete", "uno dos"])
    config = CnnEncoderConfig(type="cnn", embedding_dim=8, filter_widths=[1, 2, 3], filters_count=16, dropout=0.0)
    encoder = CnnEncoder(text, config).train()
    texts = ["uno", "uno dos", "tres cuatro cinco seis siete", "dos", "siete siete siete uno siete siete"]
    batch = text.collate(text.transform(texts), np.arange(len(texts)))

    def relu_then_pooling() -> torch.Tensor:
        embedded, _ = encoder.embed(batch)
        embedded = torch.nn.functional.pad(embedded, (0, 0, 0, max(0, 3 - embedded.shape[1])))
        pooled = []
        for width, conv in zip(encoder.widths, encoder.convs, strict=True):
            activations = torch.relu(conv(embedded.unfold(1, width, 1).flatten(2)))
            valid = torch.arange(activations.shape[1]).unsqueeze(0) <= (batch["lengths"] - width).clamp_min(0)[:, None]
            pooled.append(activations.masked_fill(~valid.unsqueeze(-1), 0.0).amax(1))
        return torch.cat(pooled, dim=-1)

    results = []
    for forward in (relu_then_pooling, lambda: encoder(batch)):
        encoder.zero_grad()
        with torch.autocast("cpu", dtype=precision, enabled=precision != torch.float32):
            encoded = forward()
        (encoded.float() * torch.linspace(-1, 1, encoded.numel()).view_as(encoded)).sum().backward()
        results.append([encoded.detach(), encoder.embed.words.weight.grad.to_dense(),
                        *(conv.weight.grad.clone() for conv in encoder.convs)])
    assert (results[0][0] == 0).any() and (results[0][0] > 0).any()  # some filters pooled to zero, some not
    # the last text's "siete" windows of width 1 tie: their filters' gradient is split between them
    with torch.no_grad(), torch.autocast("cpu", dtype=precision, enabled=precision != torch.float32):
        firsts = encoder.convs[0](encoder.embed(batch)[0][-1])
    assert ((firsts == firsts.amax(0)).sum(0) > 1).any()
    for before, after in zip(*results, strict=True):
        torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert results[1][1].abs().sum() > 0


@pytest.mark.parametrize("windows", [7, 600])  # 301 ties: past 255 windows they are counted in int32
@pytest.mark.parametrize("precision", [torch.float32, torch.bfloat16])
def test_relu_of_largest_splits_the_gradient_between_tied_windows_as_amax_does(windows: int,
                                                                            precision: torch.dtype) -> None:
    from ensayo.features.text.encoders import _ReluOfLargest

    torch.manual_seed(0)
    activations = torch.randn(3, windows, 5).to(precision)
    largest = activations.abs().amax(1, keepdim=True) + 1
    activations[:, 0:1], activations[:, 1::2] = largest, largest  # the first and every other window hold the largest
    activations[2] = -activations[2].abs()  # a text whose filters all pool to zero
    valid = torch.arange(windows).unsqueeze(0) < torch.tensor([[windows], [windows - 1], [windows]])
    weights = torch.randn(3, 5).to(precision)
    results = []
    for pool in (lambda a: torch.relu((a * valid.unsqueeze(-1).to(a.dtype)).amax(1)),
                 lambda a: _ReluOfLargest.apply(a, valid)):
        leaf = activations.clone().requires_grad_()
        pooled = pool(leaf)
        (pooled * weights).sum().backward()
        results.append((pooled.detach(), leaf.grad))
    for before, after in zip(*results, strict=True):
        torch.testing.assert_close(after, before, rtol=0, atol=0)
    ties = 1 + windows // 2
    torch.testing.assert_close(results[1][1][0, 0], (weights[0].double() / ties).to(precision))  # to its dtype's ulp
    assert (results[1][1][2] == 0).all()


def test_state_round_trip_gives_the_same_encoding() -> None:
    text = feature(char_ngrams=(3, 4), subword_min_count=1, stem="es").fit(["zapatillas nike", "celulares"])
    clone = feature(char_ngrams=(3, 4), subword_min_count=1, stem="es")
    clone.load_state(text.state())
    a, b = text.transform(["zapatilla celular x"]), clone.transform(["zapatilla celular x"])
    assert a.ids.tolist() == b.ids.tolist()
    first, second = text.collate(a, np.array([0])), clone.collate(b, np.array([0]))
    assert first.keys() == second.keys() and "sub_ids" in first
    for key in first:
        assert first[key].tolist() == second[key].tolist()


class ThreadRanks:
    """Ranks as threads of this process: the collectives of `ensayo.features.Ranks` over a barrier."""

    def __init__(self, rank: int, slots: list, barrier: threading.Barrier) -> None:
        self.rank, self.slots, self.barrier = rank, slots, barrier

    @classmethod
    def of(cls, size: int) -> list[ThreadRanks]:
        slots, barrier = [None] * size, threading.Barrier(size)
        return [cls(rank, slots, barrier) for rank in range(size)]

    @property
    def main(self) -> bool:
        return self.rank == 0

    def exchange(self, value):
        self.slots[self.rank] = value
        self.barrier.wait()
        gathered = list(self.slots)
        self.barrier.wait()  # every rank has read the slots before any writes them again
        return gathered

    def gather(self, value):
        gathered = self.exchange(value)
        return gathered if self.main else None

    def broadcast(self, value):
        return self.exchange(value)[0]


def test_ranks_fitting_their_shares_together_fit_what_one_process_fits() -> None:
    """Each rank tokenizes its contiguous share (one of them empty); rank 0 fits from the ranks' gathered counts
    the vocabularies one process fits on the whole column (ties, caps and subwords included), the others take
    them with the words' subword table, and each rank's share is encoded as one process encodes those rows."""
    rng = np.random.default_rng(0)
    words = ["zapatilla", "Zapatillas", "nike", "celular", "café", "cafe", "x", "42", "funda", "mesa", "silla",
             "lámpara", "", "!!", "rojo", "roja", "azul"]
    texts = [" ".join(rng.choice(words, rng.integers(0, 7))) for _ in range(400)]
    options = {"char_ngrams": (2, 4), "subword_min_count": 2, "min_count": 2, "max_vocab": 9, "max_length": 4}
    whole = feature(**options)
    expected = whole.fit_transform(texts)
    bounds = [0, 130, 130, 271, 400]
    ranks = [feature(**options) for _ in bounds[1:]]
    assert all(rank.shares_fit for rank in ranks)
    places = ThreadRanks.of(len(ranks))
    with ThreadPoolExecutor(len(ranks)) as pool:
        shares = list(pool.map(lambda k: ranks[k].fit_transform_shared(texts[bounds[k]: bounds[k + 1]], places[k]),
                               range(len(ranks))))
    for k, (rank, share) in enumerate(zip(ranks, shares, strict=True)):
        assert rank.state() == whole.state()
        assert share.padded().tolist() == expected.padded(np.arange(bounds[k], bounds[k + 1])).tolist()
        assert rank.vocabulary_subwords()[0].tolist() == whole.vocabulary_subwords()[0].tolist()
    assert not feature(embeddings={"train": {"dim": 8}}).shares_fit  # word vectors trained here need every text
