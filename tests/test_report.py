"""Study reports: the experiment table, the plots, and the page as a browser renders it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from helpers.browser import needs_browser, open_browser
from selenium.webdriver.common.by import By

from ensayo.studies.report import RunRecord, build_report

METRIC = "test/balanced_accuracy"


def records() -> list[RunRecord]:
    """Three configurations x three repeats (one of them failed), with learning curves."""
    made = []
    for config, lr, level in (("slow", 0.001, 0.70), ("fast", 0.01, 0.80), ("wild", 0.1, 0.50)):
        for repeat in range(3):
            if config == "wild" and repeat == 2:
                made.append(RunRecord(config, repeat, "failed", settings={"train.lr": lr}, error="ValueError: boom"))
                continue
            score = level + 0.01 * repeat
            curves = {"train/loss": [(1, 2.0), (2, 1.0)], "val/loss": [(1, 2.1), (2, 1.4 - score)],
                      "val/balanced_accuracy": [(1, score - 0.1), (2, score)]}
            made.append(RunRecord(config, repeat, "finished", {"train.lr": str(lr)}, {"train.lr": lr},
                                  {METRIC: score, "test/loss": 1.5 - score, "fit_seconds": 10.0 + repeat}, curves))
    return made


def test_table_ranks_configurations_with_mean_std_and_interval(tmp_path: Path) -> None:
    build_report(records(), METRIC, "Study demo", "three learning rates", tmp_path)
    lines = (tmp_path / "report.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| configuration")]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == ["fast", "slow", "wild"]
    fast = rows[0].split(" | ")
    assert fast[1] == "0.01" and fast[2] == "3"
    assert fast[3] == f"0.8100 ± {np.std([0.80, 0.81, 0.82], ddof=1):.4f}"
    assert rows[2].split(" | ")[2] == "2, 1 failed"
    assert "- wild repeat 2: failed: ValueError: boom" in lines


def test_many_settings_are_listed_instead_of_tabulated(tmp_path: Path) -> None:
    wide = {f"model.key{i}": i for i in range(8)}
    made = [RunRecord(name, 0, "finished", settings=wide | {"model.key0": name},
                      metrics={METRIC: 0.5, "test/loss": 1.0, "fit_seconds": 1.0}) for name in ("a", "b")]
    build_report(made, METRIC, "wide", "", tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "| configuration | runs |" in text
    assert "- a: model.key0 = a; model.key1 = 1" in text


def test_no_runs_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no runs"):
        build_report([], METRIC, "empty", "", tmp_path)


@needs_browser
@pytest.mark.browser
def test_the_page_renders_in_a_headless_browser_with_no_server(tmp_path: Path) -> None:
    page = build_report(records(), METRIC, "Study demo", "three learning rates", tmp_path)
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page.read_text())  # nothing fetched from elsewhere
    browser = open_browser()
    try:
        browser.get(page.as_uri())
        shown = browser.execute_script("return [...document.images].filter(i => i.complete && i.naturalWidth > 100)"
                                       ".length + '/' + document.images.length")
        rows = browser.find_elements(By.CSS_SELECTOR, "#experiments tbody tr")
        assert shown == "4/4" and [r.find_element(By.TAG_NAME, "td").text for r in rows] == ["fast", "slow", "wild"]
    finally:
        browser.quit()
