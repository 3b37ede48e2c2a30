"""One built-in image: an identity's layer under per-image nuisance.

Per image, nuisance varies: pose (rotation, shift, scale, a crude yaw squeeze), expression
(smile, open mouth, brow raise), lighting (direction, strength, gain, colour cast), background,
occlusion (glasses-like bars, patches), focus blur and sensor noise. Every choice comes from
:func:`image_draws`, a pure function of ``(seed, global identity index, image index)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from btnet.data.synthetic.drawing import Grid, draw_expression
from btnet.data.synthetic.identity import IdentityParams

_TAG_IMAGE = 0x1A6E
_TAG_NOISE = 0x9015E

# Per-image nuisance (pose, expression, light, background, occlusion, blur, noise) is drawn at
# this fraction of the ranges written in ``render_face``, so that ``variation=1`` matches real faces:
# with it, the within-identity share of variance of 7- and 14-pixel thumbnails and of the 14-
# and 28-pixel detail bands (btnet.evaluation.nuisance) is that of aligned LFW and CelebA
# (thumb7 0.80 vs 0.80; the other bands were not fitted and agree within 0.04). At the full
# ranges a 7-pixel thumbnail was 0.89 nuisance and the fine detail 0.997: more nuisance than
# real faces carry, so little identity could be learnt at all and nothing vanished with size.
NUISANCE_AT_VARIATION_1 = 0.7


def image_draws(seed: int, global_identity: int, image_index: int) -> np.ndarray:
    """Every per-image choice of one image, as 40 uniforms in a fixed order."""
    ss = np.random.SeedSequence([seed, _TAG_IMAGE, global_identity, int(image_index)])
    return np.random.default_rng(ss).random(40)


def noise_bank(seed: int, size: int) -> np.ndarray:
    """Unit Gaussian noise shared by all images of a dataset (cropped at random offsets per
    image): drawing fresh normals per image would cost more than rendering the face."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _TAG_NOISE]))
    n = 2 * size
    return rng.standard_normal((n, n, 3), dtype=np.float32)


def render_face(
    params: IdentityParams,
    base: np.ndarray,
    g: Grid,
    u: np.ndarray,
    variation: float,
    noise_source: Callable[[], np.ndarray],
) -> np.ndarray:
    """The uint8 RGB image of ``params`` (identity layer ``base``, RGBA on grid ``g``) under the
    nuisance drawn in ``u`` (:func:`image_draws`), scaled by ``variation``. ``noise_source()`` (a
    :func:`noise_bank`) is called only when sensor noise is on, so it can be built lazily."""
    v = variation * NUISANCE_AT_VARIATION_1
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
    draw_expression(layer, params, g, e)
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
        bank = noise_source()
        oy, ox = int(u[3] * R), int(u[5] * R)
        out += f32(sigma) * bank[oy : oy + R, ox : ox + R]
    out += f32(0.5)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def _affine_coeffs(size: int, angle: float, scale_x: float, scale_y: float,
                   tx: float, ty: float) -> tuple[float, ...]:
    """Pillow's inverse affine (output -> input) for rotate/scale about the centre + shift."""
    cx = cy = size / 2.0
    ca, sa = np.cos(angle), np.sin(angle)
    # forward: p_out = C + R S (p_in - C) + t  =>  p_in = C + S^-1 R^T (p_out - C - t)
    m = np.array([[ca / scale_x, sa / scale_x], [-sa / scale_y, ca / scale_y]])
    off = np.array([cx, cy]) - m @ np.array([cx + tx, cy + ty])
    return (m[0, 0], m[0, 1], off[0], m[1, 0], m[1, 1], off[1])
