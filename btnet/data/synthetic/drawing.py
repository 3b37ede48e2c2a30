"""What a built-in face looks like at neutral pose: anti-aliased shapes drawn on a pixel grid.

The identity layer (head, skin texture, fine marks, nose, eyes, hair) is drawn once per
identity; brows and mouth move with expression, so :func:`draw_expression` draws them per image
on a copy of that layer.
"""

from __future__ import annotations

import numpy as np

from btnet.data.synthetic.identity import EYE_L, EYE_R, REF, TEXTURE_ZONES, IdentityParams


class Grid:
    """Pixel-centre coordinates of an R x R canvas, in 112-reference units."""

    def __init__(self, size: int):
        self.size = size
        self.k = size / REF
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


def _darken_discs(rgb: np.ndarray, g: Grid, discs: np.ndarray, tint: np.ndarray) -> None:
    """Multiply small discs (x, y, r, darkness) into ``rgb`` with a brownish tint."""
    for x, y, r, d in discs:
        rs, cs = g.box(x - r - 1, y - r - 1, x + r + 1, y + r + 1)
        if rs.start >= rs.stop or cs.start >= cs.stop:
            continue
        lx, ly = g.local(rs, cs)
        cov = _aa(np.sqrt((lx - x) ** 2 + (ly - y) ** 2) - r, g.k) * d
        rgb[rs, cs] *= 1.0 - cov[..., None] * tint


def _pore_discs(rgb: np.ndarray, g: Grid, discs: np.ndarray, tint: np.ndarray) -> None:
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


def _darken_curves(rgb: np.ndarray, g: Grid, curves: np.ndarray, tint: np.ndarray) -> None:
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


def render_identity_layer(p: IdentityParams, g: Grid) -> np.ndarray:
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
               TEXTURE_ZONES]
    norm = np.maximum(sum(weights), 1e-3)
    for (fx, fy, ph, amp), wz in zip(p.texture, weights):
        tex += (amp * wz / norm) * np.cos((2 * np.pi / REF) * (fx * x + fy * y) + ph)
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
    for (ex, ey), sgn in ((EYE_L, -1.0), (EYE_R, 1.0)):
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


def draw_expression(layer: np.ndarray, p: IdentityParams, g: Grid, e: dict) -> None:
    """Brows and mouth, which move with expression, drawn in place on a copy of the layer."""
    c, k = p.coarse, g.k
    brow_col = p.hair * 0.5 + p.skin * 0.5 * (1 - c["brow_dark"])
    t = np.linspace(-1.0, 1.0, 13, dtype=np.float32)
    for (ex, ey), sgn in ((EYE_L, -1.0), (EYE_R, 1.0)):
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
