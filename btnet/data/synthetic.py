"""Built-in faces: a procedural face generator that makes btnet run with no data at all.

Why procedural, and why this way: the method is about identity information that survives or
vanishes with resolution. The generator therefore splits every identity into two parts.

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

Per image, nuisance varies: pose (rotation, shift, scale, a crude yaw squeeze), expression
(smile, open mouth, brow raise), lighting (direction, strength, gain, colour cast), background,
occlusion (glasses-like bars, patches), focus blur and sensor noise. Faces are aligned like
ArcFace crops: eye centres near (38.3, 51.7) and (73.5, 51.5) in 112 coordinates, scaled to the
requested size ``S`` (the face is drawn at ``max(S, 112)`` then area-resized).

Everything is a pure function of ``(seed, global identity index, image index)``; identities
``identity_offset + i`` make train and test sets disjoint. Only numpy and Pillow are used.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from btnet.data.base import FaceDataset, OpenSetProtocol, PairSet

__all__ = [
    "BUILTIN_TEST_OFFSET",
    "DatasetImages",
    "SyntheticFaces",
    "builtin_openset",
    "builtin_pairs",
    "export_bin",
    "export_folder",
    "export_rec",
    "is_builtin_spec",
    "open_builtin",
    "parse_builtin_spec",
]

# Test identities start here, far past any training set, so ``builtin:test`` never shares an
# identity with ``builtin:train`` for the same seed.
BUILTIN_TEST_OFFSET = 100_000

_TAG_FAMILY = 0xFA41
_TAG_IDENTITY = 0x1D
_TAG_IMAGE = 0x1A6E
_TAG_NOISE = 0x9015E
_TAG_PAIRS = 0xB1A5

# Per-image nuisance (pose, expression, light, background, occlusion, blur, noise) is drawn at
# this fraction of the ranges written in ``render``, so that ``variation=1`` matches real faces:
# with it, the within-identity share of variance of 7- and 14-pixel thumbnails and of the 14-
# and 28-pixel detail bands (btnet.evaluation.nuisance) is that of aligned LFW and CelebA
# (thumb7 0.80 vs 0.80; the other bands were not fitted and agree within 0.04). At the full
# ranges a 7-pixel thumbnail was 0.89 nuisance and the fine detail 0.997: more nuisance than
# real faces carry, so little identity could be learnt at all and nothing vanished with size.
NUISANCE_AT_VARIATION_1 = 0.7

_REF = 112.0  # all geometry is specified in 112x112 ArcFace coordinates
_EYE_L = (38.29, 51.70)
_EYE_R = (73.53, 51.50)

_HAIR_PALETTE = np.array(
    [[28, 22, 20], [60, 40, 28], [105, 70, 40], [170, 130, 80], [205, 175, 120],
     [140, 60, 30], [150, 145, 140], [45, 35, 35]], dtype=np.float32)
_IRIS_PALETTE = np.array(
    [[70, 45, 25], [40, 28, 20], [70, 110, 160], [80, 120, 80], [120, 120, 125],
     [110, 85, 45], [50, 80, 120], [95, 60, 30]], dtype=np.float32)
# Face zones with their own fine texture: forehead, cheeks, nose, chin (x, y, spread).
_TEXTURE_ZONES = ((42.0, 32.0, 9.0), (70.0, 32.0, 9.0), (32.0, 70.0, 9.0), (80.0, 70.0, 9.0),
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


# --------------------------------------------------------------------------- parameters


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
    k = len(_TEXTURE_ZONES)
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


# --------------------------------------------------------------------------- drawing helpers


class _Grid:
    """Pixel-centre coordinates of an R x R canvas, in 112-reference units."""

    def __init__(self, size: int):
        self.size = size
        self.k = size / _REF
        v = ((np.arange(size, dtype=np.float32) + 0.5) / self.k).astype(np.float32)
        self.x = np.broadcast_to(v[None, :], (size, size))
        self.y = np.broadcast_to(v[:, None], (size, size))
        self.v = v
        self.unit = ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0).astype(
            np.float32
        )

    def box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice]:
        k, n = self.k, self.size
        c0, c1 = max(0, int(np.floor(x0 * k))), min(n, int(np.ceil(x1 * k)) + 1)
        r0, r1 = max(0, int(np.floor(y0 * k))), min(n, int(np.ceil(y1 * k)) + 1)
        return slice(r0, r1), slice(c0, c1)

    def local(self, rs: slice, cs: slice) -> tuple[np.ndarray, np.ndarray]:
        return self.v[cs][None, :], self.v[rs][:, None]


def _aa(signed_dist_ref: np.ndarray, k: float) -> np.ndarray:
    """Coverage from a signed distance (negative inside) in reference units, 1-px soft edge."""
    return np.clip(0.5 - signed_dist_ref * k, 0.0, 1.0)


def _ellipse_sd(x, y, cx, cy, a, b):
    q = np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2)
    return (q - 1.0) * min(a, b)


def _darken_discs(rgb: np.ndarray, g: _Grid, discs: np.ndarray, tint: np.ndarray) -> None:
    """Multiply small discs (x, y, r, darkness) into ``rgb`` with a brownish tint."""
    for x, y, r, d in discs:
        rs, cs = g.box(x - r - 1, y - r - 1, x + r + 1, y + r + 1)
        if rs.start >= rs.stop or cs.start >= cs.stop:
            continue
        lx, ly = g.local(rs, cs)
        cov = _aa(np.sqrt((lx - x) ** 2 + (ly - y) ** 2) - r, g.k) * d
        rgb[rs, cs] *= 1.0 - cov[..., None] * tint


def _pore_discs(rgb: np.ndarray, g: _Grid, discs: np.ndarray, tint: np.ndarray) -> None:
    """Zero-mean spots: a dark disc of radius r inside a ring (r..2r) lightened by a third as
    much, so an area average over >= 2r (a 14- or 7-pixel face) sees plain skin."""
    for x, y, r, d in discs:
        rs, cs = g.box(x - 2 * r - 1, y - 2 * r - 1, x + 2 * r + 1, y + 2 * r + 1)
        if rs.start >= rs.stop or cs.start >= cs.stop:
            continue
        lx, ly = g.local(rs, cs)
        dist = np.sqrt((lx - x) ** 2 + (ly - y) ** 2)
        core = _aa(dist - r, g.k)
        ring = _aa(dist - 2 * r, g.k) - core
        gain = 1.0 - d * core[..., None] * tint + (d / 3.0) * ring[..., None] * tint
        rgb[rs, cs] *= gain


def _darken_curves(rgb: np.ndarray, g: _Grid, curves: np.ndarray, tint: np.ndarray) -> None:
    """Thin slightly curved lines (wrinkles) multiplied into ``rgb``."""
    for x, y, hl, ang, curv, width, d in curves:
        ca, sa = np.cos(ang), np.sin(ang)
        ext = hl + width + 2
        rs, cs = g.box(x - ext, y - ext, x + ext, y + ext)
        lx, ly = g.local(rs, cs)
        u = (lx - x) * ca + (ly - y) * sa
        v = -(lx - x) * sa + (ly - y) * ca
        v = v - curv * u**2
        along = np.clip(np.abs(u) - hl, 0, None)
        dist = np.sqrt(v**2 + along**2) - width / 2
        cov = _aa(dist, g.k) * d
        rgb[rs, cs] *= 1.0 - cov[..., None] * tint


def _stroke(points: np.ndarray, radii: np.ndarray, lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
    """Signed distance to a thick polyline given as dense points with per-point radii."""
    d = np.sqrt((lx[..., None] - points[:, 0]) ** 2 + (ly[..., None] - points[:, 1]) ** 2)
    return (d - radii).min(axis=-1)


# --------------------------------------------------------------------------- rendering


def _render_identity_layer(p: IdentityParams, g: _Grid) -> np.ndarray:
    """The identity's static RGBA layer at neutral pose (no brows, no mouth), uint8."""
    c, k = p.coarse, g.k
    x, y = g.x, g.y
    cx, cy, a, b = 56.0, c["face_cy"], c["face_a"], c["face_b"]

    # Head shape: an ellipse whose lower half narrows toward the chin.
    below = np.clip((y - cy) / b, 0.0, 1.0)
    a_y = a * (1.0 - c["taper"] * below**2)
    q = np.sqrt(((x - cx) / a_y) ** 2 + ((y - cy) / b) ** 2)
    face_cov = _aa((q - 1.0) * min(a, b) * 0.9, k)
    neck_cov = _aa(np.maximum(np.abs(x - cx) - c["neck_w"], cy + 0.55 * b - y), k)
    ear_cov = np.maximum(
        _aa(_ellipse_sd(x, y, cx - a + 1.5, c["ear_y"], 4.0, 7.5), k),
        _aa(_ellipse_sd(x, y, cx + a - 1.5, c["ear_y"], 4.0, 7.5), k),
    )
    skin_cov = np.maximum(face_cov, np.maximum(neck_cov * 0.999, ear_cov))

    # Skin colour with soft form shading and the identity's band-pass texture field.
    shade = 1.0 - 0.22 * np.clip(q, 0, 1.2) ** 4
    shade = np.where(face_cov > 0, shade, 0.8 - 0.1 * (neck_cov > 0))
    tex = np.zeros_like(x)
    weights = [np.exp(-((x - zx) ** 2 + (y - zy) ** 2) / (2 * zs**2)) for zx, zy, zs in
               _TEXTURE_ZONES]
    norm = np.maximum(sum(weights), 1e-3)
    for (fx, fy, ph, amp), wz in zip(p.texture, weights):
        tex += (amp * wz / norm) * np.cos((2 * np.pi / _REF) * (fx * x + fy * y) + ph)
    rgb = (p.skin[None, None, :] * (shade * (1.0 + tex))[..., None]).astype(np.float32)

    # Fine identity marks.
    mark = np.array([0.75, 0.95, 1.0], dtype=np.float32)
    _pore_discs(rgb, g, p.freckles, mark)
    _darken_discs(rgb, g, p.moles, mark)
    _darken_curves(rgb, g, p.wrinkles, np.array([0.9, 1.0, 1.0], dtype=np.float32))

    # Nose: side shading along the bridge, nostrils, a highlight on the tip.
    ny, nw = c["nose_y"], c["nose_w"]
    rs, cs = g.box(cx - nw - 6, c["nose_len"] - 2, cx + nw + 6, ny + 6)
    lx, ly = g.local(rs, cs)
    along = np.clip((ly - c["nose_len"]) / (ny - c["nose_len"]), 0, 1)
    side = np.exp(-(((np.abs(lx - cx) - nw * (0.5 + 0.5 * along)) / 1.6) ** 2))
    rgb[rs, cs] *= (1.0 - c["nose_shade"] * side * along * (ly < ny + 1))[..., None]
    for sgn in (-1, 1):
        ncov = _aa(_ellipse_sd(lx, ly, cx + sgn * nw * 0.55, ny + 1.0, 1.6, 1.0), k)
        rgb[rs, cs] *= (1.0 - 0.55 * ncov)[..., None]
    hl = np.exp(-(((lx - cx) / 2.0) ** 2 + ((ly - ny + 2.0) / 2.0) ** 2))
    rgb[rs, cs] *= (1.0 + 0.08 * hl)[..., None]

    # Eyes: sclera, iris, pupil, upper lid; tilted per identity.
    for (ex, ey), sgn in ((_EYE_L, -1.0), (_EYE_R, 1.0)):
        ew, eh = c["eye_w"], c["eye_h"]
        rs, cs = g.box(ex - ew - 2, ey - eh - 3, ex + ew + 2, ey + eh + 2)
        lx, ly = g.local(rs, cs)
        t = c["eye_tilt"] * sgn
        u = (lx - ex) * np.cos(t) + (ly - ey) * np.sin(t)
        v = -(lx - ex) * np.sin(t) + (ly - ey) * np.cos(t)
        eye = _aa(_ellipse_sd(u, v, 0, 0, ew, eh), k)
        ir = min(c["iris_r"], eh * 1.15)
        iris = _aa(np.sqrt(u**2 + v**2) - ir, k) * eye
        pupil = _aa(np.sqrt(u**2 + v**2) - ir * 0.45, k) * eye
        lid = _aa(np.abs(_ellipse_sd(u, v + 0.3, 0, 0, ew + 0.4, eh + 0.5)) - 0.55, k) * (v < 0.3)
        patch = rgb[rs, cs]
        sclera = np.array([232, 228, 222], dtype=np.float32) * (patch.mean() / 180.0) ** 0.25
        patch[:] = patch * (1 - eye[..., None]) + sclera * eye[..., None]
        patch[:] = patch * (1 - iris[..., None]) + p.iris * iris[..., None]
        patch[:] = patch * (1 - pupil[..., None]) + np.float32(15.0) * pupil[..., None]
        patch[:] = patch * (1 - 0.75 * lid[..., None]) + 25.0 * 0.75 * lid[..., None]

    # Hair: a cap above a curved hairline, falling at the sides down to ``hair_side``.
    vol = c["hair_vol"]
    outer = _aa(_ellipse_sd(x, y, cx, cy - 1.0, a + vol, b + vol), k)
    hairline = c["hairline"] + c["hair_curv"] * ((x - cx) / a) ** 2
    above = _aa(y - hairline, k)
    sides = (1.0 - face_cov) * _aa(y - c["hair_side"], k)
    hair_cov = outer * np.maximum(above, sides)
    strands = 1.0 + 0.06 * np.cos(x * 1.9 + 0.3 * y)  # fixed sheen; same for everyone
    hair_rgb = p.hair[None, None, :] * strands[..., None]

    alpha = np.maximum(skin_cov, hair_cov)
    rgb = rgb * (1 - hair_cov[..., None]) + hair_rgb * hair_cov[..., None]
    out = np.empty((g.size, g.size, 4), dtype=np.uint8)
    out[..., :3] = np.clip(rgb + 0.5, 0, 255)
    out[..., 3] = np.clip(alpha * 255 + 0.5, 0, 255)
    return out


def _draw_expression(layer: np.ndarray, p: IdentityParams, g: _Grid, e: dict) -> None:
    """Brows and mouth, which move with expression, drawn in place on a copy of the layer."""
    c, k = p.coarse, g.k
    brow_col = p.hair * 0.5 + p.skin * 0.5 * (1 - c["brow_dark"])
    t = np.linspace(-1.0, 1.0, 13, dtype=np.float32)
    for (ex, ey), sgn in ((_EYE_L, -1.0), (_EYE_R, 1.0)):
        L = c["brow_len"]
        bx = ex + t * L
        inner = -sgn * t  # +1 at the inner end (towards the nose)
        by = (ey - c["brow_off"] - e["brow_raise"] - c["brow_arch"] * (1 - t**2)
              + (c["brow_slant"] + e["brow_tilt"]) * L * inner)
        radii = c["brow_thick"] / 2 * (1.0 - 0.35 * np.clip(-inner, 0, 1))
        pts = np.stack([bx, by], 1)
        rs, cs = g.box(bx.min() - 3, by.min() - 3, bx.max() + 3, by.max() + 3)
        lx, ly = g.local(rs, cs)
        cov = _aa(_stroke(pts, radii, lx, ly), k) * 0.9
        patch = layer[rs, cs, :3].astype(np.float32)
        patch = patch * (1 - cov[..., None]) + brow_col * cov[..., None]
        layer[rs, cs, :3] = np.clip(patch + 0.5, 0, 255)

    mx, my, w = 56.0, c["mouth_y"], c["mouth_w"]
    opn, smile = e["mouth_open"], e["smile"]
    rs, cs = g.box(mx - w - 1, my - c["lip_up"] - opn - 4, mx + w + 1, my + c["lip_low"] + opn + 4)
    lx, ly = g.local(rs, cs)
    u = np.clip((lx - mx) / w, -1, 1)
    inside = _aa(np.abs(lx - mx) - w, k)
    h = np.sqrt(np.clip(1 - u**2, 0, 1))
    yc = my - smile * 3.0 * u**2
    top = yc - opn / 2 - c["lip_up"] * h * (1 - 0.3 * np.exp(-((lx - mx) / 2.0) ** 2))
    bot = yc + opn / 2 + c["lip_low"] * h
    gap_top, gap_bot = yc - opn / 2, yc + opn / 2
    lips_cov = _aa(np.maximum(top - ly, ly - bot), k) * inside
    gap_cov = _aa(np.maximum(gap_top - ly, ly - gap_bot), k) * inside if opn > 0.05 else None
    line = _aa(np.abs(ly - yc) - 0.45, k) * inside * h
    patch = layer[rs, cs, :3].astype(np.float32)
    patch = patch * (1 - lips_cov[..., None]) + p.lips * lips_cov[..., None]
    if gap_cov is not None:
        patch = patch * (1 - gap_cov[..., None]) + np.float32([55, 22, 25]) * gap_cov[..., None]
    patch *= (1 - 0.45 * line)[..., None]
    layer[rs, cs, :3] = np.clip(patch + 0.5, 0, 255)


def _affine_coeffs(size: int, angle: float, scale_x: float, scale_y: float,
                   tx: float, ty: float) -> tuple[float, ...]:
    """Pillow's inverse affine (output -> input) for rotate/scale about the centre + shift."""
    cx = cy = size / 2.0
    ca, sa = np.cos(angle), np.sin(angle)
    # forward: p_out = C + R S (p_in - C) + t  =>  p_in = C + S^-1 R^T (p_out - C - t)
    m = np.array([[ca / scale_x, sa / scale_x], [-sa / scale_y, ca / scale_y]])
    off = np.array([cx, cy]) - m @ np.array([cx + tx, cy + ty])
    return (m[0, 0], m[0, 1], off[0], m[1, 0], m[1, 1], off[1])


# --------------------------------------------------------------------------- dataset


class SyntheticFaces:
    """Procedural face identities as a :class:`~btnet.data.base.FaceDataset`.

    Sample ``i`` is image ``i % images_per_identity`` of identity ``i // images_per_identity``;
    its label is the local identity index. ``variation`` scales every per-image nuisance
    (1: the level of real aligned faces, see ``NUISANCE_AT_VARIATION_1``; 0: the identity's
    neutral, frontal, evenly lit face every time). ``families`` and
    ``coarse_jitter`` set how ambiguous coarse appearance is across identities. Identity
    layers are cached (LRU, ``cache_size`` identities) and finished images are kept up to
    ``image_cache_mb`` (training re-reads every image once per epoch, and rendering costs more
    than a CPU training step spends on it); neither cache is pickled, so the object is cheap to
    send to DataLoader workers.
    """

    def __init__(
        self,
        num_identities: int,
        images_per_identity: int,
        size: int = 112,
        seed: int = 0,
        identity_offset: int = 0,
        variation: float = 1.0,
        families: int = 8,
        coarse_jitter: float = 0.12,
        cache_size: int = 1024,
        image_cache_mb: float = 512.0,
        name: str | None = None,
    ):
        if num_identities < 1 or images_per_identity < 1:
            raise ValueError("need at least one identity and one image per identity")
        if size < 4:
            raise ValueError(f"face size must be >= 4, got {size}")
        if families < 1:
            raise ValueError("families must be >= 1")
        if not 0.0 <= coarse_jitter <= 1.0:
            raise ValueError("coarse_jitter must be in [0, 1]")
        self.num_identities = int(num_identities)
        self.images_per_identity = int(images_per_identity)
        self.size = int(size)
        self.seed = int(seed)
        self.identity_offset = int(identity_offset)
        self.variation = float(variation)
        self.families = int(families)
        self.coarse_jitter = float(coarse_jitter)
        self.cache_size = int(cache_size)
        self.image_cache_bytes = int(image_cache_mb * 2**20)
        self.render_size = max(self.size, int(_REF))
        self.name = name or (
            f"builtin(ids={num_identities},per_id={images_per_identity},size={size},"
            f"seed={seed},offset={identity_offset})"
        )
        self.num_classes = self.num_identities
        self.labels = np.repeat(
            np.arange(self.num_identities, dtype=np.int64), self.images_per_identity
        )
        self._init_cache()

    def _init_cache(self) -> None:
        self._grid: _Grid | None = None
        self._noise: np.ndarray | None = None
        self._cache: OrderedDict[int, tuple[IdentityParams, np.ndarray]] = OrderedDict()
        self._images: dict[int, np.ndarray] = {}
        self._image_bytes = 0

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_grid", "_noise", "_cache", "_images", "_image_bytes"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_cache()

    def __len__(self) -> int:
        return self.num_identities * self.images_per_identity

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        n = len(self)
        index = int(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"{self.name}: index {index} out of range [0, {n})")
        label, k = divmod(index, self.images_per_identity)
        image = self._images.get(index)
        if image is None:
            image = self.render(label, k)
            if self._image_bytes + image.nbytes <= self.image_cache_bytes:
                image.setflags(write=False)  # shared by every later read of this index
                self._images[index] = image
                self._image_bytes += image.nbytes
        return image, label

    def identity(self, label: int) -> IdentityParams:
        """Parameters of local identity ``label``."""
        return self._identity(label)[0]

    def _identity(self, label: int) -> tuple[IdentityParams, np.ndarray]:
        if not 0 <= label < self.num_identities:
            raise IndexError(f"{self.name}: identity {label} out of range")
        hit = self._cache.get(label)
        if hit is not None:
            self._cache.move_to_end(label)
            return hit
        if self._grid is None:
            self._grid = _Grid(self.size)
        params = make_identity(
            self.seed, self.identity_offset + label, self.families, self.coarse_jitter
        )
        # Draw at >= 112 px so fine marks are resolved, then area-resize: the layer at S keeps
        # exactly the detail an S-pixel camera would see, without aliasing.
        big = _Grid(self.render_size) if self.render_size != self.size else self._grid
        layer = _render_identity_layer(params, big)
        if big is not self._grid:
            im = Image.fromarray(layer, "RGBA").resize((self.size, self.size), Image.Resampling.BOX)
            layer = np.asarray(im).copy()
        entry = (params, layer)
        self._cache[label] = entry
        while len(self._cache) > max(1, self.cache_size):
            self._cache.popitem(last=False)
        return entry

    def _noise_bank(self) -> np.ndarray:
        """Unit Gaussian noise shared by all images (cropped at random offsets per image):
        drawing fresh normals per image would cost more than rendering the face."""
        if self._noise is None:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, _TAG_NOISE]))
            n = 2 * self.size
            self._noise = rng.standard_normal((n, n, 3), dtype=np.float32)
        return self._noise

    def render(self, label: int, image_index: int) -> np.ndarray:
        """Image ``image_index`` of local identity ``label`` (any non-negative index works)."""
        params, base = self._identity(label)
        g = self._grid
        assert g is not None
        gid = self.identity_offset + label
        ss = np.random.SeedSequence([self.seed, _TAG_IMAGE, gid, int(image_index)])
        u = np.random.default_rng(ss).random(40)  # every per-image choice, in a fixed order
        v = self.variation * NUISANCE_AT_VARIATION_1
        R, k = g.size, g.k

        def z(i: int) -> float:  # a roughly normal draw in [-2.45, 2.45] from two uniforms
            return float((u[i] + u[i + 1] - 1.0) * 2.45)

        # Expression, drawn on a copy of the identity layer before the pose warp.
        e = {
            "smile": 0.55 * z(0) * v,
            "mouth_open": max(0.0, 2.0 * z(2) - 0.6) * v,
            "brow_raise": 1.0 * z(4) * v,
            "brow_tilt": 0.04 * z(6) * v,
        }
        layer = base.copy()
        _draw_expression(layer, params, g, e)
        fg = Image.fromarray(layer, "RGBA")

        # Pose: in-plane rotation, scale, shift, and a horizontal squeeze as a crude yaw.
        if v > 0:
            angle = np.deg2rad(5.0 * z(8) * v)
            scale = float(np.exp(0.05 * z(10) * v))
            yaw = z(12)
            squeeze = 1.0 - min(abs(yaw) * 0.05 * v, 0.15)
            tx = (2.0 * z(14) * v + np.sign(yaw) * (1 - squeeze) * 40) * k
            ty = 2.0 * z(16) * v * k
            coeffs = _affine_coeffs(R, angle, scale * squeeze, scale, tx, ty)
            fg = fg.transform(
                (R, R), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR
            )
        else:
            tx = 0.0

        arr = np.asarray(fg)
        f32 = np.float32
        xn = g.unit  # pixel centres mapped to -1..1

        # Background: a random colour with a linear gradient, composited under the head.
        col = (125 + 110 * (2 * u[18:21] - 1) * min(v, 1.0)).astype(f32)
        gd, gs = 2 * np.pi * u[21], 0.4 * u[22] * min(v, 1.0)
        ramp = (float(np.cos(gd) * gs) * xn)[None, :] + (float(np.sin(gd) * gs) * xn + 1)[:, None]
        bg = ramp[..., None] * col
        out = arr[..., :3].astype(f32)
        out -= bg
        out *= arr[..., 3:] * f32(1 / 255)
        out += bg

        # Lighting: directional with a rounded-face falloff, overall gain and a colour cast.
        strength = 0.6 * u[23] * v
        ang = 2 * np.pi * u[24]
        lx = np.tanh(f32(2.5) * (xn - f32(2 * tx / R)))
        field = (float(strength * np.cos(ang)) * lx)[None, :] + (
            float(0.6 * strength * np.sin(ang)) * xn + 1
        )[:, None]
        colour = np.exp(0.3 * v * z(25) + 0.1 * v * np.array([z(27), z(29), z(31)]))
        out *= field[..., None] * colour.astype(f32)

        # Occlusion: a glasses-like bar over the eyes, a random patch, or a chin/hand blob.
        if u[33] < 0.3 * v:
            kind = int(u[34] * 3)
            o = u[35:40]
            occ_col = (255 * np.array([o[0], o[4], 1 - o[2]])).astype(f32)
            if kind == 0:
                y0 = int((44 + 8 * o[0]) * k)
                y1 = y0 + max(1, int((5 + 7 * o[1]) * k))
                out[y0:y1] = out[y0:y1] * f32(0.3 * o[3]) + occ_col * f32(0.3)
            elif kind == 1:
                w, h = (14 + 26 * o[1]) * k, (14 + 26 * o[2]) * k
                x0, y0 = int(o[3] * (R - w)), int(o[4] * (R - h))
                out[y0 : y0 + int(h), x0 : x0 + int(w)] = occ_col
            else:
                cx0, cy0, rr = (30 + 52 * o[1]) * k, (95 + 20 * o[2]) * k, (14 + 12 * o[3]) * k
                pix = np.arange(R, dtype=f32) + f32(0.5)
                m = ((pix - f32(cx0)) ** 2)[None, :] + ((pix - f32(cy0)) ** 2)[:, None] < rr * rr
                out[m] = occ_col

        # Focus blur (sometimes): a separable 3-tap Gaussian, sigma 0.3-0.8 px at 112.
        if u[32] < 0.1 * v:
            sigma = (0.3 + 0.5 * u[1]) * k
            wt = f32(min(sigma * sigma / 2, 1 / 3))
            for axis in (0, 1):
                lo = np.take(out, np.r_[0, np.arange(R - 1)], axis=axis)
                hi = np.take(out, np.r_[np.arange(1, R), R - 1], axis=axis)
                out = out * (1 - 2 * wt) + (lo + hi) * wt

        # Sensor noise, always on at a random level (1-6 grey levels).
        sigma = (0.5 + 3.0 * u[17]) * v
        if sigma > 0:
            bank = self._noise_bank()
            oy, ox = int(u[3] * R), int(u[5] * R)
            out += f32(sigma) * bank[oy : oy + R, ox : ox + R]
        out += f32(0.5)
        np.clip(out, 0, 255, out=out)
        return out.astype(np.uint8)

    def images(self) -> DatasetImages:
        """The images alone, as an :class:`~btnet.data.base.ImageSource`."""
        return DatasetImages(self)


class DatasetImages:
    """:class:`~btnet.data.base.ImageSource` view of a dataset (image without label), or of a
    subset of its indices."""

    def __init__(self, dataset: FaceDataset, indices: Sequence[int] | None = None):
        self.dataset = dataset
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.dataset) if self.indices is None else len(self.indices)

    def __getitem__(self, index: int) -> np.ndarray:
        j = index if self.indices is None else int(self.indices[index])
        return self.dataset[j][0]


# --------------------------------------------------------------------------- specs


_SPLITS = {
    "train": {"ids": 500, "per_id": 20, "offset": 0},
    "test": {"ids": 100, "per_id": 10, "offset": BUILTIN_TEST_OFFSET},
}
_SPEC_KEYS = {
    "ids": int, "per_id": int, "size": int, "seed": int, "offset": int,
    "variation": float, "families": int, "jitter": float,
}


def is_builtin_spec(spec: object) -> bool:
    """True for ``builtin`` and ``builtin:...`` strings."""
    return isinstance(spec, str) and (spec == "builtin" or spec.startswith("builtin:"))


def parse_builtin_spec(spec: str) -> dict:
    """``builtin[:split][,key=value...]`` -> keyword arguments for :class:`SyntheticFaces`.

    ``split`` is ``train`` (default: 500 identities x 20 images) or ``test`` (100 x 10,
    identities offset by :data:`BUILTIN_TEST_OFFSET`, so never those of ``train``). Keys:
    ``ids``, ``per_id``, ``size`` (default 112), ``seed`` (0), ``offset``, ``variation``,
    ``families``, ``jitter``; e.g. ``builtin:ids=200,per_id=20,size=56,seed=3`` or
    ``builtin:test,ids=50``.
    """
    if not is_builtin_spec(spec):
        raise ValueError(f"not a built-in faces spec: {spec!r} (expected builtin[:...])")
    rest = spec[len("builtin"):].lstrip(":")
    split = "train"
    values: dict[str, float | int] = {}
    for token in filter(None, (t.strip() for t in rest.replace(":", ",").split(","))):
        if "=" not in token:
            if token not in _SPLITS:
                raise ValueError(
                    f"{spec!r}: unknown built-in split {token!r} (use train or test)"
                )
            split = token
            continue
        key, value = (s.strip() for s in token.split("=", 1))
        if key not in _SPEC_KEYS:
            raise ValueError(f"{spec!r}: unknown key {key!r}; use {', '.join(_SPEC_KEYS)}")
        try:
            values[key] = _SPEC_KEYS[key](value)
        except ValueError:
            raise ValueError(f"{spec!r}: {key}={value!r} is not a number") from None
    base = _SPLITS[split]
    kwargs = {
        "num_identities": int(values.get("ids", base["ids"])),
        "images_per_identity": int(values.get("per_id", base["per_id"])),
        "size": int(values.get("size", 112)),
        "seed": int(values.get("seed", 0)),
        "identity_offset": int(values.get("offset", base["offset"])),
    }
    if "variation" in values:
        kwargs["variation"] = float(values["variation"])
    if "families" in values:
        kwargs["families"] = int(values["families"])
    if "jitter" in values:
        kwargs["coarse_jitter"] = float(values["jitter"])
    kwargs["name"] = spec
    return kwargs


def open_builtin(spec: str = "builtin") -> SyntheticFaces:
    """The built-in faces named by ``spec`` (see :func:`parse_builtin_spec`)."""
    return SyntheticFaces(**parse_builtin_spec(spec))


# --------------------------------------------------------------------------- protocols


def _fold_groups(num_identities: int, folds: int) -> list[np.ndarray]:
    """Identity groups per fold: disjoint when there are enough identities (like LFW's
    people-disjoint folds), otherwise every fold draws from everyone."""
    ids = np.arange(num_identities)
    if num_identities >= 2 * folds:
        return np.array_split(ids, folds)
    return [ids] * folds


def builtin_pairs(
    num_identities: int = 100,
    images_per_identity: int = 10,
    num_pairs: int = 6000,
    size: int = 112,
    seed: int = 0,
    identity_offset: int = BUILTIN_TEST_OFFSET,
    folds: int = 10,
    **generator_kwargs,
) -> PairSet:
    """A balanced 1:1 verification set over built-in test identities.

    Pairs come in ``folds`` contiguous folds (insightface/LFW order: each fold is half genuine
    then half impostor pairs) over identity-disjoint groups. Genuine pairs are distinct
    unordered image pairs, drawn without repetition while enough exist. Everything is fixed by
    ``seed``; ``identity_offset`` keeps the identities away from any training set.
    """
    if images_per_identity < 2:
        raise ValueError("genuine pairs need at least 2 images per identity")
    if num_identities < 2:
        raise ValueError("impostor pairs need at least 2 identities")
    if folds < 1 or num_pairs < 2 * folds:
        raise ValueError(f"need folds >= 1 and at least 2 pairs per fold, got {num_pairs}/{folds}")
    faces = SyntheticFaces(
        num_identities, images_per_identity, size=size, seed=seed,
        identity_offset=identity_offset, **generator_kwargs,
    )
    rng = np.random.default_rng(np.random.SeedSequence([seed, _TAG_PAIRS, identity_offset]))
    k = images_per_identity
    iu, ju = np.triu_indices(k, 1)
    left: list[int] = []
    right: list[int] = []
    same: list[bool] = []
    per_fold = np.full(folds, num_pairs // folds)
    per_fold[: num_pairs % folds] += 1
    for group, n in zip(_fold_groups(num_identities, folds), per_fold):
        n_pos = int(n) // 2 + int(n) % 2
        n_neg = int(n) - n_pos
        cand = np.stack(np.meshgrid(group, np.arange(len(iu)), indexing="ij"), -1).reshape(-1, 2)
        pick = rng.choice(len(cand), n_pos, replace=n_pos > len(cand))
        for ident, c in cand[pick]:
            left.append(int(ident) * k + int(iu[c]))
            right.append(int(ident) * k + int(ju[c]))
            same.append(True)
        for _ in range(n_neg):
            a, b = rng.choice(group, 2, replace=False)
            left.append(int(a) * k + int(rng.integers(k)))
            right.append(int(b) * k + int(rng.integers(k)))
            same.append(False)
    name = f"builtin_pairs(ids={num_identities},per_id={k},size={size},seed={seed})"
    return PairSet(name, DatasetImages(faces), left, right, same)


def builtin_openset(
    num_gallery: int = 100,
    num_unmated: int = 50,
    images_per_identity: int = 6,
    gallery_per_identity: int = 1,
    size: int = 112,
    seed: int = 0,
    identity_offset: int = BUILTIN_TEST_OFFSET + 50_000,
    **generator_kwargs,
) -> OpenSetProtocol:
    """A 1:N open-set protocol (SurvFace style) over built-in identities.

    Gallery identities ``0..num_gallery-1`` enrol their first ``gallery_per_identity`` images;
    their other images are mated probes. Identities ``num_gallery..`` (``num_unmated`` of
    them) are absent from the gallery; all their images are unmated probes. Images are at full
    size ``size``: degrade probes with :mod:`btnet.data.resolution` as the study requires.
    """
    if not 1 <= gallery_per_identity < images_per_identity:
        raise ValueError("need 1 <= gallery_per_identity < images_per_identity")
    if num_gallery < 1 or num_unmated < 0:
        raise ValueError("need at least one gallery identity")
    faces = SyntheticFaces(
        num_gallery + num_unmated, images_per_identity, size=size, seed=seed,
        identity_offset=identity_offset, **generator_kwargs,
    )
    k, g = images_per_identity, gallery_per_identity
    gal = [i * k + j for i in range(num_gallery) for j in range(g)]
    mated = [i * k + j for i in range(num_gallery) for j in range(g, k)]
    unmated = list(range(num_gallery * k, (num_gallery + num_unmated) * k))
    labels = faces.labels
    return OpenSetProtocol(
        name=f"builtin_openset(gallery={num_gallery},unmated={num_unmated},seed={seed})",
        gallery=DatasetImages(faces, gal),
        gallery_ids=labels[gal],
        mated=DatasetImages(faces, mated),
        mated_ids=labels[mated],
        unmated=DatasetImages(faces, unmated),
        extra={"unmated_ids": labels[unmated], "source": "builtin"},
    )


# --------------------------------------------------------------------------- export


def export_folder(
    dataset: FaceDataset, root: str | os.PathLike, ext: str = "png", quality: int = 95
) -> Path:
    """Write any dataset as ``root/<label:05d>/<n:04d>.<ext>`` (an image-folder training set).

    PNG by default, because JPEG would add its own artefacts to faces whose fine detail is the
    point; ``ext="jpg"`` gives insightface-like files.
    """
    from btnet.data.images import write_image

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ext = ext.lower().lstrip(".")
    width = max(5, len(str(dataset.num_classes - 1)))
    count: dict[int, int] = {}
    for i in range(len(dataset)):
        img, label = dataset[i]
        n = count.get(int(label), 0)
        count[int(label)] = n + 1
        write_image(root / f"{int(label):0{width}d}" / f"{n:04d}.{ext}", img, quality)
    return root


def export_rec(
    dataset: FaceDataset, out_prefix: str | os.PathLike, image_format: str = "png",
    quality: int = 95,
):
    """Write any dataset as an insightface ``.rec``/``.idx``/``property`` (see
    :func:`btnet.data.pack.pack_dataset`); returns its :class:`~btnet.data.pack.PackResult`."""
    from btnet.data.pack import pack_dataset

    return pack_dataset(dataset, out_prefix, image_format=image_format, quality=quality)


def export_bin(pairs: PairSet, path: str | os.PathLike, quality: int = 95) -> Path:
    """Write a pair set (e.g. :func:`builtin_pairs`) as an insightface ``.bin``."""
    from btnet.data.verification import export_pairs_to_bin

    return export_pairs_to_bin(pairs, path, quality=quality)
