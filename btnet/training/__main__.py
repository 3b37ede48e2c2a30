"""``python -m btnet.training CONFIG [--set KEY=VALUE ...] [--resume] [--out DIR]``.

The entry ``torchrun`` starts once per process (``torchrun --nproc_per_node N -m
btnet.training CONFIG``). It calls the library's :func:`btnet.training.train` directly, with the
options and errors of ``btnet train`` but without importing the ``btnet`` command line.
"""

from __future__ import annotations

import argparse
import logging
import sys

from btnet.training.entry import add_train_arguments, recipe_help_lines, run_training


def _parser() -> argparse.ArgumentParser:
    epilog = "\n".join(
        recipe_help_lines()
        + ["", "example:", "  torchrun --nproc_per_node 8 -m btnet.training configs/trunk_mr_v1.yaml"]
    )
    p = argparse.ArgumentParser(prog="python -m btnet.training", epilog=epilog,
                                description="Train a model of the paper from a YAML config.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_training(args)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        if args.verbose:
            raise
        print(f"python -m btnet.training: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
