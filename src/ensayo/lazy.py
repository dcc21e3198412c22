"""Names a package exports from its modules, imported on first use (a module `__getattr__`, PEP 562), so that
importing the package loads none of what a name needs until the name is asked for."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping
from typing import Any


def exports(package: str, names: Mapping[str, str], first: str | None = None,
            needs_first: Collection[str] | None = None) -> Callable[[str], Any]:
    """The `__getattr__` of `package`, which exports each of `names` (name -> the module that defines it, or the
    submodule `package.name` itself); module `first`, where given, is imported before any of them, or before those
    of `needs_first` only (the module that registers a package's built-in types, before its registry)."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if first is not None and (needs_first is None or name in needs_first):
            importlib.import_module(first)
        imported = importlib.import_module(module)
        return imported if module == f"{package}.{name}" else getattr(imported, name)

    return __getattr__
