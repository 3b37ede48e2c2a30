"""``btnet branch add TRUNK IMAGES --out MODEL``: a thin layer over
:func:`btnet.training.branch_add.add_branches`."""

from __future__ import annotations

import argparse
import json

EPILOG = """\
TRUNK is a stored btnet model folder, an arcface_torch backbone.pth (IResNet of any depth and
width; give --canonical unless its head implies 112) or an ONNX file of an IResNet recogniser.
IMAGES is any training set btnet reads: a flat folder of aligned face crops (no labels needed),
root/<identity>/<image> folders (labels ignored), an insightface .rec/.idx, or builtin faces.

The trunk stays frozen; each branch learns from the trunk itself (branch distillation plus an
embedding term), so no identities and no classifier are used. Interrupted? Run the same command
again: it continues from the last checkpoint in MODEL/training/ and ends with the same weights.

examples:
  btnet branch add runs/phi_hr/model faces/ --out runs/phi_hr_branches
  btnet branch add backbone.pth my_faces/ --resolutions 7,14,28 --canonical 112 --out r50_btnet
  btnet branch add w600k_r50.onnx my_faces/ --epochs 2 --out r50_tiny_faces
  btnet embed runs/phi_hr_branches probe_14px.jpg -o emb.npy   # the result works everywhere
"""


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one resolution")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``btnet branch`` to ``btnet``."""
    br = sub.add_parser("branch", help="add branches for tiny faces to a recogniser you have")
    brs = br.add_subparsers(dest="branch_command", metavar="ACTION")
    p = brs.add_parser(
        "add", help="train label-free branches for a trunk from unlabelled face images",
        description="Give a trained recogniser (btnet model, backbone.pth or ONNX) BTNet "
        "branches for r x r faces, trained from images alone, and store the result as a btnet "
        "model folder that embed, export onnx, gallery and eval take.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("trunk", help="model folder, backbone.pth or .onnx file")
    p.add_argument("images", help="face images: flat folder, identity folders, .rec or builtin:...")
    p.add_argument("--out", required=True, help="model folder to write (MODEL)")
    p.add_argument("--resolutions", type=_int_list, default=[7, 14, 28],
                   help="branch resolutions, comma-separated (default 7,14,28)")
    p.add_argument("--canonical", type=int, default=None,
                   help="the trunk's input size S, where a .pth cannot tell it")
    p.add_argument("--epochs", type=float, default=4.0, help="passes over IMAGES (default 4)")
    p.add_argument("--steps", type=int, default=0,
                   help="stop after this many optimiser steps instead (0: use --epochs)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (default 0.1)")
    p.add_argument("--embed-loss", choices=("cosine", "mse"), default="mse",
                   help="embedding term against the trunk's embedding (default mse: measured "
                   "better for 7-pixel faces, docs/training.md)")
    p.add_argument("--distill-weight", type=float, default=0.5,
                   help="weight of the branch-distillation MSE (default 0.5)")
    p.add_argument("--embed-weight", type=float, default=1.0,
                   help="weight of the embedding term (default 1)")
    p.add_argument("--trunk-scale", choices=("unit", "stored"), default="unit",
                   help="unit (default): each trunk conv rescaled to unit output std on IMAGES "
                   "before branches copy it (same function; a model folder and its ONNX export "
                   "then train alike); stored: the scales as the trunk file has them")
    p.add_argument("--degrade", default="",
                   help="surveillance degradation of the small training faces, e.g. "
                   "'surveillance' or 'blur=0.3:1,p=0.5' (default: clean down-sampling)")
    p.add_argument("--checkpoint-every", type=int, default=100,
                   help="optimiser steps between checkpoints (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes")
    p.add_argument("--keep-checkpoint", action="store_true",
                   help="keep MODEL/training/checkpoint after a finished run")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_add)


def _add(args: argparse.Namespace) -> int:
    from btnet.training.branch_add import add_branches

    result = add_branches(
        args.trunk, args.images, args.out, keep_checkpoint=args.keep_checkpoint,
        resolutions=args.resolutions, canonical=args.canonical, epochs=args.epochs,
        max_steps=args.steps, batch_size=args.batch_size, lr=args.lr, embed_loss=args.embed_loss,
        distill_weight=args.distill_weight, embed_weight=args.embed_weight,
        trunk_scale=args.trunk_scale, degrade=args.degrade, seed=args.seed,
        device=args.device, threads=args.threads, workers=args.workers,
        progress=not args.quiet, checkpoint_every=args.checkpoint_every,
    )
    print(json.dumps({"model": str(result.model), "steps": result.steps,
                      "resumed": result.resumed, "metrics": result.metrics.get("train", {})},
                     indent=2))
    return 0
