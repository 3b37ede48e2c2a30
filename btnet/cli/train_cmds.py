"""``btnet train CONFIG [--set key=value ...] [--resume] [--out DIR]``: a thin layer over
:func:`btnet.training.train`."""

from __future__ import annotations

import argparse

from btnet.training.entry import add_train_arguments, recipe_help_lines, run_training


def _epilog() -> str:
    lines = recipe_help_lines()
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


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``btnet train`` to ``btnet``."""
    p = sub.add_parser(
        "train", help="train a trunk, a phi_mm baseline or BTNet branches from a YAML config",
        description="Train a model of the paper from a YAML config.", epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_train_arguments(p)
    p.set_defaults(func=run_training)

