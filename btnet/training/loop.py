"""The generic training loop every recipe runs.

One *step* is one optimiser update over ``train.batch_size`` images (summed over processes and
accumulation micro-batches). Everything that decides the next weights is a function of the step
number and of checkpointed state: the batches (:class:`ResumableBatchSampler` and per-sample
generators), the learning rate (a pure schedule), the optimiser / scaler / loss buffers and the
RNG states. That is why a resumed run reaches the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from btnet.data.resolution import sample_rng
from btnet.training.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from btnet.training.config import Config
from btnet.training.distributed import (
    DistContext,
    ResumableBatchSampler,
    all_reduce_mean,
    barrier,
    restore_batchnorm,
    use_global_batchnorm,
)
from btnet.training.logging_utils import MetricLogger
from btnet.training.recipes import Recipe
from btnet.training.schedule import lr_at, warmup_steps

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _StepDataset(torch.utils.data.Dataset):
    """Map ``(epoch, index)`` keys to transformed samples with per-sample generators."""

    def __init__(self, dataset, make_sample, seed: int):
        self.dataset = dataset
        self.make_sample = make_sample
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        image, label = self.dataset[index]
        sample = self.make_sample(image, sample_rng(self.seed, epoch, index))
        out: dict[str, Any] = {k: torch.from_numpy(np.require(v, requirements=["C", "W"]))
                               for k, v in sample.items()}
        out["label"] = int(label)
        return out


def _to_device(batch: dict[str, torch.Tensor], device: torch.device,
               dtype: torch.dtype = torch.float32, channels_last: bool = False
               ) -> dict[str, torch.Tensor]:
    """uint8 NHWC images -> float NCHW in [-1, 1] on the device (the insightface convention).

    With ``channels_last`` the tensors keep NHWC strides (what the permuted uint8 batch already
    has), which the convolutions of a channels-last model consume without a copy.
    """
    out = {}
    nb = device.type == "cuda"
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for k, v in batch.items():
        v = v.to(device, non_blocking=nb)
        if k.startswith("x"):
            v = v.permute(0, 3, 1, 2).to(dtype).div_(127.5).sub_(1.0)
            v = v.contiguous(memory_format=fmt)
        out[k] = v
    return out


def amp_dtype(setting: str, device: torch.device, dtype: torch.dtype = torch.float32
              ) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on this device (None: full precision)."""
    if setting == "off" or (setting == "auto" and (device.type != "cuda" or dtype != torch.float32)):
        return None
    if setting in ("auto", "fp16"):
        if device.type != "cuda":
            raise ValueError("train.amp=fp16 needs a CUDA device (use bf16 or off on CPU)")
        return torch.float16
    return torch.bfloat16


def build_optimizer(cfg: Config, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                               weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                             weight_decay=o.weight_decay)


@dataclass
class LoopResult:
    steps: int
    last_metrics: dict = field(default_factory=dict)
    eval_metrics: dict = field(default_factory=dict)


def channels_last_crashing_convs(module: nn.Module) -> list[str]:
    """Convolutions whose channels_last CPU backward crashes the process in oneDNN.

    Why: a strided 1x1 convolution with fewer than 8 input channels (a width-4 IResNet's first
    down-sample shortcut) aborts with "corrupted size vs. prev_size" in its weight gradient,
    reproduced without btnet; 3x3 convolutions and 8+ channels are unaffected.
    """
    return [
        name for name, m in module.named_modules()
        if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
        and max(m.stride) > 1 and m.in_channels < 8
    ]


class Trainer:
    """Runs one recipe to ``total_steps``: DDP, AMP, accumulation, logging, checkpoints."""

    def __init__(self, cfg: Config, recipe: Recipe, out_dir: Path, ctx: DistContext,
                 verifier=None):
        self.cfg = cfg
        self.recipe = recipe
        self.out_dir = Path(out_dir)
        self.ctx = ctx
        self.device = ctx.device
        self.verifier = verifier
        t = cfg.train
        # float64 (train.dtype) exists for exactness checks: float32 rounding differences (e.g.
        # a different summation order in a multi-process BatchNorm) can flip the side of a
        # PReLU kink for an activation within ~1e-7 of 0 and so change a gradient by O(1).
        self.dtype = getattr(torch, t.dtype)
        self.task = recipe.task.to(self.device, self.dtype)
        # Weights and gradients decay towards denormal floats late in training, which x86 CPUs
        # process ~10x slower (measured here: 200 -> 70 img/s within 30 steps); flush them.
        torch.set_flush_denormal(True)
        self.channels_last = bool(t.channels_last)
        unsafe = channels_last_crashing_convs(self.task) if self.device.type == "cpu" else []
        if self.channels_last and unsafe:
            log.warning("train.channels_last ignored: PyTorch's CPU backward of a strided 1x1 "
                        "convolution with < 8 input channels in channels_last corrupts the heap "
                        "(seen with torch 2.13 on AMD EPYC); affected: %s", ", ".join(unsafe[:3]))
            self.channels_last = False
        if self.channels_last:
            self.task = self.task.to(memory_format=torch.channels_last)
        if ctx.distributed and cfg.model.sync_bn:
            use_global_batchnorm(self.task)
        self.params = [p for p in self.task.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError(f"recipe {recipe.name}: nothing to train (every parameter is frozen)")
        self.optimizer = build_optimizer(cfg, self.params)
        self.amp = amp_dtype(t.amp, self.device, self.dtype)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp == torch.float16 and self.device.type == "cuda"
        )
        self.sampler = ResumableBatchSampler(
            len(recipe.dataset), t.batch_size, t.seed, ctx.rank, ctx.world_size, t.accum_steps
        )
        spe = self.sampler.steps_per_epoch
        self.total_steps = t.max_steps if t.max_steps > 0 else max(1, math.ceil(t.epochs * spe))
        self.warmup = warmup_steps(cfg.schedule, spe)
        self.step = 0
        self.net: nn.Module = self.task
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DDP(self.task, device_ids=ids)
        self.data = _StepDataset(recipe.dataset, recipe.make_sample, t.seed)
        self.logger = MetricLogger(self.out_dir, enabled=ctx.is_main, tensorboard=t.tensorboard)
        self.ckpt_path = self.out_dir / "checkpoint" / CHECKPOINT_NAME
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    # --- one optimiser step (also what benchmarks/train_throughput.py times) -------------------
    def set_lr(self, step: int) -> float:
        lr = lr_at(step, self.total_steps, self.cfg.optim.lr, self.cfg.schedule, self.warmup)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return lr

    def train_step(self, micro_batches: list[dict[str, torch.Tensor]]) -> None:
        """Forward/backward over the micro-batches, then one (clipped, scaled) update."""
        n = len(micro_batches)
        ddp = self.net is not self.task
        for i, mb in enumerate(micro_batches):
            sync = contextlib.nullcontext() if (not ddp or i == n - 1) else self.net.no_sync()
            with sync:
                with torch.autocast(self.device.type, dtype=self.amp or torch.float32,
                                    enabled=self.amp is not None):
                    out = self.net(mb)
                loss = out["loss"] / n
                self.scaler.scale(loss).backward()
            for k, v in out.items():
                v = v.detach().float()
                self._sums[k] = self._sums[k] + v / n if k in self._sums else v / n
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.params, self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self._count += 1

    # --- data --------------------------------------------------------------------------------
    def _batches(self, start_step: int) -> Iterator[tuple[int, list[dict[str, torch.Tensor]]]]:
        spe = self.sampler.steps_per_epoch
        step = start_step
        workers = self.cfg.data.num_workers
        while step < self.total_steps:
            epoch, first = divmod(step, spe)
            last = min(spe, first + self.total_steps - step)
            keys = [
                [(epoch, i) for i in chunk]
                for s, chunks in self.sampler.iterate(epoch, first)
                if s < last
                for chunk in chunks
            ]
            loader = DataLoader(
                self.data, batch_sampler=keys, num_workers=workers,
                pin_memory=self.device.type == "cuda", persistent_workers=False,
            )
            acc: list[dict[str, torch.Tensor]] = []
            for mb in loader:
                acc.append(_to_device(mb, self.device, self.dtype, self.channels_last))
                if len(acc) == self.sampler.accum_steps:
                    yield step, acc
                    acc = []
                    step += 1

    # --- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        if not self.ctx.is_main:
            return
        save_checkpoint(
            self.ckpt_path,
            step=self.step,
            task=self.task.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scaler=self.scaler.state_dict(),
            sampler={"seed": self.sampler.seed, "batch_size": self.sampler.batch_size,
                     "steps_per_epoch": self.sampler.steps_per_epoch},
            total_steps=self.total_steps,
            config=self.cfg.to_json(),
        )

    def load_checkpoint(self) -> None:
        ckpt = load_checkpoint(self.ckpt_path, map_location=self.device)
        if ckpt["sampler"]["batch_size"] != self.sampler.batch_size:
            raise ValueError(
                f"{self.ckpt_path} was written with train.batch_size="
                f"{ckpt['sampler']['batch_size']}; resume with the same batch size"
            )
        if ckpt["sampler"]["steps_per_epoch"] != self.sampler.steps_per_epoch:
            raise ValueError(f"{self.ckpt_path}: the training set changed size since this checkpoint")
        self.task.load_state_dict(ckpt["task"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.step = int(ckpt["step"])
        self.logger.truncate_after(self.step)
        log.info("resumed %s from step %d", self.recipe.name, self.step)

    # --- verification ------------------------------------------------------------------------
    def verify(self) -> dict:
        """Verification on the configured sets (rank 0); other ranks wait at the barrier."""
        metrics: dict = {}
        if self.verifier is not None and self.ctx.is_main:
            was = self.task.training
            # Encoders feed float32; a float64 run is evaluated on a float32 copy, then restored.
            exact = ({k: v.clone() for k, v in self.task.state_dict().items()}
                     if self.dtype != torch.float32 else None)
            try:
                if exact is not None:
                    self.task.float()
                metrics = self.verifier(self.recipe, self.step)
            finally:
                self.task.train(was)
                self.task.to(self.device, self.dtype)
                if exact is not None:
                    self.task.load_state_dict(exact)
            if metrics:
                self.logger.write({"kind": "eval", "step": self.step, **metrics})
        barrier(self.ctx)
        return metrics

    # --- the loop ----------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> LoopResult:
        t = self.cfg.train
        if resume:
            self.load_checkpoint()
        self.task.train()
        bar = None
        if self.ctx.is_main and t.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, unit="step",
                       desc=f"train {self.recipe.name}", dynamic_ncols=True)
        last: dict = {}
        evals: dict = {}
        tick = time.perf_counter()
        images = 0
        try:
            for step, micro in self._batches(self.step):
                lr = self.set_lr(step)
                self.train_step(micro)
                self.step = step + 1
                images += self.cfg.train.batch_size
                done = self.step == self.total_steps
                if self.step % max(1, t.log_every) == 0 or done:
                    elapsed = time.perf_counter() - tick
                    keys = sorted(self._sums)
                    vals = torch.stack([self._sums[k] for k in keys]) / max(1, self._count)
                    vals = all_reduce_mean(vals, self.ctx).tolist()
                    last = {"kind": "train", "step": self.step,
                            "epoch": round(self.step / self.sampler.steps_per_epoch, 4),
                            "lr": lr, **{k: round(v, 6) for k, v in zip(keys, vals)},
                            "img_per_s": round(images / max(elapsed, 1e-9), 2)}
                    self.logger.write(last)
                    if bar is not None:
                        bar.set_postfix(loss=f"{last['loss']:.4f}", img_s=f"{last['img_per_s']:.0f}")
                    self._sums, self._count, images = {}, 0, 0
                    tick = time.perf_counter()
                if bar is not None:
                    bar.update(1)
                if self.cfg.eval.every > 0 and self.step % self.cfg.eval.every == 0 and not done:
                    evals = self.verify() or evals
                if (t.ckpt_every > 0 and self.step % t.ckpt_every == 0) or done:
                    self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()
        evals = self.verify() or evals
        self.logger.close()
        if self.ctx.distributed and self.cfg.model.sync_bn:
            restore_batchnorm(self.task)
        self.task.float()  # stored models are float32 whatever train.dtype was
        return LoopResult(self.step, last, evals)


def checkpoint_step(out_dir: Path) -> int | None:
    path = Path(out_dir) / "checkpoint" / CHECKPOINT_NAME
    if not path.is_file():
        return None
    return int(load_checkpoint(path)["step"])
