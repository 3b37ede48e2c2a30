"""Cost accounting measured from the real modules, not from formulas.

Parameters are counted from the modules each path owns; multiply-accumulates come from
:class:`torch.utils.flop_counter.FlopCounterMode` on a one-image forward pass (convolutions and
matrix products; MACs = FLOPs / 2), so any change to the architecture shows up here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from btnet.models.btnet import BTNet

_STATS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class PathCost:
    """Cost of serving faces of ``resolution`` pixels."""

    resolution: int
    coupling_unit: str | None
    branch_params: int  # the branch alone
    stored_params: int  # what this path stores beyond the trunk: branch + its own BN (+ untied tail)
    stored_percent: float  # stored_params as % of the trunk
    btnet_macs: int  # BTNet: the r x r face through branch r and the shared tail
    upsample_macs: int  # phi_hr / phi_mr: the face up-sampled to S and run through the trunk

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CostReport:
    arch: str
    canonical: int
    trunk_params: int
    trunk_macs: int
    paths: list[PathCost]

    def to_dict(self) -> dict:
        return {
            "arch": self.arch,
            "canonical": self.canonical,
            "trunk_params": self.trunk_params,
            "trunk_macs": self.trunk_macs,
            "paths": [p.to_dict() for p in self.paths],
        }

    def to_table(self) -> str:
        """Markdown table (renders in a terminal too)."""
        lines = [
            f"BTNet cost on {self.arch} at {self.canonical}x{self.canonical}: trunk "
            f"{self.trunk_params / 1e6:.2f}M parameters, {self.trunk_macs / 1e9:.2f} GMACs",
            "",
            "| input | coupled after | branch params | branch % | stored params | stored % "
            "| BTNet GMACs | up-sample GMACs | MAC ratio |",
            "|---:|:---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in self.paths:
            ratio = p.btnet_macs / p.upsample_macs if p.upsample_macs else float("nan")
            lines.append(
                f"| {p.resolution} | {p.coupling_unit or 'trunk'} | {p.branch_params / 1e6:.3f}M "
                f"| {100.0 * p.branch_params / self.trunk_params:.2f}% "
                f"| {p.stored_params / 1e6:.3f}M | {p.stored_percent:.2f}% "
                f"| {p.btnet_macs / 1e9:.3f} | {p.upsample_macs / 1e9:.3f} | {ratio:.2f} |"
            )
        return "\n".join(lines)


def count_macs(module: nn.Module, input_size: int, **kwargs) -> int:
    """Multiply-accumulates of one forward pass on a 1 x 3 x s x s input."""
    param = next(module.parameters())
    x = torch.zeros(1, 3, input_size, input_size, dtype=param.dtype, device=param.device)
    was_training = module.training
    module.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            module(x, **kwargs)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops() // 2)


def count_params(tensors: dict[str, torch.Tensor] | nn.Module) -> int:
    """Learnable entries (BN running statistics excluded)."""
    if isinstance(tensors, nn.Module):
        return sum(p.numel() for p in tensors.parameters())
    return sum(v.numel() for k, v in tensors.items() if not k.endswith(_STATS))


def cost_report(model: BTNet) -> CostReport:
    trunk = model.trunk
    trunk_params = count_params(trunk)
    trunk_macs = count_macs(trunk, model.canonical)
    paths = []
    for r in model.resolutions:
        stored = count_params(model.path_state(r))
        paths.append(
            PathCost(
                resolution=r,
                coupling_unit=model.coupling_name(r),
                branch_params=count_params(model.branch_path(r).branch),
                stored_params=stored,
                stored_percent=100.0 * stored / trunk_params,
                btnet_macs=count_macs(model.path(r), r),
                upsample_macs=trunk_macs,
            )
        )
    paths.append(PathCost(model.canonical, None, 0, 0, 0.0, trunk_macs, trunk_macs))
    return CostReport(trunk.arch, model.canonical, trunk_params, trunk_macs, paths)
