"""The encoder every backend shares: route -> resize -> batch -> (flip) -> L2-normalise.

A recogniser in btnet is used through one :class:`Encoder` protocol and returns one
:class:`EncodeResult`, whether PyTorch or onnxruntime runs it. What differs between backends is
only "run path r on this batch", a :class:`PathRunner`; everything else (which path serves a
face of a given size, resizing it to that path's resolution, grouping by path, flip fusion,
normalisation) is :class:`RoutedEncoder`, written once.

This module imports neither PyTorch nor ``btnet.models`` internals (the selector is plain
Python), so an ONNX export can be served where only numpy, Pillow and onnxruntime are installed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from btnet.data.resolution import fit_to
from btnet.models.selection import BranchSelector

CHUNK = 1024  # images resized at a time: a large input list is never all resized in memory


def l2_normalize(x: np.ndarray, eps: float = 1e-12, dtype: type = np.float32) -> np.ndarray:
    """Each row (last axis) scaled to unit length: cosine similarity is every score in btnet.

    Computed and returned in ``dtype`` (float32, what embeddings are stored in; float64 for
    averaged templates that are cast afterwards). All-zero rows stay zero.
    """
    x = np.asarray(x, dtype=dtype)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def normalise_batch(images: Sequence[np.ndarray]) -> np.ndarray:
    """Equal-size uint8 HxWx3 RGB images -> float32 N x 3 x H x W in [-1, 1] (``x / 127.5 - 1``).

    The numpy twin of :func:`btnet.data.transforms.to_tensor`, bit for bit and in the same
    memory layout (an NCHW view of channels-last data), so PyTorch runs the same kernels it ran
    before this loop was shared.
    """
    if len(images) == 0:
        raise ValueError("normalise_batch got an empty list of images")
    x = np.stack([np.asarray(im) for im in images])
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected HxWx3 RGB images of one size, got shape {x.shape}")
    return (x.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)


def mirror(x: np.ndarray) -> np.ndarray:
    """The horizontally flipped batch, in the same layout as :func:`normalise_batch`'s."""
    nhwc = x.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(nhwc[:, :, ::-1]).transpose(0, 3, 1, 2)


@dataclass
class EncodeResult:
    """Embeddings of a set of faces and how each was served.

    ``embeddings``: N x D float32, L2-normalised. ``paths``: the input resolution of the path
    that served each face (``canonical`` = the trunk). ``norms``: L2 norms of the raw
    (flip-fused) outputs before normalisation (insightface's templates weight faces by them).
    ``sizes``: N x 2 source height, width. ``files`` and ``failed`` are filled when the faces
    came from files (``btnet embed``).
    """

    embeddings: np.ndarray
    paths: list[int]
    norms: np.ndarray | None = None
    sizes: np.ndarray | None = None
    canonical: int | None = None
    files: list[str] | None = None
    failed: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.embeddings)

    def branch_name(self, i: int) -> str:
        """``trunk`` or ``branch_r<r>`` for face ``i`` (the index files' ``branch`` column)."""
        p = self.paths[i]
        return "trunk" if p == self.canonical else f"branch_r{p}"

    @classmethod
    def concat(cls, parts: Sequence[EncodeResult], embedding_size: int, canonical: int) -> EncodeResult:
        """One result from several chunks' (an empty list gives zero rows)."""
        if not parts:
            return cls(np.zeros((0, embedding_size), np.float32), [], np.zeros(0, np.float32),
                       np.zeros((0, 2), np.int32), canonical)

        def joined(field: str, dtype: type) -> np.ndarray | None:
            arrays = [getattr(p, field) for p in parts]
            return None if any(a is None for a in arrays) else np.concatenate(arrays).astype(dtype)

        return cls(
            np.concatenate([p.embeddings for p in parts]).astype(np.float32, copy=False),
            [int(r) for p in parts for r in p.paths],
            joined("norms", np.float32),
            joined("sizes", np.int32),
            canonical,
        )


@runtime_checkable
class Encoder(Protocol):
    """What evaluation, galleries and ``btnet embed`` need from a recogniser."""

    name: str
    canonical: int
    embedding_size: int
    shared_space: bool  # False where different sizes land in unrelated spaces (phi_mm)

    def encode(
        self,
        images: Sequence[np.ndarray],
        batch_size: int = 64,
        flip: bool = False,
        progress: bool = False,
    ) -> EncodeResult: ...


class PathRunner(Protocol):
    """A backend: run the path for input resolution ``size`` on a float32 NCHW batch."""

    def run(self, size: int, batch: np.ndarray) -> np.ndarray:
        """Raw (unnormalised) N x D embeddings."""
        ...


class RoutedEncoder:
    """Any face size in, one embedding per face out, through a :class:`PathRunner`.

    ``selector`` decides the path for a face of H x W pixels; the face is resized to that path's
    resolution (area down-sampling, bicubic up-sampling: :func:`btnet.data.resolution.fit_to`),
    faces are grouped by path and run ``batch_size`` at a time. An up-sampling baseline is the
    one-path case: every face goes to the canonical size.

    Loaders also record ``fingerprint`` (the embedding space: see
    :mod:`btnet.io.fingerprint`), ``source`` and ``backend`` for galleries and output files.
    """

    def __init__(
        self,
        runner: PathRunner,
        selector: BranchSelector,
        *,
        canonical: int,
        embedding_size: int,
        name: str,
        served: Sequence[int] | None = None,
        shared_space: bool = True,
        backend: str = "torch",
    ):
        served = tuple(sorted(int(r) for r in (served if served is not None else selector.paths)))
        missing = set(selector.paths) - set(served)
        if missing:
            raise ValueError(f"selector routes to {sorted(missing)}, which this model lacks")
        self.runner = runner
        self.selector = selector
        self.canonical = int(canonical)
        self.embedding_size = int(embedding_size)
        self.name = name
        self.served = served
        self.shared_space = shared_space
        self.backend = backend
        self.source = ""
        self._fingerprint: str | Callable[[], str] = ""

    @property
    def paths(self) -> tuple[int, ...]:
        """Input resolutions the model serves (branches and the canonical size)."""
        return self.served

    @property
    def fingerprint(self) -> str:
        """``sha256:...`` of the model's embedding space ("" for a model built in memory)."""
        if callable(self._fingerprint):
            self._fingerprint = self._fingerprint()
        return self._fingerprint

    def replace_selector(self, selector: BranchSelector) -> RoutedEncoder:
        """The same model (and backend state) behind another routing policy (Table 2).

        Multi-path encoders expose it as ``with_selector``, which evaluation looks for to
        compare policies; one-path baselines and phi_mm have nothing to vary.
        """
        missing = set(selector.paths) - set(self.served)
        if missing:
            raise ValueError(f"selector routes to {sorted(missing)}, which this model lacks")
        enc = copy.copy(self)
        enc.selector = selector
        return enc

    def route(self, height: int, width: int) -> int:
        return self.selector.select(height, width)

    def embed_batch(self, size: int, images: Sequence[np.ndarray], flip: bool = False) -> np.ndarray:
        """Raw embeddings of equal-size faces already at resolution ``size`` (flip-fused)."""
        x = normalise_batch(images)
        emb = self.runner.run(size, x)
        if flip:
            emb = emb + self.runner.run(size, mirror(x))
        return emb

    def encode(
        self,
        images: Sequence[np.ndarray],
        batch_size: int = 64,
        flip: bool = False,
        progress: bool = False,
    ) -> EncodeResult:
        n = len(images)
        out = np.zeros((n, self.embedding_size), dtype=np.float32)
        paths = [0] * n
        sizes = np.zeros((n, 2), dtype=np.int32)
        bar = tqdm(total=n, desc=f"embed {self.name}", unit="img", disable=not progress, leave=False)
        for start in range(0, n, CHUNK):
            groups: dict[int, list[tuple[int, np.ndarray]]] = {}
            for i in range(start, min(n, start + CHUNK)):
                img = images[i]
                sizes[i] = img.shape[:2]
                path = self.route(*img.shape[:2])
                paths[i] = path
                groups.setdefault(path, []).append((i, fit_to(img, path)))
            for path, items in groups.items():
                for b in range(0, len(items), batch_size):
                    part = items[b : b + batch_size]
                    out[[i for i, _ in part]] = self.embed_batch(path, [im for _, im in part], flip)
                    bar.update(len(part))
        bar.close()
        norms = np.linalg.norm(out, axis=1).astype(np.float32)
        return EncodeResult(l2_normalize(out), paths, norms, sizes, self.canonical)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, paths={self.served}, backend={self.backend})"
