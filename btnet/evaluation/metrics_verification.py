"""1:1 verification metrics: k-fold accuracy under two named protocols, ROC, TAR@FAR, VAL@FAR.

Scores are cosine similarities of L2-normalised embeddings (higher = more alike).

Two k-fold accuracy protocols, both on contiguous folds (``KFold(shuffle=False)``), each fold
tested with a threshold learnt on the other folds:

``"insightface"``
    exactly ``calculate_roc`` of insightface's ``eval/verification.py``, the computation behind
    the LFW / CFP-FP / AgeDB numbers of papers and of arcface_torch's logs: the squared L2
    distance of the normalised embeddings (``2 - 2 cos``), the fixed grid
    ``np.arange(0, 4, 0.01)``, "same" when ``dist < t``, and the *first* best threshold of the
    grid (``argmax``: the smallest distance, i.e. the strictest one).
``"exact"``
    btnet's finer rule: every threshold that changes a decision (midpoints between distinct
    scores), "same" when ``score >= t``, and among equally good thresholds the lowest score
    (the most lenient one).

On the same scores the two may differ by a fraction of a point (the grid is coarse and the
tie rules point in opposite directions); reports name the protocol used.

Two TAR-at-FAR figures, also named apart: :func:`tar_at_far` (the best TAR among the operating
points of the whole set whose FAR does not exceed the target, ties as one point) and
:func:`val_at_far` (insightface's ``calculate_val``: a threshold interpolated per fold on the
training folds at FAR 1e-3, VAL and FAR measured on the test fold, then averaged).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_FARS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
PROTOCOLS: tuple[str, ...] = ("insightface", "exact")
# insightface eval/verification.py: accuracy grid, VAL@FAR grid and target
INSIGHTFACE_THRESHOLDS = np.arange(0, 4, 0.01)
INSIGHTFACE_VAL_THRESHOLDS = np.arange(0, 4, 0.001)
INSIGHTFACE_VAL_FAR = 1e-3
PROTOCOL_DESCRIPTIONS = {
    "insightface": "insightface eval/verification.py: squared L2 distance of normalised "
                   "embeddings (2 - 2 cos), thresholds np.arange(0, 4, 0.01), same if dist < t, "
                   "first best threshold on the training folds",
    "exact": "btnet exact: cosine score, a threshold between every two distinct scores, "
             "same if score >= t, lowest of the best thresholds on the training folds",
}

log = logging.getLogger(__name__)


def check_protocol(protocol: str) -> str:
    """The protocol name, or a ValueError naming the choices."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown verification protocol {protocol!r}: choose from "
                         f"{', '.join(PROTOCOLS)}")
    return protocol


def trapezoid_area(x: np.ndarray, y: np.ndarray) -> float:
    """Area under a polyline (numpy-version independent ``trapz``)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _check(scores: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(issame, dtype=bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"{len(s)} scores but {len(y)} labels")
    if len(s) == 0:
        raise ValueError("no pairs to evaluate")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinity")
    return s, y


def insightface_distances(scores: np.ndarray) -> np.ndarray:
    """Squared L2 distances of unit vectors from their cosine: ``|a - b|^2 = 2 - 2 cos``.

    In float64 this equals insightface's ``np.sum(np.square(e1 - e2), 1)`` to about 1e-16, far
    below the 0.01 grid spacing.
    """
    return 2.0 - 2.0 * np.asarray(scores, dtype=np.float64)


def candidate_thresholds(scores: np.ndarray) -> np.ndarray:
    """Every threshold that changes a decision: below all scores, between neighbours, above all.

    Midpoints keep a threshold learnt on one fold from coinciding with a tied score of another.
    """
    u = np.unique(np.asarray(scores, dtype=np.float64))
    mids = (u[:-1] + u[1:]) / 2.0
    return np.concatenate([[u[0] - 1.0], mids, [u[-1] + 1.0]])


def accuracies_at(scores: np.ndarray, issame: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Accuracy of the rule ``score >= t`` for each ``t`` (vectorised with sorted scores)."""
    s, y = _check(scores, issame)
    pos = np.sort(s[y])
    neg = np.sort(s[~y])
    t = np.asarray(thresholds, dtype=np.float64)
    true_accepts = len(pos) - np.searchsorted(pos, t, side="left")
    true_rejects = np.searchsorted(neg, t, side="left")
    return (true_accepts + true_rejects) / len(s)


def distance_accuracies_at(dist: np.ndarray, issame: np.ndarray,
                           thresholds: np.ndarray) -> np.ndarray:
    """Accuracy of the rule ``dist < t`` for each ``t``: insightface's ``calculate_accuracy``."""
    d = np.asarray(dist, dtype=np.float64)
    y = np.asarray(issame, dtype=bool)
    t = np.asarray(thresholds, dtype=np.float64)
    true_accepts = np.searchsorted(np.sort(d[y]), t, side="left")  # genuine with d < t
    false_accepts = np.searchsorted(np.sort(d[~y]), t, side="left")
    true_rejects = int((~y).sum()) - false_accepts
    return (true_accepts + true_rejects) / d.size


def best_threshold(scores: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """The threshold maximising accuracy on these pairs and that accuracy (``exact`` rule).

    Among equally good thresholds the lowest (most lenient) is taken, which makes the choice
    deterministic; a set with only one class still gets a threshold (accept-all or reject-all).
    """
    thr = candidate_thresholds(scores)
    acc = accuracies_at(scores, issame, thr)
    i = int(np.argmax(acc))
    return float(thr[i]), float(acc[i])


def best_grid_threshold(dist: np.ndarray, issame: np.ndarray,
                        thresholds: np.ndarray = INSIGHTFACE_THRESHOLDS) -> tuple[float, float]:
    """insightface's choice: the first grid threshold of highest ``dist < t`` accuracy."""
    acc = distance_accuracies_at(dist, issame, thresholds)
    i = int(np.argmax(acc))
    return float(thresholds[i]), float(acc[i])


@dataclass
class KFoldResult:
    """Per-fold accuracies with the thresholds learnt on the other folds.

    ``thresholds`` are cosine-score thresholds (accept if ``score >= t``) under ``"exact"`` and
    squared-L2-distance thresholds (accept if ``2 - 2 cos < t``) under ``"insightface"``.
    """

    fold_accuracies: np.ndarray
    thresholds: np.ndarray
    fold_sizes: np.ndarray
    protocol: str = "exact"

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_accuracies))

    @property
    def std(self) -> float:
        """Population std (``np.std``), as insightface reports it."""
        return float(np.std(self.fold_accuracies))


def contiguous_folds(n: int, n_folds: int) -> list[np.ndarray]:
    """Index arrays of ``n_folds`` contiguous folds; the first ``n % n_folds`` get one extra.

    This is the split of ``sklearn.model_selection.KFold(shuffle=False)`` that insightface uses.
    """
    if n_folds < 2:
        raise ValueError("n_folds must be at least 2")
    if n < n_folds:
        raise ValueError(f"{n} pairs cannot be split into {n_folds} folds")
    return np.array_split(np.arange(n), n_folds)


def fold_splits(n: int, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, test)`` index pairs; ``n_folds = 1`` trains and tests on every pair.

    The single "fold" is insightface's ``LFold(n_splits=1)``: the threshold is chosen on the
    very pairs it is scored on, so that accuracy is optimistic.
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be at least 1, got {n_folds}")
    if n_folds == 1:
        every = np.arange(n)
        return [(every, every)]
    folds = contiguous_folds(n, n_folds)
    out = []
    for test in folds:
        train = np.ones(n, dtype=bool)
        train[test] = False
        out.append((np.flatnonzero(train), test))
    return out


def _warn_single_class(y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]) -> None:
    single = [i for i, (_, test) in enumerate(splits) if len(set(y[test].tolist())) < 2]
    if single and len(splits) > 1:
        log.warning(
            "%d of %d contiguous folds hold only one class (e.g. LFW View-1 files list all "
            "genuine pairs first); accuracy per fold then says little: interleave the pairs or "
            "use a 10-fold file such as pairs.txt", len(single), len(splits))


def kfold_accuracy(scores: np.ndarray, issame: np.ndarray, n_folds: int = 10,
                   protocol: str = "insightface") -> KFoldResult:
    """k-fold verification accuracy: threshold chosen on the other folds, applied to each.

    ``protocol="insightface"`` returns exactly insightface's per-fold accuracies for cosine
    scores of normalised embeddings (and so its mean and population std); ``"exact"`` uses
    btnet's midpoint thresholds (see the module docstring for both rules).
    """
    check_protocol(protocol)
    s, y = _check(scores, issame)
    splits = fold_splits(len(s), n_folds)
    _warn_single_class(y, splits)
    accs, thrs = [], []
    if protocol == "insightface":
        dist = insightface_distances(s)
        for train, test in splits:
            thr, _ = best_grid_threshold(dist[train], y[train])
            accs.append(float(distance_accuracies_at(dist[test], y[test], [thr])[0]))
            thrs.append(thr)
    else:
        for train, test in splits:
            thr, _ = best_threshold(s[train], y[train])
            accs.append(float(np.mean((s[test] >= thr) == y[test])))
            thrs.append(thr)
    return KFoldResult(np.array(accs), np.array(thrs),
                       np.array([len(test) for _, test in splits]), protocol)


# --------------------------------------------------------------------------- VAL@FAR


def legacy_slinear(x: np.ndarray, y: np.ndarray, at: float) -> float:
    """``interp1d(x, y, kind="slinear")(at)`` as scipy computed it before it refused duplicates.

    insightface's ``calculate_val`` interpolates the threshold at the target FAR from the
    training FARs of its 4,000 grid thresholds, which repeat (FAR stays 0 until the first
    impostor is accepted). Since scipy PR 16780 (August 2022, after scipy 1.9.0)
    ``interp1d(kind="slinear")`` raises "Expect x to not have duplicates" there; before, it
    built the linear B-spline with knots ``[x0, x..., x_last]`` and coefficients ``y`` and
    evaluated it. That is what
    this computes, operation for operation (de Boor for degree 1): at ``x[i] <= at < x[i+1]``,
    with ``i`` the *last* index at or below ``at``, the line from ``(x[i], y[i])`` to
    ``(x[i+1], y[i+1])``; i.e. from the largest threshold whose FAR is still ``x[i]`` to the
    smallest one with the next FAR. ``x`` must be non-decreasing (FAR is, in the threshold).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < 2 or not x[0] <= at <= x[-1]:
        raise ValueError(f"{at} is outside the interpolation range [{x[0]}, {x[-1]}]")
    i = int(np.searchsorted(x, at, side="right")) - 1
    i = min(i, len(x) - 2)  # at == x[-1]: scipy evaluates the last interval
    xa, xb = x[i], x[i + 1]
    if xb == xa:  # a zero-length last interval: both basis values are 0 in scipy's recurrence
        return 0.0
    w = 1.0 / (xb - xa)
    return float(y[i] * (w * (xb - at)) + y[i + 1] * (w * (at - xa)))


def _val_far(dist: np.ndarray, y: np.ndarray, threshold: float) -> tuple[float, float]:
    accept = dist < threshold
    return float(np.sum(accept & y)) / float(np.sum(y)), float(np.sum(accept & ~y)) / float(
        np.sum(~y))


def val_at_far(scores: np.ndarray, issame: np.ndarray, far_target: float = INSIGHTFACE_VAL_FAR,
               n_folds: int = 10,
               thresholds: np.ndarray = INSIGHTFACE_VAL_THRESHOLDS) -> dict:
    """insightface's VAL@FAR (``calculate_val``), JSON-ready.

    Per fold: the training FAR of every grid threshold (``dist < t``); if the largest reaches
    ``far_target`` the threshold is interpolated there (:func:`legacy_slinear`), otherwise it
    is 0 (nothing accepted); VAL (genuine accepted) and FAR of the test fold at it. Returns
    ``val_mean``, ``val_std`` (population) and ``far_mean`` over folds, and the per-fold values.
    Where a fold lacks genuine or impostor pairs, insightface divides by zero; btnet reports
    ``None`` with the reason instead.
    """
    s, y = _check(scores, issame)
    dist = insightface_distances(s)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    out: dict = {"far_target": float(far_target), "n_folds": int(n_folds), "val_mean": None,
                 "val_std": None, "far_mean": None}
    splits = fold_splits(len(s), n_folds)
    for k, (train, test) in enumerate(splits):
        for part, idx in (("training", train), ("test", test)):
            if y[idx].all() or not y[idx].any():
                which = "impostor" if y[idx].all() else "genuine"
                out["undefined"] = (f"the {part} pairs of fold {k + 1} hold no {which} pair "
                                    f"(insightface's calculate_val divides by zero there)")
                return out
    vals, fars, thrs = [], [], []
    for train, test in splits:
        d_train, y_train = dist[train], y[train]
        false_accepts = np.searchsorted(np.sort(d_train[~y_train]), thresholds, side="left")
        far_train = false_accepts / float(np.sum(~y_train))
        if np.max(far_train) >= far_target:
            thr = legacy_slinear(far_train, thresholds, far_target)
        else:
            thr = 0.0
        v, f = _val_far(dist[test], y[test], thr)
        vals.append(v)
        fars.append(f)
        thrs.append(thr)
    out.update(val_mean=float(np.mean(vals)), val_std=float(np.std(vals)),
               far_mean=float(np.mean(fars)), fold_val=vals, fold_far=fars,
               fold_thresholds=thrs)
    return out


@dataclass
class RocCurve:
    """Operating points from the strictest threshold (+inf: nothing accepted) to accept-all."""

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray
    n_pos: int = 0
    n_neg: int = 0
    extra: dict = field(default_factory=dict)

    def auc(self) -> float:
        return trapezoid_area(self.far, self.tar)


def roc_curve(scores: np.ndarray, issame: np.ndarray) -> RocCurve:
    """ROC with one point per distinct score (ties accepted or rejected together)."""
    s, y = _check(scores, issame)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("a ROC needs both genuine and impostor pairs")
    thr = np.unique(s)[::-1]  # descending
    pos = np.sort(s[y])
    neg = np.sort(s[~y])
    tp = n_pos - np.searchsorted(pos, thr, side="left")
    fp = n_neg - np.searchsorted(neg, thr, side="left")
    far = np.concatenate([[0.0], fp / n_neg])
    tar = np.concatenate([[0.0], tp / n_pos])
    return RocCurve(far, tar, np.concatenate([[np.inf], thr]), n_pos, n_neg)


def tar_at_far(curve: RocCurve, far_targets: Sequence[float]) -> dict[float, float]:
    """Best TAR among operating points whose FAR does not exceed each target."""
    out = {}
    for target in far_targets:
        ok = curve.far <= target + 1e-12
        out[float(target)] = float(np.max(curve.tar[ok]))
    return out


def verification_metrics(
    scores: np.ndarray,
    issame: np.ndarray,
    n_folds: int = 10,
    far_targets: Sequence[float] = DEFAULT_FARS,
    protocol: str = "insightface",
) -> dict:
    """Everything a verification table reports for one score vector, JSON-ready.

    ``accuracy_*`` follow ``protocol``; ``tar_at_far`` is the exact whole-set TAR at FAR <= f
    and ``val_at_far`` insightface's per-fold VAL@FAR=1e-3, whatever the protocol.
    """
    kf = kfold_accuracy(scores, issame, n_folds, protocol)
    out = {
        "protocol": protocol,
        "n_folds": int(n_folds),
        "accuracy_mean": kf.mean,
        "accuracy_std": kf.std,
        "fold_accuracies": kf.fold_accuracies.tolist(),
        "fold_thresholds": kf.thresholds.tolist(),
        "threshold_kind": ("squared L2 distance, same if dist < t" if protocol == "insightface"
                           else "cosine score, same if score >= t"),
        "n_pairs": int(len(np.asarray(scores))),
    }
    y = np.asarray(issame, dtype=bool)
    if y.any() and (~y).any():
        roc = roc_curve(scores, issame)
        out["tar_at_far"] = {f"{k:g}": v for k, v in tar_at_far(roc, far_targets).items()}
        out["roc_auc"] = roc.auc()
    out["val_at_far"] = val_at_far(scores, issame, n_folds=n_folds)
    return out
