"""Shared test configuration: small thread counts and the path to the team's real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data``; skips where a fresh clone has no such folder."""
    if not (SHARED_DATA / "lfw").is_dir():
        pytest.skip(f"real face data not found at {SHARED_DATA} (only present in the team's CI)")
    return SHARED_DATA


def pytest_collection_modifyitems(config, items):
    """Every test that asks for ``shared_data`` carries the ``shared_data`` marker.

    The tests declare it themselves; this also marks one that forgets, so that
    ``-m "not shared_data"`` always leaves out every test needing ``../shared/data``.
    """
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()) and \
                item.get_closest_marker("shared_data") is None:
            item.add_marker(pytest.mark.shared_data)
