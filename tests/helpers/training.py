"""Interrupting training with a real signal, and exploring a recipe's data through the CLI."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


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
