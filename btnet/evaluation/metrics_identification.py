"""1:N identification metrics: open-set TPIR/FPIR at rank k, its curve and area, closed-set CMC.

Definitions (QMUL-SurvFace / NIST FRVT): for a threshold ``t`` and a rank ``k``,

* FPIR(t) = fraction of unmated probes whose best gallery score is ``>= t``;
* TPIR(t, k) = fraction of mated probes whose true identity is among the top ``k`` identities
  and whose score against it is ``>= t``.

Galleries are compared per identity: with an image-level gallery an identity scores the maximum
over its images. Ranks are pessimistic under ties: a mate tied with another identity is ranked
behind it, so a scorer cannot gain by emitting equal scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from btnet.evaluation.metrics_verification import trapezoid_area
from btnet.inference.encoding import l2_normalize

DEFAULT_FPIRS: tuple[float, ...] = (0.3, 0.2, 0.1, 0.01)
DEFAULT_CMC_RANKS: tuple[int, ...] = (1, 5, 20)


def gallery_templates(
    features: np.ndarray, ids: np.ndarray, mode: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """Gallery entries to search against.

    ``mode="mean"``: one L2-normalised mean feature per identity (the SurvFace reference);
    ``mode="image"``: every gallery image is its own entry (identity = max over its images).
    """
    ids = np.asarray(ids)
    feats = np.asarray(features, dtype=np.float32)
    if len(feats) != len(ids):
        raise ValueError(f"{len(feats)} gallery features but {len(ids)} ids")
    if mode == "image":
        return feats, ids
    if mode != "mean":
        raise ValueError(f"gallery mode must be 'mean' or 'image', got {mode!r}")
    uniq, inverse = np.unique(ids, return_inverse=True)
    sums = np.zeros((len(uniq), feats.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse.ravel(), feats)
    counts = np.bincount(inverse.ravel(), minlength=len(uniq))[:, None]
    return l2_normalize(sums / counts), uniq


def identity_scores(scores: np.ndarray, gallery_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Collapse (probes x gallery entries) scores to (probes x identities) by the maximum."""
    gallery_ids = np.asarray(gallery_ids)
    uniq, inverse = np.unique(gallery_ids, return_inverse=True)
    inverse = inverse.ravel()
    if len(uniq) == len(gallery_ids):
        order = np.argsort(inverse)
        return np.asarray(scores)[:, order], uniq
    out = np.full((scores.shape[0], len(uniq)), -np.inf, dtype=np.float64)
    for j, col in enumerate(inverse):
        np.maximum(out[:, col], scores[:, j], out=out[:, col])
    return out, uniq


def mate_ranks(
    id_scores: np.ndarray, identities: np.ndarray, probe_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rank (1 = best, pessimistic under ties) and score of each probe's true identity."""
    pos = {v: i for i, v in enumerate(identities.tolist())}
    try:
        cols = np.array([pos[v] for v in np.asarray(probe_ids).tolist()], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"mated probe identity {exc.args[0]!r} is not in the gallery") from None
    mate = id_scores[np.arange(len(cols)), cols]
    ranks = np.sum(id_scores >= mate[:, None], axis=1)
    return ranks.astype(np.int64), mate.astype(np.float64)


@dataclass
class OpenSetCurve:
    """TPIR/FPIR from the strictest threshold (nothing passes) to the most lenient."""

    fpir: np.ndarray
    tpir: np.ndarray
    thresholds: np.ndarray
    rank: int

    def tpir_at(self, fpir_targets: Sequence[float]) -> dict[float, float]:
        """Best TPIR among thresholds whose FPIR does not exceed each target."""
        out = {}
        for target in fpir_targets:
            ok = self.fpir <= target + 1e-12
            out[float(target)] = float(np.max(self.tpir[ok]))
        return out

    def auc(self) -> float:
        """Area under TPIR(FPIR) over FPIR in [0, 1] (trapezoids, as sklearn.metrics.auc)."""
        return trapezoid_area(self.fpir, self.tpir)


def open_set_curve(
    mate_score: np.ndarray, mate_rank: np.ndarray, unmated_top: np.ndarray, rank: int = 20
) -> OpenSetCurve:
    """The TPIR-FPIR curve from mated probes' mate scores/ranks and unmated probes' top scores."""
    mate_score = np.asarray(mate_score, dtype=np.float64)
    unmated_top = np.asarray(unmated_top, dtype=np.float64)
    if len(mate_score) == 0 or len(unmated_top) == 0:
        raise ValueError("open-set evaluation needs mated and unmated probes")
    hit = np.asarray(mate_rank) <= rank
    hit_scores = np.sort(mate_score[hit])
    un = np.sort(unmated_top)
    thr = np.unique(np.concatenate([hit_scores, un]))[::-1]
    tp = len(hit_scores) - np.searchsorted(hit_scores, thr, side="left")
    fp = len(un) - np.searchsorted(un, thr, side="left")
    fpir = np.concatenate([[0.0], fp / len(un)])
    tpir = np.concatenate([[0.0], tp / len(mate_score)])
    return OpenSetCurve(fpir, tpir, np.concatenate([[np.inf], thr]), rank)


def thin_indices(n: int, max_points: int) -> np.ndarray:
    """At most ``max_points`` evenly spread indices of a curve, both ends kept (for storage)."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


def cmc(mate_rank: np.ndarray, ranks: Sequence[int] = DEFAULT_CMC_RANKS) -> dict[int, float]:
    """Closed-set identification rate at each rank (no threshold)."""
    r = np.asarray(mate_rank)
    return {int(k): float(np.mean(r <= k)) for k in ranks}


def cosine_scores(probes: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Cosine similarity matrix of L2-normalised features."""
    return np.asarray(probes, dtype=np.float32) @ np.asarray(gallery, dtype=np.float32).T


def identification_metrics(
    gallery_feats: np.ndarray,
    gallery_ids: np.ndarray,
    mated_feats: np.ndarray,
    mated_ids: np.ndarray,
    unmated_feats: np.ndarray | None,
    rank: int = 20,
    fpir_targets: Sequence[float] = DEFAULT_FPIRS,
    cmc_ranks: Sequence[int] = DEFAULT_CMC_RANKS,
    gallery_mode: str = "mean",
) -> dict:
    """Open-set and closed-set numbers for one encoder's features, JSON-ready.

    Features must be L2-normalised (encoders return them so). Without unmated probes only the
    closed-set CMC is reported.
    """
    g_feats, g_ids = gallery_templates(gallery_feats, gallery_ids, gallery_mode)
    id_sc, identities = identity_scores(cosine_scores(mated_feats, g_feats), g_ids)
    ranks, mate = mate_ranks(id_sc, identities, np.asarray(mated_ids))
    out: dict = {
        "gallery_mode": gallery_mode,
        "n_gallery_identities": int(len(identities)),
        "n_mated": int(len(mate)),
        "cmc": {str(k): v for k, v in cmc(ranks, cmc_ranks).items()},
    }
    if unmated_feats is not None and len(unmated_feats):
        un_sc, _ = identity_scores(cosine_scores(unmated_feats, g_feats), g_ids)
        curve = open_set_curve(mate, ranks, un_sc.max(axis=1), rank)
        out["n_unmated"] = int(len(un_sc))
        out["rank"] = int(rank)
        out["tpir_at_fpir"] = {f"{k:g}": v for k, v in curve.tpir_at(fpir_targets).items()}
        out["auc"] = curve.auc()
        keep = thin_indices(len(curve.fpir), 2000)
        out["curve"] = {"fpir": curve.fpir[keep].tolist(), "tpir": curve.tpir[keep].tolist()}
    return out
