"""MobileFaceNet with the insightface ``arcface_torch`` ``mbf`` parameter layout.

The light model deployments use; it is the second backbone family so that nothing in the
Branch-to-Trunk construction depends on IResNet. Units are the entries of ``layers`` (stem,
its depthwise follow-up, then alternating strided DepthWise and Residual stages); the head is
``conv_sep`` plus the global depthwise ``features`` block, whose kernel equals the final map size
so that canonical sizes other than 112 work.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from btnet.models.backbone import Backbone


class ConvBlock(nn.Module):
    """Conv-BN-PReLU."""

    def __init__(self, cin, cout, kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups=1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, groups=groups, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(num_features=cout),
            nn.PReLU(num_parameters=cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LinearBlock(nn.Module):
    """Conv-BN without activation (the projection of an inverted bottleneck)."""

    def __init__(self, cin, cout, kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups=1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(num_features=cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """Expand (1x1) - depthwise (kxk, maybe strided) - project (1x1), optional residual."""

    def __init__(self, cin, cout, residual=False, kernel=(3, 3), stride=(2, 2), padding=(1, 1), groups=1):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(cin, groups, kernel=(1, 1), padding=(0, 0), stride=(1, 1)),
            ConvBlock(groups, groups, groups=groups, kernel=kernel, padding=padding, stride=stride),
            LinearBlock(groups, cout, kernel=(1, 1), padding=(0, 0), stride=(1, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class Residual(nn.Module):
    """A stack of residual DepthWise blocks at constant resolution."""

    def __init__(self, c, num_block, groups, kernel=(3, 3), stride=(1, 1), padding=(1, 1)):
        super().__init__()
        self.layers = nn.Sequential(
            *[DepthWise(c, c, True, kernel, stride, padding, groups) for _ in range(num_block)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), -1)


class GDC(nn.Module):
    """Global depthwise convolution head: a kxk depthwise conv over the final map, then a linear."""

    def __init__(self, embedding_size: int, kernel: int = 7):
        super().__init__()
        self.layers = nn.Sequential(
            LinearBlock(512, 512, groups=512, kernel=(kernel, kernel), stride=(1, 1), padding=(0, 0)),
            Flatten(),
            nn.Linear(512, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MobileFaceNet(Backbone):
    """arcface_torch's ``mbf`` (blocks (1, 4, 6, 2), scale 2) and ``mbf_large`` layouts."""

    def __init__(
        self,
        *,
        arch: str = "mbf",
        input_size: int = 112,
        embedding_size: int = 512,
        blocks: tuple[int, int, int, int] = (1, 4, 6, 2),
        scale: int = 2,
    ):
        super().__init__()
        if input_size < 16:
            raise ValueError(f"input_size must be at least 16, got {input_size}")
        self.arch = arch
        self.input_size = int(input_size)
        self.embedding_size = int(embedding_size)
        self.config = {
            "arch": arch,
            "input_size": self.input_size,
            "embedding_size": self.embedding_size,
            "blocks": list(blocks),
            "scale": int(scale),
        }
        c = 64 * scale
        self.layers = nn.ModuleList()
        self.layers.append(ConvBlock(3, c, kernel=(3, 3), stride=(2, 2), padding=(1, 1)))
        if blocks[0] == 1:
            self.layers.append(ConvBlock(c, c, kernel=(3, 3), stride=(1, 1), padding=(1, 1), groups=64))
        else:
            self.layers.append(Residual(c, num_block=blocks[0], groups=128))
        self.layers.extend(
            [
                DepthWise(c, c, kernel=(3, 3), stride=(2, 2), padding=(1, 1), groups=128),
                Residual(c, num_block=blocks[1], groups=128),
                DepthWise(c, 2 * c, kernel=(3, 3), stride=(2, 2), padding=(1, 1), groups=256),
                Residual(2 * c, num_block=blocks[2], groups=256),
                DepthWise(2 * c, 2 * c, kernel=(3, 3), stride=(2, 2), padding=(1, 1), groups=512),
                Residual(2 * c, num_block=blocks[3], groups=256),
            ]
        )
        final = self.input_size
        for _ in range(4):
            final = math.floor((final - 1) / 2) + 1
        self.conv_sep = ConvBlock(2 * c, 512, kernel=(1, 1), stride=(1, 1), padding=(0, 0))
        self.features = GDC(self.embedding_size, kernel=final)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    m.bias.data.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def reset_weights(self) -> None:
        super().reset_weights()
        self._init_weights()

    def unit_specs(self) -> list[tuple[str, tuple[str, ...]]]:
        # A branch body or a tail copy holds only some of the layers: list what is here.
        layers = self._modules.get("layers")
        return [] if layers is None else [(f"layers.{i}", (f"layers.{i}",)) for i in layers._modules]

    def head_module_names(self) -> list[str]:
        return ["conv_sep", "features"]

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.conv_sep(x))
