"""Metrics on small cases computed by hand: ties, degenerate folds, perfect and random scorers."""

from __future__ import annotations

import numpy as np
import pytest

from btnet.evaluation.metrics_identification import (
    cmc,
    gallery_templates,
    identification_metrics,
    identity_scores,
    mate_ranks,
    open_set_curve,
)
from btnet.evaluation.metrics_templates import (
    aggregate_templates,
    template_identification_metrics,
    template_pair_scores,
)
from btnet.evaluation.metrics_verification import (
    best_threshold,
    contiguous_folds,
    kfold_accuracy,
    roc_curve,
    tar_at_far,
    verification_metrics,
)

# ----------------------------------------------------------------------------- verification


def test_contiguous_folds_match_kfold_split():
    folds = contiguous_folds(23, 10)
    assert [len(f) for f in folds] == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert np.array_equal(np.concatenate(folds), np.arange(23))
    with pytest.raises(ValueError):
        contiguous_folds(5, 10)


def test_kfold_by_hand_threshold_from_other_fold():  # the "exact" midpoint rule
    # fold 1 (test) is learnt on fold 2: threshold 0.41 -> all right; fold 2 is learnt on
    # fold 1: threshold 0.45, so fold 2's genuine pair at 0.42 is rejected -> 4/5.
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.85, 0.42, 0.3, 0.4, 0.05])
    same = np.array([1, 1, 1, 0, 0, 1, 1, 0, 0, 0], dtype=bool)
    res = kfold_accuracy(scores, same, n_folds=2, protocol="exact")
    assert res.fold_accuracies == pytest.approx([1.0, 0.8])
    assert res.thresholds == pytest.approx([0.41, 0.45])
    assert res.mean == pytest.approx(0.9)
    assert res.std == pytest.approx(0.1)


def test_kfold_degenerate_fold_with_one_class():
    # fold 1 has only genuine pairs: learnt on it, fold 2 gets accept-all (1/3 right);
    # fold 1 is tested with the threshold 0.55 of fold 2: 0.3 is rejected (2/3 right).
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.4])
    same = np.array([1, 1, 1, 1, 0, 0], dtype=bool)
    res = kfold_accuracy(scores, same, n_folds=2, protocol="exact")
    assert res.fold_accuracies == pytest.approx([2 / 3, 1 / 3])
    assert res.mean == pytest.approx(0.5)
    assert res.std == pytest.approx(1 / 6)


def test_all_tied_scores_give_chance_whatever_the_order():
    scores = np.full(8, 0.5)
    same = np.array([1, 0] * 4, dtype=bool)
    thr, acc = best_threshold(scores, same)
    assert acc == 0.5 and thr < 0.5  # lowest of the equally good thresholds: accept all
    for protocol in ("exact", "insightface"):
        a = kfold_accuracy(scores, same, n_folds=2, protocol=protocol).mean
        b = kfold_accuracy(scores, same[::-1], n_folds=2, protocol=protocol).mean
        assert a == b == 0.5


def test_roc_groups_ties_and_tar_at_far():
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    same = np.array([1, 1, 0, 0], dtype=bool)
    roc = roc_curve(scores, same)
    assert roc.far.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert roc.tar.tolist() == [0.0, 0.5, 1.0, 1.0]
    # the tie at 0.5 cannot be split: at FAR <= 0.25 only TAR 0.5 is reachable
    assert tar_at_far(roc, [0.25, 0.5, 1.0]) == {0.25: 0.5, 0.5: 1.0, 1.0: 1.0}
    assert roc.auc() == pytest.approx(0.875)
    perm = np.array([2, 0, 3, 1])
    roc2 = roc_curve(scores[perm], same[perm])
    assert np.array_equal(roc.far, roc2.far) and np.array_equal(roc.tar, roc2.tar)


def test_perfect_and_random_verification_scorers():
    rng = np.random.default_rng(0)
    same = rng.random(600) < 0.5
    perfect = np.where(same, rng.uniform(0.6, 1.0, 600), rng.uniform(-1.0, 0.4, 600))
    m = verification_metrics(perfect, same)
    assert m["accuracy_mean"] == 1.0 and m["accuracy_std"] == 0.0
    assert all(v == 1.0 for v in m["tar_at_far"].values())
    same = rng.random(6000) < 0.5
    random = rng.uniform(-1, 1, 6000)
    m = verification_metrics(random, same)
    assert 0.46 < m["accuracy_mean"] < 0.55
    assert m["roc_auc"] == pytest.approx(0.5, abs=0.03)
    assert m["tar_at_far"]["0.1"] == pytest.approx(0.1, abs=0.03)


def test_verification_rejects_bad_input():
    with pytest.raises(ValueError):
        kfold_accuracy(np.array([0.1, np.nan] * 10), np.ones(20, bool))
    with pytest.raises(ValueError):
        roc_curve(np.array([0.1, 0.2]), np.array([True, True]))


# ----------------------------------------------------------------------------- identification

ID_SCORES = np.array([[0.9, 0.2, 0.1], [0.6, 0.5, 0.3], [0.4, 0.4, 0.4]])
UNMATED = np.array([[0.7, 0.1, 0.0], [0.3, 0.35, 0.2]])
IDS = np.array(["A", "B", "C"])


def test_mate_ranks_pessimistic_under_ties():
    ranks, mate = mate_ranks(ID_SCORES, IDS, np.array(["A", "B", "C"]))
    assert ranks.tolist() == [1, 2, 3]
    assert mate.tolist() == [0.9, 0.5, 0.4]
    assert cmc(ranks, (1, 2, 3)) == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: 1.0}
    with pytest.raises(ValueError):
        mate_ranks(ID_SCORES, IDS, np.array(["A", "B", "Z"]))


@pytest.mark.parametrize(
    "rank,at_03,at_05,auc",
    [(1, 1 / 3, 1 / 3, 1 / 3), (2, 1 / 3, 2 / 3, 0.5), (3, 1 / 3, 1.0, 2 / 3)],
)
def test_tpir_fpir_three_identities_by_hand(rank, at_03, at_05, auc):
    ranks, mate = mate_ranks(ID_SCORES, IDS, IDS)
    curve = open_set_curve(mate, ranks, UNMATED.max(axis=1), rank=rank)
    got = curve.tpir_at([0.3, 0.5, 0.0])
    assert got[0.3] == pytest.approx(at_03)
    assert got[0.5] == pytest.approx(at_05)
    assert got[0.0] == pytest.approx(1 / 3)  # only p1 (0.9) beats both unmated probes
    assert curve.auc() == pytest.approx(auc)
    assert curve.fpir[0] == 0 and curve.fpir[-1] == 1


def test_gallery_mean_and_image_level():
    feats = np.array([[1, 0], [0.6, 0.8], [0, 1]], dtype=np.float32)
    ids = np.array([5, 5, 9])
    g, gid = gallery_templates(feats, ids, "mean")
    assert gid.tolist() == [5, 9]
    expect = np.array([0.8, 0.4]) / np.linalg.norm([0.8, 0.4])
    assert g[0] == pytest.approx(expect, abs=1e-6)
    # image level: identity 5 scores the max over its two images
    sc, idents = identity_scores(np.array([[0.1, 0.7, 0.3]]), ids)
    assert idents.tolist() == [5, 9] and sc.tolist() == [[0.7, 0.3]]


def test_perfect_and_random_identification():
    rng = np.random.default_rng(1)
    n_ids, dim = 50, 64
    centres = rng.standard_normal((n_ids, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    ids = np.arange(n_ids)
    # perfect: probes are the gallery features themselves, unmated are orthogonal-ish noise
    unmated = rng.standard_normal((40, dim)) * 0.01
    m = identification_metrics(centres, ids, centres, ids, unmated, rank=1)
    assert m["cmc"]["1"] == 1.0
    assert all(v == 1.0 for v in m["tpir_at_fpir"].values())
    assert m["auc"] == pytest.approx(1.0)
    # random: probes unrelated to the gallery -> CMC at rank k about k / n_ids
    probes = rng.standard_normal((2000, dim))
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    pids = rng.integers(0, n_ids, 2000)
    m = identification_metrics(centres, ids, probes, pids, probes[:500], rank=20)
    assert m["cmc"]["1"] == pytest.approx(1 / n_ids, abs=0.015)
    assert m["cmc"]["20"] == pytest.approx(20 / n_ids, abs=0.05)
    assert m["tpir_at_fpir"]["0.1"] < 0.1


# ----------------------------------------------------------------------------- templates


def test_template_aggregation_by_hand():
    feats = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
    tids = np.array([1, 1, 1, 2])
    mids = np.array([10, 10, 11, 10])  # media 10 also in template 2: a separate group there
    templates, agg = aggregate_templates(feats, tids, mids)
    assert templates.tolist() == [1, 2]
    # template 1: media 10 mean (.5, .5) + media 11 (1, 0) = (1.5, .5), normalised
    assert agg[0] == pytest.approx(np.array([1.5, 0.5]) / np.linalg.norm([1.5, 0.5]), abs=1e-6)
    assert agg[1] == pytest.approx([0, 1])
    # weights: the (0, 1) image of media 10 counts three times as much
    _, w = aggregate_templates(feats, tids, mids, weights=np.array([1, 3, 1, 1]))
    assert w[0] == pytest.approx(np.array([1.5, 1.5]) / np.linalg.norm([1.5, 1.5]), abs=1e-6)
    s = template_pair_scores(templates, agg, np.array([1, 2]), np.array([2, 2]))
    assert s == pytest.approx([0.5 / np.linalg.norm([1.5, 0.5]), 1.0], abs=1e-6)


def test_template_identification_nist_fpir():
    gallery = np.eye(3, dtype=np.float32)
    g_subj = np.array([0, 1, 2])
    probes = np.array([[1, 0, 0], [0, 0.6, 0.8], [0.8, 0.6, 0], [0, 0, -1]], dtype=np.float32)
    p_subj = np.array([0, 1, 7, 8])  # two non-mated searches, top scores 0.8 and 0.0
    m = template_identification_metrics(gallery, g_subj, probes, p_subj, rank=1,
                                        fpir_targets=(0.0, 0.5))
    assert m["n_mated"] == 2 and m["n_nonmated"] == 2
    assert m["cmc"]["1"] == 0.5  # the subject-1 probe ranks subject 2 first
    # at FPIR 0 the threshold must exceed 0.8, passing only the mated 1.0
    assert m["tpir_at_fpir"]["0"] == 0.5
    assert m["tpir_at_fpir"]["0.5"] == 0.5
