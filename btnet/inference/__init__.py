"""Inference: one encoder for faces of any size, over PyTorch or onnxruntime.

- :func:`load_encoder` opens any model source (stored folder, ONNX export, ``backbone.pth``,
  ``mm:`` spec) with its stored branch selector;
- :class:`RoutedEncoder` is the one route -> resize -> batch -> flip -> normalise loop, returning
  an :class:`EncodeResult`; backends only run a path on a batch (:class:`PathRunner`);
- :func:`l2_normalize` is the one normalisation every score in btnet is built on.

Names are imported lazily: the onnxruntime path never imports PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CHUNK": "btnet.inference.encoding",
    "EncodeResult": "btnet.inference.encoding",
    "Encoder": "btnet.inference.encoding",
    "PathRunner": "btnet.inference.encoding",
    "RoutedEncoder": "btnet.inference.encoding",
    "l2_normalize": "btnet.inference.encoding",
    "normalise_batch": "btnet.inference.encoding",
    "load_encoder": "btnet.inference.loading",
    "OnnxEncoder": "btnet.inference.onnx_backend",
    "OnnxRunner": "btnet.inference.onnx_backend",
    "MultiResolutionEncoder": "btnet.inference.encoders",
    "PerResolutionEncoder": "btnet.inference.encoders",
    "TorchRunner": "btnet.inference.encoders",
    "UpsamplingEncoder": "btnet.inference.encoders",
    "fit_to": "btnet.data.resolution",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'btnet.inference' has no attribute {name!r}")
