"""Streaming embedding of image sources through any encoder.

Evaluation only needs the :class:`btnet.inference.Encoder` protocol (``encode(images,
batch_size, flip, progress) -> EncodeResult``). Images are decoded, transformed and
encoded chunk by chunk, so a benchmark's pixels are never all in memory: only its embeddings.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from btnet.data.base import ImageSource
from btnet.inference.encoding import Encoder

log = logging.getLogger(__name__)

Transform = Callable[[np.ndarray], np.ndarray]


def embed_source(
    encoder: Encoder,
    source: ImageSource,
    indices: Sequence[int] | np.ndarray | None = None,
    transform: Transform | None = None,
    batch_size: int = 64,
    flip: bool = False,
    progress: bool = True,
    desc: str = "embedding",
    chunk: int | None = None,
    path_counts: Counter | None = None,
    norms_out: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Embeddings (N, D) float32 of ``source[i]`` for ``i`` in ``indices`` (default: all).

    ``transform`` (e.g. degradation to r x r) is applied to each image after decoding. Images are
    handed to the encoder ``chunk`` at a time (default 4 batches); ``path_counts``, if given,
    counts the encoder's reported paths (e.g. which branch served each image); ``norms_out``,
    if given, receives the raw feature norms the encoder reports (one array per chunk).
    """
    idx = np.arange(len(source)) if indices is None else np.asarray(indices, dtype=np.int64)
    chunk = chunk or max(1, 4 * batch_size)
    parts: list[np.ndarray] = []
    bar = tqdm(total=len(idx), desc=desc, unit="img", disable=not progress, leave=False)
    try:
        for start in range(0, len(idx), chunk):
            images = []
            for i in idx[start : start + chunk]:
                img = source[int(i)]
                images.append(transform(img) if transform is not None else img)
            res = encoder.encode(images, batch_size=batch_size, flip=flip, progress=False)
            emb = np.asarray(getattr(res, "embeddings", res), dtype=np.float32)
            if emb.shape[0] != len(images):
                raise ValueError(f"encoder returned {emb.shape[0]} embeddings for {len(images)}")
            if path_counts is not None:
                path_counts.update(str(p) for p in (getattr(res, "paths", None) or []))
            if norms_out is not None:
                norms = getattr(res, "norms", None)
                if norms is None:
                    raise ValueError(f"{type(encoder).__name__} does not report feature norms, "
                                     "which the insightface template convention needs")
                norms_out.append(np.asarray(norms, dtype=np.float32).ravel())
            parts.append(emb)
            bar.update(len(images))
    finally:
        bar.close()
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(parts, axis=0)
