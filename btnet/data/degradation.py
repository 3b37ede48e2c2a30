"""Surveillance-style degradation: blur, sensor noise and JPEG re-compression.

Clean area down-sampling is an idealised low-resolution face; real CCTV crops are also out of
focus, noisy and compressed. :class:`SurveillanceDegradation` adds those three effects, each
with a probability and a strength range, drawn from the caller's generator so results are
deterministic under a seed. It is applied to the *small* image (after down-sampling, before
any up-sampling), where a camera would have produced it.

Defaults (chosen to look like QMUL-SurvFace crops without destroying them):

=========  ============  ===============================================================
effect     probability   strength
=========  ============  ===============================================================
blur       0.5           Gaussian, sigma uniform in [0.3, 1.0] pixels of the small image
noise      0.5           Gaussian, std uniform in [2, 8] grey levels (0..255), per channel
JPEG       0.5           quality uniform in [30, 80]
=========  ============  ===============================================================

A spec string configures it from the command line, e.g. ``surveillance`` (defaults),
``blur=0.5:1.5,noise=0:10,jpeg=20:60`` or ``blur=0.8,p=1`` (a single value is a fixed
strength; ``p`` sets all three probabilities, ``p_blur`` etc. one of them; ``none`` or
``0`` as a range switches an effect off).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields, replace

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["SurveillanceDegradation", "parse_degradation"]


def _range(values: tuple[float, float], what: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in values)
    if lo < 0 or hi < lo:
        raise ValueError(f"{what} range must satisfy 0 <= low <= high, got ({lo}, {hi})")
    return lo, hi


@dataclass(frozen=True)
class SurveillanceDegradation:
    """Random blur, noise and JPEG, each applied with its own probability.

    The generator is always consumed the same way (three decisions, three strengths, one noise
    field when noise is on), so one effect switching on or off does not shift the others.
    """

    blur_sigma: tuple[float, float] = (0.3, 1.0)
    noise_std: tuple[float, float] = (2.0, 8.0)
    jpeg_quality: tuple[int, int] = (30, 80)
    p_blur: float = 0.5
    p_noise: float = 0.5
    p_jpeg: float = 0.5

    def __post_init__(self) -> None:
        _range(self.blur_sigma, "blur sigma")
        _range(self.noise_std, "noise std")
        qlo, qhi = _range(self.jpeg_quality, "JPEG quality")
        if not (1 <= qlo and qhi <= 100):
            raise ValueError(f"JPEG quality must lie in [1, 100], got {self.jpeg_quality}")
        for name in ("p_blur", "p_noise", "p_jpeg"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability, got {p}")

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 image, got {img.dtype} {img.shape}")
        u = rng.random(3)
        sigma = rng.uniform(*self.blur_sigma)
        std = rng.uniform(*self.noise_std)
        quality = int(rng.integers(int(self.jpeg_quality[0]), int(self.jpeg_quality[1]) + 1))
        out = img
        if u[0] < self.p_blur and sigma > 0:
            # Pillow's GaussianBlur radius is the standard deviation of the kernel.
            out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(sigma)))
        if u[1] < self.p_noise and std > 0:
            noise = rng.standard_normal(out.shape, dtype=np.float32) * np.float32(std)
            out = np.clip(out.astype(np.float32) + noise + 0.5, 0, 255).astype(np.uint8)
        if u[2] < self.p_jpeg:
            buf = io.BytesIO()
            Image.fromarray(out).save(buf, format="JPEG", quality=quality)
            buf.seek(0)
            with Image.open(buf) as im:
                out = np.asarray(im.convert("RGB"))
        return out


def parse_degradation(spec: str | None) -> SurveillanceDegradation | None:
    """Build a degradation from a spec string (see the module docstring); ``None``/``none``."""
    if spec is None:
        return None
    text = spec.strip().lower()
    if text in ("", "none", "off", "clean"):
        return None
    deg = SurveillanceDegradation()
    if text in ("surveillance", "default", "on"):
        return deg
    keys = {f.name for f in fields(SurveillanceDegradation)}
    alias = {"blur": "blur_sigma", "noise": "noise_std", "jpeg": "jpeg_quality"}
    changes: dict[str, object] = {}
    for token in text.split(","):
        token = token.strip()
        if token in ("surveillance", "default"):
            continue
        if "=" not in token:
            raise ValueError(f"degradation spec {spec!r}: expected key=value, got {token!r}")
        key, value = (s.strip() for s in token.split("=", 1))
        if key == "p":
            p = float(value)
            changes.update(p_blur=p, p_noise=p, p_jpeg=p)
            continue
        field = alias.get(key, key)
        if field not in keys:
            raise ValueError(
                f"degradation spec {spec!r}: unknown key {key!r} "
                "(use blur, noise, jpeg, p, p_blur, p_noise, p_jpeg)"
            )
        if field.startswith("p_"):
            changes[field] = float(value)
            continue
        if value in ("none", "off", "0"):
            changes[f"p_{key if key in alias else field.split('_')[0]}"] = 0.0
            continue
        parts = value.split(":")
        if len(parts) == 1:
            parts = parts * 2
        if len(parts) != 2:
            raise ValueError(f"degradation spec {spec!r}: bad range {value!r} for {key}")
        try:
            lo, hi = (float(v) for v in parts)
        except ValueError:
            raise ValueError(f"degradation spec {spec!r}: bad number in {value!r}") from None
        if field == "jpeg_quality":
            changes[field] = (int(round(lo)), int(round(hi)))
        else:
            changes[field] = (lo, hi)
    return replace(deg, **changes)
