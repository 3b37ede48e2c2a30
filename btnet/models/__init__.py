"""Models: backbones (IResNet, MobileFaceNet), the Branch-to-Trunk Network, branch selection.

Pure ``nn.Module`` code without file I/O; storage lives in :mod:`btnet.io`. Names are imported
lazily, so ``btnet.models.selection`` (plain Python) can serve torch-free deployments such as
the onnxruntime encoder.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ARCHITECTURES": "btnet.models.registry",
    "BTNet": "btnet.models.btnet",
    "Backbone": "btnet.models.backbone",
    "BranchPath": "btnet.models.btnet",
    "BranchSelector": "btnet.models.selection",
    "all_strategies": "btnet.models.selection",
    "backbone_from_config": "btnet.models.registry",
    "build_backbone": "btnet.models.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'btnet.models' has no attribute {name!r}")
