"""Issue 12 item 4, the round trip: branches added to a btnet-trained IResNet and to its
arcface_torch ONNX export (BatchNorms folded into the convolutions), imported back.

For each seed and each ``--trunk-scale`` (``unit``: every trunk conv rescaled to unit output
std before branches copy it, so both sources start from the same parameters; ``stored``: the
original keeps its own split of each channel's scale, the import the one its restored
BatchNorms give), ``btnet branch add`` trains label-free branches from the model folder and from
the ONNX file on the same images, and both are scored on LFW View 2 ``pairs.txt`` (6,000 pairs,
insightface protocol). The table gives, per scale, the mean over seeds of (import − original) ±
its standard error over seeds, beside each seed's paired per-fold error::

    python benchmarks/labelfree_onnx_roundtrip.py --trunk runs/cache/stages/train_trunk-X/run/model \\
        --images runs/cache/inputs/lfw_devtrain_single_image_people --data ../shared/data \\
        --out runs/roundtrip --seeds 0,1,2 --trunk-scale unit,stored
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SETTINGS = ["S&7", "S&14", "S&28", "7&7", "S&S"]


def main(argv: list[str] | None = None) -> None:
    from btnet.data.pair_sets import open_pair_set
    from btnet.deployment.onnx_arcface import export_arcface_onnx
    from btnet.evaluation.gains import paired_fold_error
    from btnet.evaluation.verification import evaluate_pairs, parse_settings
    from btnet.inference import load_encoder
    from btnet.io.trunks import open_trunk
    from btnet.training.branch_add import add_branches

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trunk", required=True, help="btnet model folder of the trunk")
    ap.add_argument("--images", required=True, help="unlabelled faces for the branches")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", default="runs/roundtrip")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--trunk-scale", default="unit,stored")
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "trunk.onnx"
    if not onnx_path.is_file():
        export_arcface_onnx(open_trunk(args.trunk).backbone, onnx_path)
    pairs = open_pair_set(str(Path(args.data) / "lfw" / "pairs.txt"))
    trunk = open_trunk(args.trunk)
    settings = parse_settings(SETTINGS, trunk.backbone.input_size)
    names = [s.name for s in settings]  # "56&7", ...
    rows: dict[str, list[dict]] = {}
    for scale in args.trunk_scale.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            res = {}
            for src, path in (("original", args.trunk), ("import", onnx_path)):
                model = out / f"{scale}_s{seed}_{src}"
                add_branches(path, args.images, model, epochs=args.epochs, seed=seed,
                             batch_size=args.batch_size, threads=args.threads,
                             trunk_scale=scale, progress=False)
                cached = model / "lfw_view2.json"
                if not cached.is_file():
                    got = evaluate_pairs(load_encoder(str(model)), pairs, settings,
                                         trunk.backbone.input_size, model_name=src,
                                         protocol="insightface", progress=False)
                    cached.write_text(json.dumps([r.to_dict() for r in got]))
                res[src] = {d["setting"]: d for d in json.loads(cached.read_text())}
            row = {"seed": seed, "original": {}, "import": {}, "diff": {}}
            for s in names:
                a, b = res["import"][s], res["original"][s]
                row["original"][s] = 100 * b["accuracy_mean"]
                row["import"][s] = 100 * a["accuracy_mean"]
                row["diff"][s] = (100 * (a["accuracy_mean"] - b["accuracy_mean"]),
                                  paired_fold_error(a["metrics"]["fold_accuracies"],
                                                    b["metrics"]["fold_accuracies"]))
            rows.setdefault(scale, []).append(row)
            print(json.dumps({"trunk_scale": scale, **row}))
    (out / "roundtrip.json").write_text(json.dumps(rows, indent=1))
    lines = ["| trunk scale | seed | " + " | ".join(f"{s} original / import" for s in names)
             + " |", "|---|---|" + "---|" * len(names)]
    for scale, runs in rows.items():
        for r in runs:
            lines.append(f"| {scale} | {r['seed']} | " + " | ".join(
                f"{r['original'][s]:.2f} / {r['import'][s]:.2f} ({r['diff'][s][0]:+.2f} ± "
                f"{r['diff'][s][1]:.2f})" for s in names) + " |")
        d = np.array([[r["diff"][s][0] for s in names] for r in runs])
        se = d.std(0, ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.full(len(names), np.nan)
        lines.append(f"| {scale} | mean import − original | " + " | ".join(
            f"{m:+.2f} ± {e:.2f}" for m, e in zip(d.mean(0), se)) + " |")
    table = "\n".join(lines)
    (out / "roundtrip.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
