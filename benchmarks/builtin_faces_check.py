"""Does the built-in face generator pose a real multi-resolution problem?

Trains two small CNNs on built-in faces at canonical size S: one on S-pixel faces only
(phi_hr) and one on faces down-sampled to S/2^i and up-sampled back (phi_mr v1), then measures
verification accuracy on disjoint test identities with probes at several resolutions (both
sides of a pair degraded, up-sampled back to S). The generator is doing its job when phi_hr is
good at S but falls far on 14/7-pixel faces, phi_mr does clearly better there, and low-res
accuracy stays below high-res for both.

    python benchmarks/builtin_faces_check.py --size 56 --ids 200 --epochs 8
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from btnet.data.resolution import MultiResolutionTransform, degrade, make_sampler, sample_rng
from btnet.data.synthetic import BUILTIN_TEST_OFFSET, SyntheticFaces
from btnet.data.transforms import to_tensor


def block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout)
    )


class TinyNet(nn.Module):
    def __init__(self, size: int, width: int = 16, dim: int = 128):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            block(3, w, 1), block(w, 2 * w, 2), block(2 * w, 2 * w, 1), block(2 * w, 4 * w, 2),
            block(4 * w, 4 * w, 1), block(4 * w, 8 * w, 2),
        )
        side = (size + 7) // 8
        self.head = nn.Sequential(
            nn.BatchNorm2d(8 * w), nn.Flatten(), nn.Dropout(0.2),
            nn.Linear(8 * w * side * side, dim), nn.BatchNorm1d(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train(images, labels, classes, size, sampler_name, epochs, seed=0, width=16):
    torch.manual_seed(seed)
    net = TinyNet(size, width)
    w = nn.Parameter(torch.randn(classes, 128) * 0.01)
    opt = torch.optim.AdamW(list(net.parameters()) + [w], lr=2e-3, weight_decay=5e-4)
    tf = MultiResolutionTransform(make_sampler(sampler_name, size), size)
    n = len(images)
    steps = epochs * (n // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    rng = np.random.default_rng(seed)
    net.train()
    for ep in range(epochs):
        perm = rng.permutation(n)
        for b in range(n // 64):
            idx = perm[b * 64 : (b + 1) * 64]
            x = to_tensor([tf(images[i], sample_rng(seed, ep, int(i))) for i in idx])
            y = torch.from_numpy(labels[idx])
            emb = F.normalize(net(x))
            logits = emb @ F.normalize(w).t()
            logits = 32 * (logits - 0.35 * F.one_hot(y, classes))  # CosFace
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    return net


@torch.no_grad()
def verify(net, images, size, pairs, r):
    x = [degrade(im, r, restore_to=size) if r < size else im for im in images]
    emb = torch.cat([F.normalize(net(to_tensor(x[i : i + 256]))) for i in range(0, len(x), 256)])
    left, right, same = pairs
    sim = (emb[left] * emb[right]).sum(1).numpy()
    best = 0.0
    for t in np.unique(sim):
        best = max(best, float(((sim >= t) == same).mean()))
    return best


def make_pairs(labels, n, seed=0):
    rng = np.random.default_rng(seed)
    by = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    cls = list(by)
    left, right, same = [], [], []
    for k in range(n):
        if k % 2 == 0:
            c = cls[rng.integers(len(cls))]
            a, b = rng.choice(by[c], 2, replace=False)
        else:
            c1, c2 = rng.choice(len(cls), 2, replace=False)
            a, b = rng.choice(by[cls[c1]]), rng.choice(by[cls[c2]])
        left.append(a), right.append(b), same.append(k % 2 == 0)
    return np.array(left), np.array(right), np.array(same)


def write_figures(folder: str, seed: int = 0) -> None:
    """The two pictures in docs/img: a 6x6 grid (identities x images, 80 px each) and one
    image per row at 112 then down-sampled to 56/28/14/7 and up-sampled back."""
    from pathlib import Path

    from PIL import Image

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    faces = SyntheticFaces(6, 6, size=112, seed=seed)
    tile = [[np.asarray(Image.fromarray(faces[6 * i + j][0]).resize((80, 80), Image.BOX))
             for j in range(6)] for i in range(6)]
    grid = np.concatenate([np.concatenate(row, 1) for row in tile], 0)
    Image.fromarray(grid).save(out / "builtin_faces_grid.png")
    rows = [np.concatenate([faces[6 * i][0]] + [degrade(faces[6 * i][0], r, restore_to=112)
                                                for r in (56, 28, 14, 7)], 1) for i in range(2)]
    Image.fromarray(np.concatenate(rows, 0)).save(out / "builtin_faces_resolutions.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=56)
    ap.add_argument("--ids", type=int, default=200)
    ap.add_argument("--per-id", type=int, default=16)
    ap.add_argument("--test-ids", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figures", metavar="DIR", help="only write the docs/img pictures to DIR")
    args = ap.parse_args()
    if args.figures:
        write_figures(args.figures, args.seed)
        return
    torch.set_num_threads(args.threads)
    t0 = time.time()
    train_set = SyntheticFaces(args.ids, args.per_id, size=args.size, seed=args.seed)
    test_set = SyntheticFaces(
        args.test_ids, 10, size=args.size, seed=args.seed, identity_offset=BUILTIN_TEST_OFFSET
    )
    tr = [train_set[i][0] for i in range(len(train_set))]
    te = [test_set[i][0] for i in range(len(test_set))]
    print(f"generated {len(tr) + len(te)} faces in {time.time() - t0:.1f}s", flush=True)
    pairs = make_pairs(test_set.labels, 2000, args.seed)
    res = [args.size, args.size // 2, 14, 7]
    print("model   " + "".join(f"{r:>8d}" for r in res), flush=True)
    for name in ("hr", "mr_v1"):
        t1 = time.time()
        net = train(tr, train_set.labels, args.ids, args.size, name, args.epochs, args.seed,
                    args.width)
        accs = [verify(net, te, args.size, pairs, r) for r in res]
        print(f"{name:8s}" + "".join(f"{a * 100:8.1f}" for a in accs)
              + f"   ({time.time() - t1:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
