"""1:1 verification sets: insightface ``.bin``, LFW ``pairs.txt`` and plain pair lists.

All readers return a :class:`~btnet.data.base.PairSet` whose pairs keep the file order (the
insightface protocol folds are contiguous blocks). Images are decoded only when accessed.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from btnet.data.base import PairSet
from btnet.data.images import FileImageSource, decode_image, encode_jpeg
from btnet.data.safe_pickle import restricted_load
from btnet.data.text_lists import list_rows, tab_hint


class BytesImageSource:
    """An :class:`ImageSource` over in-memory encoded images, decoded on access."""

    def __init__(self, blobs: Sequence[bytes], source: str = ""):
        self.blobs = list(blobs)
        self.source = source

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, index: int) -> np.ndarray:
        return decode_image(self.blobs[index], self.source_name(index))

    def read_encoded(self, index: int) -> bytes:
        return self.blobs[index]

    def source_name(self, index: int) -> str:
        return f"{self.source} image {index}" if self.source else f"image {index}"


# --------------------------------------------------------------------------- .bin


def read_bin(path: str | os.PathLike, name: str | None = None) -> PairSet:
    """Read an insightface verification ``.bin`` (pickled ``(bins, issame_list)``) safely."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"verification .bin not found: {path}")
    obj = restricted_load(path)
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise ValueError(f"{path}: expected a pickled (bins, issame_list) pair, got "
                         f"{type(obj).__name__}")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)):
        raise ValueError(f"{path}: bins must be a list, got {type(bins).__name__}")
    blobs: list[bytes] = []
    for i, b in enumerate(bins):
        if isinstance(b, np.ndarray):
            if b.dtype != np.uint8 or b.ndim != 1:
                raise ValueError(f"{path}: image {i} is a {b.dtype} array of shape {b.shape}, "
                                 "expected 1-D uint8 encoded bytes")
            b = b.tobytes()
        if not isinstance(b, (bytes, bytearray)):
            raise ValueError(f"{path}: image {i} has type {type(b).__name__}, expected bytes")
        blobs.append(bytes(b))
    flags = np.asarray(list(issame) if not isinstance(issame, np.ndarray) else issame)
    if flags.ndim != 1 or not (flags.dtype == bool or np.isin(flags, (0, 1)).all()):
        raise ValueError(f"{path}: issame_list must be a flat list of booleans")
    n = len(flags)
    if n == 0:
        raise ValueError(f"{path}: holds no pairs (empty image and issame lists); nothing to "
                         "verify")
    if len(blobs) != 2 * n:
        raise ValueError(f"{path}: {len(blobs)} images for {n} pairs (expected {2 * n})")
    return PairSet(
        name=name or path.stem,
        images=BytesImageSource(blobs, str(path)),
        left=np.arange(0, 2 * n, 2),
        right=np.arange(1, 2 * n, 2),
        issame=flags.astype(bool),
        source_format="bin",
    )


def write_bin(path: str | os.PathLike, blobs: Sequence[bytes], issame: Sequence[bool]) -> Path:
    """Write an insightface-compatible ``.bin`` from 2N encoded images and N flags."""
    path = Path(path)
    if len(blobs) != 2 * len(issame):
        raise ValueError(f"write_bin needs 2N images for N pairs, got {len(blobs)} for "
                         f"{len(issame)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = ([bytes(b) for b in blobs], [bool(x) for x in issame])
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=4)
    return path


def export_pairs_to_bin(pairs: PairSet, path: str | os.PathLike, quality: int = 95) -> Path:
    """Write any :class:`PairSet` as a ``.bin`` (images kept as-is when already encoded)."""
    images = pairs.images
    blobs: list[bytes] = []
    for i, j in zip(pairs.left, pairs.right):
        for k in (int(i), int(j)):
            if hasattr(images, "read_encoded"):
                blobs.append(images.read_encoded(k))
            else:
                blobs.append(encode_jpeg(images[k], quality))
    return write_bin(path, blobs, pairs.issame.tolist())


# --------------------------------------------------------------------------- LFW pairs.txt


def _lfw_image(root: Path, name: str, num: str, where: str) -> Path:
    try:
        n = int(num)
    except ValueError:
        raise ValueError(f"{where}: image number {num!r} is not an integer") from None
    return root / name / f"{name}_{n:04d}.jpg"


def _default_root(pairs_path: Path) -> Path:
    images = pairs_path.parent / "images"
    return images if images.is_dir() else pairs_path.parent


def read_lfw_pairs(
    path: str | os.PathLike, root: str | os.PathLike | None = None, name: str | None = None
) -> PairSet:
    """Read LFW ``pairs.txt`` (``name n1 n2`` / ``name1 n1 name2 n2``) over an image folder.

    ``root`` holds ``<name>/<name>_NNNN.jpg``; by default ``images/`` next to the file, or the
    file's folder. A header ``folds n`` (or ``n`` for the View-1 files) is checked against the
    number of pairs read.
    """
    path = Path(path)
    root = Path(root) if root is not None else _default_root(path)
    lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    expected: int | None = None
    start = 0
    first = lines[0].split() if lines else []
    if first and len(first) <= 2 and all(t.isdigit() for t in first):
        expected = 2 * int(first[0]) * int(first[1]) if len(first) == 2 else 2 * int(first[0])
        start = 1
    index: dict[Path, int] = {}
    files: list[Path] = []
    left: list[int] = []
    right: list[int] = []
    same: list[bool] = []

    def idx(p: Path) -> int:
        if p not in index:
            index[p] = len(files)
            files.append(p)
        return index[p]

    for lineno in range(start, len(lines)):
        toks = lines[lineno].split()
        if not toks or toks[0].startswith("#"):
            continue
        where = f"{path}:{lineno + 1}"
        if len(toks) == 3:
            a = _lfw_image(root, toks[0], toks[1], where)
            b = _lfw_image(root, toks[0], toks[2], where)
            s = True
        elif len(toks) == 4:
            a = _lfw_image(root, toks[0], toks[1], where)
            b = _lfw_image(root, toks[2], toks[3], where)
            s = False
        else:
            raise ValueError(f"{where}: expected 'name n1 n2' or 'name1 n1 name2 n2', "
                             f"got {lines[lineno]!r}")
        left.append(idx(a))
        right.append(idx(b))
        same.append(s)
    if not same:
        raise ValueError(f"{path}: no pairs found")
    if expected is not None and expected != len(same):
        raise ValueError(f"{path}: header announces {expected} pairs but {len(same)} were read")
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: {len(missing)} image(s) missing under {root}, "
                                f"e.g. {missing[0]}")
    return PairSet(name or path.parent.name or path.stem, FileImageSource(files), left, right, same,
                   source_format="lfw-pairs")


# --------------------------------------------------------------------------- plain lists


_TRUE = {"1", "true", "same", "yes"}
_FALSE = {"0", "false", "diff", "different", "no"}


def read_pair_list(
    path: str | os.PathLike, root: str | os.PathLike | None = None, name: str | None = None
) -> PairSet:
    """Read a plain pair list: lines ``path1 path2 0|1`` (tab-separated if paths have spaces).

    Relative paths are resolved against ``root`` (default: the list's folder); ``#`` starts a
    comment line.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    index: dict[str, int] = {}
    files: list[str] = []
    left: list[int] = []
    right: list[int] = []
    same: list[bool] = []
    for lineno, line, toks in list_rows(path):
        if len(toks) != 3:
            raise ValueError(f"{path}:{lineno}: expected 'path1 path2 0|1', got {line!r}"
                             f"{tab_hint(line, toks, 3)}")
        flag = toks[2].lower()
        if flag not in _TRUE | _FALSE:
            raise ValueError(f"{path}:{lineno}: same/different flag must be 0 or 1, got {toks[2]!r}")
        ids = []
        for t in toks[:2]:
            p = str(Path(t) if os.path.isabs(t) else root / t)
            if p not in index:
                index[p] = len(files)
                files.append(p)
            ids.append(index[p])
        left.append(ids[0])
        right.append(ids[1])
        same.append(flag in _TRUE)
    if not same:
        raise ValueError(f"{path}: no pairs found")
    missing = [p for p in files if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"{path}: {len(missing)} image(s) missing, e.g. {missing[0]}")
    return PairSet(name or path.stem, FileImageSource(files), left, right, same,
                   source_format="pair-list")


# --------------------------------------------------------------------------- dispatch


def _looks_like_lfw(path: Path) -> bool:
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        for line in f:
            toks = line.split()
            if not toks or toks[0].startswith("#"):
                continue
            if all(t.isdigit() for t in toks) and len(toks) <= 2:
                return True  # header "10 300" / "1100"
            # LFW lines have image numbers in 2nd and last place; plain lists have paths there.
            return len(toks) in (3, 4) and toks[1].isdigit() and toks[-1].isdigit()
    return False


def open_pair_set(
    path: str | os.PathLike, root: str | os.PathLike | None = None, name: str | None = None
) -> PairSet:
    """Open any supported verification set.

    ``path`` may be a ``.bin``, an LFW-style ``pairs.txt``, a plain pair list, or a folder
    holding ``pairs.txt`` (LFW layout, images in ``images/`` or next to it).
    """
    p = Path(path)
    if p.is_dir():
        if (p / "pairs.txt").is_file():
            return read_lfw_pairs(p / "pairs.txt", root, name=name or p.name)
        raise FileNotFoundError(f"{p}: a folder given as a pair set must contain pairs.txt")
    if not p.is_file():
        raise FileNotFoundError(f"pair set not found: {p}")
    if p.suffix == ".bin":
        return read_bin(p, name)
    if _looks_like_lfw(p):
        return read_lfw_pairs(p, root, name)
    return read_pair_list(p, root, name)
