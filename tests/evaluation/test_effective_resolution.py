"""The effective-resolution protocol (seeded probes) and quality routing end to end (CLI)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from evalfakes import identity_faces, synthetic_pairset

from btnet.cli.main import main
from btnet.data.base import ListImageSource, OpenSetProtocol
from btnet.data.effective_resolution import effective_resolution_face, parse_resolution_list
from btnet.data.images import write_image
from btnet.data.resolution import downsample
from btnet.evaluation.effective_resolution import (
    effective_openset,
    effective_probe_transform,
    evaluate_effective_pairs,
)

S = 56


def _probes(seed: int, r: int = 14, n: int = 6) -> list[np.ndarray]:
    images, _ = identity_faces(3, 2, size=S, seed=0)
    fn = effective_probe_transform(r, S, None, seed)
    return [fn(img, i) for i, img in enumerate(images[:n])]


def test_probes_are_seeded():
    a, b, c = _probes(1), _probes(1), _probes(2)
    assert all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))
    # another seed draws other pixel sizes (same content r, so only sizes can differ here)
    assert [x.shape for x in a] != [z.shape for z in c]


def test_probe_holds_r_at_a_pixel_size_in_r_to_s():
    images, _ = identity_faces(2, 5, size=S, seed=3)
    sizes = []
    for i, img in enumerate(images):
        rng = np.random.default_rng(i)
        probe = effective_resolution_face(img, 7, S, rng)
        h, w = probe.shape[:2]
        assert h == w and 7 <= h <= S
        sizes.append(h)
        # shrinking the probe back to 7 px recovers the 7 px face (bicubic up, box down)
        back = downsample(probe, 7).astype(float)
        assert np.abs(back - downsample(img, 7).astype(float)).mean() < 6.0
    assert len(set(sizes)) > 3  # pixel sizes are drawn, not fixed
    with pytest.raises(ValueError, match="below the effective"):
        effective_resolution_face(images[0], 14, S, np.random.default_rng(0), pixel_size=10)


def test_degradation_is_seeded_too():
    from btnet.data.degradation import SurveillanceDegradation

    images, _ = identity_faces(2, 2, size=S, seed=0)
    deg = SurveillanceDegradation(p_blur=1.0, p_noise=1.0, p_jpeg=1.0)
    f1 = effective_probe_transform(14, S, deg, 5)
    f2 = effective_probe_transform(14, S, deg, 6)
    assert np.array_equal(f1(images[0], 3), f1(images[0], 3))
    a, b = f1(images[0], 3), f2(images[0], 3)
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_parse_resolution_list():
    assert parse_resolution_list("28, 7,14") == [7, 14, 28]
    with pytest.raises(ValueError, match="exceeds"):
        parse_resolution_list("7,120", canonical=112)
    with pytest.raises(ValueError, match="integers"):
        parse_resolution_list("7,x")


def test_effective_pairs_settings_and_reproducibility(fake_encoder):
    ps = synthetic_pairset(n_ids=8, per_id=2, n_pairs=40)
    res = evaluate_effective_pairs(fake_encoder, ps, [7, 14], S, "fake", seed=3, n_folds=2,
                                   progress=False)
    assert [r.setting for r in res] == ["56&7", "56&14"]
    assert all(r.dataset == "synthetic [effective r, seed 3]" for r in res)
    again = evaluate_effective_pairs(fake_encoder, ps, [7, 14], S, "fake", seed=3, n_folds=2,
                                     progress=False)
    assert [r.metrics["fold_accuracies"] for r in res] == \
        [r.metrics["fold_accuracies"] for r in again]
    # the gallery side is full resolution; probes come in many pixel sizes
    seen = {s[0] for s in fake_encoder.sizes}
    assert S in seen and len(seen) > 5


def test_effective_openset_probes_only():
    images, labels = identity_faces(3, 3, size=S, seed=0)
    src = ListImageSource(images)
    proto = OpenSetProtocol("p", src, labels, src, labels, src)
    eff = effective_openset(proto, 7, S, None, seed=1)
    assert eff.gallery is proto.gallery and "effective r=7" in eff.name
    assert np.array_equal(eff.mated[2], effective_openset(proto, 7, S, None, 1).mated[2])
    assert eff.mated[0].shape[0] >= 7
    # unmated probes draw from their own streams: same image, other pixel size or content
    sizes_m = [eff.mated[i].shape for i in range(len(images))]
    sizes_u = [eff.unmated[i].shape for i in range(len(images))]
    assert sizes_m != sizes_u


@pytest.fixture(scope="module")
def tiny_btnet(tmp_path_factory):
    from btnet.io.model_store import save_btnet
    from btnet.models import BTNet, build_backbone

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("qmodels")
    trunk = build_backbone("iresnet18", input_size=S, width=4, embedding_size=16).eval()
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


def test_cli_calibrate_then_verify_and_identify_with_quality(tmp_path, tiny_btnet, capsys):
    from btnet.inference.quality_routing import load_quality_encoder, load_quality_selector

    bt = tiny_btnet / "bt"
    assert main(["quality", "estimate", str(bt), "x.png"]) == 2  # not calibrated yet
    assert "quality calibrate" in capsys.readouterr().err
    assert main(["quality", "calibrate", str(bt), "--images",
                 "builtin:ids=10,per_id=2,size=56,seed=0", "--samples", "120"]) == 0
    out = capsys.readouterr().out
    assert "MMACs per face" in out and "stored in" in out
    selector = load_quality_selector(bt)
    assert selector is not None and selector.paths == (7, 14, 28, 56)
    assert selector.calibration["samples"] == 120
    from btnet.io.model_store import load_model

    assert load_model(bt).kind == "btnet"  # the stored model still loads

    pairs = _pair_list(tmp_path)
    rc = main(["eval", "verify", "--model", f"btnet={bt}", "--set", str(pairs), "--folds", "2",
               "--effective-resolution", "7,14", "--degrade-seed", "4",
               "--routing", "size,quality", "--out", str(tmp_path / "v"),
               "--no-progress", "--no-plots"])
    assert rc == 0
    data = json.loads((tmp_path / "v" / "results.json").read_text())
    (name, d), = data["datasets"].items()
    assert name == "pairs [effective r, seed 4]"
    assert d["models"] == ["btnet", "btnet [quality]"]
    assert d["settings"] == ["56&7", "56&14"]

    # the quality encoder routes each face by content; a 56 x 56 face of 7 px detail is not
    # sent to the trunk when the estimator says it holds less
    enc = load_quality_encoder(bt)
    img = identity_faces(1, 1, size=S)[0][0]
    res = enc.encode([img, downsample(img, 7)])
    assert res.paths[1] == 7 and res.embeddings.shape == (2, 16)

    images, labels = identity_faces(4, 3, size=S, seed=1)
    for k, (im, lab) in enumerate(zip(images, labels)):
        write_image(tmp_path / "faces" / f"id{lab}" / f"{k}.png", im)
    assert main(["protocol", "openset", "--root", str(tmp_path / "faces"),
                 "--out", str(tmp_path / "proto"), "--watchlist", "2", "--seed", "2"]) == 0
    rc = main(["eval", "identify", "--model", str(bt), "--protocol", str(tmp_path / "proto"),
               "--strategies", "max/ceil", "--routing", "size,quality",
               "--effective-resolution", "14", "--rank", "2", "--cmc", "1,2",
               "--out", str(tmp_path / "id"), "--no-progress", "--no-plots"])
    assert rc == 0
    res = json.loads((tmp_path / "id" / "results.json").read_text())["results"]
    assert [r["policy"] for r in res] == ["max/ceil", "quality"]
    assert all("effective r=14" in r["protocol"] for r in res)
