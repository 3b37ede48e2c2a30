"""Faces that are larger in pixels than in information: effective resolution r, pixel size W.

A detector's 40-pixel box of a blurred, compressed face may hold about 10 pixels of detail.
:func:`effective_resolution_face` makes such a face from a clean one: bring it to the canonical
size S, area-down-sample to ``r`` (what the camera resolved), apply a surveillance degradation
to the small image (blur, noise, JPEG: :mod:`btnet.data.degradation`), then re-sample it up to
a pixel size ``W`` drawn uniformly from ``[r, S]`` (what the detector cropped). Its pixel size
says W; its content says r.

The same function makes the probes of the effective-resolution evaluation protocol
(:mod:`btnet.evaluation.effective_resolution`) and the samples the quality estimator is
calibrated on (:mod:`btnet.training.quality_calibration`), so the two cannot disagree on what
"a 7-pixel face at 40 pixels" means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from btnet.data.resolution import downsample, fit_to, upsample

Degradation = Callable[[np.ndarray, np.random.Generator], np.ndarray]

__all__ = ["effective_resolution_face", "parse_resolution_list"]


def effective_resolution_face(
    image: np.ndarray,
    r: int,
    canonical: int,
    rng: np.random.Generator,
    degradation: Degradation | None = None,
    pixel_size: int | None = None,
    up_method: str = "bicubic",
) -> np.ndarray:
    """A face holding ``r`` pixels of detail, stored at ``W x W`` pixels with ``r <= W <= S``.

    ``pixel_size`` fixes W; by default it is drawn from ``rng`` (after the degradation's own
    draws, so the degradation of a face does not depend on whether W is fixed).
    """
    s = int(canonical)
    r = int(r)
    if not 1 <= r <= s:
        raise ValueError(f"effective resolution {r} must lie in [1, {s}] (canonical size {s})")
    face = fit_to(image, s) if image.shape[:2] != (s, s) else image
    small = downsample(face, r) if r < s else face
    if degradation is not None:
        small = degradation(small, rng)
    drawn = int(rng.integers(r, s + 1))
    w = drawn if pixel_size is None else int(pixel_size)
    if not r <= w:
        raise ValueError(f"pixel size {w} is below the effective resolution {r}")
    return upsample(small, w, up_method) if w > r else small


def parse_resolution_list(text: str | Sequence[int], canonical: int | None = None) -> list[int]:
    """``"7,14,28"`` -> ``[7, 14, 28]`` (sorted, distinct; each below ``canonical`` if given)."""
    if isinstance(text, str):
        try:
            values = [int(t) for t in text.replace(",", " ").split()]
        except ValueError:
            raise ValueError(f"expected integers like '7,14,28', got {text!r}") from None
    else:
        values = [int(v) for v in text]
    if not values:
        raise ValueError("no effective resolution given (e.g. '7,14,28')")
    out = sorted(set(values))
    if out[0] < 1:
        raise ValueError(f"effective resolutions must be positive, got {out}")
    if canonical is not None and out[-1] > canonical:
        raise ValueError(f"effective resolution {out[-1]} exceeds the canonical size {canonical}")
    return out
