"""``btnet embed``: images, folders and lists of files in, embeddings plus an index file out.

The encoder is anything :func:`btnet.inference.load_encoder` opens: a stored model folder (a
BTNet routes each face to its branch; a plain backbone up-samples), an ONNX export folder (runs
without PyTorch), an arcface_torch ``backbone.pth`` or an ``mm:`` spec. Each image keeps its native size; the
index file says which path served it, so a user can see that a 20-pixel face went to the
14-pixel branch and a 90-pixel one to the trunk.

Images are decoded in chunks, so embedding a large folder never holds all of it in memory.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from btnet.data.images import CorruptImageError, is_image_file, read_image
from btnet.inference.encoding import EncodeResult, RoutedEncoder
from btnet.io.atomic import atomic_write_text, atomic_write_with

log = logging.getLogger(__name__)

LIST_EXTENSIONS = (".txt", ".lst", ".list")
CHUNK = 256


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand image files, folders (recursively, sorted) and list files (one path per line).

    Paths in a list file are relative to the list file's folder; blank lines and lines starting
    with ``#`` are skipped.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and is_image_file(q))
            if not found:
                log.warning("%s: no image files found", p)
            files.extend(found)
        elif p.suffix.lower() in LIST_EXTENSIONS:
            if not p.is_file():
                raise FileNotFoundError(f"list file not found: {p}")
            for line in p.read_text(encoding="utf-8-sig").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    q = Path(line.split("\t")[0])
                    files.append(q if q.is_absolute() else p.parent / q)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such image, folder or list file: {p}")
    return files


# Below this many pixels on the smaller side an image holds no face a recogniser can use
# (the smallest BTNet branch takes 7-pixel faces); embedding it would return a confident-looking
# vector that means nothing.
MIN_IMAGE_SIDE = 4


def _read(path: Path) -> np.ndarray:
    img = read_image(path)
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise CorruptImageError(f"{path}: zero-size image")
    if min(img.shape[:2]) < MIN_IMAGE_SIDE:
        raise CorruptImageError(
            f"{path}: {img.shape[1]}x{img.shape[0]} image is too small to hold a face (the "
            f"minimum is {MIN_IMAGE_SIDE} px on the smaller side)"
        )
    return img


class NonFiniteEmbeddingError(ValueError):
    """The model produced NaN or infinite embeddings: its weights (or the input) are damaged."""


def embed_files(
    encoder: RoutedEncoder,
    files: Sequence[str | Path],
    *,
    batch_size: int = 64,
    flip: bool = False,
    skip_errors: bool = False,
    progress: bool = False,
) -> EncodeResult:
    """Read and embed ``files`` in chunks; unreadable files raise, or are listed if skipped.

    The result's ``files`` are the files embedded, in order; ``failed`` the (file, error) pairs.
    """
    parts: list[EncodeResult] = []
    kept: list[str] = []
    failed: list[tuple[str, str]] = []
    for start in range(0, len(files), CHUNK):
        images = []
        for f in files[start : start + CHUNK]:
            try:
                img = _read(Path(f))
            except (CorruptImageError, FileNotFoundError, OSError) as exc:
                if not skip_errors:
                    raise CorruptImageError(f"{exc} (use --skip-errors to embed the rest)") from exc
                failed.append((str(f), str(exc)))
                continue
            images.append(img)
            kept.append(str(f))
        if images:
            res = encoder.encode(images, batch_size=batch_size, flip=flip, progress=progress)
            bad = ~np.isfinite(res.embeddings).all(axis=1)
            if bad.any():
                first = kept[len(kept) - len(images) + int(np.argmax(bad))]
                raise NonFiniteEmbeddingError(
                    f"{encoder.source or encoder.name}: the model returned NaN or infinite "
                    f"embeddings for {int(bad.sum())} of {len(images)} images (e.g. {first}); its "
                    "weights are probably damaged: nothing was written"
                )
            parts.append(res)
    res = EncodeResult.concat(parts, encoder.embedding_size, encoder.canonical)
    res.files, res.failed = kept, failed
    return res


def index_path_for(out: str | Path, fmt: str = "csv") -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.index.{fmt}")


def write_embeddings(
    out: str | Path,
    result: EncodeResult,
    *,
    fingerprint: str = "",
    index_format: str = "csv",
) -> tuple[Path, Path]:
    """Write ``out`` (.npy or .safetensors) and its index file; both atomically."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".npy":
        atomic_write_with(out, lambda tmp: _save_npy(tmp, result.embeddings))
    elif suffix == ".safetensors":
        from safetensors.numpy import save_file

        tensors = {
            "embeddings": np.ascontiguousarray(result.embeddings),
            "source_size": np.ascontiguousarray(result.sizes),
            "path": np.asarray(result.paths, dtype=np.int32).reshape(-1),
        }
        meta = {"format": "btnet-embeddings", "fingerprint": fingerprint}
        atomic_write_with(out, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    else:
        raise ValueError(f"{out}: output must end in .npy or .safetensors")
    if index_format not in ("csv", "json"):
        raise ValueError(f"index format must be csv or json, got {index_format!r}")
    index = index_path_for(out, index_format)
    files = result.files if result.files is not None else [f"array[{i}]" for i in range(len(result))]
    rows = [
        {
            "row": i,
            "file": files[i],
            "height": int(result.sizes[i, 0]),
            "width": int(result.sizes[i, 1]),
            "path": result.paths[i],
            "branch": result.branch_name(i),
        }
        for i in range(len(files))
    ]
    if index_format == "json":
        doc = {
            "embeddings": out.name,
            "fingerprint": fingerprint,
            "embedding_size": int(result.embeddings.shape[1]),
            "rows": rows,
            "failed": [{"file": f, "error": e} for f, e in result.failed],
        }
        atomic_write_text(index, json.dumps(doc, indent=1) + "\n")
    else:
        buf = io.StringIO()
        cols = ["row", "file", "height", "width", "path", "branch", "error"]
        writer = csv.DictWriter(buf, fieldnames=cols)
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "error": ""})
        for f, e in result.failed:
            writer.writerow({"row": "", "file": f, "error": e})
        atomic_write_text(index, buf.getvalue())
    return out, index


def _save_npy(tmp: Path, arr: np.ndarray) -> None:
    with open(tmp, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)
