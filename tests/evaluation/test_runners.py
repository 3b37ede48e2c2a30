"""Identification, protocol generation, templates and interpolation runners with fakes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from evalfakes import FakeEncoder, identity_faces

from btnet.data.base import ListImageSource, OpenSetProtocol
from btnet.data.images import write_image
from btnet.evaluation.identification import (
    STRATEGIES,
    compare_strategies,
    evaluate_openset,
    parse_policy,
)
from btnet.evaluation.interpolation import interpolation_errors
from btnet.evaluation.metrics_templates import aggregate_templates
from btnet.evaluation.openset_protocol import ProbeSizeDistribution, build_openset_protocol
from btnet.evaluation.report import write_identification_report
from btnet.evaluation.templates import (
    TemplateProtocol,
    evaluate_templates,
    open_template_protocol,
)


def _protocol(n_ids=12, watch=6, seed=0) -> OpenSetProtocol:
    images, labels = identity_faces(n_ids, 3, size=56, seed=seed)
    g = [i for i in range(len(images)) if labels[i] < watch and i % 3 == 0]
    m = [i for i in range(len(images)) if labels[i] < watch and i % 3 != 0]
    u = [i for i in range(len(images)) if labels[i] >= watch]
    small = [np.asarray(images[i][::3, ::4]) for i in m]  # 19x14 non-square probes
    return OpenSetProtocol("toy", ListImageSource([images[i] for i in g]), labels[g],
                           ListImageSource(small), labels[m],
                           ListImageSource([images[i][::3, ::4] for i in u]))


def test_openset_runner_and_report(tmp_path):
    proto = _protocol()
    res = evaluate_openset(FakeEncoder(), proto, rank=1, progress=False)
    assert res.metrics["cmc"]["1"] > 0.9
    assert set(res.metrics["tpir_at_fpir"]) == {"0.3", "0.2", "0.1", "0.01"}
    assert res.path_counts == {"56x56": 6, "19x14": 12 + 18}
    img = evaluate_openset(FakeEncoder(), proto, gallery_mode="image", progress=False)
    assert img.metrics["gallery_mode"] == "image"
    out = write_identification_report([res, img], tmp_path)
    md = out["markdown"].read_text()
    assert "TPIR1@FPIR=0.3" in md and "| model |" in md
    assert out["plots"][0].stat().st_size > 1000
    assert json.loads(out["json"].read_text())["results"][0]["protocol"] == "toy"


def test_compare_strategies_calls_factory_per_policy():
    seen = []

    def factory(policy):
        seen.append(parse_policy(policy))
        return FakeEncoder()

    res = compare_strategies(factory, _protocol(), progress=False, model_name="fake")
    assert len(res) == 9 and [r.policy for r in res] == list(STRATEGIES)
    assert seen[0] == ("min", "floor") and seen[-1] == ("avg", "ceil")
    assert res[0].label == "fake [min/floor]"
    with pytest.raises(ValueError):
        parse_policy("median/near")


def _identity_folder(root, n_ids=8, per_id=4):
    images, labels = identity_faces(n_ids, per_id, size=112, seed=3)
    for k, (img, lab) in enumerate(zip(images, labels)):
        write_image(root / f"person_{lab:02d}" / f"{k:03d}.jpg", img)
    return root


def test_protocol_sizes_like_survface_and_deterministic(tmp_path):
    dist = ProbeSizeDistribution()
    rng = np.random.default_rng(0)
    hw = np.array([dist.sample(rng, 124) for _ in range(4000)])
    assert hw[:, 0].mean() == pytest.approx(24, abs=1.0)
    assert hw[:, 1].mean() == pytest.approx(20, abs=1.0)
    assert hw[:, 0].min() >= 6 and hw.max() <= 124 and (hw[:, 0] != hw[:, 1]).mean() > 0.8
    root = _identity_folder(tmp_path / "faces")
    a = build_openset_protocol(root, n_watchlist=4, seed=5)
    b = build_openset_protocol(root, n_watchlist=4, seed=5)
    assert len(a.gallery) == 4 and len(a.mated) == 12 and len(a.unmated) == 16
    assert a.gallery[0].shape == (112, 112, 3)
    assert np.array_equal(a.mated[3], b.mated[3]) and a.mated[3].shape[0] < 112
    assert set(a.mated_ids.tolist()) == set(a.gallery_ids.tolist())
    assert not set(a.extra["unmated_ids"]) & set(a.gallery_ids.tolist())
    c = build_openset_protocol(root, n_watchlist=4, seed=6)
    assert a.gallery_ids.tolist() != c.gallery_ids.tolist() or a.mated.sizes != c.mated.sizes


def test_protocol_written_and_read_back(tmp_path):
    from btnet.data.openset import open_openset
    from btnet.evaluation.openset_protocol import make_openset_protocol

    root = _identity_folder(tmp_path / "faces")
    out = make_openset_protocol(root, tmp_path / "proto", n_watchlist=4, seed=1)
    proto = open_openset(out)
    assert len(proto.gallery) == 4 and len(proto.unmated) == 16
    assert proto.extra["seed"] == 1
    res = evaluate_openset(FakeEncoder(), proto, rank=2, progress=False)
    assert 0.0 <= res.metrics["auc"] <= 1.0 and res.metrics["cmc"]["1"] > 0.25


def test_templates_runner_in_memory_and_generic_layout(tmp_path):
    images, labels = identity_faces(4, 4, size=56, seed=2)
    tids = np.repeat(np.arange(8), 2)  # two templates per subject, two images each
    mids = np.arange(16) // 1
    proto = TemplateProtocol("toy", ListImageSource(images), tids, mids)
    t1 = np.array([0, 2, 4, 6, 0, 2, 4, 6])
    t2 = np.array([1, 3, 5, 7, 3, 5, 7, 1])
    proto.pairs = (t1, t2, t1 // 2 == t2 // 2)  # template t is subject t // 2
    proto.galleries["g"] = (np.array([0, 2, 4]), np.array([0, 1, 2]))
    proto.probes = (np.array([1, 3, 5, 7]), np.array([0, 1, 2, 3]))
    enc = FakeEncoder()
    res = evaluate_templates(enc, proto, progress=False, rank=1)
    assert res["verification"]["tar_at_far"]["0.1"] == 1.0
    ident = res["identification"]["g"]
    assert ident["n_mated"] == 3 and ident["n_nonmated"] == 1 and ident["cmc"]["1"] == 1.0
    # the runner's template features are exactly the hand aggregation of the encoder's output
    feats = enc.encode(images).embeddings
    t, agg = aggregate_templates(feats, tids, mids)
    assert np.allclose(agg[0], (feats[0] + feats[1]) / np.linalg.norm(feats[0] + feats[1]),
                       atol=1e-5)
    # generic layout on disk gives the same numbers
    lines = []
    for i, img in enumerate(images):
        write_image(tmp_path / "img" / f"{i}.png", img)
        lines.append(f"img/{i}.png\t{tids[i]}\t{mids[i]}")
    (tmp_path / "faces.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "pairs.txt").write_text(
        "".join(f"{a} {b} {int(c)}\n" for a, b, c in zip(*proto.pairs)))
    (tmp_path / "gallery.txt").write_text("0 0\n2 1\n4 2\n")
    (tmp_path / "probes.txt").write_text("1 0\n3 1\n5 2\n7 3\n")
    disk = evaluate_templates(FakeEncoder(), open_template_protocol(tmp_path), progress=False,
                              rank=1)
    assert disk["verification"]["tar_at_far"] == res["verification"]["tar_at_far"]
    assert disk["identification"]["gallery"]["cmc"] == ident["cmc"]


def test_ijbc_meta_files(tmp_path):
    images, _ = identity_faces(2, 3, size=56, seed=4)
    (tmp_path / "meta").mkdir()
    for i, img in enumerate(images):
        write_image(tmp_path / "loose_crop" / f"{i + 1}.jpg", img)
    (tmp_path / "meta" / "ijbc_face_tid_mid.txt").write_text(
        "".join(f"{i + 1}.jpg {1 + i // 3} {100 + i}\n" for i in range(6)))
    (tmp_path / "meta" / "ijbc_template_pair_label.txt").write_text("1 2 0\n1 1 1\n")
    res = evaluate_templates(FakeEncoder(), open_template_protocol(tmp_path), progress=False,
                             resolution=14, canonical=56)
    assert res["n_templates"] == 2 and res["verification"]["n_pairs"] == 2
    assert res["verification"]["tar_at_far"]["1e-06"] == 1.0


def test_interpolation_error_grows_as_resolution_falls():
    images, _ = identity_faces(3, 2, size=112, seed=5, noise=30)
    res = interpolation_errors(images, (7, 14, 28, 56, 112), canonical=112)
    mae = [res["per_resolution"][str(r)]["mae_mean"] for r in (7, 14, 28, 56)]
    assert mae == sorted(mae, reverse=True) and mae[-1] > 0
    assert res["per_resolution"]["112"]["mae_mean"] == 0.0
    assert res["per_resolution"]["112"]["psnr_mean"] == 100.0
    assert res["n_faces"] == 6
