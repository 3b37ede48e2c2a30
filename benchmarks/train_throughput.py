"""Training-step throughput: btnet's Trainer.train_step vs. a bare PyTorch loop.

Both sides train the same module (a deep copy of the same trunk + margin head), on the same
pre-made batch, with the same optimiser settings and the same mixed precision; only the loop
around the step differs (btnet adds the schedule, accumulation bookkeeping, metric sums, the
GradScaler wrapper, autocast context). Rounds alternate between the two (and who goes first) to share machine noise.

    python benchmarks/train_throughput.py              # CPU-sized model (iresnet18/16, S=56)
    python benchmarks/train_throughput.py --gpu        # IResNet-50 at 112 on CUDA (fp16)

Prints images/s for both and the ratio ours / bare (target >= 0.95).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch

from btnet.training.config import config_from_dict
from btnet.training.distributed import DistContext, pick_device
from btnet.training.loop import Trainer, amp_dtype, build_optimizer, seed_everything
from btnet.training.recipes import build_recipe


def make_config(gpu: bool, batch: int) -> dict:
    model = ({"arch": "iresnet50", "input_size": 112, "embedding_size": 512} if gpu else
             {"arch": "iresnet18", "input_size": 56, "width": 16, "embedding_size": 128})
    return {
        "recipe": "trunk", "model": model,
        "data": {"train": "builtin:ids=64,per_id=8", "sampler": "hr"},
        "loss": {"name": "arcface"},
        "optim": {"name": "sgd", "lr": 0.01, "weight_decay": 5e-4},
        "schedule": {"name": "poly", "warmup_steps": 5},
        "train": {"max_steps": 1000, "batch_size": batch, "progress": False,
                  "amp": "auto", "device": "auto"},
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true", help="IResNet-50 at 112 on CUDA")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="steps per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (0: torch default; 1 suits a shared machine)")
    args = ap.parse_args()
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: CUDA is not available here")
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch or (128 if args.gpu else 32)
    steps = args.steps or (20 if args.gpu else 5)
    cfg = config_from_dict(make_config(args.gpu, batch))
    device = pick_device(cfg.train.device)
    seed_everything(0)
    recipe = build_recipe(cfg)
    bare_task = copy.deepcopy(recipe.task).to(device).train()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, recipe, tmp, DistContext(device=device))
        trainer.task.train()
        x = torch.randn(batch, 3, cfg.model.input_size, cfg.model.input_size, device=device)
        labels = torch.randint(0, recipe.dataset.num_classes, (batch,), device=device)
        mb = {"x": x, "label": labels}

        dtype = amp_dtype(cfg.train.amp, device)
        bare_opt = build_optimizer(cfg, [p for p in bare_task.parameters() if p.requires_grad])
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

        def bare_step() -> None:
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = bare_task(mb)["loss"]
            scaler.scale(loss).backward()
            scaler.step(bare_opt)
            scaler.update()
            bare_opt.zero_grad(set_to_none=True)

        step_no = [0]

        def ours_step() -> None:
            trainer.set_lr(step_no[0])
            trainer.train_step([mb])
            step_no[0] += 1

        for fn in (bare_step, ours_step):  # warm-up (allocator, kernels)
            for _ in range(2):
                fn()
        times = {"bare": [], "ours": []}
        order = [("bare", bare_step), ("ours", ours_step)]
        for _ in range(args.rounds):
            order.reverse()  # alternate who goes first, so drifting load hits both alike
            for name, fn in order:
                _sync(device)
                t0 = time.perf_counter()
                for _ in range(steps):
                    fn()
                _sync(device)
                times[name].append((time.perf_counter() - t0) / steps)
    ips = {k: batch / statistics.median(v) for k, v in times.items()}
    what = f"{cfg.model.arch} S={cfg.model.input_size} batch={batch} on {device}"
    what += f" amp={dtype}" if dtype else " fp32"
    print(f"model: {what}; {args.rounds} rounds x {steps} steps, median per round")
    print(f"bare PyTorch loop : {ips['bare']:9.1f} img/s")
    print(f"btnet train_step  : {ips['ours']:9.1f} img/s")
    print(f"ratio ours / bare : {ips['ours'] / ips['bare']:.3f}   (target >= 0.95)")


if __name__ == "__main__":
    main()
