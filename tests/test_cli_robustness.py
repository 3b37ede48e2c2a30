"""Every command's --help carries an example; a closed pipe ends a command quietly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from btnet.cli.examples import EXAMPLES, iter_parsers
from btnet.cli.main import build_parser

COMMANDS = [name for name, _ in iter_parsers(build_parser())]


def test_every_command_is_walked():
    assert {"train", "gallery enroll", "data reindex", "eval verify", "model"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_help_shows_an_example(name):
    parser = dict(iter_parsers(build_parser()))[name]
    text = parser.format_help()
    assert "examples:" in text, f"`btnet {name} --help` has no example: add one to EXAMPLES"
    block = text.split("examples:", 1)[1]
    # each example is a btnet call of this very command (or, for a group, of one of its commands)
    assert f"btnet {name}" in block or "-m btnet.training" in block


def test_no_example_for_a_command_that_does_not_exist():
    assert set(EXAMPLES) <= set(COMMANDS)


def test_piping_into_a_closed_reader_exits_quietly(tmp_path):
    """``btnet ... | head -1``: no BrokenPipeError traceback, SIGPIPE-style exit status 141."""
    script = tmp_path / "spam.py"
    script.write_text(
        "import sys\n"
        "import btnet.cli.deploy_cmds as d\n"
        "def spam(args):\n"
        "    for i in range(200000):\n"
        "        print('line', i)\n"
        "    return 0\n"
        "d.cmd_info = spam  # a command with far more output than a pipe buffer holds\n"
        "from btnet.cli.main import main\n"
        "sys.exit(main(['gallery', 'info', 'x']))\n"
    )
    out = subprocess.run(
        ["bash", "-c", f"'{sys.executable}' '{script}' | head -1; exit ${{PIPESTATUS[0]}}"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.stdout == "line 0\n"
    assert out.stderr == "" and out.returncode == 141
