"""The two named verification protocols, VAL@FAR and the two template conventions, by hand.

Every expected value is worked out in the comments from the rules of insightface's
``eval/verification.py`` / ``eval_ijbc.py`` (squared distance ``d = 2 - 2 cos``, grid
``0, 0.01, ..., 3.99``, same if ``d < t``, first best threshold) or of btnet's exact rule
(midpoints between scores, same if ``score >= t``, lowest best threshold), not from btnet's code.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from evalfakes import FakeEncoder, identity_faces, synthetic_pairset

from btnet.evaluation.metrics_templates import (
    aggregate_templates,
    template_verification_metrics,
    tpr_at_nearest_fpr,
)
from btnet.evaluation.metrics_verification import (
    kfold_accuracy,
    legacy_slinear,
    val_at_far,
    verification_metrics,
)

LAB = np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=bool)


def _folds(scores, labels, protocol, n_folds=2):
    return kfold_accuracy(np.asarray(scores, float), np.asarray(labels, bool), n_folds,
                          protocol).fold_accuracies.tolist()


# ----------------------------------------------------------------------------- k-fold accuracy


def test_issue_toy_case_differs_between_protocols():
    # fold 1: cos .9 .8 .2 .1 -> d .2 .4 1.6 1.8; fold 2: cos .6 .9 .1 .15 -> d .8 .2 1.8 1.7.
    # insightface, fold 2 tested: trained on fold 1 the first perfect grid t is 0.40/0.41 (just
    # above d = .4); fold 2's genuine d = .8 is then rejected -> 3/4. Fold 1 tested: t = 0.81
    # (first above .8) accepts .2/.4, rejects 1.6/1.8 -> 1.
    # exact: trained on fold 1 the best thresholds are (.2, .8]; the lowest midpoint is .5, so
    # fold 2's .6 is accepted -> 1; trained on fold 2 the lowest best midpoint is .375 -> 1.
    cos = [.9, .8, .2, .1, .6, .9, .1, .15]
    assert _folds(cos, LAB, "insightface") == [1.0, 0.75]
    assert _folds(cos, LAB, "exact") == [1.0, 1.0]
    res = kfold_accuracy(np.array(cos), LAB, 2, "insightface")
    assert res.thresholds[0] == pytest.approx(0.81)
    assert res.mean == pytest.approx(0.875) and res.std == pytest.approx(0.125)


def test_equally_good_thresholds_strictest_vs_most_lenient():
    # (cosines chosen so that every distance is exact in binary: .875 -> d .25, .625 -> .75,
    # .375 -> 1.25, .125 -> 1.75)
    # training fold (fold 2): genuine .875, impostor .625, genuine .375, impostor .125.
    # Accepting only .875, or .875/.625/.375, are both right on 3 of 4. insightface keeps the
    # first grid t, the strict one (first above d .25: 0.26); exact keeps the lowest score
    # threshold (.25, between .125 and .375). Fold 1's genuine at cos .6 (d .8) is then
    # rejected by insightface, accepted by exact; .95 (genuine) and the impostors -.2, -.5 are
    # right under both -> 3/4 vs 1.
    scores = [.6, -.2, .95, -.5, .875, .625, .375, .125]
    labels = [1, 0, 1, 0, 1, 0, 1, 0]
    ins = kfold_accuracy(np.array(scores), np.array(labels, bool), 2, "insightface")
    exa = kfold_accuracy(np.array(scores), np.array(labels, bool), 2, "exact")
    assert ins.fold_accuracies[0] == 0.75 and exa.fold_accuracies[0] == 1.0
    assert ins.thresholds[0] == pytest.approx(0.26) and exa.thresholds[0] == pytest.approx(0.25)


def test_single_class_training_folds():
    # fold 1 all genuine, cos .875 .75 .375 (d .25 .5 1.25); fold 2: genuine .625 (d .75),
    # impostors -.25 (d 2.5) and .5 (d 1.0). insightface trained on fold 1: accuracy rises with
    # t up to 1 at the first t above 1.25 -> 1.26; fold 2 then accepts d .75 (right) and 1.0
    # (wrong), rejects 2.5 -> 2/3. Trained on fold 2: first t above .75 is .76; fold 1 accepts
    # .25, .5 and rejects 1.25 -> 2/3.
    # exact: accept-all learnt on fold 1 (1/3 right on fold 2); fold 2's best threshold .5625
    # rejects fold 1's .375 -> 2/3.
    scores = [.875, .75, .375, .625, -.25, .5]
    labels = [1, 1, 1, 1, 0, 0]
    res = kfold_accuracy(np.array(scores), np.array(labels, bool), 2, "insightface")
    assert res.fold_accuracies == pytest.approx([2 / 3, 2 / 3])
    assert res.thresholds == pytest.approx([0.76, 1.26])
    assert _folds(scores, labels, "exact") == pytest.approx([2 / 3, 1 / 3])
    # a training fold of impostors only: nothing accepted is best, first at t = 0; the test
    # fold (two genuine, one impostor) is then all rejected -> 1/3
    assert _folds([.9, .8, .1, .3, .2, .1], [1, 1, 0, 0, 0, 0], "insightface")[0] == \
        pytest.approx(1 / 3)


def test_thresholds_at_the_grid_edges():
    # cos 1 -> d 0: "0 < t" needs t >= 0.01. cos -1 -> d 4: no grid t (max 3.99) accepts it.
    # fold 1 = [genuine d 0, impostor d 4]: learnt there t = 0.01; fold 2 = [genuine d 4,
    # impostor d 0] is then all wrong -> 0. Learnt on fold 2: t = 0 gives 1/2 (both rejected),
    # every larger t accepts the impostor and still rejects the genuine (0) -> t = 0; fold 1 at
    # t = 0 rejects its genuine d = 0 -> 1/2.
    scores = [1.0, -1.0, -1.0, 1.0]
    labels = [1, 0, 1, 0]
    res = kfold_accuracy(np.array(scores), np.array(labels, bool), 2, "insightface")
    assert res.fold_accuracies.tolist() == [0.5, 0.0]
    assert res.thresholds.tolist() == [0.0, 0.01]
    # exact: fold 2 ties accept-all and reject-all at 1/2, the lowest threshold accepts all ->
    # fold 1 1/2; fold 1 is separable (midpoint 0) -> fold 2 all wrong.
    assert _folds(scores, labels, "exact") == [0.5, 0.0]


def test_the_grid_cannot_split_two_distances_in_one_cell():
    # d .503 (genuine) and .507 (impostor) share the grid cell (.50, .51]: insightface cannot
    # separate them (1/2 per fold); the exact rule can.
    scores = [1 - .503 / 2, 1 - .507 / 2] * 2
    labels = [1, 0, 1, 0]
    assert _folds(scores, labels, "insightface") == [0.5, 0.5]
    assert _folds(scores, labels, "exact") == [1.0, 1.0]


def test_one_fold_trains_and_tests_on_everything():
    # insightface's LFold(1): the best grid threshold on all pairs, scored on all pairs
    res = kfold_accuracy(np.array([.9, .2, .8, .7]), np.array([1, 0, 1, 0], bool), 1,
                         "insightface")
    assert res.fold_accuracies.tolist() == [1.0] and res.fold_sizes.tolist() == [4]
    with pytest.raises(ValueError, match="at least 1"):
        kfold_accuracy(np.array([.9, .2]), np.array([1, 0], bool), 0)


def test_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="insightface"):
        kfold_accuracy(np.array([.1, .2]), np.array([1, 0], bool), 2, "lfw")


# ----------------------------------------------------------------------------- VAL@FAR


def test_legacy_slinear_by_hand_and_against_scipy_bspline():
    x = np.array([0.0, 0.0, 0.5, 1.0])
    y = np.array([0.0, 1.0, 2.0, 3.0])
    # the line from the LAST point of the x = 0 plateau (0, 1) to (0.5, 2)
    assert legacy_slinear(x, y, 0.25) == pytest.approx(1.5)
    assert legacy_slinear(x, y, 0.0) == pytest.approx(1.0)
    assert legacy_slinear(x, y, 1.0) == pytest.approx(3.0)
    # scipy 1.9.0 and earlier built this B-spline in interp1d(kind="slinear"): knots [x0, x, x_last]
    from scipy.interpolate import BSpline

    rng = np.random.default_rng(3)
    for _ in range(200):
        xs = np.sort(rng.integers(0, 4, 8) / 4.0)
        if xs[0] == xs[-1]:
            continue
        ys = np.sort(rng.random(8))
        spline = BSpline.construct_fast(np.r_[xs[0], xs, xs[-1]], ys, 1)
        for at in (xs[0], rng.uniform(xs[0], xs[-1]), xs[3]):
            assert legacy_slinear(xs, ys, at) == float(spline(at))


def test_val_at_far_by_hand():
    # two folds, each: genuine cos .8 (d .4), genuine .5 (d 1.0), impostor .5 (d 1.0),
    # impostor .25 (d 1.5). Training FAR on the 0.001 grid: 0 up to t = 1.000, 1/2 from 1.001.
    # The threshold at FAR 1e-3 is on the line from (0, 1.000) to (0.5, 1.001):
    # 1.000 + 0.001 * 1e-3 / 0.5 = 1.000002, which accepts d = 1.0: VAL 1, FAR 1/2 per fold.
    cos = np.array([.8, .5, .5, .25] * 2)
    same = np.array([1, 1, 0, 0] * 2, dtype=bool)
    v = val_at_far(cos, same, n_folds=2)
    assert v["fold_thresholds"] == pytest.approx([1.000002, 1.000002], abs=1e-12)
    assert v["val_mean"] == 1.0 and v["val_std"] == 0.0 and v["far_mean"] == 0.5
    # nothing reaches the target FAR when every impostor is at d >= 3.999 (cos <= -0.9995):
    # threshold 0, nothing accepted
    v = val_at_far(np.array([.9, -1.0] * 2), np.array([1, 0] * 2, bool), n_folds=2)
    assert v["fold_thresholds"] == [0.0, 0.0] and v["val_mean"] == 0.0


def test_val_at_far_undefined_fold_is_named():
    v = val_at_far(np.array([.9, .8, .1, .2]), np.array([1, 1, 0, 0], bool), n_folds=2)
    assert v["val_mean"] is None and "fold 1" in v["undefined"]


def test_verification_metrics_name_everything():
    rng = np.random.default_rng(0)
    same = np.tile([True, False], 300)
    scores = np.where(same, rng.uniform(0.2, 1, 600), rng.uniform(-1, 0.5, 600))
    m = verification_metrics(scores, same, protocol="insightface")
    assert m["protocol"] == "insightface" and m["n_folds"] == 10
    assert "distance" in m["threshold_kind"]
    assert set(m["tar_at_far"]) == {"0.0001", "0.001", "0.01", "0.1"}
    assert m["val_at_far"]["far_target"] == 1e-3 and 0 < m["val_at_far"]["val_mean"] <= 1
    assert verification_metrics(scores, same, protocol="exact")["protocol"] == "exact"


# ----------------------------------------------------------------------------- templates


def test_norm_weighted_aggregation_by_hand():
    # one template, one media: unit features (1, 0) and (0, 1) with raw norms 3 and 1.
    # nist: mean (.5, .5) -> (.7071, .7071); insightface: mean of (3, 0), (0, 1) = (1.5, .5)
    # -> (.9487, .3162).
    feats = np.array([[1.0, 0.0], [0.0, 1.0]])
    _, nist = aggregate_templates(feats, np.array([7, 7]), np.array([1, 1]))
    _, ins = aggregate_templates(feats, np.array([7, 7]), np.array([1, 1]),
                                 norms=np.array([3.0, 1.0]))
    assert nist[0] == pytest.approx([0.70710678, 0.70710678], abs=1e-6)
    assert ins[0] == pytest.approx([0.9486833, 0.3162278], abs=1e-6)


def test_tpr_at_nearest_fpr_by_hand():
    # scores .9 P, .8 N, .7 P, .6 N, .5 N, .4 N: counts (fp, tp) after each score (0,1) (1,1)
    # (1,2) (2,2) (3,2) (4,2); sklearn drops the collinear (2,2) and (3,2) and prepends (0,0):
    # fpr 0, 0, .25, .25, 1 with tpr 0, .5, .5, 1, 1.
    scores = np.array([.9, .8, .7, .6, .5, .4])
    labels = np.array([1, 0, 1, 0, 0, 0], dtype=bool)
    got = tpr_at_nearest_fpr(scores, labels, [0.125, 0.001, 0.6, 0.7])
    # .125 is as near to 0 as to .25: the reversed curve's first point wins, FPR .25, TPR 1
    assert got[0.125] == (1.0, 0.25)
    assert got[0.001] == (0.5, 0.0)  # of the FPR-0 points the highest TPR
    assert got[0.6] == (1.0, 0.25)  # .25 is nearer than 1
    # .7: without sklearn's dropping FPR .75 would be nearest; with it, 1.0 is
    assert got[0.7] == (1.0, 1.0)
    m = template_verification_metrics(scores, labels, [0.125], convention="insightface")
    assert m["tpr_at_nearest_fpr"] == {"0.125": 1.0} and m["nearest_fpr"] == {"0.125": 0.25}
    # NIST at FAR <= .125 can only use FPR 0: TAR .5
    assert template_verification_metrics(scores, labels, [0.125])["tar_at_far"] == {"0.125": 0.5}


class _NormEncoder:
    """Image value k -> raw feature RAW[k]; reports unit embeddings and raw norms."""

    RAW = np.array([[3.0, 0.0], [0.0, 1.0], [0.0, 2.0], [1.0, 0.0]])

    def encode(self, images, batch_size=64, flip=False, progress=False):
        from btnet.inference.encoders import EncodeResult

        raw = self.RAW[[int(im[0, 0, 0]) for im in images]]
        norms = np.linalg.norm(raw, axis=1)
        return EncodeResult((raw / norms[:, None]).astype(np.float32), [0] * len(images),
                            norms.astype(np.float32))


def test_template_runner_conventions():
    from btnet.data.base import ListImageSource
    from btnet.evaluation.templates import TemplateProtocol, evaluate_templates

    images = [np.full((4, 4, 3), k, np.uint8) for k in range(4)]
    # template 1 = images 0, 1 (one media); template 2 = image 2; template 3 = image 3.
    # nist: t1 = (.7071, .7071); insightface: t1 = (1.5, .5)/|.| = (.9487, .3162).
    # pair (1, 2) scores .7071 vs .3162; pair (1, 3) .7071 vs .9487.
    proto = TemplateProtocol("toy", ListImageSource(images), np.array([1, 1, 2, 3]),
                             np.array([5, 5, 6, 7]))
    proto.pairs = (np.array([1, 1]), np.array([2, 3]), np.array([False, True]))
    nist = evaluate_templates(_NormEncoder(), proto, progress=False, far_targets=(0.4,))
    ins = evaluate_templates(_NormEncoder(), proto, progress=False, far_targets=(0.4,),
                             convention="insightface")
    assert nist["convention"] == "nist" and ins["convention"] == "insightface"
    # nist: the genuine pair (1, 3) .7071 ties the impostor (1, 2) .7071: one point, TAR at
    # FAR <= .4 is 0. insightface separates them (.9487 > .3162): the curve is FPR 0, 0, 1
    # with TPR 0, 1, 1, and FPR 0 is nearest to .4: TPR 1.
    assert nist["verification"]["tar_at_far"] == {"0.4": 0.0}
    assert ins["verification"]["tpr_at_nearest_fpr"] == {"0.4": 1.0}
    assert ins["verification"]["nearest_fpr"] == {"0.4": 0.0}


# ----------------------------------------------------------------------------- reports


def test_report_names_protocol_and_folds(tmp_path):
    from btnet.data.verification import export_pairs_to_bin, open_pair_set
    from btnet.evaluation.report import write_verification_report
    from btnet.evaluation.verification import Setting, default_protocol, evaluate_verification

    ps = synthetic_pairset(n_ids=6, per_id=2, n_pairs=12)
    assert default_protocol(ps) == "exact"  # built in code
    binset = open_pair_set(export_pairs_to_bin(ps, tmp_path / "toy.bin"))
    assert binset.source_format == "bin" and default_protocol(binset) == "insightface"
    res = evaluate_verification({"fake": FakeEncoder()}, [binset], [Setting(56, 56)],
                                canonical=56, n_folds=3, progress=False)
    assert res[0].metrics["protocol"] == "insightface"
    write_verification_report(res, tmp_path / "r", canonical=56, plots=False)
    md = (tmp_path / "r" / "report.md").read_text()
    assert "3-fold" in md and "protocol insightface" in md and "10-fold" not in md
    assert "VAL@FAR=0.001 (insightface)" in md and "TAR@FAR=0.001 (exact)" in md
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert data["datasets"]["toy"]["protocol"] == "insightface"
    header = (tmp_path / "r" / "results.csv").read_text().splitlines()[0]
    assert "protocol" in header and "val_mean" in header
    exact = evaluate_verification({"fake": FakeEncoder()}, [binset], [Setting(56, 56)],
                                  canonical=56, n_folds=3, progress=False, protocol="exact")
    assert exact[0].metrics["protocol"] == "exact"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch

    from btnet.io.model_store import save_backbone
    from btnet.models import build_backbone

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("model")
    save_backbone(build_backbone("iresnet18", input_size=56, width=4, embedding_size=16).eval(),
                  root / "hr")
    return root / "hr"


def test_cli_verify_report_states_protocol(tmp_path, tiny_model):
    from btnet.cli.main import main
    from btnet.data.images import write_image

    ps = synthetic_pairset(n_ids=6, per_id=2, n_pairs=12)
    lines = []
    for a, b, s in zip(ps.left, ps.right, ps.issame):
        for i in (a, b):
            write_image(tmp_path / f"{i}.png", ps.images[int(i)])
        lines.append(f"{a}.png {b}.png {int(s)}")
    (tmp_path / "pairs.list").write_text("\n".join(lines) + "\n")
    common = ["eval", "verify", "--model", str(tiny_model), "--set", str(tmp_path / "pairs.list"),
              "--folds", "2", "--settings", "S&S", "--no-progress", "--no-plots"]
    assert main([*common, "--out", str(tmp_path / "auto")]) == 0
    md = (tmp_path / "auto" / "report.md").read_text()
    assert "2-fold" in md and "protocol exact" in md and "10-fold" not in md  # a pair list
    assert main([*common, "--protocol", "insightface", "--out", str(tmp_path / "ins")]) == 0
    md = (tmp_path / "ins" / "report.md").read_text()
    assert "protocol insightface" in md and "np.arange(0, 4, 0.01)" in md


def test_cli_templates_report_states_convention(tmp_path, tiny_model):
    from btnet.cli.main import main
    from btnet.data.images import write_image

    images, _ = identity_faces(2, 2, size=56, seed=3)
    for i, img in enumerate(images):
        write_image(tmp_path / "p" / "img" / f"{i}.png", img)
    (tmp_path / "p" / "faces.txt").write_text("".join(f"img/{i}.png\t{i // 2}\t{i}\n"
                                                      for i in range(4)))
    (tmp_path / "p" / "pairs.txt").write_text("0 1 0\n0 0 1\n1 1 1\n")
    base = ["eval", "templates", "--model", str(tiny_model), "--protocol", str(tmp_path / "p"),
            "--far", "0.5", "--no-progress", "--no-plots"]
    assert main([*base, "--out", str(tmp_path / "nist")]) == 0
    assert "TAR@FAR≤0.5 (NIST)" in (tmp_path / "nist" / "report.md").read_text()
    assert main([*base, "--convention", "insightface", "--out", str(tmp_path / "ins")]) == 0
    md = (tmp_path / "ins" / "report.md").read_text()
    assert "TPR@FPR≈0.5 (insightface)" in md and "use_norm_score" in md
    res = json.loads((tmp_path / "ins" / "results.json").read_text())["results"][0]
    assert res["convention"] == "insightface" and "nearest_fpr" in res["verification"]


def test_results_stored_before_protocols_were_named_read_as_exact():
    from btnet.evaluation.report import build_verification_report, render_markdown
    from btnet.evaluation.verification import VerificationResult

    old = VerificationResult("m", "set", "56&56", 56, 56, 0.9, 0.01,
                             {"accuracy_mean": 0.9, "fold_accuracies": [0.9] * 10})
    report = build_verification_report([old], canonical=56)
    assert report["datasets"]["set"]["protocol"] == "exact"
    assert "10-fold mean ± std, protocol exact" in render_markdown(report)
