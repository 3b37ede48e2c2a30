"""The one-line API re-exported at ``btnet``: load, build, encode, evaluate, train.

Each function is a thin door onto a layer below (``inference``, ``models``, ``evaluation``,
``training``); heavy modules are imported inside the functions, so ``import btnet`` stays fast
and serving an ONNX export never imports PyTorch::

    import btnet
    encoder = btnet.load("runs/cpu_btnet")                  # model / run / ONNX folder, .pth
    result = btnet.encode(encoder, faces)                   # any sizes; .embeddings, .paths
    model = btnet.create_model("btnet_iresnet50")           # trunk + branches 7/14/28
    rows = btnet.evaluate_pairs(encoder, "lfw/pairs.txt")   # or a .bin
    run = btnet.train("configs/cpu/branch.yaml")            # run.model_path
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from btnet.evaluation.verification import VerificationResult
    from btnet.inference.encoding import Encoder, EncodeResult
    from btnet.training.api import TrainResult

BTNET_PREFIX = "btnet_"


def load(source: str | Path, **kwargs: Any) -> Encoder:
    """An encoder for ``source``, routing faces with the selector stored beside the model.

    ``source``: a stored model folder or a training output folder, an ONNX export folder
    (onnxruntime, no PyTorch), an arcface_torch ``backbone.pth`` or ``.onnx``, ``mm:7=DIR,...``
    or ``NAME=SOURCE``. ``kwargs`` go to :func:`btnet.inference.load_encoder` (``selector``,
    ``device``, ``threads``, ``share_weights``, ``input_size``). The torch model is at
    ``encoder.model`` (BTNet) or ``encoder.backbone`` (plain recogniser).
    """
    from btnet.inference.loading import load_encoder

    return load_encoder(source, **kwargs)


def list_models() -> list[str]:
    """Names :func:`create_model` accepts (``btnet_<arch>`` builds a BTNet on that trunk)."""
    from btnet.models.registry import ARCHITECTURES

    return [*ARCHITECTURES, *(BTNET_PREFIX + a for a in ARCHITECTURES)]


def create_model(
    name: str, *, resolutions: Iterable[int] | None = None, **kwargs: Any
) -> nn.Module:
    """A new (untrained) model by name, like ``timm.create_model``.

    ``create_model("iresnet50")`` is a plain backbone; ``create_model("btnet_iresnet50")`` or
    any architecture with ``resolutions=(7, 14, 28)`` is a BTNet on that trunk (default
    branches: every unit resolution below the canonical size except the largest, 7/14/28 at
    112). ``kwargs`` configure the backbone (``input_size``, ``width``, ``embedding_size``, ...).
    """
    from btnet.models import BTNet, build_backbone

    as_btnet = name.startswith(BTNET_PREFIX)
    backbone = build_backbone(name.removeprefix(BTNET_PREFIX), **kwargs)
    if resolutions is None and not as_btnet:
        return backbone
    if resolutions is None:
        resolutions = backbone.available_resolutions()[:-1]
    return BTNet(backbone, tuple(int(r) for r in resolutions))


def as_encoder(model: Encoder | nn.Module | str | Path, **kwargs: Any) -> Encoder:
    """An encoder for an encoder (itself), a source (:func:`load`) or an in-memory model."""
    if hasattr(model, "encode"):
        return model  # type: ignore[return-value]
    if isinstance(model, (str, Path)):
        return load(model, **kwargs)
    from btnet.inference.encoders import MultiResolutionEncoder, UpsamplingEncoder
    from btnet.models import BTNet

    if isinstance(model, BTNet):
        return MultiResolutionEncoder(model, **kwargs)
    return UpsamplingEncoder(model, **kwargs)


def encode(
    model: Encoder | nn.Module | str | Path,
    images: Sequence[np.ndarray | str | Path] | np.ndarray,
    *,
    batch_size: int = 64,
    flip: bool = False,
    progress: bool = False,
) -> EncodeResult:
    """L2-normalised embeddings of faces of any size (uint8 RGB arrays or image files).

    Each face goes through the path its size selects, at that path's resolution; the result
    says which (``paths``) and from what size (``sizes``).
    """
    from btnet.data.images import read_image

    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    faces = [read_image(im) if isinstance(im, (str, Path)) else np.asarray(im) for im in images]
    return as_encoder(model).encode(faces, batch_size=batch_size, flip=flip, progress=progress)


def evaluate_pairs(
    model: Encoder | nn.Module | str | Path,
    pairs: Any,
    *,
    settings: str | Sequence[str] | None = None,
    root: str | Path | None = None,
    max_pairs: int | None = None,
    flip: bool = False,
    batch_size: int = 64,
    progress: bool = False,
    **kwargs: Any,
) -> list[VerificationResult]:
    """1:1 verification of a pair set at each resolution setting (one result per setting).

    ``pairs``: a ``.bin``, an LFW ``pairs.txt`` (or its folder), a plain pair list, or a
    loaded ``PairSet``. ``settings`` such as ``"S&7,7&7"`` (S = the model's canonical size;
    default: the paper's Table 1 settings). ``kwargs`` go to
    :func:`btnet.evaluation.verification.evaluate_pairs` (``n_folds``, ``far_targets``, ...).
    """
    from btnet.data.verification import open_pair_set
    from btnet.evaluation.verification import evaluate_verification, parse_settings, subset_pairs

    encoder = as_encoder(model)
    pairset = pairs if hasattr(pairs, "issame") else open_pair_set(pairs, root)
    pairset = subset_pairs(pairset, max_pairs)
    canonical = int(encoder.canonical)
    return evaluate_verification(
        [encoder], [pairset], parse_settings(settings, canonical), canonical,
        flip=flip, batch_size=batch_size, progress=progress, **kwargs,
    )


def train(config: Any, overrides: Any = None, **kwargs: Any) -> TrainResult:
    """Train what a YAML config (path, dict or ``Config``) describes; see :mod:`btnet.training`.

    ``overrides`` like ``["train.max_steps=50"]``; ``kwargs``: ``output_dir``, ``resume``.
    Returns where the stored model is (``.model_path``) and the final metrics.
    """
    from btnet.training.api import train as run

    return run(config, overrides, **kwargs)
