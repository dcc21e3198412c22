"""Small data made by the tests themselves: product-like titles whose category is learnable."""

from __future__ import annotations

import csv
import os
import random
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from PIL import Image

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


@pytest.fixture(scope="session")
def _empty_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables and nothing else, made once: MLflow's migrations take seconds."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_db(_empty_mlflow_store: Path, tmp_path: Path) -> Path:
    """A fresh, empty MLflow store of this test, where tracking looks by default (the test's working
    directory): a copy of the session's empty store."""
    path = tmp_path / "mlflow.db"
    shutil.copyfile(_empty_mlflow_store, path)
    return path


@pytest.fixture(autouse=True)
def _small_torch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)


def interrupt_training(monkeypatch: pytest.MonkeyPatch, split_type: type, at_batch: int,
                       min_rows: int = 100) -> Callable[[], None]:
    """Send this process a real SIGINT (Ctrl-C) when the training split's `iterate` is asked for its
    `at_batch`-th batch: training stops once that step is done. Splits with `min_rows` rows or fewer
    (validation, test) are left alone. Returns what puts the original back."""
    original = split_type.iterate
    served = {"count": 0}

    def interrupting(self, *args, **kwargs):
        for item in original(self, *args, **kwargs):
            if len(self) > min_rows:
                served["count"] += 1
                if served["count"] == at_batch:
                    os.kill(os.getpid(), signal.SIGINT)
            yield item

    monkeypatch.setattr(split_type, "iterate", interrupting)
    return lambda: monkeypatch.setattr(split_type, "iterate", original)


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


def cv_recipe(source: Path, folds: int = 3, **train: Any) -> dict[str, Any]:
    """The tiny recipe cross-validated: `folds` stratified folds, a quarter of the others to validate on."""
    recipe = recipe_dict(source, **train)
    recipe["data"]["split"] = {"method": "stratified", "validation": 0.25, "folds": folds, "seed": 1}
    return recipe


@pytest.fixture(scope="session")
def cv_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-fold cross-validated run of the tiny recipe, each fold calibrated by a temperature. Read
    it, never write into it."""
    import ensayo

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cv-run")
    titles = write_challenge_csv(root / "titles.csv", make_titles(rows_per_class=40, seed=5))
    recipe = cv_recipe(titles, calibrate="temperature", epochs=3)
    recipe["name"] = "tiny-cv"
    return ensayo.run(recipe, output=root / "cv", track=False).path


@pytest.fixture(scope="session")
def file_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small finished runs whose inputs are files: tones (audio) and points of interest (a photo beside
    categories and a number). Trained once per session; read them, never write into them."""
    import ensayo

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("file-runs")
    tones = audio_recipe(make_clips(root / "clips"))
    pois = poi_recipe(make_pois(root / "poi"))
    return {"tones": ensayo.run(tones, output=root / "tones", track=False).path,
            "pois": ensayo.run(pois, output=root / "pois", track=False).path,
            "clips": root / "clips", "poi": root / "poi"}


class LiveServer:
    """A real uvicorn server on 127.0.0.1 in a thread of the test process."""

    def __init__(self, app: Any) -> None:
        import socket
        import threading

        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        import time

        for _ in range(200):
            if self.server.started:
                return
            time.sleep(0.05)
        raise RuntimeError("the test server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def live_server(tiny_runs: dict[str, Path], file_runs: dict[str, Path]) -> Any:
    """Every tiny run served at once, by name: neural, tfidf_linear, ensemble, language_model, tones, pois."""
    from ensayo.runs import load_run
    from ensayo.serving import ServeOptions, create_app

    names = ["neural", "tfidf_linear", "ensemble", "language_model"]
    runs = {name.replace("_", "-"): load_run(tiny_runs[name]) for name in names}
    runs |= {name: load_run(file_runs[name]) for name in ("tones", "pois")}
    server = LiveServer(create_app(runs, ServeOptions(max_rows=64, max_upload_mb=1.0, batch_wait_ms=20)))
    yield server
    server.stop()


# ------------------------------------------------------------------------------- a real browser
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_browser = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                   reason="headless Chromium and its driver are not installed "
                                          "(Debian: chromium chromium-driver; `make test` installs them as root)")


def open_browser(*flags: str) -> Any:
    """Headless Chromium driven by selenium through the system chromedriver: nothing is downloaded."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *flags):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


# ------------------------------------------------------------------ a throw-away PostgreSQL server
class Postgres:
    """A PostgreSQL cluster of its own on a Unix socket, run as the `postgres` user when the tests run as root
    (PostgreSQL refuses root); `url(database)` is what SQLAlchemy, Optuna and MLflow take."""

    def __init__(self, root: Path) -> None:
        import pwd

        self.root = root
        self.data, self.sockets = root / "data", root / "sockets"
        self.port = 5432 + os.getpid() % 1000
        self.prefix: list[str] = []
        self.sockets.mkdir(parents=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (root, self.sockets):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.initdb, self.pg_ctl, self.createdb = (shutil.which(n) for n in ("initdb", "pg_ctl", "createdb"))

    def _call(self, *arguments: str) -> None:
        subprocess.run([*self.prefix, *arguments], check=True, capture_output=True, timeout=120)

    def start(self) -> Postgres:
        self._call(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        options = f"-k {self.sockets} -c listen_addresses='' -p {self.port} -c fsync=off"
        self._call(self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w",
                   "start")
        for database in ("optuna", "mlflow"):  # apart: both keep their schema version in `alembic_version`
            self.create(database)
        return self

    def create(self, database: str) -> str:
        """A new empty database; its URL."""
        self._call(self.createdb, "-h", str(self.sockets), "-p", str(self.port), "-U", "postgres", database)
        return self.url(database)

    def stop(self) -> None:
        subprocess.run([*self.prefix, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@/{database}?host={self.sockets}&port={self.port}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    import tempfile

    missing = [n for n in ("initdb", "pg_ctl", "createdb") if shutil.which(n) is None]
    if missing:
        pytest.skip(f"PostgreSQL's {', '.join(missing)} not found (Debian: apt install postgresql)")
    pytest.importorskip("psycopg2", reason="psycopg2 is in the dev extra")
    root = Path(tempfile.mkdtemp(prefix="ensayo-postgres-"))  # pytest's folders are closed to other users
    server = Postgres(root)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
