"""Small data made by the tests themselves, with the recipes that read it: product-like titles whose category is
learnable, a news corpus, tones and spoken vowels as audio clips, points of interest with photos."""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import yaml
from PIL import Image
from scipy.signal import lfilter, resample_poly

CLASSES = {
    "PHONES": ["celular", "smartphone", "iphone", "samsung", "galaxy", "pantalla", "libre"],
    "SHOES": ["zapatillas", "nike", "running", "talle", "cuero", "zapato", "adidas"],
    "DRILLS": ["taladro", "percutor", "bosch", "mecha", "atornillador", "inalambrico", "watts"],
    "BOOKS": ["libro", "novela", "tapa", "dura", "autor", "edicion", "paginas"],
    "TOYS": ["muñeca", "juguete", "lego", "bloques", "niños", "peluche", "didactico"],
}
NOISE = ["oferta", "envio", "gratis", "nuevo", "original", "combo", "negro", "blanco", "x2"]


def make_titles(rows_per_class: int = 60, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label, words in CLASSES.items():
        for _ in range(rows_per_class):
            picked = rng.sample(words, 3) + rng.sample(NOISE, 2) + [str(rng.randint(1, 999))]
            rng.shuffle(picked)
            rows.append((" ".join(w.capitalize() for w in picked), label))
    rng.shuffle(rows)
    return rows


def write_challenge_csv(path: Path, rows: list[tuple[str, str]], extra_lines: list[str] | None = None) -> Path:
    """The MeLi 2019 challenge format: title,label_quality,language,category with a header."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["title", "label_quality", "language", "category"])
        for index, (title, label) in enumerate(rows):
            language = "portuguese" if index % 10 == 9 else "spanish"
            writer.writerow([title, "reliable", language, label])
    if extra_lines:
        with open(path, "a", encoding="utf-8") as handle:
            handle.writelines(line + "\n" for line in extra_lines)
    return path


def write_recipe(tmp_path: Path, source: Path, **train: Any) -> Path:
    """The tiny recipe as a YAML file."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe_dict(source, **train)))
    return path


def recipe_dict(source: Path, encoder: dict[str, Any] | None = None, **train: Any) -> dict[str, Any]:
    return {
        "name": "tiny",
        "description": "tiny product titles",
        "data": {"source": str(source), "filters": ["language == spanish"],
                 "split": {"method": "stratified", "train": 0.6, "validation": 0.2, "test": 0.2, "seed": 1}},
        "inputs": [{"name": "title", "type": "text", "preprocessing": {"numbers": "zero"}}],
        "output": {"column": "category"},
        "model": {"encoders": {"title": encoder or {"type": "bag", "embedding_dim": 16}},
                  "head": {"hidden": [16], "dropout": 0.0}},
        "train": {"lr": 0.02, "epochs": 4, "batch_size": 16, "seed": 3, **train},
        "track": {"enabled": False},
    }


def cv_recipe(source: Path, folds: int = 3, **train: Any) -> dict[str, Any]:
    """The tiny recipe cross-validated: `folds` stratified folds, a quarter of the others to validate on."""
    recipe = recipe_dict(source, **train)
    recipe["data"]["split"] = {"method": "stratified", "validation": 0.25, "folds": folds, "seed": 1}
    return recipe


ENSEMBLE_MEMBERS = {
    "member-bag": {"type": "neural"},
    "member-tfidf": {"type": "tfidf_linear", "linear": {"word_ngrams": [1, 1], "char_ngrams": [2, 3]}},
}


# ------------------------------------------------------------------------------------ a news corpus
SUBJECTS = ["The bank", "A team", "The company", "Our city", "The minister"]
VERBS = ["reported", "announced", "denied", "expected"]
OBJECTS = ["record profits.", "a new plan.", "higher prices.", "the final result."]


def write_corpus(path: Path, rows: int = 240, seed: int = 0) -> Path:
    """AG News' layout (no header: topic, title, description) with a small, learnable grammar and the
    corpus's debris: '#39;' for an apostrophe and escaped new lines."""
    rng = random.Random(seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        for _ in range(rows):
            title = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
            body = " ".join(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}" for _ in range(2))
            writer.writerow([rng.randint(1, 4), title, body + "\\\\It #39;s news."])
    return path


def lm_recipe(source: Path, **model: Any) -> dict[str, Any]:
    level = model.pop("level", "char")
    return {
        "name": "tiny-lm",
        "data": {"source": str(source), "header": False, "columns": ["topic", "title", "description"],
                 "split": {"method": "random", "train": 0.8, "validation": 0.1, "test": 0.1, "seed": 0}},
        "output": {"type": "text", "columns": ["title", "description"], "level": level, "context": 32},
        "model": {"type": "language_model",
                  "language_model": {"architecture": "lstm", "dim": 32, "hidden_size": 64, "layers": 1,
                                     "heads": 2, "dropout": 0.0, **model}},
        "train": {"lr": 0.01, "epochs": 3, "batch_size": 16, "seed": 0},
        "track": {"enabled": False},
    }


# ------------------------------------------------------------------------------- audio clips
RATE = 8000
SPEAKERS = ["ana", "bo", "cy"]


def tone(label: str, rng: np.random.Generator, rate: int = RATE, gain: float | None = None) -> np.ndarray:
    """'low' a 300 Hz tone, 'high' a 1500 Hz tone, 'sweep' a 300 -> 2500 Hz chirp; with silence around."""
    seconds = rng.uniform(0.25, 0.4)
    t = np.arange(int(seconds * rate)) / rate
    if label == "sweep":
        phase = 2 * np.pi * (300 * t + (2200 / (2 * seconds)) * t**2)
    else:
        phase = 2 * np.pi * (300 if label == "low" else 1500) * t
    sound = np.sin(phase) * np.hanning(len(t)) * (gain if gain is not None else rng.uniform(0.1, 0.8))
    silence = np.zeros(int(rng.uniform(0.05, 0.2) * rate))
    clip = np.concatenate([silence, sound, silence])
    return (clip + rng.normal(0, 0.003, len(clip))).astype(np.float32)


def make_clips(folder: Path, takes: int = 12, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for label in ("low", "high", "sweep"):
        for speaker in SPEAKERS:
            for take in range(takes):
                sf.write(folder / f"{label}_{speaker}_{take}.wav", tone(label, rng), RATE, subtype="PCM_16")
    (folder / "README.txt").write_text("not data: ignored, its name has another suffix\n")
    return folder


def audio_recipe(folder: Path, encoder: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    return {
        "name": "tones",
        "data": {"source": str(folder), "format": "folder", "pattern": "{label}_{speaker}_{take}.wav",
                 "split": {"method": "filter", "test_filter": "take < 2", "validation": 0.15, "seed": 0},
                 **changes.pop("data", {})},
        "inputs": [{"name": "clip", "type": "audio", "column": "path",
                    "preprocessing": {"duration": 0.5, "n_mels": 16, "n_fft": 256, "hop_length": 128,
                                      **changes.pop("preprocessing", {})}}],
        "output": {"column": "label"},
        "model": {"encoders": {"clip": encoder or {"type": "cnn2d", "channels": [8, 16]}},
                  "head": {"hidden": [], "dropout": 0.0}},
        "train": {"lr": 0.01, "epochs": 8, "batch_size": 16, "seed": 0, "monitor": "val/accuracy",
                  **changes.pop("train", {})},
        "track": {"enabled": False},
    }


# ------------------------------------------------------------------------------- spoken vowels
# A voice a detector takes for speech: glottal pulses through three formant resonators ("ah" and "ee"
# differ in their formants, as the vowels do). Words are two syllables of one vowel; a longer speech goes through
# the vowels in turn (the detector stops taking one vowel held on and on for speech).
VOWELS = {"ah": ((700, 80), (1220, 90), (2600, 120)), "ee": ((300, 60), (2300, 100), (3000, 120)),
          "oo": ((300, 60), (870, 80), (2240, 120)), "eh": ((530, 70), (1840, 90), (2480, 120))}
WORDS = ("ah", "ee")
TAKE_RATE = 48000  # as the page records


def vowel(label: str, seconds: float, pitch: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    phase = np.cumsum(pitch * (1 + 0.08 * np.sin(2 * np.pi * 4 * t))) / rate
    voice = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
    for frequency, bandwidth in VOWELS[label]:
        radius = np.exp(-np.pi * bandwidth / rate)
        voice = lfilter([1 - radius], [1, -2 * radius * np.cos(2 * np.pi * frequency / rate), radius**2], voice)
    voice *= np.hanning(len(voice)) ** 0.3
    return voice / np.abs(voice).max()


def spoken(label: str, rng: np.random.Generator, rate: int, syllables: int = 2) -> np.ndarray:
    """A word of two syllables of the vowel (more: a speech that starts with it), at a level between -12 and
    -3 dBFS peak."""
    parts = []
    for n in range(syllables):
        said = label if syllables <= 2 else list(VOWELS)[(list(VOWELS).index(label) + n) % len(VOWELS)]
        parts += [vowel(said, rng.uniform(0.14, 0.2), rng.uniform(100, 170), rate), np.zeros(int(0.05 * rate))]
    return np.concatenate(parts[:-1]) * 10 ** (rng.uniform(-12, -3) / 20)


def make_words(folder: Path, takes: int = 12, seed: int = 0) -> Path:
    """Clips of one word each, trimmed close as FSDD's are: `{label}_{speaker}_{take}.wav` at 8 kHz."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for label in WORDS:
        for speaker in SPEAKERS:
            for take in range(takes):
                silence = np.zeros(int(rng.uniform(0.03, 0.1) * RATE))
                clip = np.concatenate([silence, spoken(label, rng, RATE), silence])
                sf.write(folder / f"{label}_{speaker}_{take}.wav", clip + rng.normal(0, 1e-3, len(clip)), RATE,
                         subtype="PCM_16")
    return folder


def recorded_take(label: str | None, rng: np.random.Generator, seconds: float = 3.0, syllables: int = 2,
                  click: bool = True) -> bytes:
    """A WAV take as a person records one on the page: a room's hiss, the word (None: no word) at a random
    place, and a loud click 0.8 s after it (the middle of what lies between them is silence). The word is said
    at the clips' 8 kHz, as benchmarks/recordings.py puts FSDD's digits in takes."""
    import io

    word = resample_poly(spoken(label, rng, RATE, syllables), TAKE_RATE, RATE) if label else np.zeros(0)
    start = int(rng.uniform(0.2, 0.4) * TAKE_RATE)
    take = rng.normal(0, 10 ** (-55 / 20), max(int(seconds * TAKE_RATE), start + len(word) + int(1.2 * TAKE_RATE)))
    take[start: start + len(word)] += word
    if click:
        at = start + len(word) + int(0.8 * TAKE_RATE)
        take[at: at + 200] += 0.9 * np.exp(-np.arange(200) / 40) * np.sign(rng.standard_normal(200))
    written = io.BytesIO()
    sf.write(written, np.clip(take, -1, 1), TAKE_RATE, format="WAV", subtype="PCM_16")
    return written.getvalue()


# ------------------------------------------------------------------ points of interest
COLOURS = {"low": (40, 60, 200), "medium": (60, 180, 60), "high": (220, 50, 40)}


def make_pois(folder: Path, rows: int = 150, seed: int = 0) -> Path:
    """POI-like rows: engagement = Likes / Visits; the photo's colour and the categories follow it."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "pois.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "categories", "tags", "xps", "locationLon", "Likes", "Visits", "tier", "image"])
        for row in range(rows):
            level = ["low", "medium", "high"][row % 3]
            likes = {"low": 10, "medium": 50, "high": 90}[level] + rng.integers(0, 10)
            poi_id = f"poi{row if row % 10 else row - 1}"  # every tenth row repeats the previous id
            image = folder / "images" / f"{row}.png"
            image.parent.mkdir(exist_ok=True)
            colour = np.array(COLOURS[level]) + rng.integers(-20, 20, 3)
            pixels = np.clip(colour + rng.normal(0, 15, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(image)
            categories = {"low": "['Parque']", "medium": "['Museo', 'Arte']", "high": "['Historia', 'Arte']"}[level]
            writer.writerow([poi_id, categories, "[]", rng.choice([250, 500]), rng.uniform(-4, 3), likes, 100,
                             1, f"images/{row}.png"])
    return folder / "pois.csv"


def poi_recipe(source: Path, **changes: Any) -> dict[str, Any]:
    return {
        "name": "pois",
        "data": {"source": str(source),
                 "split": {"method": "group", "group_column": "id", "train": 0.6, "validation": 0.2, "test": 0.2}},
        "derive": [{"name": "engagement", "expression": "((Likes * 2**2 - 0) / Visits) * (1 / tier)"},
                   {"name": "level", "bin": {"column": "engagement", "quantiles": 3,
                                             "labels": ["low", "medium", "high"]}}],
        "inputs": changes.pop("inputs", [
            {"name": "photo", "type": "image", "column": "image", "preprocessing": {"size": 32}},
            {"name": "categories", "type": "category", "preprocessing": {"multi": True}},
            {"name": "xps", "type": "number"},
        ]),
        "output": {"column": "level"},
        "model": {"encoders": changes.pop("encoders", {
            "photo": {"type": "cnn", "channels": [8, 16]},
            "categories": {"type": "embedding", "dim": 4},
            "xps": {"type": "passthrough"}}),
            "head": {"hidden": [16], "dropout": 0.0}},
        "train": {"lr": 0.01, "epochs": 10, "batch_size": 16, "seed": 0, "monitor": "val/accuracy"},
        "track": {"enabled": False},
        **changes,
    }
