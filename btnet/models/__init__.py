"""Models: backbones (IResNet, MobileFaceNet), the Branch-to-Trunk Network, branch selection.

Pure ``nn.Module`` code without file I/O; storage lives in :mod:`btnet.io`.
"""

from btnet.models.backbone import Backbone
from btnet.models.btnet import BTNet, PathModule
from btnet.models.registry import ARCHITECTURES, backbone_from_config, build_backbone
from btnet.models.selection import BranchSelector, all_strategies

__all__ = [
    "ARCHITECTURES",
    "BTNet",
    "Backbone",
    "BranchSelector",
    "PathModule",
    "all_strategies",
    "backbone_from_config",
    "build_backbone",
]
