"""How much of a face set's appearance is per-image nuisance, scale by scale.

Why: whether a recogniser's accuracy collapses on up-sampled tiny faces depends on where the
identity information of its training faces lives. On real aligned faces most of the variance of
a 7-pixel thumbnail is nuisance (pose, light, background), and the fine detail that vanishes
below ~28 px carries identity only weakly per pixel. A synthetic face set is faithful at a
scale when its *nuisance share* there matches real faces'. The built-in generator's per-image
variation is calibrated with this measure against aligned LFW and CelebA
(``docs/builtin-faces.md``).

Bands, for faces brought to S x S (area resampling, as everywhere in btnet):

* ``thumb{r}``: the r x r thumbnail itself (what a branch for r sees);
* ``detail{r}``: the S x S face minus its r-pixel version up-sampled back (bicubic), i.e. the
  detail an r-pixel camera loses.

Nuisance share = pooled within-identity variance / total variance over all pixels of the band
(1: identity explains nothing pixel-wise, 0: every image of an identity is the same). RMS is
the band's overall strength (grey levels).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from btnet.data.resolution import degrade, downsample

DEFAULT_BANDS: tuple[str, ...] = ("thumb7", "thumb14", "detail14", "detail28")


def _band(face: np.ndarray, band: str, canonical: int) -> np.ndarray:
    m = re.fullmatch(r"(thumb|detail)(\d+)", band)
    if m is None:
        raise ValueError(f"unknown band {band!r}: use thumb<r> or detail<r>")
    kind, r = m.group(1), int(m.group(2))
    if kind == "thumb":
        return downsample(face, r).astype(np.float64).ravel()
    up = degrade(face, r, restore_to=canonical).astype(np.float64)
    return (face.astype(np.float64) - up).ravel()


def nuisance_shares(
    groups: Iterable[Sequence[np.ndarray]],
    bands: Sequence[str] = DEFAULT_BANDS,
    canonical: int = 56,
) -> dict:
    """Per band: ``share`` (within-identity / total variance) and ``rms``, plus the counts.

    ``groups`` yields, per identity, its faces (H x W x 3 uint8, any size; brought to S x S).
    Identities with fewer than two faces are skipped (they have no within-identity variance).
    """
    feats: dict[str, list[np.ndarray]] = {b: [] for b in bands}
    labels: list[int] = []
    n_ids = 0
    for faces in groups:
        faces = list(faces)
        if len(faces) < 2:
            continue
        for face in faces:
            face = np.asarray(face)
            if face.shape[:2] != (canonical, canonical):
                face = downsample(face, canonical)
            for b in bands:
                feats[b].append(_band(face, b, canonical))
            labels.append(n_ids)
        n_ids += 1
    if n_ids < 2:
        raise ValueError("need at least two identities with two or more faces each")
    lab = np.asarray(labels)
    n = len(lab)
    out: dict = {"identities": n_ids, "faces": n, "canonical_size": canonical, "bands": {}}
    for b in bands:
        x = np.stack(feats[b])
        x -= x.mean(0)
        total = float((x**2).sum()) / (n - 1)
        within = 0.0
        for i in range(n_ids):
            xi = x[lab == i]
            within += float(((xi - xi.mean(0)) ** 2).sum())
        within /= n - n_ids
        out["bands"][b] = {"share": within / total if total > 0 else float("nan"),
                           "rms": float(np.sqrt(total / x.shape[1]))}
    return out


def folder_groups(
    root: str | os.PathLike, identities: int = 150, per_identity: int = 6
) -> list[list[np.ndarray]]:
    """The first ``per_identity`` faces of the first ``identities`` identity folders (sorted
    names) that hold at least ``per_identity`` images: a fixed, reproducible sample."""
    from btnet.data.images import is_image_file, read_image

    groups = []
    for d in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        files = sorted(f for f in d.iterdir() if f.is_file() and is_image_file(f))
        if len(files) >= per_identity:
            groups.append([read_image(f) for f in files[:per_identity]])
            if len(groups) == identities:
                break
    if len(groups) < 2:
        raise FileNotFoundError(
            f"{root}: need identity sub-folders with at least {per_identity} images each")
    return groups


def builtin_groups(
    identities: int = 150, per_identity: int = 6, size: int = 56, seed: int = 0, **generator
) -> list[list[np.ndarray]]:
    """The same sample drawn from the built-in generator (training identities)."""
    from btnet.data.synthetic import SyntheticFaces

    faces = SyntheticFaces(identities, per_identity, size=size, seed=seed, **generator)
    return [[faces.render(i, k) for k in range(per_identity)] for i in range(identities)]
