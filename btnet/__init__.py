"""btnet: Branch-to-Trunk Networks for multi-resolution face recognition.

One line each (see :mod:`btnet.api`)::

    encoder = btnet.load("runs/cpu_btnet")          # model / run / ONNX folder, backbone.pth
    result = btnet.encode(encoder, faces)           # faces of any size -> .embeddings, .paths
    model = btnet.create_model("btnet_iresnet50")   # a new BTNet (or "iresnet50": a backbone)
    rows = btnet.evaluate_pairs(encoder, "lfw/pairs.txt")
    run = btnet.train("configs/cpu/branch.yaml")

Layers, from the bottom up: ``models`` (pure nn.Modules), ``losses``, ``data`` (formats and the
resolution pipeline), ``io`` (safe storage), ``inference`` (encoders for images of any size),
``training``, ``evaluation``, ``deployment``, ``pipeline`` (demo and paper studies) and ``cli``.
Names are imported on first use, so ``import btnet`` is fast and imports no PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = ("as_encoder", "create_model", "encode", "evaluate_pairs", "list_models", "load", "train")
_INFERENCE = ("EncodeResult", "Encoder", "l2_normalize")

__all__ = ["__version__", *_API, *_INFERENCE]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("btnet.api"), name)
    if name in _INFERENCE:
        return getattr(importlib.import_module("btnet.inference"), name)
    raise AttributeError(f"module 'btnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API, *_INFERENCE])
