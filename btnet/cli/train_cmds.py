"""``btnet train CONFIG [--set key=value ...] [--resume] [--out DIR]``: a thin layer over
:func:`btnet.training.train`."""

from __future__ import annotations

import argparse
import json

from btnet.training.config import RECIPES


def _epilog() -> str:
    lines = ["recipes (the config's 'recipe:' key):"]
    lines += [f"  {name:7s} {text}" for name, text in RECIPES.items()]
    lines += [
        "",
        "examples:",
        "  btnet train configs/cpu/trunk_mr_v1.yaml",
        "  btnet train configs/cpu/branch.yaml --set branch.trunk=runs/cpu_trunk_mr_v1 "
        "--set branch.bct=false",
        "  torchrun --nproc_per_node 8 -m btnet.training configs/trunk_mr_v1.yaml",
        "",
        "Every option is a dotted key of the config schema (btnet/training/config.py);",
        "a wrong key fails at once with the list of valid ones.",
    ]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config (see configs/ and configs/cpu/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=0.01 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue the checkpoint in the output folder")
    p.add_argument("--out", default=None, help="output folder (default: config's output_dir)")


def handler(args: argparse.Namespace) -> int:
    from btnet.training import train

    result = train(args.config, args.overrides, output_dir=args.out, resume=args.resume)
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    if rank == 0:
        print(json.dumps({"output_dir": str(result.output_dir),
                          "model": str(result.model_path), "steps": result.steps,
                          "metrics": result.metrics}, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``btnet train`` to ``btnet``."""
    p = sub.add_parser(
        "train", help="train a trunk, a phi_mm baseline or BTNet branches from a YAML config",
        description="Train a model of the paper from a YAML config.", epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=handler)

