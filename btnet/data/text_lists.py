"""Line-oriented list files (pairs lists, open-set lists, IJB-C meta files).

One tokenizer for all of them: blank lines and ``#`` comments are skipped; a line with a tab
is split on tabs (so paths may contain spaces), otherwise on whitespace.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def list_rows(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """``(line number, stripped line, fields)`` for every non-empty, non-comment line."""
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        toks = line.split("\t") if "\t" in line else line.split()
        yield lineno, line, [t.strip() for t in toks if t.strip()]
