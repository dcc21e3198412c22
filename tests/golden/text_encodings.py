"""Golden encodings of the text feature: `python tests/golden/text_encodings.py` writes `text_encodings.npz`.

Made once by the text preprocessing as it was before it was made faster (issue 30), and compared ids for ids
by `tests/test_text_golden.py` with what the code encodes now. The texts are synthetic, seeded, and built to
reach every branch of the normalization: accents and ligatures, HTML entities and their debris, tags,
escaped new lines, digits of several scripts, marks, case that lowercases to more than one letter, spaces
of several kinds, emoji and other scripts.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).with_name("text_encodings.npz")
TEXTS = 3000
FITTED_ON = 2000  # the first texts fit the vocabulary; the rest meet unknown words and subwords

WORD_TEXT = ("zapatilla zapatillas nike adidas remera camiseta algodón niño niña bebé pañal pañales mochila cámara "
         "fotográfica lente canon nikon celular samsung galaxy iphone funda silicona cargador batería auricular "
         "bluetooth inalámbrico parlante portátil mesa silla escritorio madera pino acero inoxidable olla "
         "sartén teflón cuchillo tenedor cuchara vaso taza café té azúcar aceite oliva vinagre jamón queso "
         "pão feijão coração ação informação avião órgão canção maçã pêssego vôo güira pingüino ñandú "
         "Ärger Öl Über straße groß naïve façade crème brûlée résumé déjà coöperate jalapeño piñata "
         "ΣΟΦΙΑ ΟΔΟΣ σοφία Москва москва 東京 北京 مرحبا שלום नमस्ते ของเล่น 한국어 ﬁlm ﬂor ½ ¼ ² ³ ⅻ ① ⑳ "
         "٣٤٥ ۱۲۳ १२३ İstanbul KIRMIZI ǅemal ŉ ﬀ ẞ ΐ")
WORDS = WORD_TEXT.split()
MARKUP = ("&amp;", "&quot;", "&#39;", " #39;s", " #39;t", "s #39; ", "#151;", "#8212;", "quot;", "amp;", "nbsp;",
          "<b>", "</b>", "<br/>", '<a href="x">', "</a>", "<INTC.O>", "\\$", "\\", "\\\\", "&lt;", "&gt;", "&hellip;",
          "&#x27;", "&#1114112;", "&nope;", "#99999999;")
MARKS = list("!?.,;:-_/()[]{}\"'*+=%$#@~^`|<>&¡¿«»“”‘’–—…·•°º®©™€£¥§¶")
SPACES = [" ", " ", " ", "  ", "\t", "\n", "\u00a0", "\u2003", "\u3000", "\x1c", "\u200b", "\u200d", "\r\n"]
JOINERS = ["\u0301", "\u0308", "\u0327", "\u0303", "\u093f", "\u200d", "\ufe0f", "🙂", "👍🏽", "🇦🇷"]


def synthetic_texts(count: int = TEXTS, seed: int = 2030) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(0, 14)):
            roll = rng.random()
            if roll < 0.62:
                word = rng.choice(WORDS)
                word = word.upper() if rng.random() < 0.15 else word.title() if rng.random() < 0.2 else word
                if rng.random() < 0.1:
                    word += rng.choice(JOINERS)
            elif roll < 0.77:
                number = str(rng.randint(0, 10 ** rng.randint(1, 6)))
                word = number + rng.choice(["", "gb", "mm", "x", "cm", "kg", "ml"])
            elif roll < 0.87:
                word = rng.choice(MARKUP)
            else:
                word = "".join(rng.choice(MARKS) for _ in range(rng.randint(1, 3)))
            parts.append(word)
            parts.append(rng.choice(SPACES) if rng.random() < 0.85 else "")
        texts.append("".join(parts))
    return texts


# the preprocessing option sets encoded: the demo recipe's, the defaults, and each switch turned the other way
OPTION_SETS: dict[str, dict] = {
    "demo": {"numbers": "zero", "char_ngrams": [3, 5], "max_length": 32},
    "defaults": {},
    "numbers_removed_bigrams": {"numbers": "remove", "word_ngrams": 2, "strip_accents": False, "lowercase": False},
    "marks_kept": {"remove_punctuation": False, "fix_html": False, "max_length": 8, "char_ngrams": [2, 4]},
    "html_kept_trigrams": {"fix_html": False, "word_ngrams": 3, "numbers": "zero", "min_count": 2},
    "chars": {"tokenizer": "chars", "max_length": 40},
    "stemmed": {"stem": "es", "numbers": "zero"},
    "lemmatized": {"lemmatize": "es", "remove_punctuation": False},
}


def encode(options: dict, texts: list[str]) -> dict[str, np.ndarray]:
    """What the text feature makes of `texts` with `options`: its vocabularies, every row's ids and lengths, and
    the subword ids of one batch of all rows."""
    from ensayo.features import build_feature
    from ensayo.features.text.preprocessing import TextPreprocessing

    feature = build_feature("text", "title", "title", TextPreprocessing(**options))
    fitted = feature.fit_transform(texts[:FITTED_ON])
    encoded = feature.transform(texts)
    rows = np.arange(len(encoded))
    batch = feature.collate(encoded, rows)
    arrays = {"vocabulary": np.array(json.dumps(feature.vocab.tokens)),
              "tokens": encoded.tokens, "lengths": encoded.lengths, "fitted_tokens": fitted.tokens,
              "fitted_lengths": fitted.lengths}
    if feature.subword_vocab is not None:
        arrays["subword_vocabulary"] = np.array(json.dumps(feature.subword_vocab.tokens))
        arrays["sub_ids"] = batch["sub_ids"].numpy().astype(np.int32)
        arrays["sub_counts"] = batch["sub_counts"].numpy().astype(np.int32)
    return arrays


def main() -> None:
    texts = synthetic_texts()
    arrays: dict[str, np.ndarray] = {"texts": np.array(json.dumps(texts))}
    for name, options in OPTION_SETS.items():
        arrays |= {f"{name}/{key}": value for key, value in encode(options, texts).items()}
    np.savez_compressed(GOLDEN, **arrays)
    print(f"{GOLDEN}: {GOLDEN.stat().st_size / 1024:.0f} KB, {len(texts)} texts, {len(OPTION_SETS)} option sets")


if __name__ == "__main__":
    main()
