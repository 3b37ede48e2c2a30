"""PyTorch encoders: a BTNet, an up-sampling baseline or phi_mm behind :class:`RoutedEncoder`.

Each recogniser owns its *input convention* through its selector: a BTNet routes each face to
the path its size selects and feeds it at that path's native resolution (no interpolation up to
the canonical size), an up-sampling baseline (phi_hr, phi_mr) has one path, the canonical size,
and phi_mm picks its per-resolution model. The loop itself is shared with onnxruntime
(:mod:`btnet.inference.encoding`); PyTorch only contributes :class:`TorchRunner`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from btnet.data.resolution import fit_to
from btnet.inference.encoding import Encoder, EncodeResult, RoutedEncoder
from btnet.models import Backbone, BranchSelector, BTNet

__all__ = [
    "EncodeResult",
    "Encoder",
    "MultiResolutionEncoder",
    "PerResolutionEncoder",
    "TorchRunner",
    "UpsamplingEncoder",
    "fit_to",
]


class TorchRunner:
    """Runs path ``size`` of a PyTorch model: ``module_for(size)`` gives the module (cached)."""

    def __init__(self, module_for: Callable[[int], nn.Module], device: str | torch.device = "cpu"):
        self.module_for = module_for
        self.device = torch.device(device)
        self._modules: dict[int, nn.Module] = {}

    def module(self, size: int) -> nn.Module:
        if size not in self._modules:
            self._modules[size] = self.module_for(size).eval().to(self.device)
        return self._modules[size]

    @torch.inference_mode()
    def run(self, size: int, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.device)
        return self.module(size)(x).float().cpu().numpy()


class MultiResolutionEncoder(RoutedEncoder):
    """A BTNet behind its branch-selection policy: any face size in, one shared space out.

    Pass the selector stored with the model (``btnet.load`` does); without one the default
    rule (min(W, H), nearest path) is used.
    """

    def __init__(
        self,
        model: BTNet,
        selector: BranchSelector | None = None,
        *,
        name: str = "BTNet",
        device: str | torch.device = "cpu",
    ):
        self.model = model.eval().to(device)
        super().__init__(
            TorchRunner(model.path, device),
            selector or BranchSelector.from_rule(model.input_sizes, "min", "near"),
            canonical=model.canonical,
            embedding_size=model.embedding_size,
            name=name,
            served=model.input_sizes,
        )

    with_selector = RoutedEncoder.replace_selector


class UpsamplingEncoder(RoutedEncoder):
    """A plain recogniser (phi_hr, phi_mr): every face is resized to the canonical size."""

    def __init__(self, backbone: Backbone, *, name: str = "model", device: str | torch.device = "cpu"):
        self.backbone = backbone.eval().to(device)
        size = int(backbone.input_size)
        super().__init__(
            TorchRunner(lambda _: self.backbone, device),
            BranchSelector((size,), (), "min", "custom"),
            canonical=size,
            embedding_size=backbone.embedding_size,
            name=name,
        )


class PerResolutionEncoder(RoutedEncoder):
    """phi_mm: one independently trained model per input resolution, chosen by face size.

    The models do not share an embedding space, so cross-resolution comparisons are undefined
    (``shared_space`` is False); evaluation reports only same-resolution settings for it.
    """

    def __init__(
        self,
        models: dict[int, nn.Module],
        selector: BranchSelector | None = None,
        *,
        embedding_size: int,
        name: str = "phi_mm",
        device: str | torch.device = "cpu",
    ):
        self.models = {int(r): m.eval().to(device) for r, m in models.items()}
        super().__init__(
            TorchRunner(self.models.__getitem__, device),
            selector or BranchSelector.from_rule(sorted(self.models), "min", "near"),
            canonical=max(self.models),
            embedding_size=embedding_size,
            name=name,
            served=sorted(self.models),
            shared_space=False,
        )
