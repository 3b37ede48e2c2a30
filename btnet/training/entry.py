"""What ``btnet train`` and ``python -m btnet.training`` share: their arguments, the recipe list
of their help, and the one JSON line of the result (printed by rank 0 only under torchrun).

Why here: the torchrun entry must not import the ``btnet`` command line, and the command line
must not grow a second copy of the entry's options.
"""

from __future__ import annotations

import argparse
import json

from btnet.training.config import RECIPES


def recipe_help_lines() -> list[str]:
    return ["recipes (the config's 'recipe:' key):"] + [
        f"  {name:7s} {text}" for name, text in RECIPES.items()]


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config (see configs/ and configs/cpu/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=0.01 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue the checkpoint in the output folder")
    p.add_argument("--out", default=None, help="output folder (default: config's output_dir)")


def run_training(args: argparse.Namespace) -> int:
    """Train from parsed arguments; rank 0 prints the result as JSON."""
    from btnet.training.api import train

    result = train(args.config, args.overrides, output_dir=args.out, resume=args.resume)
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
        print(json.dumps({"output_dir": str(result.output_dir),
                          "model": str(result.model_path), "steps": result.steps,
                          "metrics": result.metrics}, indent=2))
    return 0
