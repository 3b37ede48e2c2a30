"""1:1 verification metrics: k-fold accuracy (insightface protocol), ROC and TAR at FAR.

Scores are similarities (higher = more alike, e.g. cosine); a pair is declared "same" when its
score is ``>= threshold``. All functions treat tied scores as one operating point, so results do
not depend on the order of equal scores.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_FARS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)

log = logging.getLogger(__name__)


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


def best_threshold(scores: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """The threshold maximising accuracy on these pairs and that accuracy.

    Among equally good thresholds the lowest (most lenient) is taken, which makes the choice
    deterministic; a set with only one class still gets a threshold (accept-all or reject-all).
    """
    thr = candidate_thresholds(scores)
    acc = accuracies_at(scores, issame, thr)
    i = int(np.argmax(acc))
    return float(thr[i]), float(acc[i])


@dataclass
class KFoldResult:
    """Per-fold accuracies with the thresholds learnt on the other folds."""

    fold_accuracies: np.ndarray
    thresholds: np.ndarray
    fold_sizes: np.ndarray

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


def kfold_accuracy(scores: np.ndarray, issame: np.ndarray, n_folds: int = 10) -> KFoldResult:
    """Insightface verification accuracy: threshold chosen on the other folds, applied to each."""
    s, y = _check(scores, issame)
    folds = contiguous_folds(len(s), n_folds)
    accs, thrs = [], []
    single = [i for i, f in enumerate(folds) if len(set(y[f].tolist())) < 2]
    if single:
        log.warning(
            "%d of %d contiguous folds hold only one class (e.g. LFW View-1 files list all "
            "genuine pairs first); accuracy per fold then says little: interleave the pairs or "
            "use a 10-fold file such as pairs.txt", len(single), len(folds))
    for test_idx in folds:
        train = np.ones(len(s), dtype=bool)
        train[test_idx] = False
        thr, _ = best_threshold(s[train], y[train])
        pred = s[test_idx] >= thr
        accs.append(float(np.mean(pred == y[test_idx])))
        thrs.append(thr)
    return KFoldResult(np.array(accs), np.array(thrs), np.array([len(f) for f in folds]))


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
) -> dict:
    """Everything a verification table reports for one score vector, JSON-ready."""
    kf = kfold_accuracy(scores, issame, n_folds)
    out = {
        "accuracy_mean": kf.mean,
        "accuracy_std": kf.std,
        "fold_accuracies": kf.fold_accuracies.tolist(),
        "fold_thresholds": kf.thresholds.tolist(),
        "n_pairs": int(len(np.asarray(scores))),
    }
    y = np.asarray(issame, dtype=bool)
    if y.any() and (~y).any():
        roc = roc_curve(scores, issame)
        out["tar_at_far"] = {f"{k:g}": v for k, v in tar_at_far(roc, far_targets).items()}
        out["roc_auc"] = roc.auc()
    return out
