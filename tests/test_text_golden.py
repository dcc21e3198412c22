"""The text feature encodes as it did before its preprocessing was made faster: ids for ids against golden
encodings made by the earlier code (`tests/golden/text_encodings.py`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))
from text_encodings import GOLDEN, OPTION_SETS, encode

GOLDEN_ARRAYS = np.load(GOLDEN)
TEXTS = json.loads(str(GOLDEN_ARRAYS["texts"]))


def first_difference(expected: np.ndarray, got: np.ndarray) -> str:
    if expected.shape != got.shape:
        return f"shape {got.shape}, expected {expected.shape}"
    where = int(np.flatnonzero(expected != got)[0])
    return f"position {where}: {got[where]}, expected {expected[where]}"


@pytest.mark.parametrize("option_set", list(OPTION_SETS))
def test_texts_encode_to_the_golden_ids(option_set: str) -> None:
    got = encode(OPTION_SETS[option_set], TEXTS)
    expected = {key.split("/", 1)[1]: GOLDEN_ARRAYS[key] for key in GOLDEN_ARRAYS.files
                if key.startswith(option_set + "/")}
    assert sorted(got) == sorted(expected)
    for key in ("vocabulary", "subword_vocabulary"):
        if key in expected:
            assert json.loads(str(got[key])) == json.loads(str(expected[key])), key
    for key in sorted(set(expected) - {"vocabulary", "subword_vocabulary"}):
        difference = first_difference(expected[key], got[key]) if not np.array_equal(got[key], expected[key]) else ""
        assert not difference, f"{option_set} {key}: {difference}"


def test_the_golden_texts_reach_the_normalizations_hard_cases() -> None:
    joined = "".join(TEXTS)
    for case in ("&amp;", "#39;", "<b>", "\\", "\u00a0", "\x1c", "İ", "ﬁ", "Σ", "٣", "\u0301", "🇦🇷"):
        assert case in joined, case
    assert sum(not text.strip() for text in TEXTS) > 0  # texts with no words at all


@pytest.mark.parametrize("option_set", list(OPTION_SETS))
def test_texts_at_once_give_what_each_text_alone_gives(option_set: str) -> None:
    from ensayo.features.text.preprocessing import TextPipeline, TextPreprocessing, normalize

    options = TextPreprocessing(**OPTION_SETS[option_set])
    pipeline = TextPipeline(options)
    # the last has the joint in it, which sends the batch text by text (its markup repaired once, as alone)
    texts = [*TEXTS[:500], "ΟΔΟΣ", "σ", "Σ.", "&amp;lt;b&amp;gt; x\x00Σ y"]
    assert pipeline.many(texts) == [pipeline.tokens(text) for text in texts]
    assert pipeline.many_words(texts) == [pipeline.words(text) for text in texts]
    assert pipeline.many_normalized(texts) == [normalize(text, options) for text in texts]
    assert pipeline.many_normalized(texts[:-1])[-3:] == [normalize(text, options) for text in texts[-4:-1]]


def test_a_loaded_feature_indexes_the_subwords_as_the_fitted_one_did() -> None:
    from ensayo.features import build_feature
    from ensayo.features.text.preprocessing import TextPreprocessing

    options = TextPreprocessing(**OPTION_SETS["demo"])
    fitted = build_feature("text", "title", "title", options)
    encoded = fitted.fit_transform(TEXTS)
    loaded = build_feature("text", "title", "title", options)
    loaded.load_state(fitted.state())
    rows = list(range(len(encoded)))
    made, read = fitted.collate(encoded, rows), loaded.collate(encoded, rows)
    assert made.keys() == read.keys()
    for key in made:
        assert np.array_equal(made[key].numpy(), read[key].numpy()), key
