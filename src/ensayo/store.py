"""Writing the files of runs and studies safely: every file atomically (a temporary file, then a rename,
so that a reader or a crash never sees half a file), and a directory locked while a process writes it."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout

from ensayo import layout
from ensayo.errors import Locked


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix, so that writers that read it pick the same format);
    it replaces `path` when the block ends, and is removed when the block fails."""
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_json(path: Path, data: Any, compact: bool = False) -> None:
    """`data` as JSON, NaN as null; `compact` on one line, for large machine-read files (json's encoder is in C
    only without indentation: a vocabulary of 200,000 words takes a second indented)."""
    indent = None if compact else 2
    try:
        text = json.dumps(data, indent=indent, ensure_ascii=False, allow_nan=False)
    except ValueError:  # a NaN or an infinity somewhere
        text = json.dumps(_clean(data), indent=indent, ensure_ascii=False)
    write_text(path, text + "\n")


def write_yaml(path: Path, data: Any) -> None:
    write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def read_json(path: Path) -> Any:
    """A JSON file of ensayo's; a damaged one is named, never half-read."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: damaged, not valid JSON ({exc})") from None


@contextlib.contextmanager
def locked(directory: Path, what: str) -> Iterator[None]:
    """Hold `directory` (made if needed) for this process while the block runs; another process that asks
    gets `Locked`, naming the holder. The operating system frees the lock when its holder dies, so a killed
    process leaves no stale lock."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(directory / layout.LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise Locked(f"{directory}: {what} is being written there by {holder(directory)}; wait for it to end "
                     "or stop it, or choose another directory") from None
    holder_file = directory / layout.LOCK_HOLDER
    try:
        write_json(holder_file, {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")})
        yield
    finally:
        holder_file.unlink(missing_ok=True)
        lock.release()


def held_by(directory: Path) -> str | None:
    """Who holds a directory's lock now, in words; None when no live process does (the lock is tried, and let go
    at once)."""
    if not (directory / layout.LOCK).is_file():
        return None
    lock = FileLock(directory / layout.LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return holder(directory)
    lock.release()
    return None


def output_folder(path: Path, option: str = "--output") -> Path:
    """A folder to write into: refused, naming `option`, when a file is there instead."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path}: a file is there; this writes a folder: choose another path")
    return path


def output_file(path: Path, option: str = "--output") -> Path:
    """A file to write: refused, naming `option`, when a folder is there instead."""
    if path.is_dir():
        raise ValueError(f"{option} {path}: a folder is there; give the path of the file to write")
    return path


def holder(directory: Path) -> str:
    """Who holds a directory's lock, in words."""
    try:
        found = read_json(directory / layout.LOCK_HOLDER)
    except (OSError, ValueError):
        return "another process"
    return f"process {found['pid']} on {found['host']} since {found['since']} ({found['command']})"


def remove_partial_files(directory: Path) -> None:
    """The temporary files of `atomic_path` that a killed process left half-written: never read, removed."""
    for partial in directory.glob(".*.tmp*"):
        partial.unlink()


def empty(directory: Path) -> None:
    """Remove what a directory holds, its lock files left alone."""
    for name in contents(directory):
        path = directory / name
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def contents(directory: Path) -> list[str]:
    """The names in a directory, ensayo's lock files left out."""
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name not in layout.BOOKKEEPING)
