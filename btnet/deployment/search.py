"""Exact top-k inner-product search: faiss ``IndexFlatIP`` where installed, NumPy otherwise.

Both backends are exact and return the same neighbours (ties aside): scores sorted descending,
ties broken by the lower row index in the NumPy path. Missing neighbours (``k`` larger than the
gallery) are index -1 with score ``-inf`` in both. The NumPy path scans the gallery in chunks,
so its memory is ``queries x chunk`` scores, not ``queries x gallery``.
"""

from __future__ import annotations

import logging

import numpy as np

# faiss logs every CPU-feature probe at INFO; that is noise on a command line.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)

BACKENDS = ("auto", "faiss", "numpy")
CHUNK_ROWS = 65536


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"search backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "faiss" if faiss_available() else "numpy"
    if backend == "faiss" and not faiss_available():
        raise ImportError("the faiss backend needs faiss-cpu: pip install 'btnet[faiss]'")
    return backend


def _check(gallery: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    g = np.ascontiguousarray(gallery, dtype=np.float32)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if g.ndim != 2 or q.ndim != 2:
        raise ValueError("gallery and queries must be 2-D arrays")
    if g.shape[1] != q.shape[1]:
        raise ValueError(f"query dimension {q.shape[1]} != gallery dimension {g.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return g, q


def topk_numpy(
    gallery: np.ndarray, queries: np.ndarray, k: int, chunk_rows: int = CHUNK_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by chunked matrix products; returns (scores Q x k, indices Q x k)."""
    g, q = _check(gallery, queries, k)
    nq = q.shape[0]
    best_s = np.full((nq, k), -np.inf, dtype=np.float32)
    best_i = np.full((nq, k), -1, dtype=np.int64)
    for start in range(0, g.shape[0], chunk_rows):
        scores = q @ g[start : start + chunk_rows].T
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < scores.shape[1] else (
            np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        )
        cand_s = np.concatenate([best_s, np.take_along_axis(scores, part, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, part + start], axis=1)
        # Sort by score descending, then index ascending (missing entries, -1, sort last).
        key_i = np.where(cand_i < 0, np.iinfo(np.int64).max, cand_i)
        order = np.lexsort((key_i, -cand_s), axis=1)[:, :k] if nq else np.zeros((0, k), int)
        best_s = np.take_along_axis(cand_s, order, axis=1)
        best_i = np.take_along_axis(cand_i, order, axis=1)
    return best_s, best_i


def topk_faiss(gallery: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    g, q = _check(gallery, queries, k)
    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    scores, idx = index.search(q, k)
    scores = np.where(idx < 0, -np.inf, scores).astype(np.float32)
    return scores, idx.astype(np.int64)


def topk(
    gallery: np.ndarray, queries: np.ndarray, k: int, backend: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner products of each query against the gallery rows."""
    if resolve_backend(backend) == "faiss":
        return topk_faiss(gallery, queries, k)
    return topk_numpy(gallery, queries, k)
