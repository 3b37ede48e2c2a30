"""Build a QMUL-SurvFace-like open-set protocol from any identity folder.

No native low-resolution benchmark can be shipped, so ``btnet protocol openset`` makes one from
``root/<identity>/<image>`` aligned faces:

* a **watch-list** of identities with at least two images (``n_watchlist`` of them);
* a **gallery** of ``gallery_per_id`` high-resolution images per watch-list identity (stored as
  they are, or resized to ``gallery_size``);
* **mated probes**: the other images of watch-list identities, and **unmated probes**: images
  of every other identity, both turned into surveillance-like crops: a non-square centre crop
  (width/height ratio drawn around 0.83), area down-sampling to a drawn size, then a
  surveillance degradation (blur, noise, JPEG; :mod:`btnet.data.degradation`).

Probe sizes follow QMUL-SurvFace's: from about 6x5 to 124x106 pixels, mean about 24x20, read as
**height x width** (surveillance face crops are taller than wide). Heights are log-normal (mean
24) clipped to [6, 124] and to the source height; widths are height times the drawn ratio. Every
random choice comes from ``seed`` (identities are sorted by name first), so the protocol is
reproducible; it is written in the generic layout of :mod:`btnet.data.openset`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from btnet.data.base import OpenSetProtocol
from btnet.data.degradation import SurveillanceDegradation, parse_degradation
from btnet.data.images import read_image
from btnet.data.resolution import downsample, sample_rng

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeSizeDistribution:
    """Probe face sizes (pixels): log-normal height, normal width/height ratio, both clipped."""

    mean_height: float = 24.0
    mean_width: float = 20.0
    sigma: float = 0.45  # spread of log-height
    min_height: int = 6
    max_height: int = 124
    ratio_std: float = 0.06
    min_ratio: float = 0.65
    max_ratio: float = 1.0

    def sample(self, rng: np.random.Generator, max_height: int) -> tuple[int, int]:
        """One ``(height, width)``; ``max_height`` caps it at the source image's height."""
        mu = np.log(self.mean_height) - self.sigma**2 / 2  # log-normal with this mean
        h = float(np.exp(rng.normal(mu, self.sigma)))
        h = int(np.clip(round(h), self.min_height, min(self.max_height, max_height)))
        ratio = np.clip(rng.normal(self.mean_width / self.mean_height, self.ratio_std),
                        self.min_ratio, self.max_ratio)
        w = int(max(1, round(h * ratio)))
        return h, w


def surveillance_probe(
    image: np.ndarray,
    size_hw: tuple[int, int],
    degradation: SurveillanceDegradation | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Centre-crop ``image`` to the probe's aspect ratio, shrink to ``size_hw``, degrade."""
    h, w = size_hw
    src_h, src_w = image.shape[:2]
    crop_w = min(src_w, max(1, round(src_h * w / h)))
    x0 = (src_w - crop_w) // 2
    crop = image[:, x0 : x0 + crop_w]
    small = downsample(np.ascontiguousarray(crop), (min(h, src_h), min(w, crop_w)))
    return degradation(small, rng) if degradation is not None else small


class _ProbeSource:
    """Lazily made probes, so a protocol is never held in memory as a whole."""

    def __init__(self, paths, sizes, degradation, seed: int, part: int):
        self.paths, self.sizes, self.degradation = paths, sizes, degradation
        self.seed, self.part = seed, part

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        rng = sample_rng(self.seed, 1000 + self.part, int(i))
        return surveillance_probe(read_image(self.paths[i]), self.sizes[i], self.degradation, rng)


class _GallerySource:
    def __init__(self, paths, size: int | None):
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        img = read_image(self.paths[i])
        if self.size and img.shape[:2] != (self.size, self.size):
            from btnet.inference.encoders import fit_to

            img = fit_to(img, self.size)
        return img


def _scan(root: Path) -> dict[str, list[str]]:
    from btnet.data.folders import scan_image_folder

    names, paths, labels, _ = scan_image_folder(root)
    out: dict[str, list[str]] = {n: [] for n in names}
    for p, lab in zip(paths, labels):
        out[names[lab]].append(p)
    return out


def build_openset_protocol(
    root: str | os.PathLike,
    n_watchlist: int | None = None,
    gallery_per_id: int = 1,
    max_mated_per_id: int | None = None,
    max_unmated_per_id: int | None = None,
    max_unmated_ids: int | None = None,
    gallery_size: int | None = None,
    sizes: ProbeSizeDistribution | None = None,
    degradation: str | SurveillanceDegradation | None = "surveillance",
    seed: int = 0,
    name: str | None = None,
    identities: dict[str, list[str]] | None = None,
) -> OpenSetProtocol:
    """Choose watch-list, gallery and probes from an identity folder (see the module doc).

    ``identities`` (name -> image paths) replaces scanning ``root``, e.g. to draw from the
    people of one split only.

    ``n_watchlist`` defaults to half of the identities that have more than ``gallery_per_id``
    images. The returned protocol decodes and degrades images lazily; ``extra`` holds the
    choices and probe-size statistics.
    """
    root = Path(root)
    folders = _scan(root) if identities is None else {k: list(v) for k, v in identities.items()}
    sizes = sizes or ProbeSizeDistribution()
    if degradation is None or isinstance(degradation, str):
        deg = parse_degradation(degradation)
    else:
        deg = degradation
    rng = np.random.default_rng(seed)
    names = sorted(folders)
    eligible = [n for n in names if len(folders[n]) > gallery_per_id]
    if not eligible:
        raise ValueError(f"{root}: no identity has more than {gallery_per_id} image(s)")
    k = len(eligible) // 2 if n_watchlist is None else int(n_watchlist)
    if not 1 <= k <= len(eligible):
        raise ValueError(f"n_watchlist must be in [1, {len(eligible)}] for {root}, got {k}")
    watch = sorted(eligible[i] for i in rng.permutation(len(eligible))[:k])
    others = [n for n in names if n not in set(watch)]
    if max_unmated_ids is not None:
        others = sorted(others[i] for i in rng.permutation(len(others))[:max_unmated_ids])
    if not others:
        raise ValueError(f"{root}: no identity left for unmated probes; lower n_watchlist")

    def token(n: str) -> str:
        return "_".join(n.split())

    g_paths, g_ids, m_paths, m_ids, u_paths, u_ids = [], [], [], [], [], []
    for n in watch:
        files = [folders[n][i] for i in rng.permutation(len(folders[n]))]
        g_paths += files[:gallery_per_id]
        g_ids += [token(n)] * gallery_per_id
        rest = files[gallery_per_id:][:max_mated_per_id]
        m_paths += rest
        m_ids += [token(n)] * len(rest)
    for n in others:
        files = [folders[n][i] for i in rng.permutation(len(folders[n]))][:max_unmated_per_id]
        u_paths += files
        u_ids += [token(n)] * len(files)
    # sizes are drawn up front (no decoding needed); a size above the source image's is
    # capped when the probe is made, which only matters for sources smaller than 124 pixels
    m_sizes = [sizes.sample(rng, sizes.max_height) for _ in m_paths]
    u_sizes = [sizes.sample(rng, sizes.max_height) for _ in u_paths]
    all_sizes = np.array(m_sizes + u_sizes, dtype=float)
    extra = {
        "generator": "btnet protocol openset",
        "source": str(root),
        "seed": seed,
        "watchlist_size": len(watch),
        "gallery_per_id": gallery_per_id,
        "unmated_identities": len(others),
        "probe_size_hw_mean": all_sizes.mean(axis=0).round(2).tolist(),
        "probe_size_hw_min": all_sizes.min(axis=0).astype(int).tolist(),
        "probe_size_hw_max": all_sizes.max(axis=0).astype(int).tolist(),
        "size_distribution": asdict(sizes),
        "degradation": None if deg is None else asdict(deg),
        "unmated_ids": u_ids,
    }
    return OpenSetProtocol(
        name=name or f"{root.name}-openset",
        gallery=_GallerySource(g_paths, gallery_size),
        gallery_ids=np.asarray(g_ids, dtype=object),
        mated=_ProbeSource(m_paths, m_sizes, deg, seed, 0),
        mated_ids=np.asarray(m_ids, dtype=object),
        unmated=_ProbeSource(u_paths, u_sizes, deg, seed, 1),
        extra=extra,
    )


def make_openset_protocol(root: str | os.PathLike, out_dir: str | os.PathLike, **kwargs) -> Path:
    """Build (see :func:`build_openset_protocol`) and write in the generic open-set layout."""
    from btnet.data.openset import write_openset

    proto = build_openset_protocol(root, **kwargs)
    meta = {k: v for k, v in proto.extra.items() if k != "unmated_ids"}
    out = write_openset(out_dir, proto, image_format="png", meta=meta)
    log.info("wrote %s: %d gallery, %d mated, %d unmated", out, len(proto.gallery),
             len(proto.mated), len(proto.unmated))
    return out
