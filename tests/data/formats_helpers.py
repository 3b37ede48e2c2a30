"""Small builders shared by the data-format tests: random faces, folders, raw RecordIO bytes."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from btnet.data.images import encode_jpeg, write_image

MAGIC = 0xCED7230A


def face(seed: int, size: int = 24) -> np.ndarray:
    """A smooth random RGB image (JPEG keeps it recognisable, unlike white noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3)).astype(np.float64)
    big = np.kron(small, np.ones((size // 4, size // 4, 1)))
    return big.clip(0, 255).astype(np.uint8)


def jpeg(seed: int, size: int = 24) -> bytes:
    return encode_jpeg(face(seed, size))


def make_folder(root: Path, counts: list[int], size: int = 24, ext: str = "jpg") -> Path:
    """root/id{c:02d}/{k}.ext with ``counts[c]`` images for identity c."""
    for c, n in enumerate(counts):
        for k in range(n):
            write_image(root / f"id{c:02d}" / f"{k}.{ext}", face(100 * c + k, size))
    return root


def frame(payload: bytes, cflag: int = 0) -> bytes:
    """One raw RecordIO frame (magic, lrec, payload, zero padding), built by hand."""
    head = struct.pack("<II", MAGIC, (cflag << 29) | len(payload))
    return head + payload + b"\0" * (-len(payload) % 4)


def header(label: float, key: int, labels: list[float] | None = None) -> bytes:
    if labels is None:
        return struct.pack("<IfQQ", 0, label, key, 0)
    return struct.pack("<IfQQ", len(labels), 0.0, key, 0) + struct.pack(f"<{len(labels)}f", *labels)


def write_raw_rec(prefix: Path, records: list[tuple[int, bytes]]) -> tuple[Path, Path]:
    """Write already-framed records with an index: ``records`` = [(key, framed bytes)]."""
    rec, idx = prefix.with_suffix(".rec"), prefix.with_suffix(".idx")
    offset = 0
    with open(rec, "wb") as f, open(idx, "w") as g:
        for key, data in records:
            g.write(f"{key}\t{offset}\n")
            f.write(data)
            offset += len(data)
    return rec, idx
