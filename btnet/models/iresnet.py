"""IResNet backbones with the insightface ``arcface_torch`` parameter layout.

Keeping the exact module names (``conv1, bn1, prelu, layer1..layer4, bn2, dropout, fc,
features``; blocks ``bn1, conv1, bn2, prelu, conv2, bn3, downsample.{0,1}``) means a
``backbone.pth`` trained by arcface_torch loads with ``strict=True``. Two generalisations serve
the multi-resolution method: a width multiplier (CPU-sized models) and any canonical input size
(the flattened head adapts, e.g. 56 -> 4x4).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from btnet.models.backbone import Backbone

IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
    "iresnet200": (6, 26, 60, 6),
}


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """Pre-activation-style residual unit: BN-conv-BN-PReLU-conv(stride)-BN plus shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(Backbone):
    """IResNet-{18,34,50,100,200}; units are the stem and every residual block."""

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        *,
        arch: str = "iresnet",
        input_size: int = 112,
        width: int = 64,
        embedding_size: int = 512,
        dropout: float = 0.0,
    ):
        super().__init__()
        if input_size < 16:
            raise ValueError(f"input_size must be at least 16, got {input_size}")
        self.arch = arch
        self.input_size = int(input_size)
        self.width = int(width)
        self.embedding_size = int(embedding_size)
        self.config = {
            "arch": arch,
            "input_size": self.input_size,
            "width": self.width,
            "embedding_size": self.embedding_size,
            "dropout": float(dropout),
        }
        w = self.width
        self.conv1 = nn.Conv2d(3, w, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w, eps=1e-05)
        self.prelu = nn.PReLU(w)
        inplanes = w
        for i, (planes, blocks) in enumerate(zip((w, 2 * w, 4 * w, 8 * w), layers), start=1):
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=2, bias=False),
                nn.BatchNorm2d(planes, eps=1e-05),
            )
            units = [IBasicBlock(inplanes, planes, 2, downsample)]
            units += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
            setattr(self, f"layer{i}", nn.Sequential(*units))
            inplanes = planes
        final = self.input_size
        for _ in range(4):
            final = math.floor((final - 1) / 2) + 1  # 3x3 conv, stride 2, padding 1
        self.bn2 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(inplanes * final * final, self.embedding_size)
        self.features = nn.BatchNorm1d(self.embedding_size, eps=1e-05)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if hasattr(self, "features"):
            nn.init.constant_(self.features.weight, 1.0)
            self.features.weight.requires_grad = False  # as arcface_torch: a fixed scale

    def reset_weights(self) -> None:
        super().reset_weights()
        self._init_weights()

    def unit_specs(self) -> list[tuple[str, tuple[str, ...]]]:
        # A branch body lacks the later units, a tail copy the earlier ones: list what is here.
        specs: list[tuple[str, tuple[str, ...]]] = []
        if "conv1" in self._modules:
            specs.append(("stem", ("conv1", "bn1", "prelu")))
        for i in range(1, 5):
            layer = self._modules.get(f"layer{i}")
            if layer is not None:
                specs += [(f"layer{i}.{j}", (f"layer{i}.{j}",)) for j in layer._modules]
        return specs

    def head_module_names(self) -> list[str]:
        return ["bn2", "dropout", "fc", "features"]

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(x)
        x = torch.flatten(x, 1)
        x = self.dropout(x)
        return self.features(self.fc(x))
