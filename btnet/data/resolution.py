"""The resolution pipeline shared by training and evaluation.

Every low-resolution face in btnet, whether a training sample of the phi_mr baselines, a branch
input or an evaluation probe, is made by the functions here, so that training and evaluation
can never disagree on how a 7x7 face is produced.

* :func:`downsample` is always anti-aliased: ``area`` (box filter, the default) averages every
  source pixel that falls in a target pixel; ``bilinear`` and ``bicubic`` use Pillow's resize,
  which widens the filter support by the scale factor when shrinking (a true low-pass, unlike
  plain interpolation).
* :func:`upsample` restores a small face to the canonical size for the up-sampling baselines.
* The phi_mr samplers draw a target size per sample. Sizes ``S / 2**i`` are rounded half up
  (``floor(S / 2**i + 0.5)``): for ``S=112`` that is 112, 56, 28, 14, 7 and for ``S=56`` it is
  56, 28, 14, 7, 4 (3.5 rounds to 4).
* :class:`MultiResolutionTransform` combines them; :func:`sample_rng` derives a per-sample
  generator from ``(seed, epoch, index)`` so results do not depend on worker count or order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

__all__ = [
    "RESAMPLE_METHODS",
    "FixedSampler",
    "MultiResolutionTransform",
    "ResolutionSampler",
    "SIZE_RANGE_MIN",
    "UniformRangeSampler",
    "WeightedSizeSampler",
    "degrade",
    "downsample",
    "halving_sizes",
    "make_sampler",
    "sample_rng",
    "upsample",
]

RESAMPLE_METHODS: dict[str, Image.Resampling] = {
    "area": Image.Resampling.BOX,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}

SIZE_RANGE_MIN = 4  # smallest size phi_mr v3 draws, as in the paper ("any size in [4, S]")

# Probabilities of the five halving levels i = 0..4 (S, S/2, S/4, S/8, S/16).
MR_V1_PROBS = (0.2, 0.2, 0.2, 0.2, 0.2)
MR_V2_PROBS = (0.3, 0.25, 0.2, 0.15, 0.1)


def _as_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ValueError(f"image size must be positive, got {size!r}")
    return h, w


def _check_image(img: np.ndarray) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise ValueError("expected a uint8 numpy image")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {img.shape}")
    return img


def _filter(method: str) -> Image.Resampling:
    try:
        return RESAMPLE_METHODS[method]
    except KeyError:
        raise ValueError(
            f"unknown resampling method {method!r}; choose from {sorted(RESAMPLE_METHODS)}"
        ) from None


def _resize(img: np.ndarray, size: int | Sequence[int], method: str) -> np.ndarray:
    img = _check_image(img)
    h, w = _as_hw(size)
    if img.shape[:2] == (h, w):
        return img
    out = Image.fromarray(img).resize((w, h), resample=_filter(method))
    return np.asarray(out)


def downsample(img: np.ndarray, size: int | Sequence[int], method: str = "area") -> np.ndarray:
    """Shrink ``img`` to ``size`` (r or (h, w)) with an anti-aliasing filter.

    Pillow's BOX/BILINEAR/BICUBIC resizes scale their support with the shrink factor, so each
    output pixel integrates the whole source footprint: detail finer than the new pixel grid is
    removed rather than aliased into false texture.
    """
    h, w = _as_hw(size)
    if h > img.shape[0] or w > img.shape[1]:
        raise ValueError(f"downsample target {(h, w)} is larger than the image {img.shape[:2]}")
    return _resize(img, (h, w), method)


def upsample(img: np.ndarray, size: int | Sequence[int], method: str = "bicubic") -> np.ndarray:
    """Enlarge ``img`` to ``size``; bicubic by default, as the up-sampling baselines use."""
    h, w = _as_hw(size)
    if h < img.shape[0] or w < img.shape[1]:
        raise ValueError(f"upsample target {(h, w)} is smaller than the image {img.shape[:2]}")
    return _resize(img, (h, w), method)


def degrade(
    img: np.ndarray,
    r: int | Sequence[int],
    restore_to: int | Sequence[int] | None = None,
    method: str = "area",
    up_method: str = "bicubic",
) -> np.ndarray:
    """Down-sample to ``r``, then (optionally) up-sample back to ``restore_to``.

    ``degrade(img, 14, restore_to=112)`` is the 14-pixel probe an up-sampling baseline sees;
    ``degrade(img, 14)`` is the 14x14 input of a 14-pixel branch.
    """
    small = downsample(img, r, method)
    if restore_to is None:
        return small
    return upsample(small, restore_to, up_method)


def halving_sizes(canonical: int, levels: int = 5) -> list[int]:
    """``[S, S/2, S/4, ...]`` rounded half up (3.5 -> 4), never below 1."""
    return [max(1, int(np.floor(canonical / 2**i + 0.5))) for i in range(levels)]


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """A generator that depends only on ``(seed, epoch, index)``.

    Deriving per-sample streams this way makes augmentation identical whatever the number of
    DataLoader workers and whatever order samples are drawn in.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch, index])))


# --------------------------------------------------------------------------- samplers


@runtime_checkable
class ResolutionSampler(Protocol):
    """Draws the side length a sample is degraded to."""

    def sample(self, rng: np.random.Generator) -> int: ...


@dataclass(frozen=True)
class FixedSampler:
    """Always the same size (``hr`` is ``FixedSampler(S)``; ``phi_mm`` uses ``FixedSampler(r)``)."""

    size: int

    def sample(self, rng: np.random.Generator) -> int:
        return self.size

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.size,)


@dataclass(frozen=True)
class WeightedSizeSampler:
    """One of a few sizes with given probabilities (phi_mr v1 and v2)."""

    choices: tuple[int, ...]
    probs: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.choices) != len(self.probs) or not self.choices:
            raise ValueError("sizes and probabilities must be non-empty and of equal length")
        if abs(sum(self.probs) - 1.0) > 1e-6 or min(self.probs) < 0:
            raise ValueError(f"probabilities must be >= 0 and sum to 1, got {self.probs}")

    def sample(self, rng: np.random.Generator) -> int:
        # A single uniform draw keeps the stream consumption fixed (one double per sample).
        u = rng.random()
        acc = 0.0
        for size, p in zip(self.choices, self.probs):
            acc += p
            if u < acc:
                return size
        return self.choices[-1]

    @property
    def sizes(self) -> tuple[int, ...]:
        return self.choices


@dataclass(frozen=True)
class UniformRangeSampler:
    """Any integer size in ``[low, high]`` with equal probability (phi_mr v3)."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if not 1 <= self.low <= self.high:
            raise ValueError(f"need 1 <= low <= high, got [{self.low}, {self.high}]")

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high + 1))

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(range(self.low, self.high + 1))


SAMPLER_NAMES = ("hr", "mr_v1", "mr_v2", "mr_v3", "fixed:<r>")


def make_sampler(name: str, canonical: int) -> ResolutionSampler:
    """Build a sampler by name: ``hr``, ``mr_v1``, ``mr_v2``, ``mr_v3`` or ``fixed:<r>``."""
    if canonical < 1:
        raise ValueError(f"canonical size must be positive, got {canonical}")
    key = name.strip().lower()
    if key == "hr":
        return FixedSampler(canonical)
    if key == "mr_v1":
        return WeightedSizeSampler(tuple(halving_sizes(canonical)), MR_V1_PROBS)
    if key == "mr_v2":
        return WeightedSizeSampler(tuple(halving_sizes(canonical)), MR_V2_PROBS)
    if key == "mr_v3":
        return UniformRangeSampler(min(SIZE_RANGE_MIN, canonical), canonical)
    m = re.fullmatch(r"fixed:(\d+)", key)
    if m:
        r = int(m.group(1))
        if not 1 <= r <= canonical:
            raise ValueError(f"fixed size {r} must be in [1, {canonical}]")
        return FixedSampler(r)
    raise ValueError(f"unknown resolution sampler {name!r}; choose from {', '.join(SAMPLER_NAMES)}")


# --------------------------------------------------------------------------- transform


class MultiResolutionTransform:
    """Bring a face to the canonical size, then degrade it to a sampled resolution.

    Steps, in order: resize to ``canonical`` (area) if the input differs; draw ``r`` from the
    sampler; down-sample to ``r`` with ``method``; apply ``degradation`` (if any) to the small
    image, as a surveillance camera would; up-sample back to ``canonical`` with ``up_method``
    when ``restore`` is true. ``restore=False`` returns the r x r image (branch inputs).
    """

    def __init__(
        self,
        sampler: ResolutionSampler,
        canonical: int,
        restore: bool = True,
        degradation: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        method: str = "area",
        up_method: str = "bicubic",
    ):
        _filter(method)
        _filter(up_method)
        self.sampler = sampler
        self.canonical = int(canonical)
        self.restore = restore
        self.degradation = degradation
        self.method = method
        self.up_method = up_method

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """Return the processed image and the resolution ``r`` it was degraded to."""
        img = _check_image(image)
        s = self.canonical
        if img.shape[:2] != (s, s):
            img = _resize(img, s, "area" if img.shape[0] >= s else self.up_method)
        r = int(self.sampler.sample(rng))
        if not 1 <= r <= s:
            raise ValueError(f"sampler gave size {r}, outside [1, {s}]")
        small = downsample(img, r, self.method) if r < s else img
        if self.degradation is not None:
            small = self.degradation(small, rng)
        if self.restore and r < s:
            return upsample(small, s, self.up_method), r
        return small, r

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(image, rng)[0]

    def __repr__(self) -> str:
        return (
            f"MultiResolutionTransform({self.sampler!r}, canonical={self.canonical}, "
            f"restore={self.restore}, degradation={self.degradation!r}, method={self.method!r})"
        )


def fit_to(img: np.ndarray, size: int) -> np.ndarray:
    """Resize a face of any shape to ``size`` x ``size``: area down-sampling, bicubic up-sampling.

    A non-square face that must shrink along one axis and grow along the other is first shrunk
    (anti-aliased), then enlarged. Encoders (PyTorch and onnxruntime alike) route through this.
    """
    h, w = img.shape[:2]
    if h == w == size:
        return img
    if h >= size and w >= size:
        return downsample(img, size)
    if h <= size and w <= size:
        return upsample(img, size)
    return upsample(downsample(img, (min(h, size), min(w, size))), size)
