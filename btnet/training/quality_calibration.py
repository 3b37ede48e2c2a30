"""Calibrate the quality estimator of :mod:`btnet.models.quality` on *training* faces.

Each sample is a training face made to hold ``r`` pixels of detail (r drawn log-uniformly from
``[r_min, S]``), degraded with probability ``p_degrade`` (blur, noise, JPEG) and re-sampled to a
pixel size drawn from ``[r, S]`` with a re-sampling filter drawn from bicubic, bilinear and
Lanczos (:func:`btnet.data.effective_resolution.effective_resolution_face`). Faces come from the model's training data (built-in
faces or a training folder), never from an evaluation set: the evaluation protocol applies the
same kind of degradation to faces the estimator has not seen.

Everything is drawn from ``seed``, so a calibration is reproducible; it is stored in the model
folder's ``model.json`` (:func:`btnet.inference.quality_routing.save_quality_selector`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from btnet.data.degradation import SurveillanceDegradation
from btnet.data.effective_resolution import effective_resolution_face
from btnet.data.resolution import sample_rng
from btnet.models.quality import (
    QualitySelector,
    ResolutionEstimator,
    spectral_features,
)
from btnet.models.selection import BranchSelector

log = logging.getLogger(__name__)

UP_METHODS = ("bicubic", "bilinear", "lanczos")
_STREAM = 0x9A11  # the epoch slot of sample_rng, kept apart from training augmentation


@dataclass(frozen=True)
class CalibrationSpec:
    samples: int = 3000
    r_min: int = 4
    p_degrade: float = 0.7
    c: float = 1.0  # inverse L2 strength of the logistic regression
    seed: int = 0
    holdout: float = 0.2  # share of samples kept out of the fit to report its error


def calibration_samples(
    faces: Sequence[np.ndarray],
    canonical: int,
    spec: CalibrationSpec = CalibrationSpec(),
    degradation: SurveillanceDegradation | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(features, log2_r)`` of ``spec.samples`` degraded faces drawn from ``faces``."""
    if len(faces) == 0:
        raise ValueError("no calibration faces")
    deg = degradation or SurveillanceDegradation()
    lo, hi = np.log(min(spec.r_min, canonical)), np.log(canonical)
    feats, targets = [], []
    for i in range(spec.samples):
        rng = sample_rng(spec.seed, _STREAM, i)
        face = faces[int(rng.integers(len(faces)))]
        r = int(np.clip(round(float(np.exp(rng.uniform(lo, hi)))), 1, canonical))
        use_deg = rng.random() < spec.p_degrade
        method = UP_METHODS[int(rng.integers(len(UP_METHODS)))]
        img = effective_resolution_face(face, r, canonical, rng, deg if use_deg else None,
                                        up_method=method)
        feats.append(spectral_features(img, canonical))
        targets.append(np.log2(r))
    return np.asarray(feats), np.asarray(targets)


def fit_estimator(features: np.ndarray, log2_r: np.ndarray, rule: BranchSelector, size: int,
                  c: float = 1.0) -> ResolutionEstimator:
    """Multinomial logistic regression (scikit-learn, L-BFGS: deterministic) from the features
    and their squares to the path ``rule`` allocates each sample's true r to."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(features, dtype=np.float64)
    labels = np.array([rule.select_value(2.0 ** v) for v in log2_r])
    classes = sorted(set(labels.tolist()))
    if len(classes) < 2:
        raise ValueError(f"calibration samples cover only path(s) {classes}; draw more samples")
    mean, scale = x.mean(0), x.std(0) + 1e-6
    clf = LogisticRegression(C=c, max_iter=3000)
    clf.fit(ResolutionEstimator.design(x, mean, scale), labels)
    coef, bias = clf.coef_, clf.intercept_
    if len(classes) == 2:  # scikit-learn gives one row for two classes: p1 = sigmoid(row)
        coef, bias = np.vstack([-coef / 2, coef / 2]), np.array([-bias[0] / 2, bias[0] / 2])
    return ResolutionEstimator(int(size), tuple(int(k) for k in clf.classes_),
                               tuple(mean.tolist()), tuple(scale.tolist()),
                               tuple(tuple(row) for row in coef.tolist()), tuple(bias.tolist()))


def calibrate_quality_selector(
    faces: Sequence[np.ndarray],
    rule: BranchSelector,
    canonical: int,
    spec: CalibrationSpec = CalibrationSpec(),
    source: str = "",
) -> QualitySelector:
    """Fit the estimator on degraded ``faces`` and wrap it with the allocation ``rule``.

    A ``holdout`` share of the samples is fitted without and scored: the share routed to the
    path of the true r is stored with the calibration.
    """
    x, y = calibration_samples(faces, canonical, spec)
    n_hold = int(round(spec.holdout * len(y)))
    stats: dict = {}
    if n_hold >= 10:
        probe = fit_estimator(x[n_hold:], y[n_hold:], rule, canonical, spec.c)
        routed = [probe.classes[k] for k in np.argmax(probe.probabilities(x[:n_hold]), axis=1)]
        truth = [rule.select_value(2.0 ** v) for v in y[:n_hold]]
        stats = {"holdout_samples": n_hold,
                 "holdout_same_path": float(np.mean(np.equal(routed, truth)))}
        log.info("quality estimator hold-out: %.1f%% routed to the path of the true r",
                 100 * stats["holdout_same_path"])
    estimator = fit_estimator(x, y, rule, canonical, spec.c)  # all samples
    calibration = {"source": source, **asdict(spec), **stats}
    return QualitySelector(rule, estimator, calibration)
