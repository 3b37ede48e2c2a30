"""The one-line API at ``btnet``: load, create_model, encode, evaluate_pairs, train."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import btnet
from btnet.data.images import encode_png, write_image
from btnet.data.resolution import downsample, fit_to, upsample
from btnet.data.transforms import to_tensor
from btnet.io.model_store import save_backbone, save_btnet
from btnet.models import Backbone, BranchSelector, BTNet

README = Path(__file__).resolve().parents[1] / "README.md"


def _unit(x: torch.Tensor) -> np.ndarray:
    v = x.detach().numpy().astype(np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _faces(n: int, size: int = 56, seed: int = 0) -> list[np.ndarray]:
    from btnet.data.synthetic import SyntheticFaces

    ds = SyntheticFaces(n, 1, size, seed=seed)
    return [ds[i][0] for i in range(n)]


@pytest.fixture(scope="module")
def tiny_btnet() -> BTNet:
    torch.manual_seed(0)
    model = btnet.create_model("iresnet18", resolutions=(7, 14), input_size=56, width=8,
                               embedding_size=16)
    model.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics on every path
        for r in model.input_sizes:
            model(torch.randn(4, 3, r, r))
    return model.eval()


def test_import_is_lazy_and_torch_free():
    code = ("import sys, btnet; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert {'load', 'encode', 'create_model', 'evaluate_pairs', 'train'} <= set(dir(btnet));"
            "print(btnet.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        btnet.nope  # noqa: B018


def test_create_model_by_name():
    b = btnet.create_model("r18", input_size=28, width=8, embedding_size=16)
    assert isinstance(b, Backbone) and b.config["arch"] == "iresnet18"
    m = btnet.create_model("btnet_iresnet18", width=8)
    assert isinstance(m, BTNet) and m.input_sizes == (7, 14, 28, 112)  # the paper's branches at 112
    assert btnet.create_model("iresnet18", resolutions=[14], width=8).input_sizes == (14, 112)
    assert "btnet_mbf" in btnet.list_models() and "iresnet50" in btnet.list_models()
    with pytest.raises(ValueError, match="unknown architecture 'resnet9'.*iresnet50"):
        btnet.create_model("resnet9")


def test_load_keeps_the_stored_selector(tiny_btnet, tmp_path):
    """A run folder loads with the routing policy stored beside the model, not the default."""
    floor = BranchSelector.from_rule((7, 14, 56), "min", "floor")
    save_btnet(tiny_btnet, tmp_path / "run" / "model", selector=floor)
    enc = btnet.load(tmp_path / "run")
    assert enc.selector == floor and enc.backend == "torch" and enc.fingerprint.startswith("sha256:")
    faces = _faces(3)
    images = [downsample(faces[0], 13), downsample(faces[1], 30), faces[2]]
    res = btnet.encode(enc, images)
    assert res.paths == [7, 14, 56]  # floor; the default min/near rule sends 13 px to 14
    assert res.sizes.tolist() == [[13, 13], [30, 30], [56, 56]]
    with torch.inference_mode():  # BTNet.forward routes by input size
        expected = np.concatenate([_unit(tiny_btnet(to_tensor(fit_to(im, r))))
                                   for im, r in zip(images, (7, 14, 56))])
    assert np.abs(res.embeddings - expected).max() < 1e-5
    near = enc.with_selector(BranchSelector.from_rule((7, 14, 56), "min", "near"))
    assert btnet.encode(near, images).paths == [14, 14, 56] and enc.selector == floor


def test_load_an_arcface_checkpoint(tmp_path):
    torch.manual_seed(1)
    backbone = btnet.create_model("iresnet18", width=8, embedding_size=16).eval()
    state = {f"module.{k}": v for k, v in backbone.state_dict().items()}  # as DDP saves it
    torch.save(state, tmp_path / "backbone.pth")
    enc = btnet.load(tmp_path / "backbone.pth")
    assert enc.backbone.config == backbone.config and enc.paths == (112,)
    assert not hasattr(enc, "with_selector")  # one path: evaluation has no policy to vary
    face = _faces(1, 112)[0]
    res = btnet.encode(enc, [face, downsample(face, 30)])
    assert res.paths == [112, 112]
    with torch.inference_mode():
        expected = _unit(backbone(to_tensor([face, upsample(downsample(face, 30), 112)])))
    assert np.abs(res.embeddings - expected).max() < 1e-5
    with pytest.raises(ValueError, match="input size 56 gives a 4x4 final map"):
        btnet.load(tmp_path / "backbone.pth", input_size=56)


def test_encode_files_and_in_memory_models(tiny_btnet, tmp_path):
    faces = _faces(2)
    write_image(tmp_path / "a.png", downsample(faces[0], 20))
    res = btnet.encode(tiny_btnet, [tmp_path / "a.png", faces[1]], flip=True)
    assert res.paths == [14, 56] and res.embeddings.shape == (2, 16)
    again = btnet.encode(tiny_btnet, faces[1])  # one image
    assert again.paths == [56] and not np.allclose(again.embeddings[0], res.embeddings[1])
    plain = save_backbone(tiny_btnet.trunk, tmp_path / "trunk")
    assert btnet.encode(plain, [downsample(faces[0], 20)]).paths == [56]


class _IdentityEncoder:
    """Embeds a face as the one-hot of its identity (written into pixel [0, 0, 0])."""

    name, canonical, embedding_size, shared_space = "oracle", 56, 8, True

    def __init__(self, constant: bool = False):
        self.constant = constant

    def encode(self, images, batch_size=64, flip=False, progress=False):
        from btnet.inference import EncodeResult

        emb = np.zeros((len(images), self.embedding_size), np.float32)
        for i, im in enumerate(images):
            emb[i, 0 if self.constant else int(im[0, 0, 0]) // 30] = 1.0
        return EncodeResult(emb, [56] * len(images))


def test_evaluate_pairs_on_a_bin(tmp_path):
    from btnet.data.verification import write_bin

    faces = [np.full((56, 56, 3), 30 * k, np.uint8) for k in range(6)]
    blobs, issame = [], []
    for k in range(6):  # a genuine and an impostor pair per identity, both classes in each fold
        blobs += [encode_png(faces[k])] * 2
        blobs += [encode_png(faces[k]), encode_png(faces[(k + 1) % 6])]
        issame += [True, False]
    write_bin(tmp_path / "set.bin", blobs, issame)
    rows = btnet.evaluate_pairs(_IdentityEncoder(), tmp_path / "set.bin", settings="S&S",
                                n_folds=2)
    assert [(r.setting, r.accuracy_mean) for r in rows] == [("56&56", 1.0)]
    rows = btnet.evaluate_pairs(_IdentityEncoder(constant=True), tmp_path / "set.bin",
                                settings="S&S", n_folds=2)
    assert rows[0].accuracy_mean == pytest.approx(0.5)  # nothing to separate: chance


@pytest.mark.shared_data
def test_evaluate_pairs_on_lfw(shared_data, tiny_btnet):
    rows = btnet.evaluate_pairs(tiny_btnet, shared_data / "lfw" / "pairs.txt",
                                settings="S&7,14&14", max_pairs=40, n_folds=2)
    assert [(r.r1, r.r2) for r in rows] == [(56, 7), (14, 14)]
    assert all(0.0 <= r.accuracy_mean <= 1.0 for r in rows) and rows[0].dataset


def test_train_then_load(tmp_path):
    config = {
        "recipe": "trunk",
        "model": {"arch": "iresnet18", "input_size": 28, "width": 8, "embedding_size": 16},
        "data": {"train": "builtin:ids=4,per_id=2,seed=0", "num_workers": 0},
        "train": {"max_steps": 1, "batch_size": 4, "num_threads": 1, "progress": False},
    }
    run = btnet.train(config, output_dir=tmp_path / "run")
    enc = btnet.load(tmp_path / "run")
    assert run.model_path.is_dir() and enc.canonical == 28 and enc.embedding_size == 16


def test_readme_from_python_uses_the_public_api():
    text = README.read_text()
    block = text.split("From Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    names = set(re.findall(r"btnet\.(\w+)\(", block))
    assert {"load", "encode", "create_model", "evaluate_pairs", "train"} <= names
    assert all(hasattr(btnet, n) for n in names)
    assert "MultiResolutionEncoder(" not in block  # it would drop the stored selector
