"""Template-based evaluation (IJB-C style): aggregate image features into templates, then score.

A template is a set of images of one subject taken from several media (photos or video frames).
Following the IJB-C reference evaluation used by insightface: features (optionally weighted, e.g.
by detector score) are averaged within each media, the media averages are summed within the
template, and the sum is L2-normalised. Averaging per media first stops a long video from
outvoting a single photo.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from btnet.evaluation.metrics_identification import (
    DEFAULT_CMC_RANKS,
    DEFAULT_FPIRS,
    cmc,
    cosine_scores,
    identity_scores,
    l2_normalize,
    mate_ranks,
    open_set_curve,
)
from btnet.evaluation.metrics_verification import roc_curve, tar_at_far

IJBC_FARS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def aggregate_templates(
    features: np.ndarray,
    template_ids: np.ndarray,
    media_ids: np.ndarray,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Media-averaged then template-summed, L2-normalised features.

    Returns ``(templates, feats)``: the sorted distinct template ids and one row per template.
    """
    feats = np.asarray(features, dtype=np.float64)
    tids = np.asarray(template_ids)
    mids = np.asarray(media_ids)
    if not (len(feats) == len(tids) == len(mids)):
        raise ValueError("features, template ids and media ids must have the same length")
    if weights is not None:
        feats = feats * np.asarray(weights, dtype=np.float64)[:, None]
    templates, t_inv = np.unique(tids, return_inverse=True)
    t_inv = t_inv.ravel()
    # (template, media) groups: a media id shared by two templates is two separate groups
    pair_keys = np.stack([t_inv, np.unique(mids, return_inverse=True)[1].ravel()], axis=1)
    groups, g_inv = np.unique(pair_keys, axis=0, return_inverse=True)
    g_inv = g_inv.ravel()
    sums = np.zeros((len(groups), feats.shape[1]))
    np.add.at(sums, g_inv, feats)
    media_means = sums / np.bincount(g_inv, minlength=len(groups))[:, None]
    out = np.zeros((len(templates), feats.shape[1]))
    np.add.at(out, groups[:, 0], media_means)
    return templates, l2_normalize(out)


def template_pair_scores(
    templates: np.ndarray, feats: np.ndarray, t1: np.ndarray, t2: np.ndarray
) -> np.ndarray:
    """Cosine scores of template pairs given by ids."""
    pos = {v: i for i, v in enumerate(np.asarray(templates).tolist())}
    try:
        a = np.array([pos[v] for v in np.asarray(t1).tolist()], dtype=np.int64)
        b = np.array([pos[v] for v in np.asarray(t2).tolist()], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"template {exc.args[0]!r} of a pair has no images") from None
    return np.sum(feats[a] * feats[b], axis=1)


def template_verification_metrics(
    scores: np.ndarray, labels: np.ndarray, far_targets: Sequence[float] = IJBC_FARS
) -> dict:
    """1:1 TAR@FAR over template pairs."""
    roc = roc_curve(scores, labels)
    return {
        "n_pairs": int(len(scores)),
        "n_genuine": roc.n_pos,
        "n_impostor": roc.n_neg,
        "tar_at_far": {f"{k:g}": v for k, v in tar_at_far(roc, far_targets).items()},
        "roc_auc": roc.auc(),
    }


def template_identification_metrics(
    gallery_feats: np.ndarray,
    gallery_subjects: np.ndarray,
    probe_feats: np.ndarray,
    probe_subjects: np.ndarray,
    rank: int = 20,
    fpir_targets: Sequence[float] = DEFAULT_FPIRS,
    cmc_ranks: Sequence[int] = DEFAULT_CMC_RANKS,
) -> dict:
    """1:N over templates; probes whose subject is not enrolled are the non-mated searches.

    FPIR is the NIST one: the fraction of non-mated searches whose top candidate's score passes
    the threshold. Several gallery templates of one subject count as one candidate (max score).
    """
    g_subj = np.asarray(gallery_subjects)
    p_subj = np.asarray(probe_subjects)
    mated = np.isin(p_subj, g_subj)
    sc, identities = identity_scores(cosine_scores(probe_feats, gallery_feats), g_subj)
    out: dict = {"n_mated": int(mated.sum()), "n_nonmated": int((~mated).sum())}
    if not mated.any():
        raise ValueError("no probe template belongs to an enrolled subject")
    ranks, mate = mate_ranks(sc[mated], identities, p_subj[mated])
    out["cmc"] = {str(k): v for k, v in cmc(ranks, cmc_ranks).items()}
    if (~mated).any():
        curve = open_set_curve(mate, ranks, sc[~mated].max(axis=1), rank)
        out["rank"] = int(rank)
        out["tpir_at_fpir"] = {f"{k:g}": v for k, v in curve.tpir_at(fpir_targets).items()}
        out["auc"] = curve.auc()
    return out
