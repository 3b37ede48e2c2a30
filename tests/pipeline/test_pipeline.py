"""The demo / reproduce pipeline in a tiny configuration, and its stage cache."""

from __future__ import annotations

import json

import pytest

from btnet.pipeline.demo import demo_options, run_demo
from btnet.pipeline.stages import StageCache

TINY = dict(
    canonical=28, width=4, embedding_size=16, resolutions=[7, 14], trunk_epochs=1.0,
    branch_epochs=1.0, batch_size=16, lr=0.05, builtin_train_ids=8, builtin_per_id=4,
    builtin_test_ids=6, builtin_test_per_id=4, eval_pairs=40, progress=False, threads=1,
)


def test_stage_cache_reuses_and_invalidates(tmp_path):
    cache = StageCache(tmp_path)
    calls = []

    def work(tag):
        def fn(folder):
            calls.append(tag)
            (folder / "out.txt").write_text(tag)
            return {"tag": tag}
        return fn

    a = cache.run("a", {"x": 1}, work("a1"))
    b = cache.run("b", {"y": 1}, work("b1"), [a])
    assert calls == ["a1", "b1"] and not a.cached
    assert cache.run("a", {"x": 1}, work("never")).cached
    assert cache.run("b", {"y": 1}, work("never"), [a]).outputs == {"tag": "b1"}
    assert calls == ["a1", "b1"]
    a2 = cache.run("a", {"x": 2}, work("a2"))  # changed option: a and everything after it
    b2 = cache.run("b", {"y": 1}, work("b2"), [a2])
    assert calls == ["a1", "b1", "a2", "b2"] and b2.key != b.key


def test_cached_outputs_are_found_from_another_working_directory(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    first = StageCache("cache").run("s", {}, lambda folder: {"file": str(folder / "out.txt")})
    monkeypatch.chdir(tmp_path)
    again = StageCache(tmp_path / "a" / "cache").run("s", {}, lambda folder: {"file": "never"})
    assert again.cached and again.outputs == first.outputs
    assert again.outputs["file"] == str(tmp_path / "a" / "cache" / "stages" / f"s-{again.key}"
                                        / "out.txt")


def test_unfinished_stage_is_recomputed(tmp_path):
    cache = StageCache(tmp_path)

    def boom(folder):
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.run("a", {}, boom)
    assert cache.lookup("a", {}) is None  # no stage.json: not done
    assert cache.run("a", {}, lambda folder: {"ok": 1}).outputs == {"ok": 1}


@pytest.mark.slow
def test_demo_pipeline_tiny_end_to_end_and_cached(tmp_path):
    opts = demo_options(out=str(tmp_path / "demo"), **TINY)
    lines: list[str] = []
    report = run_demo(opts, echo=lines.append)
    md = (report / "report.md").read_text()
    for model in ("phi_hr", "phi_mr_v1", "BTNet"):
        assert model in md
    for setting in ("28&7", "28&14", "7&7", "14&14", "28&28"):
        assert setting in md
    assert "## Cost" in md and (report / "figure5_accuracy_vs_macs.png").is_file()
    data = json.loads((report / "results.json").read_text())
    table = next(iter(data["datasets"].values()))
    assert set(table["models"]) == {"phi_hr", "phi_mr_v1", "BTNet"}
    assert table["gains"]["BTNet"]["28&7"]["cross_vs_hr"] is not None
    assert table["gain_se"]["BTNet"]["28&7"]["cross_vs_hr"] is not None
    assert sum(line.startswith("[run]") for line in lines) == 6  # 3 trainings + 3 evaluations

    lines.clear()
    run_demo(opts, echo=lines.append)  # re-run: nothing recomputed
    assert not any(line.startswith("[run]") for line in lines)
    assert sum(line.startswith("[cached]") for line in lines) == 6

    lines.clear()
    changed = demo_options(out=str(tmp_path / "demo"), **{**TINY, "branch_epochs": 2.0})
    run_demo(changed, echo=lines.append)  # only the branches and their evaluations depend on it
    ran = sorted(line.split(maxsplit=1)[1].rsplit(" (", 1)[0] for line in lines
                 if line.startswith("[run]"))
    assert ran == ["btnet", "eval_BTNet"]

    # the demo's phi_mr trunk is phi_hr fine-tuned: its options recompute it and what uses it,
    # never phi_hr
    lines.clear()
    changed = demo_options(out=str(tmp_path / "demo"), **{**TINY, "branch_epochs": 2.0,
                                                          "mr_finetune_lr": 0.02})
    run_demo(changed, echo=lines.append)
    ran = sorted(line.split(maxsplit=1)[1].rsplit(" (", 1)[0] for line in lines
                 if line.startswith("[run]"))
    assert ran == ["btnet", "eval_BTNet", "eval_phi_mr_v1", "trunk_mr_v1_from_hr"]
    md = (report / "report.md").read_text()
    assert "fine-tuned 4 epochs with the phi_mr recipe at lr 0.02 (mr_init=hr)" in md


def test_mr_init_from_scratch_trains_phi_mr_alone(tmp_path):
    """mr_init=scratch: the phi_mr trunk does not depend on phi_hr (the paper's literal recipe)."""
    from btnet.pipeline.options import StudyOptions
    from btnet.pipeline.studies import Study

    with pytest.raises(ValueError, match="mr_init"):
        StudyOptions(mr_init="warm")
    study = Study(StudyOptions(out=str(tmp_path / "s"), mr_init="scratch", **TINY))
    calls = []
    study.train_stage = lambda name, cfg, deps=(): calls.append((name, cfg, list(deps))) or name
    assert study.mr_trunk("v2") == "trunk_mr_v2" and calls[0][2] == []
    assert calls[0][1]["data"]["sampler"] == "mr_v2" and "init_from" not in calls[0][1]["model"]


@pytest.mark.slow
@pytest.mark.parametrize("study", ["table3", "figure7"])
def test_other_studies_run_tiny(tmp_path, study):
    from btnet.pipeline.options import StudyOptions
    from btnet.pipeline.studies import STUDIES

    opts = StudyOptions(study=study, out=str(tmp_path / study), **{**TINY, "mm_epochs": 1.0})
    report = STUDIES[study](opts, echo=lambda msg: None)
    md = (report / "report.md").read_text()
    if study == "table3":
        for row in ("scratch", "+ pretrained init", "+ BCT", "+ fixed trunk", "+ branch distillation"):
            assert row in md
    else:
        assert "layer1.0" in md and "layer1.1" in md and (report / "figure7.png").is_file()


def test_each_source_has_its_own_default_number_of_pairs(tmp_path):
    from btnet.pipeline.options import StudyOptions
    from btnet.pipeline.sources import BuiltinSource, RealFacesSource

    real, builtin = RealFacesSource(tmp_path), BuiltinSource("builtin", "builtin", "b")
    default = StudyOptions()
    assert real.num_pairs(default) == 20000 and builtin.num_pairs(default) == 3000
    assert real.cache_params(default)["pairs"] == 20000
    # An explicit count wins, and equals the default's cache key when it is the same number.
    assert real.cache_params(StudyOptions(eval_pairs=20000)) == real.cache_params(default)
    assert real.num_pairs(StudyOptions(eval_pairs=3000)) == 3000


def test_real_data_root_is_keyed_by_its_absolute_path(tmp_path, monkeypatch):
    from btnet.pipeline.sources import RealFacesSource

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    assert RealFacesSource("data").train_params() == RealFacesSource(tmp_path / "data").train_params()


def test_stages_a_study_does_not_use_are_refused(capsys):
    from btnet.cli.main import main
    from btnet.pipeline.options import StudyOptions

    ok = StudyOptions(study="table1", stages=["trunk_hr", "btnet"])
    assert ok.wants("btnet") and not ok.wants("mm")
    assert StudyOptions(study="table1", mr_init="hr", stages=["trunk_hr_ft"]).wants("trunk_hr_ft")
    with pytest.raises(ValueError, match="does not use stage.*figure7.*its stages: trunk_hr"):
        StudyOptions(study="table1", stages=["trunk_hr", "figure7"])
    with pytest.raises(ValueError, match="trunk_hr_ft exists only with mr_init=hr"):
        StudyOptions(study="table1", mr_init="scratch", stages=["trunk_hr_ft"])
    with pytest.raises(ValueError, match="does not use stage.*mm"):
        StudyOptions(study="demo", stages=["mm"])  # the demo trains no phi_mm
    with pytest.raises(ValueError, match="'table3' always runs all its stages"):
        StudyOptions(study="table3", stages=["trunk_hr"])
    with pytest.raises(ValueError, match="empty stage subset"):
        StudyOptions(study="table1", stages=[])

    assert main(["reproduce", "table4", "--stages", "trunk_mr_v1"]) == 2
    err = capsys.readouterr().err
    assert "btnet reproduce: error: study 'table4' always runs all its stages" in err
    assert main(["reproduce", "table1", "--stages", "trunk_hr,openset"]) == 2
    assert "does not use stage(s) openset" in capsys.readouterr().err


@pytest.mark.slow
def test_labelfree_study_runs_tiny(tmp_path):
    """``btnet reproduce labelfree`` on built-in faces: BCT and label-free rows on both trunks,
    own-images and MSE rows, and paired differences with their standard errors."""
    from btnet.pipeline.options import StudyOptions
    from btnet.pipeline.studies import run_labelfree

    # width 8: at TINY's width 4 the CPU convolution backward crashes (also on main's table3)
    opts = StudyOptions(study="labelfree", out=str(tmp_path / "lf"), mr_init="hr",
                        mr_finetune_epochs=0.5, **{**TINY, "width": 8})
    report = run_labelfree(opts, echo=lambda msg: None)
    md = (report / "report.md").read_text()
    for row in ("| BCT on phi_hr |", "| label-free on phi_hr |", "| BCT on phi_mr_v1 |",
                "| label-free on phi_mr_v1 |", "| label-free own images on phi_hr |",
                "| label-free own images (MSE embedding) on phi_hr |",
                "| label-free on phi_hr − BCT on phi_hr |"):
        assert row in md, row
    summary = json.loads((report / "study.json").read_text())
    diff = next(c for c in summary["comparisons"] if c[0] == "label-free on phi_hr − BCT on phi_hr")
    assert "±" in diff[1]  # a paired standard error next to each difference


def test_branch_recipe_is_named_checked_and_reaches_the_branch_config(tmp_path):
    """--branch-recipe: a named set of branch switches under the study's own; 'paper' adds
    none (so the paper's stages keep their cache keys); unknown names are refused."""
    from btnet.pipeline.options import BRANCH_RECIPES, StudyOptions
    from btnet.pipeline.studies import Study

    with pytest.raises(ValueError, match="branch_recipe must be one of"):
        StudyOptions(branch_recipe="magic")
    assert BRANCH_RECIPES["paper"] == {}
    seen = {}
    for name in BRANCH_RECIPES:
        study = Study(StudyOptions(out=str(tmp_path / name), branch_recipe=name, **TINY))
        study.train_stage = lambda n, cfg, deps=(): cfg
        trunk = type("T", (), {"outputs": {"model": "m"}})()
        seen[name] = study.branches(trunk)["branch"]
        explicit = study.branches(trunk, distill_weight=0.0)["branch"]
        assert explicit["distill_weight"] == 0.0  # a study's own switch wins
    assert set(seen["paper"]) == {"trunk", "resolutions"}
    # a single-resolution stage (Table 3's r = 14) drops untied paths it does not have
    study = Study(StudyOptions(out=str(tmp_path / "t3"), branch_recipe="extended", **TINY))
    study.train_stage = lambda n, cfg, deps=(): cfg
    assert "untie" not in study.branches(trunk, resolutions=[14])["branch"]
    for name, switches in BRANCH_RECIPES.items():
        for key, value in switches.items():
            assert seen[name][key] == value


def test_integer_and_float_epochs_are_one_stage(tmp_path):
    """Stage keys hash option values as JSON, where 6 and 6.0 differ: options coerce them."""
    from btnet.pipeline.options import StudyOptions
    from btnet.pipeline.studies import Study

    keys = []
    for epochs in (6, 6.0):
        study = Study(StudyOptions(out=str(tmp_path / "s"), trunk_epochs=epochs))
        cfg = study._train_config("trunk", "t", study.opts.trunk_epochs, "arcface", {})
        keys.append(study.cache.key("train_trunk", study._cache_view(cfg)))
    assert keys[0] == keys[1]
