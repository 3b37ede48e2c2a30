"""Bad config files fail before training starts, with the file (and line) named."""

from __future__ import annotations

import pytest

from btnet.training.config import ConfigError, load_config


def test_empty_yaml_is_refused_instead_of_training_the_defaults(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match=r"empty\.yaml: the config file is empty"):
        load_config(tmp_path / "empty.yaml")


def test_malformed_yaml_names_file_and_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("optim:\n  lr: 0.1\n\tmomentum: 0.9\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:3:1: not valid YAML"):
        load_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize("text, key", [
    ("optim:\n  lr: .nan\n", "optim.lr"),
    ("optim:\n  lr: .inf\n", "optim.lr"),
    ("optim:\n  lr: -0.1\n", "optim.lr"),
    ("optim:\n  momentum: 1.5\n", "optim.momentum"),
    ("optim:\n  betas: [0.9, .nan]\n", r"optim.betas\[1\]"),
    ("train:\n  max_steps: .inf\n", "train.max_steps"),
    ("train:\n  epochs: -1\n", "train.epochs"),
    ("loss:\n  s: 0\n", "loss.s"),
])
def test_non_finite_or_out_of_range_numbers_are_refused(tmp_path, text, key):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=key):
        load_config(tmp_path / "c.yaml")


def test_cli_refuses_before_writing_anything(tmp_path, capsys):
    from btnet.cli.main import main

    (tmp_path / "nan.yaml").write_text("optim:\n  lr: .nan\n")
    out = tmp_path / "run"
    assert main(["train", str(tmp_path / "nan.yaml"), "--out", str(out)]) == 2
    assert "optim.lr: must be a finite number" in capsys.readouterr().err
    assert not out.exists()
