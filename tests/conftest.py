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
