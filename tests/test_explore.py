"""`ensayo explore`: the data report, and the package's names staying what they are."""

from __future__ import annotations

import importlib
import pkgutil
import types
from pathlib import Path

from helpers.data import recipe_dict
from helpers.training import explore_report

import ensayo


def test_importing_any_module_leaves_the_package_functions_in_place() -> None:
    for module in pkgutil.walk_packages(ensayo.__path__, "ensayo."):
        if module.name != "ensayo.__main__":  # that one runs the command
            importlib.import_module(module.name)
    for name in ensayo.__all__:
        value = getattr(ensayo, name)
        assert not isinstance(value, types.ModuleType), f"ensayo.{name} became a module"
        assert callable(value), name
    assert ensayo.explore.__module__ == "ensayo.api"


def test_a_report_shows_the_class_balance_and_the_text_inputs(titles_csv: Path, tmp_path: Path) -> None:
    report = explore_report(recipe_dict(titles_csv), tmp_path)
    assert "## Classes of `category`" in report and "5 classes." in report
    assert "| BOOKS |" in report  # a row per class and split
    assert "## Input `title` (text, training split)" in report and "Most frequent words" in report
    assert (tmp_path / "report" / "class_balance.png").stat().st_size > 1000
    assert (tmp_path / "report" / "title_lengths.png").is_file()
