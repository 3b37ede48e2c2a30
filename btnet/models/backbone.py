"""The contract between a backbone family and the Branch-to-Trunk construction.

BTNet never looks inside a particular architecture: it only needs the ordered list of *units*
(stem and residual blocks), each named by the modules it runs, and the *head* after the last
unit. Any family that describes itself this way (IResNet, MobileFaceNet, ...) can be a trunk.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn


class Backbone(nn.Module):
    """Base class of every recognition backbone in btnet.

    Subclasses set ``arch``, ``input_size``, ``embedding_size`` and ``config`` (the keyword
    arguments that rebuild them) and implement :meth:`unit_specs`, :meth:`head_module_names` and
    :meth:`forward_head`.
    """

    arch: str
    input_size: int
    embedding_size: int
    config: dict

    # --- what a family describes -------------------------------------------------------------
    def unit_specs(self) -> list[tuple[str, tuple[str, ...]]]:
        """Ordered units: ``(unit name, qualified names of the modules it applies in order)``."""
        raise NotImplementedError

    def head_module_names(self) -> list[str]:
        """Modules after the last unit (their BatchNorms are kept per resolution too)."""
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- what BTNet uses ---------------------------------------------------------------------
    @property
    def unit_names(self) -> list[str]:
        return [name for name, _ in self.unit_specs()]

    def run_unit(
        self, index: int, x: torch.Tensor, specs: list[tuple[str, tuple[str, ...]]] | None = None
    ) -> torch.Tensor:
        for qualified in (specs or self.unit_specs())[index][1]:
            x = self.get_submodule(qualified)(x)
        return x

    def forward_units(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Apply units ``start .. stop-1`` (all remaining ones when ``stop`` is None)."""
        specs = self.unit_specs()
        for i in range(start, len(specs) if stop is None else stop):
            x = self.run_unit(i, x, specs)
        return x

    def forward(
        self, x: torch.Tensor, start: int = 0, return_units: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Embedding of ``x``; ``start`` > 0 treats ``x`` as the output of unit ``start-1``.

        With ``return_units`` the output of every unit (the feature pyramid used for
        distillation) is returned as well.
        """
        outputs: list[torch.Tensor] = []
        specs = self.unit_specs()
        for i in range(start, len(specs)):
            x = self.run_unit(i, x, specs)
            if return_units:
                outputs.append(x)
        emb = self.forward_head(x)
        return (emb, outputs) if return_units else emb

    @torch.no_grad()
    def unit_output_shapes(self, input_size: int | None = None) -> list[tuple[int, int, int]]:
        """``(channels, height, width)`` after each unit for a square input (default: canonical)."""
        size = self.input_size if input_size is None else int(input_size)
        was_training = [m.training for m in self.modules()]
        self.eval()
        try:
            param = next(self.parameters())
            x = torch.zeros(1, 3, size, size, dtype=param.dtype, device=param.device)
            shapes = []
            for i in range(len(self.unit_specs())):
                x = self.run_unit(i, x)
                shapes.append(tuple(x.shape[1:]))
        finally:
            for m, flag in zip(self.modules(), was_training):
                m.training = flag
        return shapes  # type: ignore[return-value]

    def unit_output_sizes(self, input_size: int | None = None) -> list[int]:
        """Spatial size (height) after each unit."""
        return [h for _, h, _ in self.unit_output_shapes(input_size)]

    def unit_module_names(self, upto: int) -> list[str]:
        """Qualified names of all modules used by units ``0 .. upto``."""
        names: list[str] = []
        for _, modules in self.unit_specs()[: upto + 1]:
            names.extend(modules)
        return names

    def tail_module_names(self, after: int) -> list[str]:
        """Modules shared by all paths coupled after unit ``after``: later units plus the head."""
        names: list[str] = []
        for _, modules in self.unit_specs()[after + 1 :]:
            names.extend(modules)
        return names + self.head_module_names()

    def truncated_copy(self, upto: int) -> Backbone:
        """A deep copy holding only what units ``0 .. upto`` need (the body of a branch)."""
        keep = self.unit_module_names(upto)
        clone = copy.deepcopy(self)
        _prune(clone, "", keep)
        return clone

    def reset_weights(self) -> None:
        """Re-initialise every parameter (a branch trained from scratch)."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()


def _prune(module: nn.Module, prefix: str, keep: Iterable[str]) -> None:
    """Delete every sub-module that is neither kept nor an ancestor of a kept one."""
    keep = list(keep)
    for name, child in list(module.named_children()):
        qualified = f"{prefix}{name}"
        if qualified in keep:
            continue
        if any(k.startswith(qualified + ".") for k in keep):
            _prune(child, qualified + ".", keep)
        else:
            delattr(module, name)


def set_strides_to_one(module: nn.Module) -> int:
    """Make every strided convolution of ``module`` keep spatial size; returns how many changed.

    A branch sees an r x r image and must output r x r, so all down-sampling is removed; the
    3x3 convs have padding 1 and the 1x1 shortcut convs no padding, so sizes are preserved.
    """
    changed = 0
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and any(s != 1 for s in m.stride):
            m.stride = (1, 1)
            changed += 1
    return changed
