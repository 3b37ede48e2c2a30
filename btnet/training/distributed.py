"""Multi-process training helpers: torchrun environment, a resumable sampler, global BatchNorm.

``torchrun --nproc_per_node N -m btnet.training CONFIG`` sets RANK / WORLD_SIZE / LOCAL_RANK /
MASTER_ADDR / MASTER_PORT; :func:`init_distributed` turns them into a process group (NCCL on
GPUs, gloo on CPU). Several machines work the same way through torchrun's rendezvous options.
Without those variables everything runs as a single process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from btnet.losses.precision import at_least_fp32


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized: bool = False  # True when this module created the process group

    @property
    def is_main(self) -> bool:
        """Only the main process writes files (checkpoints, logs, models)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(pref: str, local_rank: int = 0) -> torch.device:
    if pref == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(pref)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"train.device={pref!r} but CUDA is not available here")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def init_distributed(device_pref: str = "auto") -> DistContext:
    """Join the torchrun process group if the environment describes one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_pref, local_rank)
    if world <= 1:
        return DistContext(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        created = True
    return DistContext(rank, world, local_rank, device, created)


def cleanup(ctx: DistContext) -> None:
    if ctx.initialized and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.distributed and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= ctx.world_size
    return value


class ResumableBatchSampler:
    """Deterministic, shardable and resumable batches (a DistributedSampler with a position).

    Epoch ``e`` is a permutation drawn from ``seed + e``. Optimiser step ``k`` consumes the global
    batch ``perm[k*B:(k+1)*B]``; it is cut into ``accum_steps x world_size`` micro-batches and
    micro-batch ``(a, rank)`` goes to process ``rank`` at accumulation step ``a``. The global
    batch is therefore the same for any number of processes, and resuming from ``(epoch, step)``
    replays exactly the batches an uninterrupted run would have seen. Incomplete final batches
    are dropped.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        accum_steps: int = 1,
    ):
        parts = world_size * accum_steps
        if batch_size % parts:
            raise ValueError(
                f"train.batch_size={batch_size} must be divisible by processes x accum_steps "
                f"= {world_size} x {accum_steps}"
            )
        if num_samples < batch_size:
            raise ValueError(
                f"the training set has {num_samples} images, fewer than train.batch_size="
                f"{batch_size}"
            )
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.micro_batch = batch_size // parts
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.accum_steps = accum_steps

    @property
    def steps_per_epoch(self) -> int:
        return self.num_samples // self.batch_size

    def permutation(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_samples, generator=gen)

    def micro_batches(self, epoch: int, step: int) -> list[list[int]]:
        """This process's ``accum_steps`` index lists for optimiser step ``step`` of ``epoch``."""
        return self._chunks(self.permutation(epoch), step)

    def _chunks(self, perm: torch.Tensor, step: int) -> list[list[int]]:
        start = step * self.batch_size
        out = []
        for a in range(self.accum_steps):
            lo = start + (a * self.world_size + self.rank) * self.micro_batch
            out.append(perm[lo : lo + self.micro_batch].tolist())
        return out

    def iterate(self, epoch: int, start_step: int = 0) -> Iterator[tuple[int, list[list[int]]]]:
        perm = self.permutation(epoch)
        for step in range(start_step, self.steps_per_epoch):
            yield step, self._chunks(perm, step)


class _GlobalBatchNormMixin:
    """BatchNorm whose training statistics are taken over the batch of *all* processes.

    ``nn.SyncBatchNorm`` refuses CPU tensors; this works on any device and backend (gloo
    included), so a multi-process CPU run normalises exactly like a one-process run with the
    same global batch. Gradients flow through the all-reduce (its backward sums the gradients of
    every process's loss), and DDP's averaging then yields the gradient of the global mean loss.
    In eval mode, or outside a process group, it is plain BatchNorm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)  # type: ignore[misc]
        if dist.get_world_size() == 1:
            return super().forward(x)  # type: ignore[misc]
        from torch.distributed.nn.functional import all_reduce

        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, channels] + [1] * (x.dim() - 2)
        xf = at_least_fp32(x)
        count = torch.tensor([x.numel() / channels], dtype=xf.dtype, device=x.device)
        totals = all_reduce(torch.cat([xf.sum(dims), count]))
        n = totals[channels]
        mean = totals[:channels] / n
        centred = xf - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / n
        y = centred * torch.rsqrt(var + self.eps).view(shape)  # type: ignore[attr-defined]
        if self.affine:  # type: ignore[attr-defined]
            y = y * self.weight.view(shape) + self.bias.view(shape)  # type: ignore[attr-defined]
        if self.track_running_stats:  # type: ignore[attr-defined]
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[attr-defined]
                mom = self.momentum  # type: ignore[attr-defined]
                if mom is None:
                    mom = 1.0 / float(self.num_batches_tracked.item())  # type: ignore[attr-defined]
                unbiased = var.detach() * n / (n - 1).clamp_min(1.0)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), mom)  # type: ignore[attr-defined]
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), mom)  # type: ignore[attr-defined]
        return y.to(x.dtype)


class GlobalBatchNorm1d(_GlobalBatchNormMixin, nn.BatchNorm1d):
    pass


class GlobalBatchNorm2d(_GlobalBatchNormMixin, nn.BatchNorm2d):
    pass


def use_global_batchnorm(module: nn.Module) -> int:
    """Switch every BatchNorm1d/2d in ``module`` to its global-statistics version, in place.

    The modules keep their identity, parameters, buffers and ``requires_grad`` flags (only
    their class changes), so references held by the model (per-resolution BN tables) and
    state-dict keys stay valid and ``isinstance(m, nn.BatchNorm2d)`` still holds. Returns the
    number of layers switched.
    """
    switched = 0
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = GlobalBatchNorm2d
            switched += 1
        elif type(m) is nn.BatchNorm1d:
            m.__class__ = GlobalBatchNorm1d
            switched += 1
    return switched


def restore_batchnorm(module: nn.Module) -> None:
    """Undo :func:`use_global_batchnorm` (before saving a model for inference)."""
    for m in module.modules():
        if type(m) is GlobalBatchNorm2d:
            m.__class__ = nn.BatchNorm2d
        elif type(m) is GlobalBatchNorm1d:
            m.__class__ = nn.BatchNorm1d


__all__ = [
    "DistContext",
    "GlobalBatchNorm1d",
    "GlobalBatchNorm2d",
    "ResumableBatchSampler",
    "all_reduce_mean",
    "barrier",
    "cleanup",
    "init_distributed",
    "pick_device",
    "restore_batchnorm",
    "use_global_batchnorm",
]
