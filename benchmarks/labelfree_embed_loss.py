"""Cosine or MSE for the embedding term of label-free branches: train both on the same trunk,
images and schedule with ``add_branches``, score both on the same LFW dev-test pairs, and print
each difference with the standard error of the paired per-fold difference.

    python benchmarks/labelfree_embed_loss.py --trunk runs/cache/stages/train_trunk-X/run/model \
        --images FLAT_FOLDER --data ../shared/data --epochs 2 --batch-size 64 --pairs 3000

Writes ``OUT/<loss>/`` (the two models) and ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trunk", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--data", default="../shared/data", help="root with lfw/ (dev-test pairs)")
    ap.add_argument("--out", default="runs/labelfree_embed_loss")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--pairs", type=int, default=3000)
    ap.add_argument("--settings", default="56&7,56&14,56&28,7&7,14&14,28&28")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from btnet.data.lfw_celeba_protocol import lfw_devtest_pairs
    from btnet.evaluation.verification import evaluate_pairs, parse_settings
    from btnet.inference import load_encoder
    from btnet.training.branch_add import add_branches

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    pairs = lfw_devtest_pairs(Path(args.data) / "lfw", total_pairs=args.pairs, seed=0)
    results: dict[str, dict] = {}
    for loss in ("cosine", "mse"):
        start = time.perf_counter()
        res = add_branches(args.trunk, args.images, out / loss, epochs=args.epochs,
                           batch_size=args.batch_size, lr=args.lr, embed_loss=loss,
                           threads=args.threads, progress=False)
        train_s = time.perf_counter() - start
        enc = load_encoder(str(out / loss), name=loss)
        settings = parse_settings(args.settings.split(","), enc.canonical)
        rows = evaluate_pairs(enc, pairs, settings, enc.canonical, model_name=loss,
                              progress=False)
        results[loss] = {"steps": res.steps, "train_seconds": round(train_s, 1),
                         "last": res.metrics.get("train", {}),
                         "settings": {r.setting: {"mean": r.accuracy_mean, "std": r.accuracy_std,
                                                  "folds": r.metrics.get("fold_accuracies")}
                                      for r in rows}}
        print(loss, json.dumps({s: round(100 * v["mean"], 2)
                                for s, v in results[loss]["settings"].items()}), flush=True)
    print("\n| setting | cosine | mse | mse - cosine |\n|---|---:|---:|---:|")
    for s, c in results["cosine"]["settings"].items():
        m = results["mse"]["settings"][s]
        d = np.asarray(m["folds"], float) - np.asarray(c["folds"], float)
        se = 100 * d.std(ddof=1) / np.sqrt(len(d))
        print(f"| {s} | {100 * c['mean']:.2f} | {100 * m['mean']:.2f} | "
              f"{100 * (m['mean'] - c['mean']):+.2f} ± {se:.2f} |")
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
