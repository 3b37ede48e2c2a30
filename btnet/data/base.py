"""The three dataset shapes every reader in :mod:`btnet.data` produces.

Readers differ in file formats; training and evaluation only ever see these interfaces, so a
new format needs one reader and nothing else. Images are always ``uint8`` HxWx3 RGB arrays at
their native size (a 112x112 aligned face, or a 24x20 surveillance crop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ImageSource(Protocol):
    """Random access to images by index (decoded lazily, so a benchmark is never held twice)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


@runtime_checkable
class FaceDataset(Protocol):
    """A labelled training set: ``dataset[i] -> (image, label)`` with labels in ``0..C-1``."""

    name: str
    num_classes: int
    labels: np.ndarray  # int64, one per sample, available without decoding images

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]: ...


@dataclass
class PairSet:
    """A 1:1 verification set: pair k compares ``images[left[k]]`` with ``images[right[k]]``.

    Pairs keep their file order, because the insightface protocol splits them into contiguous
    folds. ``source_format`` says what the pairs were read from (``"bin"``, ``"lfw-pairs"``,
    ``"pair-list"``; empty for sets built in code): the evaluation picks its default accuracy
    protocol from it.
    """

    name: str
    images: ImageSource
    left: np.ndarray
    right: np.ndarray
    issame: np.ndarray
    source_format: str = ""

    def __post_init__(self) -> None:
        self.left = np.asarray(self.left, dtype=np.int64)
        self.right = np.asarray(self.right, dtype=np.int64)
        self.issame = np.asarray(self.issame, dtype=bool)
        if not (len(self.left) == len(self.right) == len(self.issame)):
            raise ValueError(f"{self.name}: left/right/issame lengths differ")

    def __len__(self) -> int:
        return len(self.issame)


@dataclass
class OpenSetProtocol:
    """A 1:N open-set identification protocol (QMUL-SurvFace style).

    ``gallery_ids`` / ``mated_ids`` are identity labels (any hashable values, compared by
    equality); unmated probes belong to identities absent from the gallery.
    """

    name: str
    gallery: ImageSource
    gallery_ids: np.ndarray
    mated: ImageSource
    mated_ids: np.ndarray
    unmated: ImageSource
    extra: dict = field(default_factory=dict)


class ListImageSource:
    """An :class:`ImageSource` over images already in memory (tests, generated probes)."""

    def __init__(self, images: Sequence[np.ndarray]):
        self._images = list(images)

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> np.ndarray:
        return self._images[index]
