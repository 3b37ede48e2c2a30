"""The Branch-to-Trunk Network: one trunk, one small branch per low resolution.

For a resolution r the *coupling unit* is the first trunk unit whose output is r x r. The branch
for r is a copy of the trunk from the stem up to and including that unit with every stride set
to 1, so an r x r face keeps its r x r grid (no interpolation) and arrives at the coupling point
with the shape the trunk expects. The units after the coupling point and the head are shared by
all paths; only their BatchNorm layers are kept per resolution, because feature statistics of a
7-pixel face differ from those of a 112-pixel one.

Per-resolution BatchNorm is applied with :func:`torch.func.functional_call`: the trunk keeps its
arcface_torch layout and its own BN (the trunk path), while path r swaps in its own BN
parameters and running statistics for the duration of the call. A path can also be *untied*
(Table 3's rows without a fixed trunk): then it owns a full copy of the shared tail.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.func import functional_call

from btnet.models.backbone import Backbone, set_strides_to_one

TRUNK = "trunk"
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


def _key(r: int) -> str:
    return f"r{int(r)}"


def _pack(name: str) -> str:
    """Module names may not contain dots; '-' never occurs in backbone module names."""
    return name.replace(".", "-")


def _unpack(name: str) -> str:
    return name.replace("-", ".")


class Branch(nn.Module):
    """The body of a branch: the trunk's first ``num_units`` units, strides set to 1."""

    def __init__(self, body: Backbone, num_units: int):
        super().__init__()
        self.body = body
        self.num_units = num_units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.forward_units(x, 0, self.num_units)


class BTNet(nn.Module):
    """A trunk plus branches for ``resolutions``; ``model(x)`` routes by x's spatial size."""

    def __init__(
        self,
        trunk: Backbone,
        resolutions: Iterable[int] = (7, 14, 28),
        pretrained_branches: bool = True,
        couplings: dict[int, int] | None = None,
    ):
        super().__init__()
        self.trunk = trunk
        self.canonical = int(trunk.input_size)
        self.embedding_size = int(trunk.embedding_size)
        self.branches = nn.ModuleDict()
        self.overrides = nn.ModuleDict()
        self.coupling: dict[int, int] = {}
        self.untied: set[int] = set()
        self._unit_sizes = trunk.unit_output_sizes()
        couplings = couplings or {}
        for r in resolutions:
            self.add_resolution(int(r), pretrained=pretrained_branches, unit=couplings.get(int(r)))

    # --- construction ------------------------------------------------------------------------
    @property
    def resolutions(self) -> tuple[int, ...]:
        return tuple(sorted(self.coupling))

    @property
    def paths(self) -> tuple[int, ...]:
        """All input resolutions served, the canonical size (trunk) included."""
        return (*self.resolutions, self.canonical)

    def available_resolutions(self) -> list[int]:
        """Every r some unit outputs at r x r (below the canonical size)."""
        return sorted({s for s in self._unit_sizes if s < self.canonical})

    def coupling_unit(self, r: int) -> int:
        """Index of the first unit whose output is r x r."""
        for i, size in enumerate(self._unit_sizes):
            if size == r:
                return i
        raise ValueError(
            f"no unit of {self.trunk.arch} at input {self.canonical} outputs {r}x{r}; "
            f"branches are possible for {self.available_resolutions()}"
        )

    def coupling_candidates(self, r: int) -> list[int]:
        """Every unit with an r x r output: where a branch for r can couple (Figure 7)."""
        return [i for i, size in enumerate(self._unit_sizes) if size == r]

    def coupling_name(self, r: int) -> str:
        return self.trunk.unit_names[self.coupling[r]]

    def add_resolution(self, r: int, pretrained: bool = True, unit: int | None = None) -> None:
        """Create branch r (copy of the trunk up to its coupling unit) and its own BatchNorms.

        ``unit`` moves the coupling point deeper than the default (the first unit with an
        r x r output) to any later unit whose output is still r x r.
        """
        if r == self.canonical:
            raise ValueError(f"{r} is the canonical size: it is served by the trunk itself")
        if r in self.coupling:
            raise ValueError(f"resolution {r} already has a branch")
        k = self.coupling_unit(r)
        if unit is not None:
            if int(unit) not in self.coupling_candidates(r):
                names = [self.trunk.unit_names[i] for i in self.coupling_candidates(r)]
                raise ValueError(f"unit {unit} does not output {r}x{r}; units that do: {names}")
            k = int(unit)
        body = self.trunk.truncated_copy(k)
        set_strides_to_one(body)
        if not pretrained:
            body.reset_weights()
        for p in body.parameters():
            p.requires_grad_(True)
        self.branches[_key(r)] = Branch(body, k + 1)
        bns = nn.ModuleDict()
        for name in self.trunk.tail_module_names(k):
            module = self.trunk.get_submodule(name)
            for sub, m in module.named_modules():
                if isinstance(m, _BN_TYPES):
                    bns[_pack(f"{name}.{sub}" if sub else name)] = copy.deepcopy(m)
        self.overrides[_key(r)] = bns
        self.coupling[r] = k

    def init_branch_from_trunk(self, r: int) -> None:
        """Reset branch r and its BatchNorms to copies of the current trunk."""
        untied, unit = r in self.untied, self.coupling[r]
        del self.branches[_key(r)], self.overrides[_key(r)], self.coupling[r]
        self.untied.discard(r)
        self.add_resolution(r, pretrained=True, unit=unit)
        if untied:
            self.untie(r)

    def untie(self, r: int) -> None:
        """Give path r its own copy of the whole shared tail (keeping its trained BatchNorms)."""
        if r in self.untied:
            return
        k = self.coupling[r]
        old = self.overrides[_key(r)]
        tail = nn.ModuleDict()
        for name in self.trunk.tail_module_names(k):
            module = copy.deepcopy(self.trunk.get_submodule(name))
            if not any(True for _ in module.parameters()) and not any(True for _ in module.buffers()):
                continue
            for packed, bn in old.items():
                qualified = _unpack(packed)
                if qualified == name:
                    module = copy.deepcopy(bn)
                elif qualified.startswith(name + "."):
                    module.get_submodule(qualified[len(name) + 1 :]).load_state_dict(bn.state_dict())
            tail[_pack(name)] = module
        self.overrides[_key(r)] = tail
        self.untied.add(r)

    # --- parameters --------------------------------------------------------------------------
    def freeze_shared(self) -> None:
        """Freeze the trunk (the trunk path and every tied path's shared convolutions)."""
        for p in self.trunk.parameters():
            p.requires_grad_(False)

    def path_parameters(self, r: int) -> list[nn.Parameter]:
        """Trainable parameters owned by path r: its branch and its per-resolution layers."""
        if r == self.canonical:
            return [p for p in self.trunk.parameters() if p.requires_grad]
        params = list(self.branches[_key(r)].parameters()) + list(self.overrides[_key(r)].parameters())
        return [p for p in params if p.requires_grad]

    def path_state(self, r: int) -> dict[str, torch.Tensor]:
        """Everything path r stores beyond the trunk: ``branch.*`` and ``shared.*`` tensors."""
        state = {f"branch.{k}": v for k, v in self.branches[_key(r)].body.state_dict().items()}
        for packed, module in self.overrides[_key(r)].items():
            for k, v in module.state_dict().items():
                state[f"shared.{_unpack(packed)}.{k}"] = v
        return state

    def load_path_state(self, r: int, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`path_state`; every key must match (strict)."""
        branch = {k[len("branch.") :]: v for k, v in state.items() if k.startswith("branch.")}
        self.branches[_key(r)].body.load_state_dict(branch, strict=True)
        for packed, module in self.overrides[_key(r)].items():
            prefix = f"shared.{_unpack(packed)}."
            sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            module.load_state_dict(sub, strict=True)
        expected = set(self.path_state(r))
        if set(state) != expected:
            extra = sorted(set(state) - expected)[:5]
            missing = sorted(expected - set(state))[:5]
            raise ValueError(f"path {r}: unexpected keys {extra}, missing keys {missing}")

    def _override_tensors(self, r: int) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = {}
        for packed, module in self.overrides[_key(r)].items():
            qualified = _unpack(packed)
            for k, v in module.named_parameters():
                tensors[f"{qualified}.{k}"] = v
            for k, v in module.named_buffers():
                tensors[f"{qualified}.{k}"] = v
        return tensors

    # --- forward -----------------------------------------------------------------------------
    def resolve_path(self, size: int) -> int:
        if size == self.canonical or size in self.coupling:
            return int(size)
        raise ValueError(
            f"no path for {size}x{size} inputs: this BTNet serves {list(self.paths)}; "
            "resize the face or route it with a BranchSelector (btnet.inference)"
        )

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Embedding of a batch of r x r faces through path r (the trunk for the canonical size)."""
        if not isinstance(x, torch.Tensor):
            sizes = sorted({tuple(t.shape[-2:]) for t in x})
            if len(sizes) != 1:
                raise ValueError(
                    f"a batch must hold faces of one size, got {sizes}; split it by size or use "
                    "btnet.inference.MultiResolutionEncoder, which batches by branch"
                )
            x = torch.stack(list(x)) if x[0].dim() == 3 else torch.cat(list(x))
        h, w = x.shape[-2:]
        if h != w:
            raise ValueError(f"BTNet paths take square inputs, got {w}x{h}")
        return self.forward_path(x, self.resolve_path(int(h)))

    def forward_path(self, x: torch.Tensor, path: int | str) -> torch.Tensor:
        r = self.canonical if path == TRUNK else int(path)
        if r == self.canonical:
            return self.trunk(x)
        feat = self.branches[_key(r)](x)
        return self.shared_forward(feat, r)

    def shared_forward(self, feat: torch.Tensor, r: int) -> torch.Tensor:
        """Run the shared tail on a coupling-point feature with path r's own layers."""
        return functional_call(
            self.trunk, self._override_tensors(r), (feat,), {"start": self.coupling[r] + 1}
        )

    def branch_features(self, x_r: torch.Tensor, r: int) -> torch.Tensor:
        """Branch r's output (N x C x r x r), the student of branch distillation."""
        return self.branches[_key(r)](x_r)

    def trunk_features_at_coupling(self, x_s: torch.Tensor, r: int) -> torch.Tensor:
        """The trunk's output at r's coupling unit on the canonical image (the teacher)."""
        return self.trunk.forward_units(x_s, 0, self.coupling[r] + 1)

    def export_path(self, path: int | str) -> PathModule:
        """A standalone copy of one path (for ONNX export and fast inference)."""
        r = self.canonical if path == TRUNK else int(path)
        trunk = copy.deepcopy(self.trunk)
        if r == self.canonical:
            return PathModule(None, trunk, 0)
        for name, tensor in self._override_tensors(r).items():
            module_name, attr = name.rsplit(".", 1)
            target = getattr(trunk.get_submodule(module_name), attr)
            target.data = tensor.detach().clone()
        return PathModule(copy.deepcopy(self.branches[_key(r)]), trunk, self.coupling[r] + 1)

    def extra_repr(self) -> str:
        parts = [f"canonical={self.canonical}"]
        for r in self.resolutions:
            tied = "untied" if r in self.untied else "tied"
            parts.append(f"r{r}: coupled after {self.coupling_name(r)} ({tied})")
        return ", ".join(parts)


class PathModule(nn.Module):
    """One BTNet path as a plain module: ``branch`` (if any) then the trunk from ``start``."""

    def __init__(self, branch: Branch | None, trunk: Backbone, start: int):
        super().__init__()
        self.branch = branch
        self.trunk = trunk
        self.start = start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch is not None:
            x = self.branch(x)
        return self.trunk(x, start=self.start)
