"""Recordings as a person makes them: Record, wait, speak, wait, Stop. The speech is found (Silero's voice
activity detector) and heard; a take without speech is refused in words, one with more speech than the
model hears says so."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import soundfile as sf
import torch
from helpers.browser import needs_browser, open_browser
from helpers.cli import refused, runner, said
from helpers.data import RATE, TAKE_RATE, audio_recipe, make_words, recorded_take, spoken
from helpers.servers import LiveServer
from scipy.signal import resample_poly

from ensayo.cli import app
from ensayo.features.audio.preprocessing import AudioPreprocessing, prepare_clip
from ensayo.features.audio.speech import SpeechConfig, find_speech

pytest.importorskip("silero_vad", reason="the speech detector is in the audio extra")
pytestmark = pytest.mark.slow


def samples_of(take: bytes) -> np.ndarray:
    """The take as the pipeline hears it, at the recipes' 8 kHz."""
    return resample_poly(sf.read(io.BytesIO(take), dtype="float32")[0], RATE, TAKE_RATE).astype(np.float32)


@pytest.fixture(scope="module")
def words_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run that tells 'ah' from 'ee', hearing 0.5 s of each clip's speech."""
    import ensayo

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("words")
    recipe = audio_recipe(make_words(root / "clips"), preprocessing={"speech": {}})
    recipe["name"] = "words"
    return ensayo.run(recipe, output=root / "run", track=False).path


@pytest.fixture(scope="module")
def served(words_run: Path) -> Any:
    from ensayo.runs import load_run
    from ensayo.serving import ServeOptions, create_app

    server = LiveServer(create_app({"words": load_run(words_run)}, ServeOptions(max_upload_mb=2.0)))
    yield server
    server.stop()


def test_the_detector_finds_the_word_and_not_the_click_or_the_room() -> None:
    rng = np.random.default_rng(1)
    take = samples_of(recorded_take("ah", rng))
    speech = find_speech(take, RATE, SpeechConfig())
    loud = np.flatnonzero(np.abs(take) > 0.05) / RATE  # the word, then the click at its end
    click = loud[-1]
    assert speech.main is not None
    start, end = speech.main
    assert start < loud[0] + 0.1 and loud[0] < end < click - 0.1, (speech, loud[0], click)
    assert all(not (s <= click <= e) for s, e in speech.stretches), speech
    as_recorded = find_speech(sf.read(io.BytesIO(recorded_take("ah", np.random.default_rng(1))), dtype="float32")[0],
                              TAKE_RATE, SpeechConfig())  # a rate the detector does not hear: resampled for it
    assert as_recorded.main is not None and abs(as_recorded.main[0] - start) < 0.1, as_recorded


@pytest.mark.parametrize("room", ["digital silence", "quiet hiss", "loud hiss", "a click alone"])
def test_a_take_without_speech_has_none(room: str) -> None:
    rng = np.random.default_rng(2)
    samples = {"digital silence": np.zeros(2 * RATE, dtype=np.float32),
               "quiet hiss": rng.normal(0, 10 ** (-55 / 20), 2 * RATE).astype(np.float32),
               "loud hiss": rng.normal(0, 0.1, 2 * RATE).astype(np.float32),
               "a click alone": samples_of(recorded_take(None, rng, seconds=2.0))}[room]
    assert find_speech(samples, RATE, SpeechConfig()).stretches == ()


def test_more_speech_than_the_model_hears_is_said() -> None:
    rng = np.random.default_rng(3)
    samples = np.concatenate([np.zeros(RATE // 2), spoken("ee", rng, RATE, syllables=10),
                              np.zeros(RATE // 2)]).astype(np.float32)
    speech = find_speech(samples, RATE, SpeechConfig())
    assert speech.main is not None and speech.main[1] - speech.main[0] > 1.5
    assert "longer than the 1 s the model hears" in (speech.note(1.0) or "")
    assert speech.note(5.0) is None


def test_the_model_hears_the_word_where_trimming_alone_hears_the_gap(tmp_path: Path) -> None:
    take = tmp_path / "take.wav"
    take.write_bytes(recorded_take("ah", np.random.default_rng(9)))  # the word, 0.8 s of room, a click
    centre = slice(1000, 3000)  # the middle 0.25 s of the 0.5 s the model hears, at 8 kHz

    def middle_level(**speech: SpeechConfig) -> float:
        heard = prepare_clip(str(take), AudioPreprocessing(duration=0.5, **speech))
        return float(np.sqrt(np.mean(heard[centre] ** 2)) / np.sqrt(np.mean(heard**2)))

    assert middle_level(speech=SpeechConfig()) > 0.8  # the word fills the window
    assert middle_level() < 0.1  # trim_db keeps word to click; the window's middle is the room between them


def test_a_silent_file_is_a_file_problem_named_as_such(tmp_path: Path) -> None:
    silent, word = tmp_path / "silent.wav", tmp_path / "word.wav"
    silent.write_bytes(recorded_take(None, np.random.default_rng(4), click=False))
    word.write_bytes(recorded_take("ah", np.random.default_rng(4)))
    options = AudioPreprocessing(speech=SpeechConfig())
    assert options.file_problems([str(word), str(silent)]) == {
        1: "no speech: the voice detector heard none in this recording"}
    assert AudioPreprocessing().file_problems([str(silent)]) == {}  # without the detector, nothing is refused


def test_served_takes_are_heard_by_their_spoken_part(served: Any) -> None:
    rng = np.random.default_rng(5)
    for label in ("ah", "ee", "ah", "ee"):
        answer = requests.post(f"{served.url}/v1/models/words/predict", timeout=30,
                               files={"path": ("take.wav", recorded_take(label, rng))})
        assert answer.status_code == 200, answer.text
        prediction = answer.json()["predictions"][0]
        assert prediction["labels"][0] == label, prediction
        assert "note" not in prediction or prediction["note"] is None


def test_a_served_take_without_speech_is_refused_in_words(served: Any) -> None:
    answer = requests.post(f"{served.url}/v1/models/words/predict", timeout=30,
                           files={"path": ("take.wav", recorded_take(None, np.random.default_rng(6)))})
    assert 400 <= answer.status_code < 500
    assert "no speech" in answer.text and "path" in answer.text


def test_a_served_take_with_long_speech_carries_a_note(served: Any) -> None:
    take = recorded_take("ee", np.random.default_rng(7), seconds=4.0, syllables=8, click=False)
    answer = requests.post(f"{served.url}/v1/models/words/predict", timeout=30, files={"path": ("take.wav", take)})
    assert answer.status_code == 200, answer.text
    note = answer.json()["predictions"][0]["note"]
    assert "path:" in note and "longer than the 0.5 s the model hears" in note


def test_predict_names_a_take_without_speech_and_notes_long_speech(words_run: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    takes = tmp_path / "takes"
    takes.mkdir()
    (takes / "silent.wav").write_bytes(recorded_take(None, rng))
    (takes / "word.wav").write_bytes(recorded_take("ah", rng))
    (takes / "long.wav").write_bytes(recorded_take("ee", rng, seconds=4.0, syllables=8, click=False))
    result = runner.invoke(app, ["predict", str(words_run), "--input", str(takes)])
    text = said(result)
    assert result.exit_code == 0, text
    assert "silent.wav" in text and "no speech" in text
    cells = "".join(result.output.replace("│", "").split())  # the note wraps inside its column
    assert "note" in text and "longerthanthe0.5sthemodelhears" in cells
    written = tmp_path / "answers.csv"
    result = runner.invoke(app,
                           ["predict", str(words_run), "--input", str(takes), "--output", str(written)])
    assert result.exit_code == 0, said(result)
    rows = {Path(row.split(",")[0]).name: row for row in written.read_text().splitlines()[1:]}
    assert written.read_text().splitlines()[0].endswith(",note")
    assert set(rows) == {"long.wav", "word.wav"}
    assert "longer than" in rows["long.wav"] and rows["word.wav"].endswith(",")
    refused(["predict", words_run, "--input", takes / "silent.wav"], "silent.wav", "every row of the file is bad",
            "no speech")


@needs_browser
@pytest.mark.browser
@pytest.mark.server
def test_record_a_take_on_the_page_and_see_the_word_heard(served: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    rng = np.random.default_rng(10)
    microphone = tmp_path / "take.wav"  # what the fake microphone plays: room, "ee", room, a click, room
    microphone.write_bytes(recorded_take("ee", rng, seconds=3.0))
    long_speech = tmp_path / "long.wav"
    long_speech.write_bytes(recorded_take("ah", rng, seconds=4.0, syllables=8, click=False))
    browser = open_browser("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                           f"--use-file-for-fake-audio-capture={microphone}")
    wait = WebDriverWait(browser, 30)
    try:
        browser.get(served.url + "/")
        form = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, '[data-card="words"]')))
        record = form.find_element(By.CSS_SELECTOR, '[data-record="path"]')
        record.click()
        wait.until(lambda b: record.text == "Stop")
        browser.execute_script("return new Promise(done => setTimeout(done, 2500))")
        record.click()
        wait.until(lambda b: form.find_element(By.CSS_SELECTOR, '[data-status="path"]').text.startswith("recorded"))
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        answer = '[data-answer="words"]'
        first = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, f"{answer} .bar, {answer} .error")))
        assert first.get_attribute("data-label") == "ee", first.text

        browser.get(served.url + "/")  # a fresh page: no recording replaces the chosen file
        form = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, '[data-card="words"]')))
        form.find_element(By.NAME, "path").send_keys(str(long_speech))
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        note = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, f"{answer} .note")))
        assert "longer than the 0.5 s the model hears" in note.text
    finally:
        browser.quit()
