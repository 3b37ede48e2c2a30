"""Quality-aware routing at inference: estimate what a face holds, shrink it to that branch.

:class:`QualityRoutedEncoder` wraps any size-routed BTNet encoder (PyTorch or onnxruntime):
for each face it asks a :class:`~btnet.models.quality.QualitySelector` for the path matching
the face's estimated effective resolution, resizes the face to that path's size (area
down-sampling, so what the face holds survives) and lets the inner encoder run it, which
routes a p x p face to path p. The selector is stored in the model folder's ``model.json``
under ``quality_selector`` (plain numbers, no pickle) by :func:`save_quality_selector`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from btnet.data.resolution import fit_to
from btnet.models.quality import QualitySelector
from btnet.models.selection import BranchSelector

QUALITY_KEY = "quality_selector"

__all__ = [
    "QUALITY_KEY",
    "QualityRoutedEncoder",
    "calibrate_model",
    "load_quality_encoder",
    "load_quality_selector",
    "save_quality_selector",
]


class QualityRoutedEncoder:
    """A BTNet encoder behind quality-aware routing (same ``encode`` contract as any encoder)."""

    shared_space = True

    def __init__(self, inner, selector: QualitySelector, name: str | None = None):
        missing = set(selector.paths) - set(inner.paths)
        if missing:
            raise ValueError(f"quality selector routes to {sorted(missing)}, which "
                             f"{inner.name} lacks (paths {list(inner.paths)})")
        # Each pre-resized p x p face must land on path p whatever the stored size policy.
        exact = BranchSelector.from_rule(tuple(inner.paths), "min", "near")
        self.inner = inner.with_selector(exact) if hasattr(inner, "with_selector") else inner
        self.selector = selector
        self.name = name or inner.name
        self.canonical = inner.canonical
        self.embedding_size = getattr(inner, "embedding_size", None)

    @property
    def paths(self) -> tuple[int, ...]:
        return tuple(self.inner.paths)

    def with_selector(self, selector) -> QualityRoutedEncoder:
        """Another quality selector, or (a plain BranchSelector) the inner encoder by size."""
        if isinstance(selector, QualitySelector):
            return QualityRoutedEncoder(self.inner, selector, self.name)
        return self.inner.with_selector(selector)

    def route_image(self, img: np.ndarray) -> int:
        return self.selector.select_image(img)

    def encode(self, images: Sequence[np.ndarray], batch_size: int = 64, flip: bool = False,
               progress: bool = False):
        chosen = [self.route_image(img) for img in images]
        resized = [fit_to(img, p) for img, p in zip(images, chosen)]
        result = self.inner.encode(resized, batch_size=batch_size, flip=flip, progress=progress)
        served = list(getattr(result, "paths", chosen))
        if served != chosen:
            raise RuntimeError(f"{self.name}: inner encoder served paths {served[:5]} for "
                               f"quality-routed {chosen[:5]}")
        if getattr(result, "sizes", None) is not None:  # report the faces as they came in
            result.sizes = np.array([img.shape[:2] for img in images], dtype=np.int32)
        return result


# ----------------------------------------------------------------------------- storage


def _model_json(folder: str | os.PathLike) -> Path:
    return Path(folder) / "model.json"


def save_quality_selector(folder: str | os.PathLike, selector: QualitySelector) -> Path:
    """Store ``selector`` in the model folder's ``model.json`` (atomic rewrite)."""
    from btnet.io.atomic import atomic_write_text
    from btnet.io.model_store import read_model_json

    data = read_model_json(folder)
    if data.get("kind") != "btnet":
        raise ValueError(f"{folder}: quality routing needs a BTNet (found a {data.get('kind')})")
    paths = sorted(int(r) for r in data.get("resolutions", [])) + [int(data["canonical"])]
    if list(selector.paths) != paths:
        raise ValueError(f"{folder}: selector paths {list(selector.paths)} differ from the "
                         f"model's {paths}")
    data[QUALITY_KEY] = selector.to_dict()
    path = _model_json(folder)
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def load_quality_selector(folder: str | os.PathLike) -> QualitySelector | None:
    """The stored quality selector of a model folder, or None if it was never calibrated."""
    from btnet.io.model_store import read_model_json

    data = read_model_json(folder)
    if QUALITY_KEY not in data:
        return None
    return QualitySelector.from_dict(data[QUALITY_KEY])


def _split_spec(spec: str) -> tuple[str | None, str]:
    if "=" in spec.split(":", 1)[0] and not spec.startswith("mm:"):
        name, folder = spec.split("=", 1)
        return name, folder
    return None, spec


def load_quality_encoder(spec: str | os.PathLike, device: str = "cpu",
                         name: str | None = None) -> QualityRoutedEncoder:
    """``DIR`` or ``NAME=DIR`` of a calibrated BTNet, served with quality-aware routing."""
    from btnet.inference.loading import load_encoder

    label, folder = _split_spec(str(spec))
    selector = load_quality_selector(folder)
    if selector is None:
        raise ValueError(f"{folder}: no quality calibration stored; run "
                         f"'btnet model calibrate-quality {folder} --images TRAINING_FACES'")
    inner = load_encoder(folder, device=device, name=label or name)
    return QualityRoutedEncoder(inner, selector, name=name or f"{inner.name} [quality]")


class _Faces:
    """Images of a training set (labels dropped), decoded on demand."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.dataset[i][0]


def calibrate_model(folder: str | os.PathLike, images: str | None = None, spec=None,
                    rule: BranchSelector | None = None) -> QualitySelector:
    """Calibrate on the training faces ``images`` (a training-set spec: ``builtin:...``, an
    image folder, a .rec; default: the training set the model records in its meta) and store
    the selector in ``folder``; returns it.

    ``rule`` (default: the model's stored size policy) gives the allocation.
    """
    from btnet.data.training_sets import open_training_set
    from btnet.io.model_store import read_model_json
    from btnet.training.quality_calibration import CalibrationSpec, calibrate_quality_selector

    data = read_model_json(folder)
    if data.get("kind") != "btnet":
        raise ValueError(f"{folder}: quality routing needs a BTNet (found a {data.get('kind')})")
    canonical = int(data["canonical"])
    images = images or data.get("meta", {}).get("train_set")
    if not images:
        raise ValueError(f"{folder}: the model records no training set; name its training "
                         "faces (never the evaluation set) with --images")
    if rule is None:
        paths = sorted(int(r) for r in data["resolutions"]) + [canonical]
        stored = data.get("selector")
        rule = (BranchSelector.from_dict(stored) if stored
                else BranchSelector.from_rule(paths, "min", "near"))
    faces = _Faces(open_training_set(images))
    selector = calibrate_quality_selector(faces, rule, canonical, spec or CalibrationSpec(),
                                          source=str(images))
    save_quality_selector(folder, selector)
    return selector
