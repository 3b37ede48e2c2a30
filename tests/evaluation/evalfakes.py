"""Fakes shared by the evaluation tests: a cheap encoder and synthetic identities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from btnet.data.base import ListImageSource, PairSet


@dataclass
class FakeResult:
    embeddings: np.ndarray
    paths: list[str]


class FakeEncoder:
    """Any-size image -> 8x8 box average -> fixed random projection -> L2 normalised.

    Low-frequency identity patterns survive down-sampling, so it behaves like a (very) robust
    recogniser; it records how many images it saw per call to check streaming.
    """

    def __init__(self, dim: int = 32, seed: int = 0, grid: int = 8, noise: float = 0.0):
        rng = np.random.default_rng(seed)
        self.proj = rng.standard_normal((grid * grid * 3, dim)).astype(np.float32)
        self.grid = grid
        self.noise = noise
        self.rng = np.random.default_rng(seed + 1)
        self.calls: list[int] = []
        self.sizes: list[tuple[int, int]] = []

    def encode(self, images, batch_size=64, flip=False, progress=False):
        self.calls.append(len(images))
        feats = []
        for img in images:
            self.sizes.append(img.shape[:2])
            small = Image.fromarray(img).resize((self.grid, self.grid), Image.Resampling.BOX)
            x = np.asarray(small, dtype=np.float32)
            if flip:
                x = x + x[:, ::-1]
            v = (x.ravel() - x.mean()) @ self.proj
            if self.noise:
                v = v + self.noise * np.linalg.norm(v) * self.rng.standard_normal(v.shape)
            feats.append(v)
        emb = np.asarray(feats, dtype=np.float32).reshape(len(images), -1)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return FakeResult(emb, [f"{h}x{w}" for h, w in (im.shape[:2] for im in images)])


def identity_faces(n_ids: int, per_id: int, size: int = 56, seed: int = 0, noise: float = 12.0):
    """Synthetic "faces": a smooth random pattern per identity plus per-image noise."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for k in range(n_ids):
        base = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        big = np.asarray(Image.fromarray(base).resize((size, size), Image.Resampling.BICUBIC),
                         dtype=np.float32)
        for _ in range(per_id):
            im = big + rng.normal(0, noise, big.shape)
            images.append(np.clip(im, 0, 255).astype(np.uint8))
            labels.append(k)
    return images, np.array(labels)


def synthetic_pairset(n_ids: int = 20, per_id: int = 3, n_pairs: int = 60, seed: int = 0,
                      size: int = 56) -> PairSet:
    images, labels = identity_faces(n_ids, per_id, size=size, seed=seed)
    rng = np.random.default_rng(seed + 7)
    left, right, same = [], [], []
    for k in range(n_pairs):
        a = int(rng.integers(len(images)))
        if k % 2 == 0:
            cands = np.flatnonzero((labels == labels[a]) & (np.arange(len(labels)) != a))
        else:
            cands = np.flatnonzero(labels != labels[a])
        b = int(rng.choice(cands))
        left.append(a)
        right.append(b)
        same.append(labels[a] == labels[b])
    return PairSet("synthetic", ListImageSource(images), left, right, same)
