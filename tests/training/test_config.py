"""Config schema, overrides, shipped configs, schedules and the resumable sampler."""

from __future__ import annotations

from pathlib import Path

import pytest

from btnet.training.config import ConfigError, ScheduleConfig, load_config, parse_overrides
from btnet.training.distributed import ResumableBatchSampler
from btnet.training.schedule import lr_at

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "configs" / "cpu").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg.recipe in ("trunk", "mm", "branch")
    if "cpu" in path.parts:
        assert cfg.model.input_size == 56 and cfg.model.arch == "iresnet18"
        assert cfg.data.train.startswith("builtin")


def test_every_recipe_and_sampler_has_a_config():
    names = {p.stem for p in SHIPPED}
    assert {"trunk_hr", "trunk_mr_v1", "trunk_mr_v2", "trunk_mr_v3", "mm", "branch"} <= names
    samplers = {load_config(ROOT / "configs" / f"trunk_{v}.yaml").data.sampler
                for v in ("hr", "mr_v1", "mr_v2", "mr_v3")}
    assert samplers == {"hr", "mr_v1", "mr_v2", "mr_v3"}
    assert load_config(ROOT / "configs/branch.yaml").branch.trunk.endswith("trunk_mr_v1")


def test_base_and_overrides(tmp_path):
    (tmp_path / "a.yaml").write_text("optim:\n  lr: 0.5\ntrain:\n  batch_size: 32\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\ntrain:\n  seed: 7\n")
    cfg = load_config(tmp_path / "b.yaml", ["optim.lr=0.01", "branch.resolutions=[14]",
                                            "train.amp=off"])
    assert cfg.optim.lr == 0.01 and cfg.train.batch_size == 32 and cfg.train.seed == 7
    assert cfg.branch.resolutions == [14]
    assert parse_overrides(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}


def test_wrong_key_lists_valid_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"optim\.lrr.*lr, momentum"):
        load_config(None, ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="valid keys: recipe, name"):
        load_config(None, ["optimiser.lr=0.1"])
    with pytest.raises(ConfigError, match="expected a number"):
        load_config(None, ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="recipe"):
        load_config(None, ["recipe=distill"])
    with pytest.raises(ConfigError, match="branch.trunk"):
        load_config(None, ["recipe=branch"])
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="train.dtype"):
        load_config(None, ["train.dtype=float16"])
    with pytest.raises(ConfigError, match="contradict"):
        load_config(None, ["train.dtype=float64", "train.amp=bf16"])


def test_builtin_specs_get_training_defaults_the_spec_can_override():
    from btnet.training.recipes import open_training_set
    from btnet.training.specs import with_defaults
    from btnet.training.validation import builtin_pairs

    assert with_defaults("builtin", size=28) == "builtin:size=28"
    assert with_defaults("builtin:ids=8", "test", size=28) == "builtin:test,size=28,ids=8"
    assert open_training_set("builtin:ids=3,per_id=2", 28)[0][0].shape == (28, 28, 3)
    assert open_training_set("builtin:ids=3,per_id=2,size=20", 28)[0][0].shape == (20, 20, 3)
    pairs = builtin_pairs("builtin:ids=4,per_id=3,pairs=8,folds=2,seed=5", 24)
    assert len(pairs.issame) == 8 and pairs.images[0].shape == (24, 24, 3)
    assert pairs.images.dataset.identity_offset >= 100_000  # never training identities
    for bad, match in [("builtin:train", "test ones"), ("builtin:offset=0", "test ones"),
                       ("builtin:pairs=8,colour=1", "unknown key")]:
        with pytest.raises(ConfigError, match=match):
            builtin_pairs(bad, 24)


def test_schedules():
    poly = ScheduleConfig(name="poly", power=2.0)
    assert lr_at(0, 100, 1.0, poly, warmup=10) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, poly, warmup=10) == pytest.approx(1.0)
    assert lr_at(10, 100, 1.0, poly, warmup=10) == pytest.approx(1.0)
    assert lr_at(55, 100, 1.0, poly, warmup=10) == pytest.approx(0.25)
    cos = ScheduleConfig(name="cosine", min_lr=0.1)
    assert lr_at(50, 100, 1.0, cos, warmup=0) == pytest.approx(0.55)
    assert lr_at(100, 100, 1.0, cos, warmup=0) == pytest.approx(0.1)


def test_sampler_shards_cover_the_global_batch_and_resume():
    single = ResumableBatchSampler(40, 8, seed=3)
    ranks = [ResumableBatchSampler(40, 8, seed=3, rank=k, world_size=2) for k in range(2)]
    for step, chunks in single.iterate(epoch=1):
        parts = [r.micro_batches(1, step)[0] for r in ranks]
        assert parts[0] + parts[1] == chunks[0]
    assert list(single.iterate(2, 3)) == list(single.iterate(2))[3:]
    assert single.permutation(0).tolist() != single.permutation(1).tolist()
    accum = ResumableBatchSampler(40, 8, seed=3, accum_steps=2)
    assert sum(accum.micro_batches(0, 1), []) == single.micro_batches(0, 1)[0]
    with pytest.raises(ValueError, match="divisible"):
        ResumableBatchSampler(40, 9, world_size=2)


def test_eval_sets_alone_verify_at_the_default_setting(tiny):
    """eval.pairs has a valid default: a config that sets only eval.sets gets a verifier."""
    from btnet.training.config import config_from_dict
    from btnet.training.validation import make_verifier

    cfg = config_from_dict(tiny(eval={"sets": ["builtin:ids=4,per_id=2,pairs=8,folds=2"]}))
    assert cfg.eval.pairs == ["S&S"]
    assert make_verifier(cfg) is not None  # parses the settings and opens the sets
    bad = config_from_dict(tiny(eval={"sets": ["builtin:ids=4,per_id=2,pairs=8,folds=2"],
                                      "pairs": ["S-S"]}))
    with pytest.raises(ConfigError, match="eval.pairs"):
        make_verifier(bad)


def test_merge_dicts_merges_nested_keys_and_shares_nothing():
    from btnet.training.config import merge_dicts

    base = {"train": {"epochs": 4, "seed": 0}, "data": {"train": "builtin"}, "tags": [1]}
    over = {"train": {"epochs": 8}, "model": {"width": 16}}
    out = merge_dicts(base, over)
    assert out == {"train": {"epochs": 8, "seed": 0}, "data": {"train": "builtin"},
                   "tags": [1], "model": {"width": 16}}
    out["data"]["train"] = "x"
    out["tags"].append(2)
    out["model"]["width"] = 8
    assert base == {"train": {"epochs": 4, "seed": 0}, "data": {"train": "builtin"}, "tags": [1]}
    assert over == {"train": {"epochs": 8}, "model": {"width": 16}}


def test_python_m_btnet_training_is_the_library_without_the_cli(tmp_path):
    import subprocess
    import sys

    code = ("import sys, btnet.training.__main__ as m; "
            "print(sorted(k for k in sys.modules if k.startswith('btnet.cli'))); "
            "sys.exit(m.main([sys.argv[1]]))")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "missing.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "[]", res.stdout + res.stderr
    assert res.returncode == 2 and "config file not found" in res.stderr
