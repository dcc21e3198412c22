"""Every registered model type keeps the model-type contract (`helpers.contract`): validate, fit, save, load and
answer alike, export, explain, resume, and refuse by name what it does not do."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.contract import assert_model_type_contract

from ensayo.models import MODEL_TYPES


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODEL_TYPES))
def test_every_registered_model_type_keeps_the_contract(name: str, tmp_path: Path) -> None:
    assert_model_type_contract(name, tmp_path)
