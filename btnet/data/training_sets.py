"""One entry point for training sets, whatever their format.

``spec`` is ``builtin:<name>[...]`` (the procedural faces of :mod:`btnet.data.synthetic`), a
RecordIO file / prefix / folder holding a ``.rec``, an image folder ``root/<identity>/...``, or
``lfw-celeba:ROOT`` (the real-face protocol of :mod:`btnet.data.lfw_celeba_protocol`). With
``allow_unlabelled`` (label-free training) a flat folder of images is accepted too.
"""

from __future__ import annotations

import os
from pathlib import Path

from btnet.data.base import FaceDataset
from btnet.data.folders import ImageFolderDataset
from btnet.data.recordio import RecordDataset

BUILTIN_PREFIX = "builtin:"


def is_record_spec(spec: str | os.PathLike) -> bool:
    """True if ``spec`` names a RecordIO set (``x.rec``, ``x.idx``, prefix ``x``, or a folder
    containing ``train.rec``)."""
    p = Path(spec)
    if p.suffix in (".rec", ".idx"):
        return True
    if p.is_dir():
        return (p / "train.rec").is_file()
    return p.with_name(p.name + ".rec").is_file()


def open_training_set(
    spec: str | os.PathLike, skip_corrupt: bool = False, min_images: int = 1,
    allow_unlabelled: bool = False,
) -> FaceDataset:
    """Open a training set from a spec string; see the module docstring for the forms."""
    s = os.fspath(spec)
    if s.startswith(BUILTIN_PREFIX):
        from btnet.data.synthetic import open_builtin  # heavy and optional: import lazily

        return open_builtin(s)
    if s.startswith("lfw-celeba:"):  # the real-face protocol of docs/reproduction.md
        from btnet.data.lfw_celeba_protocol import lfw_celeba_training_set

        return lfw_celeba_training_set(s[len("lfw-celeba:"):], min_images=max(2, min_images))
    if is_record_spec(s):
        if min_images > 1:
            raise ValueError(f"{s}: min_images is only supported for image folders")
        return RecordDataset(s, skip_corrupt=skip_corrupt)
    p = Path(s)
    if p.is_dir():
        return ImageFolderDataset(p, skip_corrupt=skip_corrupt, min_images=min_images,
                                  allow_flat=allow_unlabelled)
    raise FileNotFoundError(
        f"training set not found: {s} (expected an image folder root/<identity>/<image> "
        "(or, for label-free training, a flat folder of images), a RecordIO prefix or .rec "
        "file, or builtin:<name>)"
    )
