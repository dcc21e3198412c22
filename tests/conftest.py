"""Small data made by the tests themselves: product-like titles whose category is learnable."""

from __future__ import annotations

import csv
import os
import random
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

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


@pytest.fixture
def titles_csv(tmp_path: Path) -> Path:
    return write_challenge_csv(tmp_path / "titles.csv", make_titles())


def recipe_dict(source: Path, encoder: dict[str, Any] | None = None, **train: Any) -> dict[str, Any]:
    return {
        "name": "tiny",
        "data": {"source": str(source), "filters": ["language == spanish"],
                 "split": {"method": "stratified", "train": 0.6, "validation": 0.2, "test": 0.2, "seed": 1}},
        "inputs": [{"name": "title", "type": "text", "preprocessing": {"numbers": "zero"}}],
        "output": {"column": "category"},
        "model": {"encoders": {"title": encoder or {"type": "bag", "embedding_dim": 16}},
                  "head": {"hidden": [16], "dropout": 0.0}},
        "train": {"lr": 0.02, "epochs": 4, "batch_size": 16, "seed": 3, **train},
        "track": {"enabled": False},
    }


@pytest.fixture(autouse=True)
def _small_torch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)


def interrupt_training(monkeypatch: pytest.MonkeyPatch, split_type: type, at_batch: int,
                       min_rows: int = 100) -> Callable[[], None]:
    """Send this process a real SIGINT (Ctrl-C) when the training split's `batches` is asked for its
    `at_batch`-th batch: training stops once that step is done. Splits with `min_rows` rows or fewer
    (validation, test) are left alone. Returns what puts the original back."""
    original = split_type.batches
    served = {"count": 0}

    def interrupting(self, *args, **kwargs):
        for item in original(self, *args, **kwargs):
            if len(self) > min_rows:
                served["count"] += 1
                if served["count"] == at_batch:
                    os.kill(os.getpid(), signal.SIGINT)
            yield item

    monkeypatch.setattr(split_type, "batches", interrupting)
    return lambda: monkeypatch.setattr(split_type, "batches", original)


def explore_report(recipe: dict[str, Any], directory: Path) -> str:
    """Write `recipe` as a file, run `ensayo explore` on it into `directory`/report; its report.md."""
    import json

    from typer.testing import CliRunner

    from ensayo.cli import app

    recipe_file = directory / "explored.yaml"
    recipe_file.write_text(json.dumps(recipe))
    result = CliRunner().invoke(app, ["explore", str(recipe_file), "--output", str(directory / "report")])
    assert result.exit_code == 0, result.output
    return (directory / "report" / "report.md").read_text()


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


# -------------------------------------------------------------------- tiny runs shared by the tests
ENSEMBLE_MEMBERS = {
    "member-bag": {"type": "neural"},
    "member-tfidf": {"type": "tfidf_linear", "linear": {"word_ngrams": [1, 1], "char_ngrams": [2, 3]}},
}


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small finished run of each built-in model type, trained once per session: read them, never
    write into them (copy one first)."""
    import ensayo

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-runs")
    titles = write_challenge_csv(root / "titles.csv", make_titles())
    runs: dict[str, Path] = {}
    neural = recipe_dict(titles)
    runs["neural"] = ensayo.run(neural, output=root / "neural", track=False).path
    linear = {**recipe_dict(titles), "model": ENSEMBLE_MEMBERS["member-tfidf"]}
    runs["tfidf_linear"] = ensayo.run(linear, output=root / "tfidf_linear", track=False).path
    members = []
    for name, model in ENSEMBLE_MEMBERS.items():
        member = {**recipe_dict(titles), "name": name}
        if model["type"] != "neural":
            member["model"] = model
        (root / f"{name}.yaml").write_text(yaml.safe_dump(member))
        members.append(f"{name}.yaml")
    ensemble = {**recipe_dict(titles), "name": "tiny-ensemble", "inputs": [],
                "model": {"type": "ensemble", "ensemble": {"members": members}}}
    (root / "ensemble.yaml").write_text(yaml.safe_dump(ensemble))
    runs["ensemble"] = ensayo.run(root / "ensemble.yaml", output=root / "ensemble", track=False).path
    corpus = write_corpus(root / "news.csv")
    runs["language_model"] = ensayo.run({**lm_recipe(corpus), "train": {"lr": 0.01, "epochs": 1, "batch_size": 16}},
                                        output=root / "language_model", track=False).path
    return runs
