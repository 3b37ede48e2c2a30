"""What-if runs for trunks on the built-in faces: which resolution sampler, how many epochs.

A deliberately small loop (no checkpoints, no DataLoader, images rendered once into memory)
with the study defaults of ``btnet.pipeline`` (IResNet-18 width 16, S = 56, CurricularFace,
SGD 0.1 with warm-up and poly decay, batch 128), so one trunk costs a few minutes on one core.
It answers questions such as "does the phi_mr trunk's price at full resolution shrink with
longer training, or without the 4-pixel level?" (docs/results.md). Samplers: ``hr``,
``mr_v1`` / ``mr_v2`` / ``mr_v3`` (btnet's), and ``sizes:56/28/14/7`` (equal probabilities
over the listed sizes).

    python benchmarks/trunk_sampler_probe.py --samplers mr_v1,sizes:56/28/14/7 --epochs 10
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from btnet.data.resolution import WeightedSizeSampler, degrade, make_sampler
from btnet.data.synthetic import SyntheticFaces, builtin_pairs
from btnet.evaluation.metrics_verification import kfold_accuracy
from btnet.losses.margin import MarginHead, build_margin_loss
from btnet.models import build_backbone

S = 56
RESOLUTIONS = (7, 14, 28)


def sampler_for(name: str):
    if name == "hr":
        return None
    if name.startswith("sizes:"):
        sizes = tuple(int(x) for x in name[len("sizes:"):].split("/"))
        return WeightedSizeSampler(sizes, tuple(1.0 / len(sizes) for _ in sizes))
    return make_sampler(name, S)


def to_tensor(images) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return x.sub(127.5).div(127.5).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def embed(model: torch.nn.Module, images) -> np.ndarray:
    model.eval()
    out = [F.normalize(model(to_tensor(images[i:i + 256])), dim=1)
           for i in range(0, len(images), 256)]
    model.train()
    return torch.cat(out).numpy()


def evaluate(model, pairs, images) -> dict[str, float]:
    feats = {S: embed(model, images)}
    for r in RESOLUTIONS:
        feats[r] = embed(model, [degrade(im, r, restore_to=S) for im in images])
    settings = [(S, r) for r in RESOLUTIONS] + [(r, r) for r in RESOLUTIONS] + [(S, S)]
    out = {}
    for p, q in settings:
        scores = (feats[p][pairs.left] * feats[q][pairs.right]).sum(1)
        out[f"{p}&{q}"] = round(100 * kfold_accuracy(scores, pairs.issame, protocol="exact").mean, 2)
    return out


def train_trunk(sampler_name: str, x: np.ndarray, y: np.ndarray, args, epochs: float,
                lr: float, start: tuple | None = None) -> dict:
    """Train from scratch, or go on from ``start`` = (model, head) (fine-tuning)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    if start is None:
        model = build_backbone("iresnet18", input_size=S, width=args.width, embedding_size=128)
        model = model.to(memory_format=torch.channels_last)
        head = MarginHead(128, int(y.max()) + 1, build_margin_loss(args.loss))
    else:
        model, head = start
    opt = torch.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=lr,
                          momentum=0.9, weight_decay=5e-4)
    sampler = sampler_for(sampler_name)
    per_epoch = len(x) // args.batch_size
    total = int(epochs * per_epoch)
    warm = max(1, int(min(1.0, epochs / 8) * per_epoch))
    t0, losses, step = time.time(), [], 0
    while step < total:
        order = rng.permutation(len(x))
        for b in range(min(per_epoch, total - step)):
            idx = order[b * args.batch_size:(b + 1) * args.batch_size]
            batch = []
            for i in idx:
                im = x[i]
                r = S if sampler is None else sampler.sample(rng)
                if r != S:
                    im = degrade(im, r, restore_to=S)
                batch.append(np.ascontiguousarray(im[:, ::-1] if rng.random() < 0.5 else im))
            frac = (step - warm) / max(1, total - warm)
            step_lr = lr * ((step + 1) / warm if step < warm else (1 - frac) ** 2)
            for g in opt.param_groups:
                g["lr"] = step_lr
            loss = head(model(to_tensor(batch)), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
    return {"seconds": round(time.time() - t0, 1),
            "final_loss": round(float(np.mean(losses[-10:])), 2), "model": model,
            "head": head}


@torch.no_grad()
def recalibrate_bn(model: torch.nn.Module, x: np.ndarray, size: int, batches: int = 20,
                   batch_size: int = 128) -> None:
    """Re-estimate BatchNorm running statistics on training faces at one size only.

    A phi_mr trunk's statistics average over five resolutions; this asks how much of its
    full-resolution price is those mixed statistics rather than its weights.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    rng = np.random.default_rng(123)
    for _ in range(batches):
        idx = rng.choice(len(x), min(batch_size, len(x)), replace=False)
        ims = [x[i] if size == S else degrade(x[i], size, restore_to=S) for i in idx]
        model(to_tensor(ims))
    for m in bns:
        m.momentum = 0.1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samplers", default="hr,mr_v1",
                    help="comma-separated sampler names; 'A>B' trains A, then fine-tunes with B")
    ap.add_argument("--finetune-epochs", type=float, default=4.0)
    ap.add_argument("--finetune-lr", type=float, default=0.01)
    ap.add_argument("--epochs", type=float, default=10.0)
    ap.add_argument("--ids", type=int, default=200)
    ap.add_argument("--per-id", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--width", type=int, default=16, help="IResNet-18 base width")
    ap.add_argument("--loss", default="curricularface", help="margin loss of the trunk")
    ap.add_argument("--recalibrate-bn", action="store_true",
                    help="also report accuracy after re-estimating BN statistics at S only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    faces = SyntheticFaces(args.ids, args.per_id, size=S, seed=0)
    x = np.stack([faces[i][0] for i in range(len(faces))])
    pairs = builtin_pairs(100, 8, num_pairs=2000, size=S, seed=1)  # the demo's test pairs
    images = [pairs.images[i] for i in range(len(pairs.images))]
    for name in args.samplers.split(","):
        first, _, then = name.partition(">")
        run = train_trunk(first, x, faces.labels, args, args.epochs, args.lr)
        model, head = run.pop("model"), run.pop("head")
        acc = evaluate(model, pairs, images)
        print(json.dumps({"sampler": first, "epochs": args.epochs, "width": args.width,
                          "loss": args.loss, **run, "accuracy": acc}), flush=True)
        if then:
            run = train_trunk(then, x, faces.labels, args, args.finetune_epochs,
                              args.finetune_lr, start=(model, head))
            model, head = run.pop("model"), run.pop("head")
            acc = evaluate(model, pairs, images)
            print(json.dumps({"sampler": name, "finetune_epochs": args.finetune_epochs,
                              "finetune_lr": args.finetune_lr, **run, "accuracy": acc}),
                  flush=True)
        if args.recalibrate_bn:
            recalibrate_bn(model, x, S, batch_size=args.batch_size)
            acc = evaluate(model, pairs, images)
            print(json.dumps({"sampler": name, "bn_recalibrated_at": S, "accuracy": acc}),
                  flush=True)


if __name__ == "__main__":
    main()
