"""``python -m btnet.training CONFIG [--set KEY=VALUE ...] [--resume] [--out DIR]``.

The entry ``torchrun`` starts once per process (``torchrun --nproc_per_node N -m
btnet.training CONFIG``). It calls the library's :func:`btnet.training.train` directly, with the
options and errors of ``btnet train`` but without importing the ``btnet`` command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from btnet.training.api import train
from btnet.training.config import RECIPES


def _parser() -> argparse.ArgumentParser:
    epilog = "\n".join(
        ["recipes (the config's 'recipe:' key):"]
        + [f"  {name:7s} {text}" for name, text in RECIPES.items()]
        + ["", "example:", "  torchrun --nproc_per_node 8 -m btnet.training configs/trunk_mr_v1.yaml"]
    )
    p = argparse.ArgumentParser(prog="python -m btnet.training", epilog=epilog,
                                description="Train a model of the paper from a YAML config.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML config (see configs/ and configs/cpu/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=0.01 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue the checkpoint in the output folder")
    p.add_argument("--out", default=None, help="output folder (default: config's output_dir)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        result = train(args.config, args.overrides, output_dir=args.out, resume=args.resume)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        if args.verbose:
            raise
        print(f"python -m btnet.training: error: {exc}", file=sys.stderr)
        return 2
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
        print(json.dumps({"output_dir": str(result.output_dir),
                          "model": str(result.model_path), "steps": result.steps,
                          "metrics": result.metrics}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
