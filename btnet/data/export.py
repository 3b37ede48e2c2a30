"""Write any face dataset or pair set in the formats other tools read (e.g. built-in faces)."""

from __future__ import annotations

import os
from pathlib import Path

from btnet.data.base import FaceDataset, PairSet


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
    from btnet.data.pair_sets import export_pairs_to_bin

    return export_pairs_to_bin(pairs, path, quality=quality)
