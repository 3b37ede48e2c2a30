"""Figure 1: how much a face changes when down-sampled to r and up-sampled back to S.

For each resolution r the face (brought to S x S) goes through the shared pipeline
(:func:`btnet.data.resolution.degrade`: area down-sampling to r, bicubic up-sampling to S) and
is compared with the original, pixel by pixel on the 0..255 scale. Reported per r, averaged over
the faces: mean absolute error, root-mean-square error and PSNR (dB; identical images count as
100 dB so the mean stays finite). Interpolation error is what BTNet avoids by feeding r x r
faces to a branch instead of up-sampling them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from btnet.data.resolution import degrade, downsample, upsample

DEFAULT_RESOLUTIONS: tuple[int, ...] = (7, 14, 21, 28, 42, 56, 84)
PSNR_CAP = 100.0


def _to_canonical(img: np.ndarray, canonical: int) -> np.ndarray:
    if img.shape[:2] == (canonical, canonical):
        return img
    if img.shape[0] >= canonical and img.shape[1] >= canonical:
        return downsample(img, canonical)
    return upsample(img, canonical)


def interpolation_errors(
    images: Iterable[np.ndarray],
    resolutions: Sequence[int] = DEFAULT_RESOLUTIONS,
    canonical: int = 112,
    method: str = "area",
    up_method: str = "bicubic",
) -> dict:
    """Per resolution: mean/std over faces of MAE, RMSE and PSNR, plus the face count."""
    rs = sorted({int(r) for r in resolutions if 1 <= int(r) <= canonical})
    if not rs:
        raise ValueError(f"no resolution in [1, {canonical}] among {list(resolutions)}")
    acc: dict[int, dict[str, list[float]]] = {r: {"mae": [], "rmse": [], "psnr": []} for r in rs}
    n = 0
    for img in images:
        ref = _to_canonical(img, canonical).astype(np.float64)
        n += 1
        for r in rs:
            out = degrade(ref.astype(np.uint8), r, restore_to=canonical, method=method,
                          up_method=up_method).astype(np.float64)
            diff = out - ref
            mse = float(np.mean(diff**2))
            acc[r]["mae"].append(float(np.mean(np.abs(diff))))
            acc[r]["rmse"].append(mse**0.5)
            acc[r]["psnr"].append(PSNR_CAP if mse == 0 else min(PSNR_CAP,
                                                                  10 * np.log10(255.0**2 / mse)))
    if n == 0:
        raise ValueError("no images to measure")
    return {
        "canonical_size": canonical,
        "n_faces": n,
        "method": method,
        "up_method": up_method,
        "per_resolution": {
            str(r): {f"{k}_{stat}": float(fn(v)) for k, v in acc[r].items()
                     for stat, fn in (("mean", np.mean), ("std", np.std))}
            for r in rs
        },
    }


def sample_image_paths(root: str | os.PathLike, n: int, seed: int = 0) -> list[str]:
    """``n`` image files under ``root`` (any depth), chosen by ``seed`` from the sorted list."""
    from btnet.data.images import is_image_file

    files = sorted(str(p) for p in Path(root).rglob("*") if p.is_file() and is_image_file(p))
    if not files:
        raise FileNotFoundError(f"no images under {root}")
    if n >= len(files):
        return files
    idx = np.sort(np.random.default_rng(seed).choice(len(files), n, replace=False))
    return [files[i] for i in idx]


def analyze_interpolation(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    n: int = 100,
    resolutions: Sequence[int] = DEFAULT_RESOLUTIONS,
    canonical: int = 112,
    seed: int = 0,
) -> dict[str, Path]:
    """Measure ``n`` faces from ``root`` and write ``interpolation.json`` and two PNGs."""
    from btnet.data.images import read_image
    from btnet.evaluation.plots import plot_interpolation
    from btnet.evaluation.report import write_json

    paths = sample_image_paths(root, n, seed)
    res = interpolation_errors((read_image(p) for p in paths), resolutions, canonical)
    res["source"] = str(root)
    out = Path(out_dir)
    written = {"json": write_json(res, out / "interpolation.json")}
    per = res["per_resolution"]
    written["mae_plot"] = plot_interpolation(
        {"MAE": {int(r): v["mae_mean"] for r, v in per.items()}}, out / "interpolation_mae.png",
        ylabel="mean absolute error (0..255)",
        title=f"Down-then-up-sampling error (S={canonical}, {res['n_faces']} faces)")
    written["psnr_plot"] = plot_interpolation(
        {"PSNR": {int(r): v["psnr_mean"] for r, v in per.items()}}, out / "interpolation_psnr.png",
        ylabel="PSNR (dB)", title=f"Down-then-up-sampling PSNR (S={canonical})")
    return written
