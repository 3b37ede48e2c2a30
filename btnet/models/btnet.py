"""The Branch-to-Trunk Network: one trunk, one small branch per low resolution.

For a resolution r the *coupling unit* is the first trunk unit whose output is r x r. The branch
for r is a copy of the trunk from the stem up to and including that unit with every stride set
to 1, so an r x r face keeps its r x r grid (no interpolation) and arrives at the coupling point
with the shape the trunk expects. The units after the coupling point and the head are shared by
all paths; only their BatchNorm layers are kept per resolution, because feature statistics of a
7-pixel face differ from those of a 112-pixel one.

Each path is a registered module, ``model.paths["r7"]``: the branch, then a *tail* built like
the trunk after the coupling unit whose convolutions, PReLUs and linears are the trunk's own
modules (shared parameters) and whose BatchNorms are r's own. Training, inference and ONNX
export all run that one module. A path can also be *untied* (Table 3's rows without a fixed
trunk): the same construction with every module of the tail owned by the path.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from btnet.models.backbone import BATCH_NORMS, Backbone, set_strides_to_one


def path_key(r: int) -> str:
    """Key of the path serving r x r faces in :attr:`BTNet.paths`."""
    return f"r{int(r)}"


class Branch(nn.Module):
    """The body of a branch: the trunk's units up to the coupling unit, strides set to 1."""

    def __init__(self, body: Backbone):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.forward_units(x)


class BranchPath(nn.Module):
    """Path r: ``branch`` (r x r face -> coupling-point feature), then ``tail`` (-> embedding).

    A tied tail shares every weighted module but its BatchNorms with the trunk; an untied one
    owns everything. What the path *owns* (what trains with it and what is stored for it) is
    the branch plus the tail's BatchNorms, or plus the whole tail when untied.

    ``tail`` is an instance of the trunk's class with the units before the coupling point
    removed: its ``input_size`` and ``config`` still describe the trunk, and its blocks keep
    the trunk's names (``tail.get_submodule("layer3.0")``; positions in a pruned layer shift).
    """

    def __init__(self, resolution: int, coupling: int, branch: Branch, tail: Backbone, tied: bool):
        super().__init__()
        self.resolution = int(resolution)
        self.coupling = int(coupling)  # index of the trunk unit the branch replaces up to
        self.branch = branch
        self.tail = tail
        self.tied = bool(tied)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.branch(x))

    def owned_modules(self) -> list[tuple[str, nn.Module]]:
        """``(name in the tail, module)`` of the tail modules this path owns."""
        if not self.tied:
            return [("", self.tail)]
        return [(name, m) for name, m in self.tail.named_modules() if isinstance(m, BATCH_NORMS)]

    def owned_parameters(self) -> list[nn.Parameter]:
        params = list(self.branch.parameters())
        for _, module in self.owned_modules():
            params += list(module.parameters())
        return params

    def stored_state(self) -> dict[str, torch.Tensor]:
        """The stored layout: ``branch.<body key>`` and ``shared.<tail key>`` for owned tensors."""
        state = {f"branch.{k}": v for k, v in self.branch.body.state_dict().items()}
        for name, module in self.owned_modules():
            prefix = f"shared.{name}." if name else "shared."
            state.update({prefix + k: v for k, v in module.state_dict().items()})
        return state

    def load_stored_state(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`stored_state`; every key must match (strict)."""
        own = self.stored_state()
        if set(state) != set(own):
            extra = sorted(set(state) - set(own))[:5]
            missing = sorted(set(own) - set(state))[:5]
            raise ValueError(f"path {self.resolution}: unexpected keys {extra}, missing keys {missing}")
        bad = [k for k, v in state.items() if v.shape != own[k].shape]
        if bad:
            raise ValueError(f"path {self.resolution}: shape of {bad[0]} is {tuple(state[bad[0]].shape)}, "
                             f"the model's is {tuple(own[bad[0]].shape)}")
        with torch.no_grad():
            for k, v in state.items():
                own[k].copy_(v)

    def extra_repr(self) -> str:
        return f"r={self.resolution}, coupling unit {self.coupling}, {'tied' if self.tied else 'untied'}"


class BTNet(nn.Module):
    """A trunk plus branches for ``resolutions``; ``model(x)`` routes by x's spatial size.

    ``paths`` holds one module per input size served: ``paths["r7"]`` ... and
    ``paths[f"r{S}"]``, the trunk itself.
    """

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
        self.geometry = trunk.coupling_geometry()
        self.paths = nn.ModuleDict({path_key(self.canonical): trunk})
        couplings = couplings or {}
        for r in resolutions:
            self.add_resolution(int(r), pretrained=pretrained_branches, unit=couplings.get(int(r)))

    # --- what is served ----------------------------------------------------------------------
    def _branch_paths(self) -> list[BranchPath]:
        return [p for p in self.paths.values() if isinstance(p, BranchPath)]

    @property
    def resolutions(self) -> tuple[int, ...]:
        """The branch resolutions (below the canonical size)."""
        return tuple(p.resolution for p in self._branch_paths())

    @property
    def input_sizes(self) -> tuple[int, ...]:
        """Every input size with a path, the canonical size (the trunk) last."""
        return (*self.resolutions, self.canonical)

    @property
    def coupling(self) -> dict[int, int]:
        """Coupling unit index of each branch resolution."""
        return {p.resolution: p.coupling for p in self._branch_paths()}

    @property
    def untied(self) -> set[int]:
        return {p.resolution for p in self._branch_paths() if not p.tied}

    def coupling_name(self, r: int) -> str:
        return self.trunk.unit_names[self.branch_path(r).coupling]

    def path(self, r: int) -> nn.Module:
        """The module serving r x r faces (a :class:`BranchPath`, or the trunk at the canonical size)."""
        key = path_key(r)
        if key not in self.paths:
            raise ValueError(
                f"no path for {r}x{r} inputs: this BTNet serves {list(self.input_sizes)}; "
                "resize the face or route it with a BranchSelector (btnet.inference)"
            )
        return self.paths[key]

    def branch_path(self, r: int) -> BranchPath:
        if int(r) == self.canonical:
            raise ValueError(f"{r} is the canonical size: it is served by the trunk, not a branch")
        return self.path(r)  # type: ignore[return-value]

    # --- construction ------------------------------------------------------------------------
    def add_resolution(self, r: int, pretrained: bool = True, unit: int | None = None) -> None:
        """Create path r: a branch (copy of the trunk up to its coupling unit) and a tied tail.

        ``unit`` moves the coupling point deeper than the default (the first unit with an
        r x r output) to any later unit whose output is still r x r.
        """
        r = int(r)
        if r == self.canonical:
            raise ValueError(f"{r} is the canonical size: it is served by the trunk itself")
        if path_key(r) in self.paths:
            raise ValueError(f"resolution {r} already has a branch")
        k = self.geometry.default_unit(r) if unit is None else self.geometry.check_unit(r, unit)
        body = self.trunk.truncated_copy(k)
        set_strides_to_one(body)
        if not pretrained:
            body.reset_weights()
        for p in body.parameters():
            p.requires_grad_(True)
        tail = self.trunk.tail_copy(k, share_weights=True)
        self._set_path(BranchPath(r, k, Branch(body), tail, tied=True))

    def _set_path(self, path: BranchPath) -> None:
        """Register ``path``, keeping ``paths`` ordered by input size (the trunk last)."""
        entries = {**dict(self.paths.items()), path_key(path.resolution): path}
        ordered = sorted(entries.items(), key=lambda kv: int(kv[0][1:]))
        self.paths = nn.ModuleDict(ordered)

    def untie(self, r: int) -> None:
        """Give path r its own copy of the whole tail (keeping its trained BatchNorms)."""
        old = self.branch_path(r)
        if not old.tied:
            return
        tail = self.trunk.tail_copy(old.coupling, share_weights=False)
        for name, bn in old.owned_modules():
            tail.get_submodule(name).load_state_dict(bn.state_dict())
        self._set_path(BranchPath(old.resolution, old.coupling, old.branch, tail, tied=False))

    # --- parameters --------------------------------------------------------------------------
    def freeze_shared(self) -> None:
        """Freeze the trunk (the trunk path and every tied path's shared modules)."""
        for p in self.trunk.parameters():
            p.requires_grad_(False)

    def path_parameters(self, r: int) -> list[nn.Parameter]:
        """Trainable parameters owned by path r: its branch and its own tail modules."""
        if int(r) == self.canonical:
            return [p for p in self.trunk.parameters() if p.requires_grad]
        return [p for p in self.branch_path(r).owned_parameters() if p.requires_grad]

    def path_state(self, r: int) -> dict[str, torch.Tensor]:
        """Everything path r stores beyond the trunk: ``branch.*`` and ``shared.*`` tensors."""
        return self.branch_path(r).stored_state()

    def load_path_state(self, r: int, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`path_state`; every key must match (strict)."""
        self.branch_path(r).load_stored_state(state)

    # --- forward -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding of a batch of r x r faces through path r (the trunk for the canonical size)."""
        h, w = x.shape[-2:]
        if h != w:
            raise ValueError(f"BTNet paths take square inputs, got {w}x{h}")
        return self.path(int(h))(x)

    def trunk_features_at_coupling(self, x_s: torch.Tensor, r: int) -> torch.Tensor:
        """The trunk's output at r's coupling unit on the canonical image (the teacher)."""
        return self.trunk.forward_units(x_s, 0, self.branch_path(r).coupling + 1)

    def trunk_targets(self, x_s: torch.Tensor, resolutions: list[int], features: bool = True,
                      embedding: bool = False) -> tuple[dict[int, torch.Tensor], torch.Tensor | None]:
        """What branch training distils from, in one trunk pass over the canonical images: the
        coupling-unit output for each r (``features``) and the embedding (``embedding``)."""
        feats: dict[int, torch.Tensor] = {}
        h, done = x_s, 0
        if features:
            by_unit: dict[int, list[int]] = {}
            for r in resolutions:
                by_unit.setdefault(self.branch_path(r).coupling, []).append(int(r))
            for unit in sorted(by_unit):
                h = self.trunk.forward_units(h, done, unit + 1)
                done = unit + 1
                feats.update({r: h for r in by_unit[unit]})
        emb = self.trunk.forward_head(self.trunk.forward_units(h, done)) if embedding else None
        return feats, emb

    def extra_repr(self) -> str:
        parts = [f"canonical={self.canonical}"]
        for p in self._branch_paths():
            tied = "tied" if p.tied else "untied"
            parts.append(f"r{p.resolution}: coupled after {self.coupling_name(p.resolution)} ({tied})")
        return ", ".join(parts)
