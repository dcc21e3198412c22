"""The page of `ensayo serve`, in headless Chromium driven by selenium: type a title and see its category,
record the (fake) microphone and hear the class it plays, upload a photo, stream a sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import soundfile as sf
from helpers.browser import needs_browser, open_browser
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

import ensayo

pytestmark = [needs_browser, pytest.mark.browser, pytest.mark.server]


def continuous_tone(path: Path, hz: float, seconds: float = 2.0, rate: int = 48000) -> Path:
    """What the fake microphone plays, in a loop: one of the tone model's classes, without pauses."""
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    microphone = continuous_tone(tmp_path_factory.mktemp("microphone") / "low.wav", 300.0)
    driver = open_browser("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                          f"--use-file-for-fake-audio-capture={microphone}",
                          "--autoplay-policy=no-user-gesture-required")
    yield driver
    driver.quit()


def card(browser: Any, live_server: Any, name: str) -> Any:
    if not browser.current_url.startswith(live_server.url):
        browser.get(live_server.url + "/")
    return WebDriverWait(browser, 20).until(ready.presence_of_element_located((By.CSS_SELECTOR,
                                                                              f'[data-card="{name}"]')))


def answer_labels(browser: Any, name: str) -> list[str]:
    bars = WebDriverWait(browser, 30).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, f'[data-answer="{name}"] .bar') or
        (b.find_elements(By.CSS_SELECTOR, f'[data-answer="{name}"] .error') and
         pytest.fail(b.find_element(By.CSS_SELECTOR, f'[data-answer="{name}"]').text)))
    return [bar.get_attribute("data-label") for bar in bars]


def test_the_page_ships_with_the_package_and_fetches_nothing_from_elsewhere(live_server: Any) -> None:
    page = requests.get(live_server.url + "/", timeout=10).text
    assert "/page/app.js" in page and "http" not in page.replace('href="/docs"', "")
    script = requests.get(live_server.url + "/page/app.js", timeout=10).text
    assert "https://" not in script and "getUserMedia" in script


def test_type_a_title_and_see_its_category(browser: Any, live_server: Any, tiny_runs: dict[str, Path]) -> None:
    form = card(browser, live_server, "neural")
    title = "Taladro percutor Bosch inalambrico"
    form.find_element(By.NAME, "title").send_keys(title)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    labels = answer_labels(browser, "neural")
    assert labels[0] == ensayo.predict(tiny_runs["neural"], [{"title": title}])[0][0][0] == "DRILLS"
    widths = [bar.value_of_css_property("width") for bar in
              browser.find_elements(By.CSS_SELECTOR, '[data-answer="neural"] .fill')]
    assert float(widths[0].rstrip("px")) > float(widths[-1].rstrip("px"))  # a bar chart, longest first


def test_a_card_reads_like_a_product(browser: Any, live_server: Any, tiny_runs: dict[str, Path]) -> None:
    browser.get(live_server.url + "/")  # a fresh page: no title typed by an earlier test
    form = card(browser, live_server, "neural")
    shown = browser.find_element(By.CSS_SELECTOR, '[data-card="neural"]').text
    metrics = ensayo.load_run(tiny_runs["neural"]).metrics
    low, high = metrics["test/balanced_accuracy_low"], metrics["test/balanced_accuracy_high"]
    assert f"balanced accuracy {metrics['test/balanced_accuracy']:.3f} [{low:.3f}, {high:.3f}]" in shown
    assert "test/balanced_accuracy" not in shown and "tiny product titles" in shown  # the recipe's description
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()  # no title typed
    error = WebDriverWait(browser, 20).until(ready.presence_of_element_located(
        (By.CSS_SELECTOR, '[data-answer="neural"] .error')))
    assert error.text == "title: is empty: type something"
    browser.find_element(By.CSS_SELECTOR, '[data-card="neural"] [data-example="0"]').click()
    labels = answer_labels(browser, "neural")
    example = ensayo.load_run(tiny_runs["neural"]).describe()["examples"][0]
    assert form.find_element(By.NAME, "title").get_attribute("value") == example["title"]
    assert labels == ensayo.predict(tiny_runs["neural"], [example])[0][0]
    names = browser.find_elements(By.CSS_SELECTOR, '[data-answer="neural"] .bar .name')
    assert all(browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", n) for n in names)


def test_an_examples_clip_is_fetched_and_heard(browser: Any, live_server: Any, file_runs: dict[str, Path]) -> None:
    card(browser, live_server, "tones")
    browser.find_element(By.CSS_SELECTOR, '[data-card="tones"] [data-example="0"]').click()
    example = ensayo.load_run(file_runs["tones"]).describe()["examples"][0]
    clip = file_runs["tones"] / "examples" / example["path"]
    assert answer_labels(browser, "tones") == ensayo.predict(file_runs["tones"], [{"path": str(clip)}])[0][0]


def test_record_the_microphone_and_hear_the_class_it_plays(browser: Any, live_server: Any) -> None:
    form = card(browser, live_server, "tones")
    record = form.find_element(By.CSS_SELECTOR, '[data-record="path"]')
    record.click()
    WebDriverWait(browser, 10).until(lambda b: record.text == "Stop")
    browser.execute_script("return new Promise(done => setTimeout(done, 1500))")
    record.click()
    status = form.find_element(By.CSS_SELECTOR, '[data-status="path"]')
    WebDriverWait(browser, 10).until(lambda b: status.text.startswith("recorded"))
    # what was recorded is shown before it is sent: its waveform and a player
    wave = form.find_element(By.CSS_SELECTOR, '[data-waveform="path"]')
    assert wave.is_displayed() and float(wave.get_attribute("data-seconds")) > 1.0
    drawn = browser.execute_script("const c = arguments[0].getContext('2d').getImageData(0, 0, 600, 60).data;"
                                   "let n = 0; for (let i = 3; i < c.length; i += 4) n += c[i] > 0; return n;", wave)
    assert drawn > 600  # a continuous tone fills the canvas' middle band
    player = form.find_element(By.CSS_SELECTOR, '[data-player="path"]')
    assert player.is_displayed() and player.get_attribute("src").startswith("blob:")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert answer_labels(browser, "tones")[0] == "low"


def test_upload_a_photo_with_its_metadata(browser: Any, live_server: Any, file_runs: dict[str, Path],
                                          tmp_path: Path) -> None:
    photo = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (220, 50, 40)).save(photo)
    row = {"image": str(photo), "categories": "['Historia', 'Arte']", "xps": 500.0}
    expected = ensayo.predict(file_runs["pois"], [row])[0][0][0]
    form = card(browser, live_server, "pois")
    form.find_element(By.NAME, "image").send_keys(str(photo))
    form.find_element(By.NAME, "categories").send_keys("['Historia', 'Arte']")
    form.find_element(By.NAME, "xps").send_keys("500")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert answer_labels(browser, "pois")[0] == expected


def test_a_bad_upload_shows_the_servers_message(browser: Any, live_server: Any, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a sound")
    form = card(browser, live_server, "tones")
    chooser = form.find_element(By.NAME, "path")
    chooser.clear()
    chooser.send_keys(str(text))
    browser.get(live_server.url + "/")  # a fresh page: no recording replaces the chosen file
    form = card(browser, live_server, "tones")
    form.find_element(By.NAME, "path").send_keys(str(text))
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    error = WebDriverWait(browser, 20).until(ready.presence_of_element_located(
        (By.CSS_SELECTOR, '[data-answer="tones"] .error')))
    assert "notes.txt" in error.text and "path" in error.text


def test_stream_a_sample(browser: Any, live_server: Any, tiny_runs: dict[str, Path]) -> None:
    form = card(browser, live_server, "language-model")
    for name, value in (("prompt", "The "), ("length", "60"), ("seed", "3")):
        field = form.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    output = WebDriverWait(browser, 30).until(ready.presence_of_element_located(
        (By.CSS_SELECTOR, '[data-generated="language-model"][data-done="true"]')))
    assert output.text == "The " + "".join(ensayo.generate(tiny_runs["language_model"], "The ", 60, seed=3))


def test_the_api_docs_render_with_no_other_host_reachable(live_server: Any) -> None:
    offline = open_browser("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")
    try:
        offline.get(live_server.url + "/docs")
        title = WebDriverWait(offline, 20).until(ready.presence_of_element_located(
            (By.CSS_SELECTOR, ".swagger-ui .info .title")))
        assert title.text.startswith("ensayo")
        assert offline.find_elements(By.CSS_SELECTOR, ".opblock-summary-path[data-path='/v1/models/neural/predict']")
        offline.get(live_server.url + "/redoc")
        heading = WebDriverWait(offline, 20).until(ready.presence_of_element_located((By.CSS_SELECTOR,
                                                                                     "h1, .api-info h1")))
        assert "ensayo" in heading.text
        scripts = [s.get_attribute("src") for s in offline.find_elements(By.TAG_NAME, "script")]
        assert all(not src or src.startswith(live_server.url) for src in scripts), scripts
    finally:
        offline.quit()
