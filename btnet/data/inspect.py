"""What a dataset holds, for any supported format (``btnet data inspect``).

Counts come from labels and lists (no decoding); image sizes from the encoded headers of a
sample of images; ``verify=True`` decodes every image and counts the ones that fail.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from btnet.data.base import FaceDataset, ImageSource, OpenSetProtocol, PairSet
from btnet.data.images import CorruptImageError, decode_image, image_size
from btnet.data.recordio import RecordIOError


@dataclass
class DatasetSummary:
    """Counts and sizes of one dataset; ``render()`` gives the text ``btnet data inspect`` prints."""

    path: str
    kind: str
    num_images: int
    num_identities: int | None = None
    per_identity: dict[str, float] | None = None  # min / median / mean / max images per identity
    image_sizes: dict[str, int] = field(default_factory=dict)  # "HxW" -> count in the sample
    sizes_sampled: int = 0
    num_pairs: int | None = None
    num_same: int | None = None
    parts: dict[str, int] = field(default_factory=dict)  # open-set part sizes
    corrupt: int | None = None
    corrupt_examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        return render_summary(self)


def _sample_indices(n: int, sample: int) -> np.ndarray:
    if sample <= 0 or sample >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, sample).round().astype(np.int64))


def _source_name(images, i: int) -> str:
    return images.source_name(i) if hasattr(images, "source_name") else f"image {i}"


def _read(images, i: int, decode: bool) -> tuple[int, int]:
    if hasattr(images, "read_encoded") and not decode:
        return image_size(images.read_encoded(i), _source_name(images, i))
    if hasattr(images, "read_encoded"):
        return decode_image(images.read_encoded(i), _source_name(images, i)).shape[:2]
    item = images[i]
    img = item[0] if isinstance(item, tuple) else item
    return img.shape[:2]


def _scan_sizes(summary: DatasetSummary, images, sample: int, verify: bool) -> None:
    n = len(images)
    idx = np.arange(n) if verify else _sample_indices(n, sample)
    sizes: Counter = Counter()
    bad: list[str] = []
    for i in idx:
        try:
            h, w = _read(images, int(i), verify)
        except (CorruptImageError, RecordIOError, OSError) as exc:
            bad.append(str(exc))
            continue
        sizes[f"{h}x{w}"] += 1
    summary.image_sizes = dict(sizes.most_common())
    summary.sizes_sampled = len(idx)
    if verify or bad:
        summary.corrupt = len(bad)
        summary.corrupt_examples = bad[:5]


def _per_identity(labels: np.ndarray) -> dict[str, float]:
    counts = np.bincount(labels) if len(labels) else np.zeros(0, np.int64)
    counts = counts[counts > 0]
    if not len(counts):
        return {}
    return {"min": int(counts.min()), "median": float(np.median(counts)),
            "mean": float(counts.mean()), "max": int(counts.max())}


def summarize_training_set(ds: FaceDataset, path: str = "", kind: str = "",
                           sample: int = 500, verify: bool = False) -> DatasetSummary:
    labels = np.asarray(ds.labels, dtype=np.int64)
    s = DatasetSummary(path=path or ds.name, kind=kind or type(ds).__name__, num_images=len(ds),
                       num_identities=int(len(np.unique(labels))),
                       per_identity=_per_identity(labels))
    if s.num_identities != ds.num_classes:
        s.notes.append(f"num_classes = {ds.num_classes} (some classes have no images)")
    for attr, text in (("empty_identities", "identity folders without images left out"),
                       ("loose_files", "images directly under the root ignored")):
        val = getattr(ds, attr, None)
        n = len(val) if isinstance(val, list) else val
        if n:
            s.notes.append(f"{n} {text}")
    if getattr(ds, "property", None):
        s.notes.append("property: {},{},{}".format(*ds.property))
    if hasattr(ds, "has_meta"):
        s.notes.append("insightface layout (meta record at key 0)" if ds.has_meta
                       else "im2rec layout (no meta record)")
    _scan_sizes(s, ds, sample, verify)
    return s


def summarize_pair_set(ps: PairSet, path: str = "", kind: str = "pairs",
                       sample: int = 500, verify: bool = False) -> DatasetSummary:
    s = DatasetSummary(path=path or ps.name, kind=kind, num_images=len(ps.images),
                       num_pairs=len(ps), num_same=int(ps.issame.sum()))
    _scan_sizes(s, ps.images, sample, verify)
    return s


def summarize_openset(p: OpenSetProtocol, path: str = "", sample: int = 500,
                      verify: bool = False) -> DatasetSummary:
    parts: dict[str, ImageSource] = {"gallery": p.gallery, "mated": p.mated, "unmated": p.unmated}
    total = sum(len(v) for v in parts.values())
    gids = list(np.asarray(p.gallery_ids).tolist())
    s = DatasetSummary(path=path or p.name, kind=f"openset ({p.extra.get('format', '?')})",
                       num_images=total, num_identities=len(set(gids)),
                       parts={k: len(v) for k, v in parts.items()})
    inv = {g: i for i, g in enumerate(dict.fromkeys(gids))}
    s.per_identity = _per_identity(np.asarray([inv[g] for g in gids], dtype=np.int64))
    s.parts["mated identities"] = len(set(np.asarray(p.mated_ids).tolist()))
    sizes: Counter = Counter()
    sampled = 0
    corrupt = 0
    examples: list[str] = []
    for src in parts.values():
        sub = DatasetSummary(path="", kind="", num_images=len(src))
        _scan_sizes(sub, src, sample // 3 if sample > 0 else 0, verify)
        sizes.update(sub.image_sizes)
        sampled += sub.sizes_sampled
        corrupt += sub.corrupt or 0
        examples += sub.corrupt_examples
    s.image_sizes = dict(sizes.most_common())
    s.sizes_sampled = sampled
    if verify or corrupt:
        s.corrupt, s.corrupt_examples = corrupt, examples[:5]
    return s


def inspect_dataset(path: str | os.PathLike, sample: int = 500, verify: bool = False,
                    root: str | os.PathLike | None = None) -> DatasetSummary:
    """Summarise a training set, pair set or open-set protocol at ``path``."""
    from btnet.data.openset import SURVFACE_DIR, open_openset
    from btnet.data.pair_sets import open_pair_set
    from btnet.data.training_sets import BUILTIN_PREFIX, is_record_spec, open_training_set

    spec = os.fspath(path)
    if spec.startswith(BUILTIN_PREFIX) or is_record_spec(spec):
        ds = open_training_set(spec)
        kind = "builtin" if spec.startswith(BUILTIN_PREFIX) else "recordio"
        return summarize_training_set(ds, spec, kind, sample, verify)
    p = Path(spec)
    if not p.exists():
        raise FileNotFoundError(f"dataset not found: {p}")
    if p.is_dir():
        if (p / "gallery.txt").is_file() or (p / SURVFACE_DIR).is_dir() or (
            p / "gallery_img_ID_pairs.mat"
        ).is_file():
            return summarize_openset(open_openset(p), spec, sample, verify)
        if (p / "pairs.txt").is_file():
            return summarize_pair_set(open_pair_set(p, root), spec, "pairs (LFW pairs.txt)",
                                      sample, verify)
        return summarize_training_set(open_training_set(p), spec, "image folder", sample, verify)
    kind = "pairs (.bin)" if p.suffix == ".bin" else "pairs (list)"
    return summarize_pair_set(open_pair_set(p, root), spec, kind, sample, verify)


def render_summary(s: DatasetSummary) -> str:
    """Human-readable multi-line text of a :class:`DatasetSummary`."""
    lines = [f"{s.path}", f"  format:      {s.kind}", f"  images:      {s.num_images}"]
    if s.num_identities is not None:
        lines.append(f"  identities:  {s.num_identities}")
    if s.per_identity:
        d = s.per_identity
        lines.append(f"  per identity: min {d['min']}, median {d['median']:g}, "
                     f"mean {d['mean']:.2f}, max {d['max']}")
    if s.num_pairs is not None:
        lines.append(f"  pairs:       {s.num_pairs} ({s.num_same} same, "
                     f"{s.num_pairs - (s.num_same or 0)} different)")
    for k, v in s.parts.items():
        lines.append(f"  {k + ':':12s} {v}")
    if s.image_sizes:
        items = list(s.image_sizes.items())
        shown = ", ".join(f"{k} ({v})" for k, v in items[:6])
        more = f", ... {len(items) - 6} more" if len(items) > 6 else ""
        lines.append(f"  sizes (HxW) in {s.sizes_sampled} images: {shown}{more}")
    if s.corrupt is not None:
        lines.append(f"  corrupt:     {s.corrupt}")
        lines += [f"    {e}" for e in s.corrupt_examples]
    lines += [f"  note: {n}" for n in s.notes]
    return "\n".join(lines)
