"""Template-based evaluation (IJB-C style): aggregate image features into templates, then score.

A template is a set of images of one subject taken from several media (photos or video frames).
Both conventions aggregate the same way (the IJB-C scripts of insightface): the image features
are averaged within each media, the media averages summed within the template, and the sum
L2-normalised; template pairs are scored by cosine. Averaging per media first stops a long
video from outvoting a single photo. They differ in what goes in and in the 1:1 figure:

``"nist"`` (btnet's default)
    each image feature is the unit-length embedding (times its detector score where the
    protocol has one), so every face counts equally within its media; 1:1 reports **TAR at
    FAR <= f**: the best TAR among the operating points whose FAR does not exceed f (tied
    scores one point), as NIST's IJB-C protocol defines the figure.
``"insightface"``
    insightface's ``eval_ijbc.py`` / ``ijb_11.py`` defaults ``use_norm_score=True`` and
    ``use_detector_score=True``: each image feature is the *raw* network output (length =
    its feature norm, which is small for blurred or non-faces) times its detector score, so
    faces are weighted by norm x score; 1:1 reports **TPR at the nearest FPR**: on
    ``sklearn.metrics.roc_curve(labels, scores)`` (``drop_intermediate=True``), the point whose
    FPR is nearest to f (of equally near points, the one of highest FPR, then highest TPR:
    insightface's ``min`` over ``(|fpr - f|, index)`` of the reversed curve). That FPR may
    exceed f; it is reported beside the TPR.
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
CONVENTIONS: tuple[str, ...] = ("nist", "insightface")
CONVENTION_DESCRIPTIONS = {
    "nist": "unit-length image features (x detector score), media mean, template sum, "
            "L2-normalised; TAR at FAR <= f",
    "insightface": "raw image features (norm kept, use_norm_score) x detector score, media "
                   "mean, template sum, L2-normalised; TPR at the FPR nearest to f "
                   "(sklearn roc_curve points)",
}


def check_convention(convention: str) -> str:
    """The convention name, or a ValueError naming the choices."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown template convention {convention!r}: choose from "
                         f"{', '.join(CONVENTIONS)}")
    return convention


def aggregate_templates(
    features: np.ndarray,
    template_ids: np.ndarray,
    media_ids: np.ndarray,
    weights: np.ndarray | None = None,
    norms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Media-averaged then template-summed, L2-normalised features.

    Each row of ``features`` is first multiplied by its ``norms`` entry (insightface's
    ``use_norm_score``: unit embeddings times their raw norms are the raw features) and by its
    ``weights`` entry (detector score). Returns ``(templates, feats)``: the sorted distinct
    template ids and one row per template.
    """
    feats = np.asarray(features, dtype=np.float64)
    tids = np.asarray(template_ids)
    mids = np.asarray(media_ids)
    if not (len(feats) == len(tids) == len(mids)):
        raise ValueError("features, template ids and media ids must have the same length")
    if norms is not None:
        if len(norms) != len(feats):
            raise ValueError("one feature norm per image is needed")
        feats = feats * np.asarray(norms, dtype=np.float64)[:, None]
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


def tpr_at_nearest_fpr(scores: np.ndarray, labels: np.ndarray,
                       fpr_targets: Sequence[float]) -> dict[float, tuple[float, float]]:
    """insightface's IJB 1:1 figure: ``{f: (tpr, fpr)}`` at the ROC point whose FPR is nearest f.

    The points are ``sklearn.metrics.roc_curve(labels, scores)`` (which drops collinear
    intermediate points), reversed; the first of the reversed points with the smallest
    ``|fpr - f|`` is taken, i.e. of equally near points the one of highest FPR and TPR.
    """
    from sklearn.metrics import roc_curve as sk_roc_curve

    y = np.asarray(labels, dtype=bool)
    if y.all() or not y.any():
        raise ValueError("a ROC needs both genuine and impostor pairs")
    fpr, tpr, _ = sk_roc_curve(y.astype(np.int64), np.asarray(scores, dtype=np.float64))
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    out = {}
    for f in fpr_targets:
        i = int(np.argmin(np.abs(fpr - f)))  # first minimum, as min() over (dist, index)
        out[float(f)] = (float(tpr[i]), float(fpr[i]))
    return out


def template_verification_metrics(
    scores: np.ndarray, labels: np.ndarray, far_targets: Sequence[float] = IJBC_FARS,
    convention: str = "nist",
) -> dict:
    """1:1 over template pairs: TAR at FAR <= f (``nist``) or TPR at the nearest FPR
    (``insightface``), named by key, with the ROC's AUC."""
    check_convention(convention)
    roc = roc_curve(scores, labels)
    out = {
        "convention": convention,
        "n_pairs": int(len(scores)),
        "n_genuine": roc.n_pos,
        "n_impostor": roc.n_neg,
        "roc_auc": roc.auc(),
    }
    if convention == "nist":
        out["tar_at_far"] = {f"{k:g}": v for k, v in tar_at_far(roc, far_targets).items()}
    else:
        near = tpr_at_nearest_fpr(scores, labels, far_targets)
        out["tpr_at_nearest_fpr"] = {f"{k:g}": v[0] for k, v in near.items()}
        out["nearest_fpr"] = {f"{k:g}": v[1] for k, v in near.items()}
    return out


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
