"""Line-oriented list files (pairs lists, open-set lists, IJB-C meta files).

One tokenizer for all of them: blank lines and ``#`` comments are skipped; a line with a tab
is split on tabs (so paths may contain spaces), otherwise on whitespace. A UTF-8 byte-order
mark (Windows editors write one) is not part of the first path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def list_rows(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """``(line number, stripped line, fields)`` for every non-empty, non-comment line."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file (byte {exc.start}: {exc.reason})") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        toks = line.split("\t") if "\t" in line else line.split()
        yield lineno, line, [t.strip() for t in toks if t.strip()]


def tab_hint(line: str, fields: list[str], expected: int) -> str:
    """A hint for a line split into too many fields: paths with spaces need tab separators."""
    if "\t" not in line and len(fields) > expected:
        return (f" ({len(fields)} space-separated fields: if a path contains spaces, separate "
                "the fields with tabs)")
    return ""
