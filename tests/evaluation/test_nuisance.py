"""Nuisance share per scale: its extremes, the CLI on real folders, and the calibration of the
built-in faces against aligned LFW (the claim docs/builtin-faces.md makes)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from btnet.evaluation.nuisance import builtin_groups, folder_groups, nuisance_shares


def test_identical_images_have_no_nuisance_and_pure_noise_is_all_nuisance():
    rng = np.random.default_rng(0)
    same = [[face] * 4 for face in rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)]
    res = nuisance_shares(same, ["thumb4", "detail8"], canonical=16)
    assert res["identities"] == 6 and res["faces"] == 24
    assert res["bands"]["thumb4"]["share"] == pytest.approx(0.0, abs=1e-9)
    assert res["bands"]["detail8"]["share"] == pytest.approx(0.0, abs=1e-9)

    noise = [list(rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)) for _ in range(30)]
    share = nuisance_shares(noise, ["thumb4"], canonical=16)["bands"]["thumb4"]["share"]
    assert 0.9 < share < 1.1  # unbiased estimates: about 1 for exchangeable images


def test_identity_offset_lowers_the_share_by_the_expected_amount():
    # Images = identity constant c_i (variance 1) + noise (variance 1): share ~ 1 / 2.
    rng = np.random.default_rng(1)
    groups = []
    for _ in range(200):
        c = rng.normal(0, 1, (1, 1, 3))
        groups.append([np.clip(128 + 20 * (c + rng.normal(0, 1, (8, 8, 3))), 0, 255)
                       .astype(np.uint8) for _ in range(5)])
    share = nuisance_shares(groups, ["thumb1"], canonical=8)["bands"]["thumb1"]["share"]
    # thumb1 averages 64 noise pixels: noise variance / 64 vs identity variance 1.
    assert share == pytest.approx((1 / 64) / (1 + 1 / 64), abs=0.01)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="two identities"):
        nuisance_shares([[np.zeros((8, 8, 3), np.uint8)] * 2], ["thumb2"], canonical=8)
    with pytest.raises(ValueError, match="unknown band"):
        nuisance_shares([[np.zeros((8, 8, 3), np.uint8)] * 2] * 2, ["blur3"], canonical=8)


def test_cli_on_an_identity_folder(tmp_path):
    rng = np.random.default_rng(2)
    for i in range(3):
        d = tmp_path / "faces" / f"person{i}"
        d.mkdir(parents=True)
        for k in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(d / f"{k}.png")
    out = tmp_path / "n.json"
    proc = subprocess.run(
        [sys.executable, "-m", "btnet.cli.main", "analyze", "nuisance", str(tmp_path / "faces"),
         "--identities", "3", "--per-identity", "3", "--canonical", "16",
         "--bands", "thumb4", "detail8", "--out", str(out)],
        capture_output=True, text=True, check=True)
    assert "thumb4" in proc.stdout and out.exists()
    assert len(folder_groups(tmp_path / "faces", 10, 3)) == 3
    with pytest.raises(FileNotFoundError, match="at least 4"):
        folder_groups(tmp_path / "faces", 10, 4)


@pytest.mark.shared_data
def test_builtin_faces_are_calibrated_against_aligned_lfw(shared_data):
    """The generator's nuisance level was set so that a 7-pixel thumbnail is as much nuisance
    as on real aligned faces; the other bands are checks it was not fitted to."""
    bands = ["thumb7", "thumb14", "detail14", "detail28"]
    real = nuisance_shares(folder_groups(shared_data / "lfw" / "images", 80, 6), bands)
    ours = nuisance_shares(builtin_groups(80, 6, size=56), bands)
    for b in bands:
        assert abs(ours["bands"][b]["share"] - real["bands"][b]["share"]) < 0.06, b
    assert abs(ours["bands"]["thumb7"]["rms"] / real["bands"]["thumb7"]["rms"] - 1) < 0.2
