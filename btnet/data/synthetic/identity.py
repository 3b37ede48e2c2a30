"""Who a built-in face is: coarse attributes shared by look-alike families plus fine detail.

Why this way: the method is about identity information that survives or vanishes with
resolution, so every identity has two parts.

* **Coarse attributes** (head shape, skin/hair/lip colour, hair style, eye/brow/nose/mouth
  geometry) come from one of a few *families* plus a small per-identity jitter, so many
  identities look alike once only coarse shape and colour remain. A 7-pixel face keeps mostly
  these, so low-resolution recognition is possible but genuinely hard.
* **Fine identity detail** (clusters of zero-mean freckles, moles, wrinkle lines, an oriented
  skin texture per face zone and the iris colour) lives at scales of 2-10 pixels of a 112 face,
  i.e. 1-5 pixels of the 56-pixel faces CPU runs use. It is the most discriminative cue at full
  resolution, partly resolved at 28 px and averaged away by the time a face is 14 or 7 pixels
  wide, exactly the information a high-resolution recogniser learns to depend on and then
  misses on up-sampled tiny faces.

All geometry is in 112x112 ArcFace coordinates (eye centres near (38.3, 51.7) and (73.5, 51.5));
an identity is a pure function of ``(seed, global identity index)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_TAG_FAMILY = 0xFA41
_TAG_IDENTITY = 0x1D

REF = 112.0  # all geometry is specified in 112x112 ArcFace coordinates
EYE_L = (38.29, 51.70)
EYE_R = (73.53, 51.50)

_HAIR_PALETTE = np.array(
    [[28, 22, 20], [60, 40, 28], [105, 70, 40], [170, 130, 80], [205, 175, 120],
     [140, 60, 30], [150, 145, 140], [45, 35, 35]], dtype=np.float32)
_IRIS_PALETTE = np.array(
    [[70, 45, 25], [40, 28, 20], [70, 110, 160], [80, 120, 80], [120, 120, 125],
     [110, 85, 45], [50, 80, 120], [95, 60, 30]], dtype=np.float32)
# Face zones with their own fine texture: forehead, cheeks, nose, chin (x, y, spread).
TEXTURE_ZONES = ((42.0, 32.0, 9.0), (70.0, 32.0, 9.0), (32.0, 70.0, 9.0), (80.0, 70.0, 9.0),
                  (56.0, 64.0, 7.0), (42.0, 96.0, 9.0), (70.0, 96.0, 9.0))
_SKIN_LIGHT = np.array([238, 205, 180], dtype=np.float32)
_SKIN_DARK = np.array([92, 60, 44], dtype=np.float32)

# Coarse attributes: name -> (low, high) of the population's uniform distribution.
_COARSE_RANGES: dict[str, tuple[float, float]] = {
    "face_cy": (58.0, 66.0),
    "face_a": (33.0, 42.0),
    "face_b": (45.0, 56.0),
    "taper": (0.0, 0.4),
    "skin_t": (0.0, 1.0),
    "skin_r": (-12.0, 12.0),
    "skin_g": (-10.0, 10.0),
    "hairline": (18.0, 34.0),
    "hair_curv": (0.0, 14.0),
    "hair_vol": (1.0, 10.0),
    "hair_side": (40.0, 100.0),
    "hair_c": (0.0, 7.999),
    "hair_light": (0.8, 1.2),
    "eye_w": (4.5, 6.8),
    "eye_h": (2.0, 3.6),
    "eye_tilt": (-0.12, 0.12),
    "iris_r": (2.2, 3.2),
    "brow_off": (8.0, 12.5),
    "brow_thick": (1.4, 3.6),
    "brow_len": (6.0, 9.5),
    "brow_arch": (0.0, 3.0),
    "brow_slant": (-0.15, 0.15),
    "brow_dark": (0.35, 0.8),
    "nose_y": (69.0, 75.0),
    "nose_w": (3.5, 6.5),
    "nose_len": (50.0, 60.0),
    "nose_shade": (0.04, 0.14),
    "mouth_y": (89.0, 96.0),
    "mouth_w": (10.5, 16.0),
    "lip_up": (1.4, 3.4),
    "lip_low": (2.0, 4.5),
    "lip_red": (0.0, 1.0),
    "ear_y": (52.0, 66.0),
    "neck_w": (14.0, 22.0),
}
_COARSE_KEYS = tuple(_COARSE_RANGES)
_COARSE_LO = np.array([v[0] for v in _COARSE_RANGES.values()], dtype=np.float64)
_COARSE_HI = np.array([v[1] for v in _COARSE_RANGES.values()], dtype=np.float64)


@dataclass
class IdentityParams:
    """Everything that makes one identity: coarse attributes plus its fine-detail layout."""

    index: int
    family: int
    coarse: dict[str, float]
    skin: np.ndarray  # (3,) RGB
    hair: np.ndarray  # (3,) RGB
    iris: np.ndarray  # (3,) RGB, fine: a 5-pixel disc, gone below ~20 px
    lips: np.ndarray  # (3,) RGB
    freckles: np.ndarray  # (n, 4): x, y, radius, darkness (112 coords)
    moles: np.ndarray  # (m, 4)
    wrinkles: np.ndarray  # (w, 7): x, y, half-length, angle, curvature, width, darkness
    texture: np.ndarray  # (zones, 4): fx, fy (cycles per 112 px), phase, amplitude


def _family_coarse(seed: int, family: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([seed, _TAG_FAMILY, family]))
    return rng.uniform(_COARSE_LO, _COARSE_HI)


def _points_in_face(rng: np.random.Generator, n: int, c: dict[str, float]) -> np.ndarray:
    """Uniform points inside the skin area (inner ellipse, below the hairline)."""
    pts = np.empty((0, 2))
    while len(pts) < n:
        u = rng.uniform(-1, 1, size=(4 * n + 8, 2))
        u = u[(u**2).sum(1) < 1]
        xy = np.stack([56 + 0.88 * c["face_a"] * u[:, 0], c["face_cy"] + 0.9 * c["face_b"] * u[:, 1]], 1)
        xy = xy[xy[:, 1] > c["hairline"] + 4]
        pts = np.concatenate([pts, xy])
    return pts[:n]


def make_identity(
    seed: int, index: int, families: int = 8, coarse_jitter: float = 0.12
) -> IdentityParams:
    """Draw identity ``index`` (a global index; train/test offsets are already added)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _TAG_IDENTITY, index]))
    family = int(rng.integers(families))
    own = rng.uniform(_COARSE_LO, _COARSE_HI)
    vec = (1 - coarse_jitter) * _family_coarse(seed, family) + coarse_jitter * own
    c = dict(zip(_COARSE_KEYS, (float(v) for v in vec)))

    skin = (1 - c["skin_t"]) * _SKIN_LIGHT + c["skin_t"] * _SKIN_DARK
    skin = skin + np.array([c["skin_r"], c["skin_g"], 0.0], dtype=np.float32)
    hair = _HAIR_PALETTE[int(c["hair_c"])] * c["hair_light"]
    lips = skin * np.array([0.82, 0.55, 0.55]) + c["lip_red"] * np.array([30.0, 0.0, 5.0])
    iris = _IRIS_PALETTE[int(rng.integers(len(_IRIS_PALETTE)))] * rng.uniform(0.75, 1.25)

    # Freckles/pores: zero-mean spots (dark core, faint bright ring) in 2-3 identity-specific
    # clusters, so their density map identifies a face at 56 px but averages to plain skin.
    n = int(rng.integers(50, 101))
    pts = _points_in_face(rng, 6 * n, c)
    centres = pts[rng.choice(len(pts), int(rng.integers(2, 4)), replace=False)]
    near = np.min(((pts[:, None, :] - centres[None]) ** 2).sum(-1), 1)
    pts = pts[np.argsort(near + rng.exponential(120.0, len(pts)))[:n]]
    fr = np.column_stack([pts, rng.uniform(1.2, 2.0, n), rng.uniform(0.45, 0.7, n)])
    m = int(rng.integers(1, 4))
    mo = np.column_stack(
        [_points_in_face(rng, m, c), rng.uniform(2.4, 3.4, m), rng.uniform(0.55, 0.75, m)]
    )
    w = int(rng.integers(3, 8))
    wr = np.column_stack(
        [
            _points_in_face(rng, w, c),
            rng.uniform(3.0, 9.0, w),
            rng.uniform(0, np.pi, w),
            rng.uniform(-0.08, 0.08, w),
            rng.uniform(1.4, 2.2, w),
            rng.uniform(0.25, 0.4, w),
        ]
    )
    # One oriented skin texture per face zone: local statistics (orientation, scale, contrast)
    # that a network can learn to compare, pose-robust because zones are large; the 6-10 px
    # wavelength (3-5 px at 56) is partly resolved at 28 px and gone at 14 and 7.
    k = len(TEXTURE_ZONES)
    freq = rng.uniform(11.0, 19.0, k)
    ang = rng.uniform(0, np.pi, k)
    tex = np.column_stack(
        [freq * np.cos(ang), freq * np.sin(ang), rng.uniform(0, 2 * np.pi, k),
         rng.uniform(0.0, 0.3, k)]
    )
    return IdentityParams(
        index=index, family=family, coarse=c, skin=skin.astype(np.float32),
        hair=hair.astype(np.float32), iris=iris.astype(np.float32),
        lips=lips.astype(np.float32), freckles=fr, moles=mo, wrinkles=wr, texture=tex,
    )
