"""Built-in evaluation sets: a 1:1 verification pair set and a 1:N open-set protocol."""

from __future__ import annotations

import numpy as np

from btnet.data.base import DatasetImages, OpenSetProtocol, PairSet
from btnet.data.synthetic.dataset import SyntheticFaces
from btnet.data.synthetic.specs import BUILTIN_TEST_OFFSET

_TAG_PAIRS = 0xB1A5


def _fold_groups(num_identities: int, folds: int) -> list[np.ndarray]:
    """Identity groups per fold: disjoint when there are enough identities (like LFW's
    people-disjoint folds), otherwise every fold draws from everyone."""
    ids = np.arange(num_identities)
    if num_identities >= 2 * folds:
        return np.array_split(ids, folds)
    return [ids] * folds


def builtin_pairs(
    num_identities: int = 100,
    images_per_identity: int = 10,
    num_pairs: int = 6000,
    size: int = 112,
    seed: int = 0,
    identity_offset: int = BUILTIN_TEST_OFFSET,
    folds: int = 10,
    **generator_kwargs,
) -> PairSet:
    """A balanced 1:1 verification set over built-in test identities.

    Pairs come in ``folds`` contiguous folds (insightface/LFW order: each fold is half genuine
    then half impostor pairs) over identity-disjoint groups. Genuine pairs are distinct
    unordered image pairs, drawn without repetition while enough exist. Everything is fixed by
    ``seed``; ``identity_offset`` keeps the identities away from any training set.
    """
    if images_per_identity < 2:
        raise ValueError("genuine pairs need at least 2 images per identity")
    if num_identities < 2:
        raise ValueError("impostor pairs need at least 2 identities")
    if folds < 1 or num_pairs < 2 * folds:
        raise ValueError(f"need folds >= 1 and at least 2 pairs per fold, got {num_pairs}/{folds}")
    faces = SyntheticFaces(
        num_identities, images_per_identity, size=size, seed=seed,
        identity_offset=identity_offset, **generator_kwargs,
    )
    rng = np.random.default_rng(np.random.SeedSequence([seed, _TAG_PAIRS, identity_offset]))
    k = images_per_identity
    iu, ju = np.triu_indices(k, 1)
    left: list[int] = []
    right: list[int] = []
    same: list[bool] = []
    per_fold = np.full(folds, num_pairs // folds)
    per_fold[: num_pairs % folds] += 1
    for group, n in zip(_fold_groups(num_identities, folds), per_fold):
        n_pos = int(n) // 2 + int(n) % 2
        n_neg = int(n) - n_pos
        cand = np.stack(np.meshgrid(group, np.arange(len(iu)), indexing="ij"), -1).reshape(-1, 2)
        pick = rng.choice(len(cand), n_pos, replace=n_pos > len(cand))
        for ident, c in cand[pick]:
            left.append(int(ident) * k + int(iu[c]))
            right.append(int(ident) * k + int(ju[c]))
            same.append(True)
        for _ in range(n_neg):
            a, b = rng.choice(group, 2, replace=False)
            left.append(int(a) * k + int(rng.integers(k)))
            right.append(int(b) * k + int(rng.integers(k)))
            same.append(False)
    name = f"builtin_pairs(ids={num_identities},per_id={k},size={size},seed={seed})"
    return PairSet(name, DatasetImages(faces), left, right, same)


def builtin_openset(
    num_gallery: int = 100,
    num_unmated: int = 50,
    images_per_identity: int = 6,
    gallery_per_identity: int = 1,
    size: int = 112,
    seed: int = 0,
    identity_offset: int = BUILTIN_TEST_OFFSET + 50_000,
    **generator_kwargs,
) -> OpenSetProtocol:
    """A 1:N open-set protocol (SurvFace style) over built-in identities.

    Gallery identities ``0..num_gallery-1`` enrol their first ``gallery_per_identity`` images;
    their other images are mated probes. Identities ``num_gallery..`` (``num_unmated`` of
    them) are absent from the gallery; all their images are unmated probes. Images are at full
    size ``size``: degrade probes with :mod:`btnet.data.resolution` as the study requires.
    """
    if not 1 <= gallery_per_identity < images_per_identity:
        raise ValueError("need 1 <= gallery_per_identity < images_per_identity")
    if num_gallery < 1 or num_unmated < 0:
        raise ValueError("need at least one gallery identity")
    faces = SyntheticFaces(
        num_gallery + num_unmated, images_per_identity, size=size, seed=seed,
        identity_offset=identity_offset, **generator_kwargs,
    )
    k, g = images_per_identity, gallery_per_identity
    gal = [i * k + j for i in range(num_gallery) for j in range(g)]
    mated = [i * k + j for i in range(num_gallery) for j in range(g, k)]
    unmated = list(range(num_gallery * k, (num_gallery + num_unmated) * k))
    labels = faces.labels
    return OpenSetProtocol(
        name=f"builtin_openset(gallery={num_gallery},unmated={num_unmated},seed={seed})",
        gallery=DatasetImages(faces, gal),
        gallery_ids=labels[gal],
        mated=DatasetImages(faces, mated),
        mated_ids=labels[mated],
        unmated=DatasetImages(faces, unmated),
        extra={"unmated_ids": labels[unmated], "source": "builtin"},
    )

