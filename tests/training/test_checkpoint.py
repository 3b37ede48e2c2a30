"""Checkpoints: atomic replacement, RNG round trip, no code execution on load."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from btnet.training import checkpoint as C


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    C.save_checkpoint(path, step=1, weights=torch.ones(3))

    def boom(obj, fh):
        fh.write(b"partial")
        raise KeyboardInterrupt  # a kill in the middle of the write

    monkeypatch.setattr(C.torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        C.save_checkpoint(path, step=2, weights=torch.zeros(3))
    monkeypatch.undo()
    ckpt = C.load_checkpoint(path)
    assert ckpt["step"] == 1 and torch.equal(ckpt["weights"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left


def test_rng_states_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    C.save_checkpoint(tmp_path / "c.pt", step=0)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    C.set_rng_state(C.load_checkpoint(tmp_path / "c.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_loading_never_executes_code(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": C.FORMAT_VERSION, "payload": _Evil()}, path)
    with pytest.raises(Exception, match="[Ww]eights"):
        C.load_checkpoint(path)
    assert "code ran" not in capsys.readouterr().out
    with pytest.raises(FileNotFoundError):
        C.load_checkpoint(tmp_path / "missing.pt")


def test_channels_last_crashing_convs_names_only_narrow_strided_1x1():
    # Why it matters: torch's CPU backward of these convolutions in channels_last aborts the
    # process (heap corruption), so the trainer must not switch such a model to channels_last.
    from torch import nn

    from btnet.training.loop import channels_last_crashing_convs

    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, 1, 1),  # stem: 3x3, fine
        nn.Conv2d(4, 8, 1, 2),  # narrow strided 1x1: crashes
        nn.Conv2d(8, 16, 1, 2),  # 8 input channels: fine
        nn.Conv2d(4, 8, 1, 1),  # not strided: fine
        nn.Conv2d(4, 8, 3, 2, 1),  # 3x3: fine
    )
    assert channels_last_crashing_convs(net) == ["1"]
