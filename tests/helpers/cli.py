"""The `ensayo` command as a user meets it: what it printed, and refusals that must name their culprit."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from ensayo.cli import app

runner = CliRunner()


def said(result: Any) -> str:
    """What a command printed, on one line."""
    return " ".join(result.output.split())


def refused(args: list[Any], *expected: str, code: int = 2) -> str:
    """Run the CLI; it must end with `code`, no traceback, and every `expected` piece in its message."""
    result = runner.invoke(app, [str(a) for a in args])
    text = said(result)
    assert result.exit_code == code, text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for piece in expected:
        assert " ".join(piece.split()) in text, f"{piece!r} not in {text!r}"
    return text
