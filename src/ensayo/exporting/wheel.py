"""A wheel of the installed ensayo, for an exported MLflow model to carry: MLflow builds a model's environment from
a copy of the model's folder, and the name `ensayo` on PyPI belongs to another project, so the model brings
the package it was exported from (`<model>/wheels/`).

An editable or folder install is built with `pip wheel --no-deps` (offline: no index, no build isolation); an
install from a wheel or an index is packed back from the files it installed (its RECORD). Wheels are kept in
`ENSAYO_CACHE` under the version and a digest of the package's files, so each export of the same code reuses
one."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from ensayo import DISTRIBUTION, __version__

WHEELS = "wheels"  # the model folder's wheels, as MLflow's own wheeled models name it


def cache_folder() -> Path:
    return Path(os.environ.get("ENSAYO_CACHE", Path.home() / ".cache" / "ensayo")) / WHEELS


def project_wheel() -> Path:
    """The wheel of the installed distribution, built (or packed) once per version and state of its files."""
    distribution = metadata.distribution(DISTRIBUTION)
    source = _source_folder(distribution)
    package = Path(__file__).resolve().parents[1]
    digest = _digest(package, *([source / "pyproject.toml"] if source else []))
    folder = cache_folder() / f"{__version__}-{digest}"
    found = sorted(folder.glob("*.whl"))
    if found:
        return found[0]
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ensayo-wheel-", dir=folder.parent) as building:
        made = _build(source, Path(building)) if source else _pack(distribution, Path(building))
        folder.mkdir(exist_ok=True)
        kept = folder / made.name
        os.replace(made, kept)  # one rename: another process building the same wheel meanwhile is harmless
    return kept


def _source_folder(distribution: metadata.Distribution) -> Path | None:
    """The project folder an editable or folder install came from (PEP 610's direct_url.json), else None."""
    text = distribution.read_text("direct_url.json")
    if not text:
        return None
    origin = json.loads(text)
    url = origin.get("url", "")
    if "dir_info" in origin and url.startswith("file://"):
        folder = Path(url.removeprefix("file://"))
        return folder if (folder / "pyproject.toml").is_file() else None
    return None


def _digest(package: Path, *more: Path) -> str:
    """A digest of the package's files (and its project's metadata), so that changed code makes another wheel."""
    hashed = hashlib.sha256()
    for path in [*sorted(package.rglob("*")), *more]:
        if path.is_file() and "__pycache__" not in path.parts:
            hashed.update(path.name.encode())
            hashed.update(path.read_bytes())
    return hashed.hexdigest()[:16]


def _build(source: Path, into: Path) -> Path:
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
               "--wheel-dir", str(into), str(source)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"building the wheel of {source} for the exported model failed: "
                           f"{' '.join(done.stderr.split())[-600:]}")
    return next(into.glob("*.whl"))


def _pack(distribution: metadata.Distribution, into: Path) -> Path:
    """A wheel made of the files an install wrote (RECORD), without its bytecode and installer's notes."""
    info = Path(str(distribution._path))  # type: ignore[attr-defined]  (the .dist-info folder)
    root = info.parent
    skipped = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    files = [Path(line.split(",")[0]) for line in (distribution.read_text("RECORD") or "").splitlines() if line]
    kept = [f for f in files if f.suffix != ".pyc" and not (f.parent.name == info.name and f.name in skipped)
            and not str(f).startswith("..")]
    name = distribution.metadata["Name"].replace("-", "_")
    wheel = into / f"{name}-{distribution.version}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for relative in kept:
            data = (root / relative).read_bytes()
            archive.writestr(str(relative), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{relative},sha256={digest},{len(data)}")
        record.append(f"{info.name}/RECORD,,")
        archive.writestr(f"{info.name}/RECORD", "\n".join(record) + "\n")
    return wheel


def requirement(wheel: Path) -> str:
    """The wheel's requirement line in a model folder that holds it in wheels/."""
    return f"{WHEELS}/{wheel.name}"


def copy_into(model: Path, wheel: Path) -> None:
    (model / WHEELS).mkdir(exist_ok=True)
    shutil.copy2(wheel, model / WHEELS / wheel.name)
