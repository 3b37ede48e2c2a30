"""Quality-aware branch selection: route a face by the resolution it *holds*, not its pixel size.

Size routing (:mod:`btnet.models.selection`) sends a detector's 40-pixel crop of a blurred face
through the trunk, up-sampled, although it may hold only 10 pixels of detail: the very
interpolation error BTNet's branches exist to avoid. :class:`QualitySelector` instead judges
from the face's content which path's resolution it *effectively* holds; the encoder then shrinks
the face to that path's size (anti-aliased, so nothing it holds is lost) and runs that path.

The estimator (:class:`ResolutionEstimator`) reads how the face's power spectrum falls off:
a face down-sampled to r and re-sampled up keeps almost no energy above r/2 cycles per face,
whatever its pixel size. Features are the log share of spectral power in each one-cycle ring
of the face brought to the canonical grid (grey levels, Hann window); a multinomial logistic
regression with squared terms maps them to a path. It is calibrated on training faces degraded
on purpose (:mod:`btnet.training.quality_calibration`) and stored as plain numbers in
``model.json``.

The choice is capped by size routing's (content cannot exceed the pixels), so quality routing
never sends a face to a larger path than size routing would.

Cost: :func:`estimator_macs` counts the multiply-accumulates per face (about 0.2 MMACs at
S = 56, 0.8 at S = 112): resizing to the grid, a real 2-D FFT and the classifier. Plain numpy
and Pillow, no torch, so the onnxruntime encoder can use it too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from btnet.models.selection import BranchSelector

FEATURES = "ring-log-power-v1"
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

__all__ = [
    "FEATURES",
    "QualitySelector",
    "ResolutionEstimator",
    "estimator_macs",
    "spectral_features",
]


def _to_grid(img: np.ndarray, size: int) -> np.ndarray:
    """Any face to ``size x size``: box filter where it shrinks, bicubic where it grows."""
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return img
    pil = Image.fromarray(img)
    if h > size or w > size:  # shrink what is too large first, anti-aliased
        pil = pil.resize((min(w, size), min(h, size)), Image.Resampling.BOX)
    if pil.size != (size, size):
        pil = pil.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(pil)


@lru_cache(maxsize=8)
def _grid_constants(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The ring of each rfft2 bin (flattened) and the 2-D Hann window, per grid size."""
    fy = np.fft.fftfreq(size)[:, None] * size
    fx = np.fft.rfftfreq(size)[None, :] * size
    rings = np.clip(np.rint(np.hypot(fy, fx)).astype(np.int64), 0, size // 2).ravel()
    window = np.hanning(size).astype(np.float32)
    return rings, np.outer(window, window)


def spectral_features(img: np.ndarray, size: int) -> np.ndarray:
    """Log share of the face's spectral power in each ring of 1..size/2 cycles per face.

    ``img`` is an H x W x 3 uint8 face of any size; it is brought to ``size x size`` first.
    """
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 face, got {img.dtype} {img.shape}")
    ring_of, window = _grid_constants(size)
    grey = _to_grid(img, size).astype(np.float32) @ _LUMA
    grey -= grey.mean()
    power = np.abs(np.fft.rfft2(grey * window)) ** 2
    rings = np.bincount(ring_of, power.ravel(), minlength=size // 2 + 1)[1:]
    rings = rings + 1e-3 * size * size  # a floor: flat faces do not give log(0)
    return np.log(rings / rings.sum()).astype(np.float64)


def estimator_macs(size: int) -> int:
    """Multiply-accumulates per face (analytic count): resize to the grid (two bicubic passes
    of 4 taps, 3 channels), grey conversion, window, real 2-D FFT (2.5 N log2 N for N pixels),
    power and ring sums, regression with squared terms."""
    n = size * size
    rings = size // 2
    return int(3 * 2 * 4 * n + 3 * n + n + 2.5 * n * math.log2(n) + 2 * n + 4 * rings)


@dataclass(frozen=True)
class ResolutionEstimator:
    """Which path's resolution a face holds, from :func:`spectral_features`.

    A multinomial logistic regression on the standardised features and their squares; its
    classes are the paths (sizes) of the model, labelled at calibration by the allocation
    rule applied to the true effective resolution. Classifying straight into paths beat a
    regression of log2 r on the same features where it matters (clean 28-pixel faces at 56
    pixels: 100% vs 74% to the right path on built-in faces), because the fit spends its
    capacity on the decision boundaries instead of on the whole range of r.
    """

    size: int
    classes: tuple[int, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[tuple[float, ...], ...]  # one row per class: linear, then squared terms
    bias: tuple[float, ...]
    features: str = FEATURES

    def __post_init__(self) -> None:
        n = self.size // 2
        if len(self.mean) != n or len(self.scale) != n:
            raise ValueError(f"estimator for size {self.size} needs {n} features, got "
                             f"{len(self.mean)}")
        if len(self.weights) != len(self.classes) or len(self.bias) != len(self.classes) or any(
                len(row) != 2 * n for row in self.weights):
            raise ValueError(f"estimator needs {len(self.classes)} x {2 * n} weights and "
                             f"{len(self.classes)} biases")
        if self.features != FEATURES:
            raise ValueError(f"unknown estimator features {self.features!r} (this btnet reads "
                             f"{FEATURES!r})")

    @staticmethod
    def design(features: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(features) - mean) / scale
        return np.concatenate([z, z * z], axis=1)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """N x K class probabilities (K = len(classes))."""
        d = self.design(features, np.asarray(self.mean), np.asarray(self.scale))
        logits = d @ np.asarray(self.weights).T + np.asarray(self.bias)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, img: np.ndarray) -> tuple[int, float]:
        """``(path, r_hat)``: the most probable path, and the effective resolution as the
        probability-weighted geometric mean of the path sizes (for ordering and logs)."""
        p = self.probabilities(spectral_features(img, self.size))[0]
        k = int(np.argmax(p))
        r_hat = float(2.0 ** (p @ np.log2(np.asarray(self.classes, dtype=np.float64))))
        return int(self.classes[k]), r_hat

    def estimate(self, img: np.ndarray) -> float:
        """Effective resolution in pixels (uncapped)."""
        return self.predict(img)[1]

    def to_dict(self) -> dict:
        return {"size": self.size, "features": self.features, "classes": list(self.classes),
                "mean": list(self.mean), "scale": list(self.scale),
                "weights": [list(row) for row in self.weights], "bias": list(self.bias)}

    @classmethod
    def from_dict(cls, data: dict) -> ResolutionEstimator:
        return cls(int(data["size"]), tuple(int(c) for c in data["classes"]),
                   tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["scale"]),
                   tuple(tuple(float(v) for v in row) for row in data["weights"]),
                   tuple(float(v) for v in data["bias"]), str(data.get("features", FEATURES)))


@dataclass(frozen=True)
class QualitySelector:
    """A :class:`BranchSelector` applied to the estimated effective resolution.

    ``rule`` gives the paths and the allocation (thresholds); its size indicator caps the
    estimate. :meth:`select` (size only) is plain size routing, for callers that cannot show
    the selector the pixels; :meth:`select_image` is quality routing.
    """

    rule: BranchSelector
    estimator: ResolutionEstimator
    calibration: dict | None = None  # how it was calibrated (source, samples, seed, error)

    @property
    def paths(self) -> tuple[int, ...]:
        return tuple(getattr(self.rule, "sizes", None) or self.rule.paths)

    @property
    def indicator(self) -> str:
        return self.rule.indicator

    @property
    def allocation(self) -> str:
        return f"quality/{self.rule.allocation}"

    def select(self, height: int, width: int) -> int:
        return self.rule.select(height, width)

    def estimate(self, img: np.ndarray) -> float:
        """Effective resolution, capped by the face's size indicator."""
        h, w = img.shape[:2]
        return min(self.estimator.estimate(img), self.rule.indicator_value(h, w))

    def select_image(self, img: np.ndarray) -> int:
        """The path of what the face holds, never larger than size routing's path."""
        h, w = img.shape[:2]
        return min(self.estimator.predict(img)[0], self.rule.select(h, w))

    def select_images(self, images: Sequence[np.ndarray]) -> list[int]:
        return [self.select_image(im) for im in images]

    def describe(self) -> list[str]:
        cal = self.calibration or {}
        lines = [f"quality routing over paths {list(self.paths)}: the path whose resolution the "
                 f"face holds ({self.rule.allocation} allocation of the true r at calibration), "
                 "never above the size policy's:"]
        lines += [f"  {line}" for line in self.rule.describe()]
        if cal.get("source"):
            lines.append(f"calibrated on {cal['source']} ({cal.get('samples')} samples, seed "
                         f"{cal.get('seed')})")
        return lines

    def to_dict(self) -> dict:
        return {"rule": self.rule.to_dict(), "estimator": self.estimator.to_dict(),
                "calibration": self.calibration or {}}

    @classmethod
    def from_dict(cls, data: dict) -> QualitySelector:
        return cls(BranchSelector.from_dict(data["rule"]),
                   ResolutionEstimator.from_dict(data["estimator"]),
                   dict(data.get("calibration") or {}) or None)
