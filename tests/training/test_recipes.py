"""Tiny end-to-end runs of every recipe: loss falls, frozen weights stay frozen, BN separation,
and bad trunk/branch pairings fail before the first step."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from btnet.io.model_store import load_model
from btnet.losses import MarginHead, NormalizedClassifier, build_margin_loss
from btnet.models import BTNet, build_backbone
from btnet.training import ConfigError, train
from btnet.training.recipes import BranchTask


def _records(out, kind="train"):
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_trunk_loss_falls_and_outputs(tmp_path, tiny):
    cfg = tiny(train={"max_steps": 48, "log_every": 12, "ckpt_every": 0},
               data={"sampler": "hr"}, optim={"lr": 0.1},
               eval={"sets": ["builtin:ids=6,per_id=2,pairs=20"], "pairs": ["S&S", "S&7"]})
    res = train(cfg, output_dir=tmp_path / "run")
    losses = [r["loss"] for r in _records(res.output_dir)]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses
    stored = load_model(res.model_path)
    assert stored.kind == "backbone" and stored.classifier["weight"].shape == (8, 32)
    assert sorted(k.rsplit("/", 1)[1] for k in res.metrics["eval"]) == ["28&28", "28&7"]
    assert (res.output_dir / "train.csv").read_text().startswith("kind,step")
    assert (res.output_dir / "eval.csv").is_file()
    with pytest.raises(ValueError, match="--resume"):
        train(cfg, output_dir=tmp_path / "run")  # never silently overwrite a run
    assert train(cfg, output_dir=tmp_path / "run", resume=True).steps == 48  # finished: reused


def test_fixed_trunk_branch_keeps_trunk_bit_identical(tmp_path, tiny, tiny_trunk):
    cfg = tiny(recipe="branch", optim={"lr": 0.01},
               branch={"trunk": str(tiny_trunk.output_dir), "resolutions": [7, 14]},
               train={"max_steps": 3})
    res = train(cfg, output_dir=tmp_path / "b")
    before = load_file(str(tiny_trunk.model_path / "trunk.safetensors"))
    after = load_file(str(res.model_path / "trunk.safetensors"))
    assert before.keys() == after.keys()
    for k in before:  # weights and BN running statistics of the trunk path
        assert torch.equal(before[k], after[k]), k
    # BCT: the trunk's classifier is used frozen and stored unchanged.
    c0 = load_file(str(tiny_trunk.model_path / "classifier.safetensors"))["weight"]
    c1 = load_file(str(res.model_path / "classifier.safetensors"))["weight"]
    assert torch.equal(c0, c1)
    stored = load_model(res.model_path).model
    assert stored.resolutions == (7, 14)
    rec = _records(res.output_dir)[-1]
    assert {"cls7", "cls14", "distill7", "distill14"} <= rec.keys()


def test_branch_training_touches_only_its_own_path():
    """Training path 14 changes neither path 7 nor the trunk (weights or BN statistics)."""
    torch.manual_seed(0)
    trunk = build_backbone("iresnet18", input_size=28, width=8, embedding_size=32)
    model = BTNet(trunk, (7, 14))
    model.freeze_shared()
    clf = NormalizedClassifier(32, 4).requires_grad_(False)
    task = BranchTask(model, clf, "arcface", 16.0, None, [14], 0.5, 0.5).train()
    frozen = {k: v.clone() for k, v in model.trunk.state_dict().items()}
    other = {k: v.clone() for k, v in model.path_state(7).items()}
    mine = {k: v.clone() for k, v in model.path_state(14).items()}
    params = [p for p in task.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    first = last = None
    batch = {"x": torch.randn(8, 3, 28, 28), "x14": torch.randn(8, 3, 14, 14),
             "label": torch.arange(8) % 4}
    for _ in range(8):
        out = task(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = out["loss"].item() if first is None else first
        last = out["loss"].item()
    assert last < first
    for k, v in model.trunk.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    for k, v in model.path_state(7).items():
        assert torch.equal(v, other[k]), k
    changed = [k for k, v in model.path_state(14).items() if not torch.equal(v, mine[k])]
    assert any(k.startswith("shared.") and k.endswith("running_mean") for k in changed)
    assert any(k.startswith("branch.") for k in changed)


def test_untied_branch_without_bct(tmp_path, tiny, tiny_trunk):
    cfg = tiny(recipe="branch", optim={"lr": 0.01}, train={"max_steps": 2},
               branch={"trunk": str(tiny_trunk.model_path), "resolutions": [14],
                       "fixed_trunk": False, "bct": False, "pretrained": False,
                       "embed_distill_weight": 0.5})
    res = train(cfg, output_dir=tmp_path / "u")
    info = json.loads((res.model_path / "model.json").read_text())
    assert info["paths"]["14"]["untied"] is True
    assert "edistill14" in _records(res.output_dir)[-1]


def test_mm_recipe_one_model_per_resolution(tmp_path, tiny):
    cfg = tiny(recipe="mm", mm={"resolutions": [7, 14]}, train={"max_steps": 2})
    res = train(cfg, output_dir=tmp_path / "mm")
    assert sorted(res.parts) == [7, 14]
    for r, part in res.parts.items():
        model = load_model(part.model_path).model
        assert model.resolutions == (r,) and r in model.untied
        assert model(torch.zeros(2, 3, r, r)).shape == (2, 32)


@pytest.mark.parametrize(
    "branch, error, match",
    [
        ({"resolutions": [5]}, ConfigError, "no unit with a 5x5"),
        ({"trunk": "does/not/exist"}, FileNotFoundError, "no trained trunk"),
    ],
)
def test_bad_pairings_fail_before_training(tmp_path, tiny, tiny_trunk, branch, error, match):
    cfg = tiny(recipe="branch", branch={"trunk": str(tiny_trunk.output_dir), **branch})
    with pytest.raises(error, match=match):
        train(cfg, output_dir=tmp_path / "bad")
    assert not (tmp_path / "bad" / "checkpoint").exists()


def test_canonical_size_mismatch_is_reported(tmp_path, tiny, tiny_trunk):
    cfg = tiny(recipe="branch", model={"input_size": 56},
               branch={"trunk": str(tiny_trunk.output_dir)})
    with pytest.raises(ConfigError, match="canonical size is 28"):
        train(cfg, output_dir=tmp_path / "bad")
    cfg = tiny(recipe="branch", data={"train": "builtin:ids=5,per_id=8"},
               branch={"trunk": str(tiny_trunk.output_dir), "resolutions": [14]})
    with pytest.raises(ConfigError, match="BCT needs"):
        train(cfg, output_dir=tmp_path / "bad2")


def test_cli_help_lists_recipes_and_wrong_key_exits_2(capsys):
    from btnet.cli.main import build_parser, main

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in ("trunk", "mm", "branch"))
    assert main(["train", "configs/cpu/trunk_hr.yaml", "--set", "optim.lrr=1"]) == 2
    assert "valid keys in optim" in capsys.readouterr().err


def test_warm_start_loads_trunk_and_matching_classifier(tmp_path, tiny, tiny_trunk):
    from btnet.training.config import config_from_dict
    from btnet.training.recipes import open_training_set, warm_start

    stored = load_model(tiny_trunk.model_path)
    cfg = config_from_dict(tiny(model={"init_from": str(tiny_trunk.output_dir)}))
    backbone = build_backbone("iresnet18", input_size=28, width=8, embedding_size=32)
    head = MarginHead(32, 8, build_margin_loss("arcface"))
    assert "classifier" in warm_start(cfg, backbone, head)
    for k, v in stored.model.state_dict().items():
        assert torch.equal(backbone.state_dict()[k], v), k
    assert torch.equal(head.classifier.weight, stored.classifier["weight"])
    assert open_training_set(cfg.data.train, 28).num_classes == 8

    # another training set: same class count, but class i is someone else; the head starts fresh
    other = config_from_dict(tiny(model={"init_from": str(tiny_trunk.output_dir)},
                                  data={"train": "builtin:ids=8,per_id=4,seed=4"}))
    fresh = head.classifier.weight.detach().clone().mul_(0)
    with torch.no_grad():
        head.classifier.weight.zero_()
    assert "starts fresh" in warm_start(other, backbone, head)
    assert torch.equal(head.classifier.weight, fresh)


def test_warm_started_trunk_trains_from_the_stored_weights(tmp_path, tiny, tiny_trunk):
    cfg = tiny(model={"init_from": str(tiny_trunk.model_path)}, optim={"lr": 0.0},
               train={"max_steps": 2, "ckpt_every": 0})
    res = train(cfg, output_dir=tmp_path / "ft")
    before, after = load_model(tiny_trunk.model_path), load_model(res.model_path)
    # lr 0: weights (not BN statistics, which follow the batches) are those it started from
    for (k, v), w in zip(before.model.named_parameters(), after.model.parameters()):
        assert torch.allclose(v, w, atol=1e-6), k
    assert "initialised from" in after.meta["init"]
    # an arcface_torch-style backbone.pth (a plain state dict) works the same way
    torch.save(before.model.state_dict(), tmp_path / "backbone.pth")
    from_pth = tiny(model={"init_from": str(tmp_path / "backbone.pth")}, optim={"lr": 0.0},
                    train={"max_steps": 1, "ckpt_every": 0})
    res = train(from_pth, output_dir=tmp_path / "pth")
    assert "classifier starts fresh" in load_model(res.model_path).meta["init"]
    for (k, v), w in zip(before.model.named_parameters(), load_model(res.model_path).model.parameters()):
        assert torch.allclose(v, w, atol=1e-6), k
    wrong = tiny(model={"init_from": str(tiny_trunk.model_path), "width": 4},
                 train={"max_steps": 1})
    with pytest.raises(ConfigError, match="does not fit"):
        train(wrong, output_dir=tmp_path / "wrong")
    with pytest.raises(ConfigError, match="trunk recipe only"):
        train(tiny(recipe="mm", model={"init_from": str(tiny_trunk.model_path)}),
              output_dir=tmp_path / "mm")


def test_degraded_branch_samples_keep_the_teacher_clean_and_are_seeded():
    """branch.degrade blurs / noises / re-compresses the r-pixel faces only, the same way for
    the same (seed, sample) and differently from clean down-sampling."""
    import numpy as np

    from btnet.training.recipes import make_branch_sample

    face = np.random.default_rng(0).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    clean = make_branch_sample(28, [7, 14], flip=False)
    degraded = make_branch_sample(28, [7, 14], flip=False, degrade="blur=0.8,noise=6,p=1")
    a = clean(face, np.random.default_rng(5))
    b = degraded(face, np.random.default_rng(5))
    c = degraded(face, np.random.default_rng(5))
    assert np.array_equal(a["x"], b["x"])  # the teacher's S-pixel face stays clean
    for r in (7, 14):
        assert b[f"x{r}"].shape == a[f"x{r}"].shape == (r, r, 3)
        assert not np.array_equal(a[f"x{r}"], b[f"x{r}"])
        assert np.array_equal(b[f"x{r}"], c[f"x{r}"])


def test_bct_branches_with_embedding_term_degradation_unit_scale_and_untied_7(tmp_path, tiny,
                                                                             tiny_trunk):
    """The levers of the beyond-the-paper recipe train together: the stored trunk computes the
    same embeddings as the original (unit scale moves scale, not function), the BCT classifier
    is unchanged, the embedding term (mse by default) is logged."""
    import numpy as np

    from btnet.inference import load_encoder

    cfg = tiny(recipe="branch", optim={"lr": 0.01},
               branch={"trunk": str(tiny_trunk.output_dir), "resolutions": [7, 14],
                       "embed_distill_weight": 1.0, "degrade": "surveillance",
                       "trunk_scale": "unit", "untie": [7]},
               train={"max_steps": 3})
    res = train(cfg, output_dir=tmp_path / "b")
    rec = _records(res.output_dir)[-1]
    assert {"cls7", "distill7", "edistill7"} <= rec.keys()
    x = torch.rand(4, 3, 28, 28) * 2 - 1
    before = load_model(tiny_trunk.model_path).model.eval()
    after = load_model(res.model_path).model.trunk.eval()
    with torch.no_grad():
        e0, e1 = before(x), after(x)
    unit = torch.nn.functional.normalize
    assert (unit(e0) - unit(e1)).abs().max() < 1e-4  # what a matcher compares
    w0 = before.state_dict()["layer1.0.conv1.weight"]
    w1 = after.state_dict()["layer1.0.conv1.weight"]
    assert not torch.allclose(w0, w1)  # the scale moved into the BatchNorms
    stored = json.loads((res.model_path / "model.json").read_text())
    assert stored["paths"]["7"]["untied"] and not stored["paths"]["14"]["untied"]
    # the untied 7-pixel path stores its own tail: more than the tied 14-pixel path's BNs
    assert stored["paths"]["7"]["stored_parameters"] > 4 * stored["paths"]["14"]["stored_parameters"]
    loaded = load_model(res.model_path).model
    assert loaded.untied == {7}
    meta = stored["meta"]
    assert meta["degrade"] == "surveillance" and meta["embed_loss"] == "mse"
    assert meta["trunk_scale"] == "unit" and meta["untie"] == [7]
    enc = load_encoder(str(res.model_path))  # the model every command takes
    faces = [np.full((7, 7, 3), v, dtype=np.uint8) for v in (40, 200)]
    got = enc.encode(faces)
    assert got.embeddings.shape == (2, 32) and list(got.paths) == [7, 7]
