"""Image-folder training sets: ``root/<identity>/<image>``.

Identities are the sub-folders in sorted order (label = position), so the same folder always
gives the same labels. Folders with no images are left out and reported (``empty_identities``);
loose files directly under ``root`` are ignored and counted, since they belong to no identity.

A *flat* folder (images directly under ``root``, no identity sub-folders) has no labels. Only
label-free training can use it (``allow_flat=True``: every image gets label -1 and
``labelled`` is False); everywhere else it is refused with that explanation, never given
made-up identities.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from btnet.data.images import CorruptImageError, decode_image, is_image_file

log = logging.getLogger(__name__)


def scan_image_folder(root: str | os.PathLike) -> tuple[list[str], list[str], list[int], list[str]]:
    """Walk ``root`` and return (class names, image paths, labels, empty identity names).

    Images may sit in nested sub-folders of an identity folder; they all belong to it.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    names: list[str] = []
    paths: list[str] = []
    labels: list[int] = []
    empty: list[str] = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        files: list[str] = []
        for dirpath, dirnames, filenames in os.walk(entry.path, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files.extend(os.path.join(dirpath, f) for f in sorted(filenames) if is_image_file(f))
        if not files:
            empty.append(entry.name)
            continue
        label = len(names)
        names.append(entry.name)
        paths.extend(files)
        labels.extend([label] * len(files))
    return names, paths, labels, empty


def scan_flat_folder(root: str | os.PathLike) -> list[str]:
    """The image files directly under ``root`` (sorted; sub-folders are not entered)."""
    return [e.path for e in sorted(os.scandir(root), key=lambda e: e.name)
            if e.is_file() and not e.name.startswith(".") and is_image_file(e.name)]


UNLABELLED = -1  # the label of every image of a flat folder


class ImageFolderDataset:
    """A :class:`~btnet.data.base.FaceDataset` over ``root/<identity>/<image>`` files.

    ``min_images`` drops identities with fewer images (e.g. 2 for metric learning).
    ``skip_corrupt=True`` replaces an undecodable file by another image of the same identity,
    counts it in ``skipped`` and logs the path; otherwise the error names the file.
    ``allow_flat=True`` accepts a folder of images without identity sub-folders as an
    unlabelled set (labels :data:`UNLABELLED`, ``num_classes`` 0, ``labelled`` False).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        skip_corrupt: bool = False,
        min_images: int = 1,
        name: str | None = None,
        allow_flat: bool = False,
    ):
        self.root = Path(root)
        self.name = name or self.root.name
        self.skip_corrupt = skip_corrupt
        self.skipped = 0
        names, paths, labels, empty = scan_image_folder(self.root)
        self.empty_identities = empty
        loose = scan_flat_folder(self.root)
        self.loose_files = len(loose)
        self.labelled = True
        if not paths and loose:
            if not allow_flat:
                raise ValueError(
                    f"{self.root}: {len(loose)} image(s) directly under it and no identity "
                    "sub-folders, i.e. no labels: only label-free training takes such a folder "
                    "(btnet branch add, or branch.objective=distill); for anything else sort the "
                    "images into root/<identity>/<image>"
                )
            self.labelled = False
            self.class_names = []
            self.paths = loose
            self.labels = np.full(len(loose), UNLABELLED, dtype=np.int64)
            self.num_classes = 0
            self._by_label = None
            log.info("%s: a flat folder of %d unlabelled images", self.root, len(loose))
            return
        if empty:
            log.warning("%s: %d identity folder(s) without images left out (e.g. %s)",
                        self.root, len(empty), empty[0])
        if self.loose_files:
            log.warning("%s: %d image(s) directly under the root belong to no identity; ignored",
                        self.root, self.loose_files)
        lab = np.asarray(labels, dtype=np.int64)
        if min_images > 1 and len(lab):
            counts = np.bincount(lab, minlength=len(names))
            keep_cls = np.flatnonzero(counts >= min_images)
            remap = np.full(len(names), -1, dtype=np.int64)
            remap[keep_cls] = np.arange(len(keep_cls))
            keep = remap[lab] >= 0
            paths = [p for p, k in zip(paths, keep) if k]
            lab = remap[lab[keep]]
            names = [names[c] for c in keep_cls]
        if not paths:
            raise ValueError(f"{self.root}: no identity folders with images (expected "
                             "root/<identity>/<image>.jpg)")
        self.class_names = names
        self.paths = paths
        self.labels = lab
        self.num_classes = len(names)
        self._by_label: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def read_encoded(self, index: int) -> bytes:
        return Path(self.paths[index]).read_bytes()

    def source_name(self, index: int) -> str:
        return self.paths[index]

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        index = int(index)
        label = int(self.labels[index])
        try:
            return decode_image(self.read_encoded(index), self.paths[index]), label
        except (CorruptImageError, OSError) as exc:
            if not self.skip_corrupt:
                if isinstance(exc, CorruptImageError):
                    raise
                raise CorruptImageError(f"cannot read {self.paths[index]}: {exc}") from exc
            return self._substitute(index, label, exc), label

    def _substitute(self, index: int, label: int, exc: Exception) -> np.ndarray:
        self.skipped += 1
        log.warning("skipping corrupt image (%s); %d skipped so far in this process",
                    exc, self.skipped)
        if not self.labelled:  # any other image will do: there are no identities to keep
            for j in (*range(index + 1, len(self)), *range(index)):
                try:
                    return decode_image(self.read_encoded(j), self.paths[j])
                except (CorruptImageError, OSError):
                    self.skipped += 1
            raise CorruptImageError(f"{self.paths[index]}: corrupt, and no other image of "
                                    f"{self.root} is readable") from exc
        if self._by_label is None:
            order = np.argsort(self.labels, kind="stable")
            bounds = np.searchsorted(self.labels[order], np.arange(self.num_classes + 1))
            self._by_label = [order[bounds[c] : bounds[c + 1]] for c in range(self.num_classes)]
        for j in self._by_label[label]:
            if int(j) == index:
                continue
            try:
                return decode_image(self.read_encoded(int(j)), self.paths[int(j)])
            except (CorruptImageError, OSError):
                self.skipped += 1
        raise CorruptImageError(f"{self.paths[index]}: corrupt, and identity "
                                f"{self.class_names[label]!r} has no readable image to substitute"
                                ) from exc
