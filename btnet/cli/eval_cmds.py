"""Sub-commands of this group (filled in by the group's owner)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's sub-commands to ``btnet``."""
