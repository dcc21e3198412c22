"""`ensayo explain`: integrated gradients over a text's words and subwords, a clip's spectrogram, a photo
and each number and category input, and a linear model's n-grams; one self-contained page a browser shows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from helpers.browser import needs_browser, open_browser
from helpers.data import CLASSES, make_titles, recipe_dict, write_challenge_csv
from typer.testing import CliRunner

import ensayo
from ensayo.cli import app
from ensayo.runs import SavedRun
from ensayo.training import encode_split

pytest.importorskip("captum", reason="captum is in the explain extra")


@pytest.fixture(scope="module")
def subword_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("subwords")
    titles = write_challenge_csv(root / "titles.csv", make_titles())
    recipe = recipe_dict(titles, encoder={"type": "cnn", "embedding_dim": 16, "filter_widths": [2],
                                          "filters_count": 8}, epochs=8)
    recipe["inputs"][0]["preprocessing"]["char_ngrams"] = [3, 4]
    return ensayo.run(recipe, output=root / "run", track=False).path


def test_a_texts_words_and_subwords_carry_the_answer_and_sum_to_it(subword_run: Path) -> None:
    run = SavedRun.load(subword_run)
    table = pl.DataFrame({"title": ["Taladro percutor bosch oferta negro", "Zapatillas nike running envio gratis"]})
    rows = run.explain(table)
    probabilities = run.predict_proba(table)
    for number, (row, expected, p) in enumerate(zip(rows, ("DRILLS", "SHOES"), probabilities, strict=True)):
        assert row.predicted == expected and row.probability == pytest.approx(p.max(), abs=1e-5)
        (text,) = row.inputs
        tokens = {token: word + sub for token, word, sub in text.tokens}
        assert any(sub != 0 for _, _, sub in text.tokens)  # the subwords have their share
        # the class's own words pushed the answer more than the noise words every class shares
        strongest = max(tokens, key=tokens.get)
        assert strongest in set(CLASSES[expected]), tokens
        # completeness: the shares add up to the probability above the baseline (every token padding)
        feature, network = run.classifier.features[0], run.classifier.network
        padding = feature.batch_of_ids(np.zeros((1, len(text.tokens)), dtype=np.int64), np.array([len(text.tokens)]))
        with torch.no_grad():  # the attributions share the network's own probability, before the temperature
            index = run.output.classes.index(expected)
            encoded = encode_split(run.classifier.features, table, np.zeros(table.height, dtype=np.int64))
            own = torch.softmax(network(encoded.batch(np.arange(table.height), torch.device("cpu"))), -1)
            own = own[number, index]
            baseline = torch.softmax(network({"title": padding}), -1)[0, index]
        assert text.total == pytest.approx(float(own) - float(baseline), abs=0.01)
        assert abs(row.delta) < 0.01


def test_clips_photos_numbers_categories_and_ngrams_are_explained(file_runs: dict[str, Path],
                                                                   tiny_runs: dict[str, Path]) -> None:
    tones = SavedRun.load(file_runs["tones"])
    clips = sorted(str(p) for p in Path(file_runs["clips"]).glob("sweep_*.wav"))[:2]
    (audio,) = tones.explain(pl.DataFrame({"path": clips}))[0].inputs
    assert audio.kind == "spectrogram" and audio.map.shape == audio.background.shape
    assert np.abs(audio.map).sum() > 0

    pois = SavedRun.load(file_runs["pois"])
    table = pl.read_csv(Path(file_runs["poi"]) / "pois.csv").head(2)
    (row, _) = pois.explain(table)
    kinds = {item.name: item.kind for item in row.inputs}
    assert kinds == {"photo": "image", "categories": "value", "xps": "value"}
    photo = next(item for item in row.inputs if item.name == "photo")
    assert photo.map.shape == photo.background.shape[:2]
    assert row.delta == pytest.approx(0, abs=0.05)  # the integral is well approximated

    linear = SavedRun.load(tiny_runs["tfidf_linear"])
    (explained,) = linear.explain(pl.DataFrame({"title": ["Muñeca bebote juguete"]}))
    assert explained.predicted == "TOYS"
    assert explained.inputs[0].tokens[0][1] > 0 and "'" in explained.inputs[0].tokens[0][0]
    with pytest.raises(ValueError, match="model type ensemble does not explain its answers: .*explain a member"):
        SavedRun.load(tiny_runs["ensemble"]).explain(pl.DataFrame({"title": ["x"]}))


@needs_browser
@pytest.mark.browser
def test_the_page_shows_each_row_with_its_coloured_words_in_a_headless_browser(subword_run: Path,
                                                                                file_runs: dict[str, Path],
                                                                                tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    source = write_challenge_csv(tmp_path / "new.csv", make_titles(rows_per_class=1, seed=9))
    result = CliRunner().invoke(app, ["explain", str(subword_run), "--input", str(source), "--rows", "3",
                                      "--output", str(tmp_path / "why.html")])
    assert result.exit_code == 0, result.output
    audio_page = ensayo.explain(file_runs["tones"], file_runs["clips"], rows=2, output=tmp_path / "tones.html")
    for page in (tmp_path / "why.html", audio_page):
        assert not re.search(r"""(src|href)=["']?(https?:|//)""", page.read_text())  # self-contained
    browser = open_browser()
    try:
        browser.get((tmp_path / "why.html").as_uri())
        rows = browser.find_elements(By.CSS_SELECTOR, "section.row")
        assert len(rows) == 3
        weights = [float(t.get_attribute("data-weight")) for t in rows[0].find_elements(By.CLASS_NAME, "token")]
        colours = {t.value_of_css_property("background-color")
                   for t in rows[0].find_elements(By.CLASS_NAME, "token")}
        assert weights and len(colours) > 1
        browser.get(audio_page.as_uri())
        images = browser.find_elements(By.TAG_NAME, "img")
        assert len(images) == 2 and all(int(i.get_attribute("naturalWidth")) > 100 for i in images)
    finally:
        browser.quit()
    refused = CliRunner().invoke(app, ["explain", str(subword_run), "--input", str(source), "--rows", "0"])
    assert refused.exit_code != 0
