"""The errors a command reports in one line, defined where nothing heavy is imported: the CLI catches them
without loading torch, polars, scikit-learn or MLflow (`ensayo --help` starts in a fraction of a second).
Each is re-exported by the module that raises it."""

from __future__ import annotations


class RecipeError(ValueError):
    """A recipe that cannot be run; the message names the key path and what was expected."""


class DataError(ValueError):
    """Data that cannot be used as the recipe asks; the message names the file, line or column."""


class Locked(RuntimeError):
    """A directory that another process is writing; the message names it."""


class TrackingError(RuntimeError):
    """A tracking store that cannot be reached when the run starts; the message names its URI."""


class LaunchFailed(RuntimeError):
    """A rank of a launched run failed; the message names it and its exit code (its own error came first)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
