"""Fixtures of the evaluation tests (helpers live in ``evalfakes.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from evalfakes import FakeEncoder, synthetic_pairset  # noqa: E402


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture
def pairset():
    return synthetic_pairset()
