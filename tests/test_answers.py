"""One way to answer: the CLI, the Python API, the server (JSON and MLflow's protocol), its page and the exported
MLflow model give the same labels, in the same order, with the same probabilities, for rows with ties among
ten or more classes; and the same text for the same generation settings."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pytest
import requests
from helpers.browser import needs_browser, open_browser
from helpers.servers import LiveServer
from typer.testing import CliRunner

import ensayo
from ensayo import layout
from ensayo.cli import app
from ensayo.data import Splits
from ensayo.models import MODEL_SCHEMAS, MODEL_TYPES, Classifier, FitContext, Fitted, register_model_type
from ensayo.models.base import read_state
from ensayo.outputs import CategoryOutput
from ensayo.recipe import Recipe
from ensayo.runs import answer
from ensayo.store import write_json

pytestmark = pytest.mark.server
CLASSES = 40
ROWS = [{"x": 5.0}, {"x": 21.5}, {"x": 36.0}]  # each has ten or more classes tied for the top


class Banded(Classifier):
    """Class k's score is minus |x - k| in bands of ten: every class within a band of a row ties with the others."""

    input_types: ClassVar[frozenset[str]] = frozenset({"number"})

    def fit(self, splits: Splits, context: FitContext) -> Fitted:
        self.classes.fit(self.labels(splits.train))
        write_json(context.run_dir / layout.STATE, {"inputs": {}, "output": self.classes.state()})
        return Fitted({"fit_seconds": 0.0, **self.score_splits(splits, lambda _, table: self._predict_proba(table))})

    @classmethod
    def load(cls, run_dir: Path, recipe: Recipe) -> Banded:
        model = cls(recipe)
        model.classes = CategoryOutput.from_state(read_state(run_dir)["output"])
        return model

    def _predict_proba(self, table: pl.DataFrame) -> np.ndarray:
        centres = np.array([float(label[1:]) for label in self.classes.classes])
        x = table["x"].cast(pl.Float64).to_numpy()[:, None]
        scores = np.exp(-np.floor(np.abs(x - centres) / 10))
        return (scores / scores.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def banded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    register_model_type("banded")(Banded)
    root = tmp_path_factory.mktemp("banded")
    rng = np.random.default_rng(0)
    points = rng.uniform(0, CLASSES, 400)
    source = root / "points.csv"
    pl.DataFrame({"x": points, "place": [f"c{int(x):02d}" for x in points]}).write_csv(source)
    recipe = {"name": "banded", "data": {"source": str(source), "split": {"method": "random", "train": 0.8,
                                                                           "validation": 0.1, "test": 0.1}},
              "inputs": [{"name": "x", "type": "number"}], "output": {"column": "place"},
              "model": {"type": "banded"}, "track": {"enabled": False}}
    yield ensayo.run(recipe, output=root / "run", track=False).path
    del MODEL_TYPES["banded"], MODEL_SCHEMAS["banded"]


@pytest.fixture(scope="module")
def server(banded: Path, tiny_runs: dict[str, Path]) -> Iterator[LiveServer]:
    from ensayo.runs import load_run
    from ensayo.serving import create_app

    live = LiveServer(create_app({"banded": load_run(banded), "writer": load_run(tiny_runs["language_model"])}))
    yield live
    live.stop()


def pyfunc_model(run_dir: Path, folder: Path) -> Any:
    import mlflow

    exported = ensayo.export(run_dir, "mlflow", folder)
    return mlflow.pyfunc.load_model(str(exported.path))


def from_the_cli(run_dir: Path, rows: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    source, written = folder / "rows.csv", folder / "predicted.csv"
    pl.DataFrame(rows).write_csv(source)
    result = CliRunner().invoke(app, ["predict", str(run_dir), "--input", str(source), "--output", str(written)])
    assert result.exit_code == 0, result.output
    with open(written) as handle:
        table = list(csv.DictReader(handle))
    k = sum(name.startswith("label_") for name in table[0])
    return [{"labels": [row[f"label_{i}"] for i in range(1, k + 1)],
             "probabilities": [float(row[f"probability_{i}"]) for i in range(1, k + 1)]} for row in table]


def from_the_page(browser: Any, server: LiveServer, row: dict[str, Any]) -> dict[str, Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url + "/")
    form = WebDriverWait(browser, 20).until(ready.presence_of_element_located((By.CSS_SELECTOR,
                                                                              '[data-model="banded"]')))
    form.find_element(By.NAME, "x").send_keys(str(row["x"]))
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    bars = WebDriverWait(browser, 20).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, '[data-answer="banded"] .bar'))
    return {"labels": [bar.get_attribute("data-label") for bar in bars],
            "probabilities": [float(bar.get_attribute("data-probability")) for bar in bars]}


def test_the_server_and_ensayo_predict_order_tied_classes_alike(banded: Path, server: LiveServer) -> None:
    labels, _ = ensayo.predict(banded, ROWS, top_k=12)
    served = requests.post(server.url + "/v1/models/banded/predict", json={"rows": ROWS, "top_k": 12}, timeout=30)
    assert [p["labels"] for p in served.json()["predictions"]] == labels
    assert labels[1] == [f"c{k:02d}" for k in range(12, 24)]  # x = 21.5: c12 to c31 tie; in the classes' order


def test_invocations_sample_as_the_exported_mlflow_model_does(server: LiveServer, tiny_runs: dict[str, Path],
                                                             tmp_path: Path) -> None:
    model = pyfunc_model(tiny_runs["language_model"], tmp_path / "mlflow")
    rows = [{"prompt": "The "}, {"prompt": "A team"}]
    for params in ({"top_k": 0}, {"top_k": 5, "top_p": 0.9, "seed": 7, "length": 25}):
        invoked = requests.post(server.url + "/v1/models/writer/invocations",
                                json={"dataframe_records": rows, "params": params}, timeout=30)
        assert invoked.status_code == 200, invoked.text
        assert invoked.json()["predictions"] == list(model.predict(pl.DataFrame(rows).to_pandas(), params=params))


@pytest.mark.browser
@needs_browser
def test_five_ways_to_ask_give_one_answer_with_ties_among_many_classes(banded: Path, server: LiveServer,
                                                                      tmp_path: Path) -> None:
    labels, probabilities = ensayo.predict(banded, ROWS)
    from_the_api = answer.records(labels, probabilities)
    tied = [np.isclose(probabilities[0][0], p) for p in ensayo.predict(banded, ROWS, all_classes=True)[1][0]]
    assert sum(tied) >= 10 and len(labels[0]) == answer.TOP_K  # the default: three labels
    assert labels[0] == ["c00", "c01", "c02"]  # tied classes in the classes' order

    served = requests.post(server.url + "/v1/models/banded/predict", json={"rows": ROWS}, timeout=30).json()
    invoked = requests.post(server.url + "/invocations", json={"dataframe_records": ROWS}, timeout=30).json()
    pyfunc = pyfunc_model(banded, tmp_path / "mlflow").predict(pl.DataFrame(ROWS).to_pandas())
    browser = open_browser()
    try:
        on_the_page = [from_the_page(browser, server, row) for row in ROWS]
    finally:
        browser.quit()
    answers = {"cli": from_the_cli(banded, ROWS, tmp_path), "server": served["predictions"],
               "invocations": invoked["predictions"], "page": on_the_page,
               "mlflow": [{"labels": list(r["labels"]), "probabilities": list(r["probabilities"])}
                          for r in pyfunc.to_dict(orient="records")]}
    for path, given in answers.items():
        assert given == from_the_api, path


@pytest.mark.parametrize("params", [{"top_k": 0}, {"top_k": 5, "top_p": 0.9}])
@pytest.mark.browser
@needs_browser
def test_five_ways_to_generate_write_one_text(params: dict[str, Any], server: LiveServer,
                                              tiny_runs: dict[str, Path], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    run_dir, prompt = tiny_runs["language_model"], "The "
    settings = {"length": 30, "seed": 4, **params}
    expected = "".join(ensayo.generate(run_dir, prompt, **settings))

    options = [f"--{key.replace('_', '-')}={value}" for key, value in settings.items()]
    printed = CliRunner().invoke(app, ["generate", str(run_dir), "--prompt", prompt, *options])
    assert printed.exit_code == 0, printed.output
    events = requests.post(server.url + "/v1/models/writer/generate", json={"prompt": prompt, **settings},
                           timeout=30).text
    done = json.loads(events.split("event: done")[1].split("data: ", 1)[1].splitlines()[0])
    invoked = requests.post(server.url + "/v1/models/writer/invocations",
                            json={"dataframe_records": [{"prompt": prompt}], "params": settings}, timeout=30)
    assert invoked.status_code == 200, invoked.text
    pyfunc = pyfunc_model(run_dir, tmp_path / "mlflow").predict(pl.DataFrame({"prompt": [prompt]}).to_pandas(),
                                                                params=settings)
    browser = open_browser()
    try:
        browser.get(server.url + "/")
        form = WebDriverWait(browser, 20).until(ready.presence_of_element_located(
            (By.CSS_SELECTOR, '[data-model="writer"]')))
        for name, value in {"prompt": prompt, **settings}.items():
            field = form.find_element(By.NAME, name)
            field.clear()
            field.send_keys(str(value))
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        written = WebDriverWait(browser, 30).until(ready.presence_of_element_located(
            (By.CSS_SELECTOR, '[data-generated="writer"][data-done="true"]'))).get_attribute("textContent")
    finally:
        browser.quit()
    texts = {"cli": printed.stdout.rstrip("\n"), "server": prompt + done["text"],
             "invocations": prompt + invoked.json()["predictions"][0], "mlflow": prompt + pyfunc[0], "page": written}
    for path, text in texts.items():
        assert text == prompt + expected, path


def test_the_page_takes_its_defaults_from_the_servers_description(server: LiveServer) -> None:
    models = {m["name"]: m for m in requests.get(server.url + "/v1/models", timeout=10).json()["models"]}
    assert models["banded"]["defaults"] == {"top_k": answer.TOP_K, "all_classes": False}
    assert models["writer"]["defaults"] == answer.Sampling().model_dump()
    script = requests.get(server.url + "/page/app.js", timeout=10).text
    assert "model.defaults" in script and "Math.min(5" not in script and "value: 200" not in script


@pytest.mark.parametrize("seed", range(4))
def test_ranking_picks_the_stable_sorts_best_without_sorting_every_class(seed: int) -> None:
    rng = np.random.default_rng(seed)
    probabilities = rng.integers(0, 6, size=(200, 50)).astype(np.float32) / 5  # ties at every place
    probabilities[:50] = rng.random((50, 50))
    probabilities[50:60] = 0.5
    classes = [f"c{i:02d}" for i in range(50)]
    for k in (1, 2, 5, 49, 50, 60):
        labels, chances = answer.rank(probabilities, classes, top_k=k)
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        assert labels == [[classes[i] for i in row] for row in order], k
        assert np.array_equal(chances, np.take_along_axis(probabilities, order, axis=1))
