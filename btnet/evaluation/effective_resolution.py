"""The effective-resolution protocol: probes larger in pixels than in information.

Verification (:func:`evaluate_effective_pairs`): for each pair, the first image at full
resolution (S x S, the gallery side) and the second made to hold ``r`` pixels of detail at a
pixel size drawn from ``[r, S]`` (:func:`btnet.data.effective_resolution.effective_resolution_face`:
down-sample to r, degrade, re-sample up). Settings are named ``S&r`` like Table 1's, and the
pair set is renamed ``<name> [effective r, seed N]`` so reports never mix the two protocols.

Identification (:func:`effective_openset`): the probes (mated and unmated) of any open-set
protocol are made the same way; the gallery is left as it is.

Every probe's randomness (its degradation and its pixel size) comes from
``sample_rng(seed, r, index)``: the same seed gives the same probes for every model, another
seed other probes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from btnet.data.base import OpenSetProtocol, PairSet
from btnet.data.effective_resolution import effective_resolution_face
from btnet.data.resolution import sample_rng
from btnet.evaluation.embedding import embed_source
from btnet.evaluation.metrics_identification import thin_indices
from btnet.evaluation.metrics_verification import (
    DEFAULT_FARS,
    check_protocol,
    roc_curve,
    verification_metrics,
)
from btnet.evaluation.verification import (
    Degradation,
    VerificationResult,
    default_protocol,
    pair_scores,
    resolution_transform,
)

log = logging.getLogger(__name__)

_STREAM = 0xEFF0  # keeps effective-resolution draws apart from resolution_transform's


def effective_probe_transform(
    r: int, canonical: int, degradation: Degradation | None, seed: int,
    up_method: str = "bicubic",
) -> Callable[[np.ndarray, int], np.ndarray]:
    """``f(image, index)``: image ``index`` made to hold r pixels at a drawn pixel size."""

    def apply(img: np.ndarray, index: int) -> np.ndarray:
        rng = sample_rng(seed, _STREAM + int(r), int(index))
        return effective_resolution_face(img, r, canonical, rng, degradation, up_method=up_method)

    return apply


class _Indexed:
    """An image source whose items pass through ``fn(image, index)``."""

    def __init__(self, source, fn: Callable[[np.ndarray, int], np.ndarray]):
        self.source, self.fn = source, fn

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.fn(self.source[index], int(index))


def protocol_name(name: str, seed: int) -> str:
    return f"{name} [effective r, seed {seed}]"


def evaluate_effective_pairs(
    encoder,
    pairset: PairSet,
    resolutions: Sequence[int],
    canonical: int,
    model_name: str = "model",
    degradation: Degradation | None = None,
    seed: int = 0,
    n_folds: int = 10,
    far_targets: Sequence[float] = DEFAULT_FARS,
    flip: bool = False,
    batch_size: int = 64,
    progress: bool = True,
    protocol: str | None = None,
) -> list[VerificationResult]:
    """``S&r`` for each effective resolution r: full-resolution first image, second image
    holding r pixels at a pixel size drawn from [r, S]. ``protocol``: the k-fold accuracy rule,
    as in :func:`btnet.evaluation.verification.evaluate_pairs` (None: the set's default)."""
    protocol = check_protocol(protocol) if protocol is not None else default_protocol(pairset)
    if not getattr(encoder, "shared_space", True):
        log.info("%s: no shared space across resolutions; the protocol compares S with r, "
                 "skipped", model_name)
        return []
    dataset = protocol_name(pairset.name, seed)
    left = np.unique(pairset.left)
    gallery = _Indexed(pairset.images, resolution_transform(canonical, canonical))
    emb_left = embed_source(encoder, gallery, left, batch_size=batch_size, flip=flip,
                            progress=progress, desc=f"{model_name} {pairset.name} @S")
    left_rows = emb_left[np.searchsorted(left, pairset.left)]
    right = np.unique(pairset.right)
    results = []
    for r in resolutions:
        src = _Indexed(pairset.images, effective_probe_transform(r, canonical, degradation, seed))
        emb = embed_source(encoder, src, right, batch_size=batch_size, flip=flip,
                           progress=progress, desc=f"{model_name} {pairset.name} @eff{r}")
        scores = pair_scores(left_rows, emb[np.searchsorted(right, pairset.right)])
        m = verification_metrics(scores, pairset.issame, n_folds, far_targets, protocol)
        roc_d: dict = {}
        if pairset.issame.any() and (~pairset.issame).any():
            roc = roc_curve(scores, pairset.issame)
            keep = thin_indices(len(roc.far), 1000)
            roc_d = {"far": roc.far[keep].tolist(), "tar": roc.tar[keep].tolist()}
        log.info("%s %s S&eff%d: %.4f +- %.4f (%s)", model_name, dataset, r,
                 m["accuracy_mean"], m["accuracy_std"], protocol)
        results.append(VerificationResult(model_name, dataset, f"{canonical}&{r}", canonical, r,
                                          m["accuracy_mean"], m["accuracy_std"], m, roc_d))
    return results


def effective_openset(
    protocol: OpenSetProtocol,
    r: int,
    canonical: int,
    degradation: Degradation | None = None,
    seed: int = 0,
) -> OpenSetProtocol:
    """``protocol`` with every probe made to hold ``r`` pixels (gallery unchanged)."""
    mated = _Indexed(protocol.mated, effective_probe_transform(r, canonical, degradation, seed))
    # unmated probes use indices after the mated ones: no two probes share a random stream
    offset = len(protocol.mated)
    unmated_fn = effective_probe_transform(r, canonical, degradation, seed)
    unmated = _Indexed(protocol.unmated, lambda img, i: unmated_fn(img, offset + i))
    extra = {**protocol.extra, "effective_resolution": int(r), "effective_seed": int(seed)}
    return OpenSetProtocol(f"{protocol.name} [effective r={r}, seed {seed}]", protocol.gallery,
                           protocol.gallery_ids, mated, protocol.mated_ids, unmated, extra)
