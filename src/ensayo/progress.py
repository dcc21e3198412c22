"""Long work is never silent. On a terminal it shows a spinner or a bar; when the output is a file, a log or a CI
job (no live display there), it prints a line when it starts and one every `ENSAYO_PROGRESS_SECONDS` (30) while
it goes on."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

PROGRESS_VARIABLE = "ENSAYO_PROGRESS_SECONDS"


def every() -> float:
    """Seconds between two progress lines written to a non-terminal."""
    return float(os.environ.get(PROGRESS_VARIABLE, "30"))


def elapsed(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


@contextmanager
def working(console: Console, what: str) -> Iterator[None]:
    """`what` (e.g. "fitting the linear classifier") while the block runs: a spinner on a terminal, lines
    elsewhere."""
    if console.is_terminal:
        with console.status(what):
            yield
        return
    console.print(f"{what} ...", highlight=False)
    started = time.monotonic()
    with repeating(lambda: console.print(f"  still {what} ({elapsed(time.monotonic() - started)})",
                                         highlight=False), every(), "ensayo-progress"):
        yield


@contextmanager
def repeating(action: Callable[[], None], seconds: float, name: str) -> Iterator[None]:
    """`action` every `seconds` from a thread of its own (named `name`) while the block runs; the thread ends
    with the block."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(seconds):
            action()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
