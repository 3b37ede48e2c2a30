"""Entry point of the ``btnet`` command.

Each command group lives in its own module exposing ``register(subparsers)``; the handlers they
install receive the parsed ``argparse.Namespace`` and return an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from btnet import __version__

# Modules that contribute sub-commands, in the order they appear in ``btnet --help``.
COMMAND_MODULES = (
    "btnet.cli.pipeline_cmds",
    "btnet.cli.train_cmds",
    "btnet.cli.branch_cmds",
    "btnet.cli.eval_cmds",
    "btnet.cli.deploy_cmds",
    "btnet.cli.data_cmds",
    "btnet.cli.model_cmds",
    "btnet.cli.quality_cmds",
)


class UserError(Exception):
    """An error caused by the user's input; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="btnet",
        description="Multi-resolution face recognition with Branch-to-Trunk Networks (BTNet).",
    )
    parser.add_argument("--version", action="version", version=f"btnet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    from btnet.cli.examples import attach_examples

    attach_examples(parser)
    return parser


def _quiet_broken_pipe() -> int:
    """The reader went away (``btnet ... | head``): stop quietly, as a killed-by-SIGPIPE tool."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the final flush must not raise again
    except (OSError, ValueError):  # pragma: no cover - stdout without a descriptor
        pass
    return 141


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # --help can meet a closed pipe too
    except BrokenPipeError:
        return _quiet_broken_pipe()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (UserError, FileNotFoundError, FileExistsError, NotADirectoryError,
            IsADirectoryError, PermissionError, ValueError, KeyError) as exc:
        if args.verbose:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"btnet {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except ImportError as exc:
        if args.verbose:
            raise
        print(
            f"btnet {args.command}: error: {exc}; this feature needs an optional extra "
            "(pip install 'btnet[onnx]', 'btnet[faiss]' or 'btnet[align]')",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
