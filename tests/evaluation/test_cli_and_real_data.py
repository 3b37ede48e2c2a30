"""CLI end to end with tiny stored models, and the runner on real LFW pairs (shared data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from evalfakes import FakeEncoder, identity_faces, synthetic_pairset

from btnet.cli.main import main
from btnet.data.images import write_image


@pytest.fixture(scope="module")
def stored_models(tmp_path_factory):
    from btnet.io.model_store import save_backbone, save_btnet
    from btnet.models import BTNet, build_backbone

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("models")
    trunk = build_backbone("iresnet18", input_size=56, width=4, embedding_size=16).eval()
    save_backbone(trunk, root / "hr")
    save_btnet(BTNet(trunk, (7, 14, 28)).eval(), root / "bt")
    return root


def _pair_list(tmp_path):
    ps = synthetic_pairset(n_ids=6, per_id=2, n_pairs=12)
    lines = []
    for a, b, s in zip(ps.left, ps.right, ps.issame):
        for i in (a, b):
            if not (tmp_path / f"{i}.png").exists():
                write_image(tmp_path / f"{i}.png", ps.images[int(i)])
        lines.append(f"{a}.png {b}.png {int(s)}")
    (tmp_path / "pairs.list").write_text("\n".join(lines) + "\n")
    return tmp_path / "pairs.list"


def test_cli_eval_verify(tmp_path, stored_models, capsys):
    pairs = _pair_list(tmp_path)
    rc = main(["eval", "verify", "--model", f"phi_hr={stored_models / 'hr'}",
               "--model", f"btnet={stored_models / 'bt'}", "--set", str(pairs), "--folds", "2",
               "--settings", "S&7,7&7,S&S", "--phi-hr", "phi_hr", "--out", str(tmp_path / "o"),
               "--no-progress", "--batch-size", "8"])
    assert rc == 0
    data = json.loads((tmp_path / "o" / "results.json").read_text())
    d = data["datasets"]["pairs"]
    assert d["models"] == ["phi_hr", "btnet"] and d["settings"] == ["56&7", "7&7", "56&56"]
    # BTNet's S&S path is the trunk itself: identical accuracy, gain exactly 0
    assert d["gains"]["btnet"]["56&56"]["same_vs_hr"] == pytest.approx(0.0)
    assert (tmp_path / "o" / "report.md").exists() and list((tmp_path / "o").glob("roc_*.png"))
    assert "btnet" in capsys.readouterr().out


def test_cli_user_errors(tmp_path, stored_models, capsys):
    pairs = _pair_list(tmp_path)
    rc = main(["eval", "verify", "--model", str(stored_models / "hr"), "--set", str(pairs),
               "--settings", "112&7", "--out", str(tmp_path / "o")])
    assert rc == 2 and "outside" in capsys.readouterr().err
    rc = main(["eval", "verify", "--model", str(stored_models / "hr"),
               "--set", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")])
    assert rc == 2


def test_cli_protocol_identify_strategies(tmp_path, stored_models, capsys):
    images, labels = identity_faces(4, 3, size=56, seed=1)
    for k, (img, lab) in enumerate(zip(images, labels)):
        write_image(tmp_path / "faces" / f"id{lab}" / f"{k}.png", img)
    assert main(["protocol", "openset", "--root", str(tmp_path / "faces"),
                 "--out", str(tmp_path / "proto"), "--watchlist", "2", "--seed", "2"]) == 0
    assert "probe size mean" in capsys.readouterr().out
    rc = main(["eval", "identify", "--model", str(stored_models / "bt"),
               "--model", str(stored_models / "hr"), "--protocol", str(tmp_path / "proto"),
               "--strategies", "min/floor,min/ceil,max/near", "--rank", "2", "--cmc", "1,2", "--out",
               str(tmp_path / "id"), "--no-progress"])
    assert rc == 0
    res = json.loads((tmp_path / "id" / "results.json").read_text())["results"]
    assert len(res) == 4  # three policies for the BTNet, one run for the plain model
    assert [r["policy"] for r in res] == ["min/floor", "min/ceil", "max/near", None]
    # floor vs ceil route the small probes to different paths
    counts = {r["policy"]: r["path_counts"] for r in res[:3]}
    assert counts["min/floor"] != counts["min/ceil"]


def test_cli_analyze(tmp_path, capsys):
    images, _ = identity_faces(2, 3, size=112, seed=0)
    for k, img in enumerate(images):
        write_image(tmp_path / "faces" / f"{k}.png", img)
    assert main(["analyze", "interpolation", "--images", str(tmp_path / "faces"), "--n", "6",
                 "--resolutions", "7,14,28", "--out", str(tmp_path / "fig1")]) == 0
    res = json.loads((tmp_path / "fig1" / "interpolation.json").read_text())
    assert res["n_faces"] == 6 and set(res["per_resolution"]) == {"7", "14", "28"}
    (tmp_path / "cost.csv").write_text("label,cost,accuracy\nphi_hr,0.9,80\nBTNet r=7,0.1,85\n")
    assert main(["analyze", "plot", "cost", "--points", str(tmp_path / "cost.csv"),
                 "--out", str(tmp_path / "fig5.png")]) == 0
    assert (tmp_path / "fig5.png").stat().st_size > 1000


@pytest.mark.shared_data
def test_lfw_first_600_pairs_with_fake_encoder(shared_data):
    from btnet.data.verification import open_pair_set
    from btnet.evaluation.verification import Setting, evaluate_verification, subset_pairs

    ps = open_pair_set(shared_data / "lfw" / "pairs.txt")
    assert len(ps) == 6000
    sub = subset_pairs(ps, 600)
    # every 10th pair: each contiguous fold holds 30 genuine and 30 impostor pairs
    folds = sub.issame.reshape(10, 60)
    assert (folds.sum(axis=1) == 30).all()
    enc = FakeEncoder(grid=8)
    res = evaluate_verification([enc], [sub], [Setting(56, 7), Setting(56, 56)], canonical=56,
                                progress=False, batch_size=128)
    by = {r.setting: r for r in res}
    # a pixel projection is a weak recogniser but clearly above chance on real faces
    assert 0.55 < by["56&56"].accuracy_mean < 0.95
    assert len(by["56&56"].metrics["fold_accuracies"]) == 10
    # LFW pairs.txt is reported the field's way: insightface's protocol by default
    assert by["56&56"].metrics["protocol"] == "insightface"
    assert np.isfinite(by["56&7"].accuracy_std)
