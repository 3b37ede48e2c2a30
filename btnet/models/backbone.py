"""The contract between a backbone family and the Branch-to-Trunk construction.

BTNet never looks inside a particular architecture: it only needs the ordered list of *units*
(stem and residual blocks), each named by the modules it runs, and the *head* after the last
unit. Any family that describes itself this way (IResNet, MobileFaceNet, ...) can be a trunk.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding of ``x`` through every unit this module holds, then the head."""
        return self.forward_head(self.forward_units(x))

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

    # --- coupling geometry: where a branch for r x r faces can join this trunk --------------
    def coupling_geometry(self) -> CouplingGeometry:
        """Unit output sizes at the canonical input, measured once (one small forward pass)."""
        return CouplingGeometry(self.arch, self.input_size, tuple(self.unit_names),
                                tuple(self.unit_output_sizes()))

    def available_resolutions(self) -> list[int]:
        """Every r some unit outputs at r x r (below the canonical size)."""
        return self.coupling_geometry().available_resolutions()

    def coupling_candidates(self, r: int) -> list[int]:
        """Every unit with an r x r output: where a branch for r can couple (Figure 7)."""
        return self.coupling_geometry().candidates(r)

    def coupling_unit(self, r: int) -> int:
        """Index of the first unit whose output is r x r (BTNet's default coupling point)."""
        return self.coupling_geometry().default_unit(r)

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
        return self._partial_copy(self.unit_module_names(upto), share_weights=False)

    def tail_copy(self, after: int, *, share_weights: bool) -> Backbone:
        """This backbone from unit ``after + 1`` on: the later units and the head.

        With ``share_weights`` every weighted module other than a BatchNorm (convolutions,
        PReLUs, linears) *is* this backbone's module, so the copy trains and stores only its
        own BatchNorms (and owns its parameter-free modules, e.g. dropout, whose train/eval mode
        then follows the copy). Without it the copy owns everything (an untied tail).
        """
        return self._partial_copy(self.tail_module_names(after), share_weights=share_weights)

    def _partial_copy(self, keep: list[str], *, share_weights: bool) -> Backbone:
        """Deep-copy only the modules named in ``keep`` (and their ancestors), maybe sharing leaves.

        Modules outside ``keep`` are entered in the deepcopy memo as themselves, so they are
        not copied before being pruned; shared leaves are entered the same way and stay shared.
        """
        memo: dict[int, object] = {}
        for name, module in self.named_modules():
            inside = any(name == k or name.startswith(k + ".") for k in keep)
            if not inside and not any(k.startswith(name + ".") for k in keep) and name:
                memo[id(module)] = module  # pruned below: do not copy it
            elif share_weights and inside and _is_weighted_leaf(module):
                memo[id(module)] = module
        clone = copy.deepcopy(self, memo)
        _prune(clone, "", keep)
        if share_weights:
            own = {id(t) for t in self.parameters()} | {id(t) for t in self.buffers()}
            for name, module in clone.named_modules():
                direct = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
                if not isinstance(module, BATCH_NORMS) and any(id(t) not in own for t in direct):
                    raise TypeError(f"{type(self).__name__}.{name} holds its own tensors but is not "
                                    "a leaf module: the shared tail cannot share them")
        return clone

    def reset_weights(self) -> None:
        """Re-initialise every parameter (a branch trained from scratch)."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()


BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _is_weighted_leaf(module: nn.Module) -> bool:
    """A module without children that holds tensors and is not a BatchNorm (conv, PReLU, linear)."""
    if isinstance(module, BATCH_NORMS) or next(module.children(), None) is not None:
        return False
    return next(module.parameters(), None) is not None or next(module.buffers(), None) is not None


@dataclass(frozen=True)
class CouplingGeometry:
    """Which unit outputs which spatial size, for a trunk at its canonical input size."""

    arch: str
    canonical: int
    unit_names: tuple[str, ...]
    unit_sizes: tuple[int, ...]

    def available_resolutions(self) -> list[int]:
        return sorted({s for s in self.unit_sizes if s < self.canonical})

    def candidates(self, r: int) -> list[int]:
        return [i for i, size in enumerate(self.unit_sizes) if size == r]

    def default_unit(self, r: int) -> int:
        found = self.candidates(r)
        if not found:
            raise ValueError(
                f"no unit of {self.arch} at input {self.canonical} outputs {r}x{r}; "
                f"branches are possible for {self.available_resolutions()}"
            )
        return found[0]

    def check_unit(self, r: int, unit: int) -> int:
        """``unit`` if it outputs r x r (a deeper coupling point), else a clear error."""
        if int(unit) not in self.candidates(r):
            names = [self.unit_names[i] for i in self.candidates(r)]
            raise ValueError(f"unit {unit} does not output {r}x{r}; units that do: {names}")
        return int(unit)


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
