"""The verification runner, gains and Table-1 report, end to end with fake encoders."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from evalfakes import FakeEncoder, synthetic_pairset

from btnet.evaluation.gains import GainBaselines, compute_gains, mean_gains, paired_gain_errors
from btnet.evaluation.report import build_verification_report, write_verification_report
from btnet.evaluation.verification import (
    Setting,
    default_settings,
    evaluate_verification,
    parse_settings,
    resolution_transform,
)


def test_default_settings_follow_canonical_size():
    assert [s.name for s in default_settings(112)] == [
        "112&7", "112&14", "112&28", "7&7", "14&14", "28&28", "112&112"]
    assert [s.name for s in default_settings(56)] == [
        "56&7", "56&14", "56&28", "7&7", "14&14", "28&28", "56&56"]


def test_parse_settings():
    assert parse_settings("S&7, 14&14 hr&hr", 56) == [Setting(56, 7), Setting(14, 14),
                                                      Setting(56, 56)]
    assert parse_settings(None, 56) == default_settings(56)
    with pytest.raises(ValueError, match="outside"):
        parse_settings("112&7", 56)
    with pytest.raises(ValueError):
        parse_settings("7", 56)


def test_resolution_transform_sizes_and_determinism():
    img = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    assert resolution_transform(14, 56)(img, 0).shape == (14, 14, 3)
    assert resolution_transform(56, 56)(img, 0).shape == (56, 56, 3)

    def noisy(x, rng):
        return np.clip(x.astype(int) + rng.integers(-20, 20, x.shape), 0, 255).astype(np.uint8)

    f = resolution_transform(14, 56, degradation=noisy, seed=3)
    assert np.array_equal(f(img, 5), f(img, 5))
    assert not np.array_equal(f(img, 5), f(img, 6))


def test_runner_embeds_each_image_once_per_resolution_and_streams():
    ps = synthetic_pairset(n_ids=20, per_id=3, n_pairs=60)
    enc = FakeEncoder()
    res = evaluate_verification({"fake": enc}, [ps], canonical=56, batch_size=4,
                                progress=False)
    assert [r.setting for r in res] == [s.name for s in default_settings(56)]
    used = set(ps.left.tolist()) | set(ps.right.tolist())
    # every resolution (56, 7, 14, 28) needs both sides once (r&r settings), no more
    assert sum(enc.calls) == 4 * len(used)
    assert len(set(enc.sizes)) == 4 and {h for h, _ in enc.sizes} == {7, 14, 28, 56}
    assert max(enc.calls) <= 16  # chunks of 4 batches, never the whole set
    by = {r.setting: r for r in res}
    assert by["56&56"].accuracy_mean > 0.9
    assert len(by["56&56"].metrics["fold_accuracies"]) == 10
    assert by["56&56"].roc["far"][0] == 0.0


def test_runner_counts_exactly():
    ps = synthetic_pairset(n_ids=10, per_id=2, n_pairs=20)
    enc = FakeEncoder()
    evaluate_verification([enc], [ps], [Setting(56, 7), Setting(7, 7)], canonical=56,
                          progress=False, n_folds=2)
    left, right = set(ps.left.tolist()), set(ps.right.tolist())
    assert sum(enc.calls) == len(left) + len(left | right)  # @56: left only; @7: both


class SeparateSpaces(FakeEncoder):
    shared_space = False
    name = "phi_mm"


def test_encoder_without_shared_space_gets_same_resolution_settings_only():
    res = evaluate_verification([SeparateSpaces()], [synthetic_pairset(n_pairs=20)],
                                canonical=56, progress=False, n_folds=2)
    assert [r.setting for r in res] == ["7&7", "14&14", "28&28", "56&56"]
    assert {r.model for r in res} == {"phi_mm"}


def test_gains_by_hand():
    acc = {
        "btnet": {"112&7": 0.80, "7&7": 0.70, "112&112": 0.99},
        "hr": {"112&7": 0.60, "7&7": 0.50, "112&112": 0.995},
        "mr": {"112&7": 0.75, "7&7": 0.68, "112&112": 0.98},
        "mm": {"7&7": 0.72, "112&112": 0.995},
    }
    g = compute_gains(acc, GainBaselines(hr="hr", mr="mr", r="mm"), canonical=112)
    assert g["btnet"]["112&7"] == {"cross_vs_hr": pytest.approx(20.0),
                                   "cross_vs_mr": pytest.approx(5.0)}
    assert g["btnet"]["7&7"] == {"same_vs_hr": pytest.approx(20.0),
                                 "same_vs_r": pytest.approx(-2.0)}
    assert g["btnet"]["112&112"] == {"same_vs_hr": pytest.approx(-0.5)}
    assert "cross_vs_hr" not in g["hr"]["112&7"]  # a baseline is not compared with itself
    assert g["mm"]["7&7"] == {"same_vs_hr": pytest.approx(22.0)}
    g2 = compute_gains(acc, GainBaselines(hr="hr", r={7: "absent"}), canonical=112)
    assert g2["btnet"]["7&7"]["same_vs_r"] is None
    assert mean_gains(g)["btnet"]["same_vs_hr"] == pytest.approx((20.0 - 0.5) / 2)


def test_paired_gain_error_by_hand():
    gains = {"m": {"56&7": {"cross_vs_hr": 2.0, "cross_vs_mr": None}}}
    folds = {"m": {"56&7": [0.80, 0.82, 0.81]}, "hr": {"56&7": [0.79, 0.80, 0.78]}}
    se = paired_gain_errors(gains, folds, GainBaselines(hr="hr", mr="mr"))
    d = np.array([0.01, 0.02, 0.03])
    assert se["m"]["56&7"]["cross_vs_hr"] == pytest.approx(100 * d.std(ddof=1) / np.sqrt(3))
    assert se["m"]["56&7"]["cross_vs_mr"] is None  # no gain, no error


def test_table1_report_files(tmp_path):
    ps = synthetic_pairset(n_ids=15, per_id=3, n_pairs=40)
    encoders = {"btnet": FakeEncoder(seed=0), "phi_hr": FakeEncoder(seed=0, grid=2),
                "phi_mr": FakeEncoder(seed=1, grid=4)}
    settings = [Setting(56, 7), Setting(7, 7), Setting(56, 56)]
    res = evaluate_verification(encoders, [ps], settings, canonical=56, progress=False,
                                n_folds=4, far_targets=(0.1,))
    base = GainBaselines(hr="phi_hr", mr="phi_mr")
    out = write_verification_report(res, tmp_path, base, canonical=56)
    md = out["markdown"].read_text()
    assert "| btnet |" in md and "56&7" in md and "cross-res. gain vs phi_hr" in md
    data = json.loads(out["json"].read_text())
    d = data["datasets"]["synthetic"]
    acc = {r.model: {} for r in res}
    for r in res:
        acc[r.model][r.setting] = r.accuracy_mean
    expect = 100 * (acc["btnet"]["56&7"] - acc["phi_hr"]["56&7"])
    assert d["gains"]["btnet"]["56&7"]["cross_vs_hr"] == pytest.approx(expect)
    folds = {r.model: np.array(r.metrics["fold_accuracies"]) for r in res if r.setting == "56&7"}
    diff = folds["btnet"] - folds["phi_hr"]
    assert d["gain_se"]["btnet"]["56&7"]["cross_vs_hr"] == pytest.approx(
        100 * diff.std(ddof=1) / np.sqrt(4))
    assert f"{expect:+.2f} ± {100 * diff.std(ddof=1) / 2:.2f}" in md and "paired" in md
    rows = list(csv.DictReader(open(out["csv"])))
    assert len(rows) == 9 and "tar@far=0.1" in rows[0] and "cross_vs_hr_se" in rows[0]
    assert all(p.exists() and p.stat().st_size > 1000 for p in out["plots"])
    assert any("acc_vs_res" in p.name for p in out["plots"])
    rep = build_verification_report(res, base, 56)
    assert rep["datasets"]["synthetic"]["models"] == ["btnet", "phi_hr", "phi_mr"]


def test_accuracy_vs_resolution_keeps_one_colour_per_model(tmp_path, monkeypatch):
    """A model missing from one panel (phi_mm has no S&r) must not shift the others' colours."""
    from btnet.evaluation import plots

    figures = []
    real_save = plots._save

    def keep(fig, path):
        figures.append(fig)
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    series = {"S&r": {"hr": {7: 60.0, 14: 80.0}, "btnet": {7: 75.0, 14: 84.0}},
              "r&r": {"hr": {7: 70.0, 14: 80.0}, "mm": {7: 72.0, 14: 81.0},
                      "btnet": {7: 76.0, 14: 83.0}}}
    path = plots.plot_accuracy_vs_resolution(series, tmp_path / "acc.png")
    assert path.stat().st_size > 1000
    colours = [{ln.get_label(): ln.get_color() for ln in ax.get_lines()} for ax in figures[0].axes]
    assert colours[0]["btnet"] == colours[1]["btnet"] and colours[0]["hr"] == colours[1]["hr"]
    assert len(set(colours[1].values())) == 3
    assert [t.get_text() for t in figures[0].axes[0].get_xticklabels()] == ["7", "14"]
