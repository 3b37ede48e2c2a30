"""ONNX export: one graph per path, same embeddings as PyTorch, an encoder without torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from deployhelpers import PATHS

from btnet.data.resolution import downsample, fit_to, upsample
from btnet.data.transforms import to_tensor
from btnet.inference import MultiResolutionEncoder, OnnxEncoder, normalise_batch
from btnet.inference.onnx_backend import read_manifest
from btnet.io.model_store import load_model
from btnet.models.selection import all_strategies


def test_manifest_describes_paths_and_policy(tiny_onnx_dir, tiny_model_dir):
    from btnet.io.fingerprint import model_fingerprint

    m = read_manifest(tiny_onnx_dir)
    assert [e["resolution"] for e in m["paths"]] == list(PATHS)
    assert m["embedding_size"] == 32 and m["canonical"] == 56
    assert m["selector"]["paths"] == list(PATHS) and len(m["selector"]["thresholds"]) == 3
    assert m["normalisation"]["scale"] == pytest.approx(1 / 127.5)
    assert m["fingerprint"] == model_fingerprint(tiny_model_dir)
    for e in m["paths"]:
        graph = onnx.load(str(tiny_onnx_dir / e["file"]))
        onnx.checker.check_model(graph)
        dims = graph.graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch"  # dynamic batch dimension
        assert [d.dim_value for d in dims[1:]] == [3, e["resolution"], e["resolution"]]


@pytest.mark.parametrize("r", PATHS)
def test_each_path_matches_pytorch(tiny_onnx_dir, tiny_model_dir, r):
    model = load_model(tiny_model_dir).model
    module = model.path(r).eval()
    enc = OnnxEncoder(tiny_onnx_dir, threads=1)
    for batch in (1, 5):  # the batch dimension is dynamic
        x = torch.rand(batch, 3, r, r, generator=torch.Generator().manual_seed(r + batch)) * 2 - 1
        with torch.inference_mode():
            ref = module(x).numpy()
        got = enc.runner.run(r, x.numpy())
        assert got.shape == (batch, 32)
        assert np.abs(got - ref).max() <= 1e-4


def test_onnx_encoder_equals_torch_encoder(tiny_onnx_dir, tiny_model_dir, synthetic_faces):
    stored = load_model(tiny_model_dir)
    torch_enc = MultiResolutionEncoder(stored.model, stored.selector)
    onnx_enc = OnnxEncoder(tiny_onnx_dir, threads=1)
    faces, _ = synthetic_faces
    rng = np.random.default_rng(0)
    images = [fit_to(f, int(s)) for f, s in zip(faces, rng.integers(5, 80, len(faces)))]
    images.append(faces[0][:40, :30])  # non-square
    a = torch_enc.encode(images, batch_size=4, flip=True)
    b = onnx_enc.encode(images, batch_size=4, flip=True)
    assert a.paths == b.paths
    assert len(set(b.paths)) >= 3
    assert np.abs(a.embeddings - b.embeddings).max() <= 1e-4
    assert np.allclose(np.linalg.norm(b.embeddings, axis=1), 1.0, atol=1e-5)


def test_routing_resize_and_normalisation_match_the_library(tiny_onnx_dir):
    for sel in all_strategies(PATHS).values():  # the policy round-trips through JSON
        enc = OnnxEncoder(tiny_onnx_dir, selector=json.loads(json.dumps(sel.to_dict())))
        for h in range(1, 90, 3):
            for w in (1, h, h + 7, 2 * h):
                assert enc.route(h, w) == sel.select(h, w)
    rng = np.random.default_rng(1)
    for shape in [(10, 10), (30, 20), (80, 90), (14, 14), (60, 20)]:
        img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        for size in (7, 14, 28, 56):
            out = fit_to(img, size)
            assert out.shape == (size, size, 3) and out.dtype == np.uint8
            h, w = shape
            if h >= size and w >= size:
                assert np.array_equal(out, downsample(img, size))  # area, never bicubic down
            elif h <= size and w <= size:
                assert np.array_equal(out, upsample(img, size))
            else:  # shrink the long side first, then enlarge
                assert np.array_equal(out, upsample(downsample(img, (min(h, size), min(w, size))), size))
    imgs = [rng.integers(0, 256, (7, 7, 3), dtype=np.uint8) for _ in range(3)]
    x, t = normalise_batch(imgs), to_tensor(imgs)
    assert np.array_equal(x, t.numpy())  # bit for bit, and in the same memory layout:
    assert torch.from_numpy(x).stride() == t.stride()  # PyTorch picks kernels by layout


def test_selector_override_and_bad_export(tiny_onnx_dir, tmp_path):
    from btnet.models import BranchSelector

    enc = OnnxEncoder(tiny_onnx_dir, selector=BranchSelector.from_rule(PATHS, "min", "floor"))
    assert enc.route(27, 27) == 14 and enc.route(28, 40) == 28
    with pytest.raises(ValueError, match="lacks"):
        OnnxEncoder(tiny_onnx_dir, selector=BranchSelector.from_rule((7, 112), "min", "near"))
    with pytest.raises(FileNotFoundError, match="not a btnet ONNX export"):
        OnnxEncoder(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_onnx_dir, copy)
    data = bytearray((copy / "path_r14.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "path_r14.onnx").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="path_r14.onnx: checksum"):
        OnnxEncoder(copy)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        OnnxEncoder(tmp_path)


def test_onnx_encoder_runs_without_torch(tiny_onnx_dir):
    """Block ``import torch`` entirely: embedding must still work from the export folder."""
    code = f"""
import sys
sys.modules["torch"] = None
import numpy as np
import btnet
enc = btnet.load({str(tiny_onnx_dir)!r})  # the public API, shared trunk weights
imgs = [np.full((s, s, 3), 90, np.uint8) for s in (6, 15, 40, 70)]
res = btnet.encode(enc, imgs)
assert enc.runner.shared is not None and enc.backend == "onnx"
assert res.paths == [7, 14, 28, 56], res.paths
assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
print("OK", res.embeddings.shape)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "OK (4, 32)" in out.stdout


def test_cli_export_of_a_plain_backbone(tmp_path, capsys):
    """A backbone (phi_hr-like) exports as a single trunk path; the CLI reports the check."""
    from btnet.cli.main import main
    from btnet.io.model_store import save_backbone
    from btnet.models import build_backbone

    torch.manual_seed(0)
    save_backbone(build_backbone("iresnet18", input_size=28, width=8, embedding_size=16), tmp_path / "m")
    assert main(["export", "onnx", str(tmp_path / "m"), str(tmp_path / "x")]) == 0
    assert "trunk.onnx" in capsys.readouterr().out
    data = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert [e["resolution"] for e in data["paths"]] == [28]
    assert all(e["max_abs_diff_vs_torch"] <= 1e-4 for e in data["paths"])
    enc = OnnxEncoder(tmp_path / "x")
    assert enc.encode([np.zeros((9, 12, 3), np.uint8)]).paths == [28]  # everything goes to S
    assert main(["export", "onnx", str(tmp_path / "missing"), str(tmp_path / "y")]) == 2


def test_trunk_weights_are_stored_once_and_shared(tiny_onnx_dir, tiny_model_dir):
    """Every path graph runs the trunk's tail: its weights live once, in weights.bin."""
    import onnxruntime as ort

    trunk = load_model(tiny_model_dir).model.trunk
    trunk_bytes = sum(v.numel() * v.element_size() for v in trunk.state_dict().values())
    files = [p for p in tiny_onnx_dir.iterdir() if p.suffix in (".onnx", ".bin")]
    assert (tiny_onnx_dir / "weights.bin").is_file()
    assert sum(p.stat().st_size for p in files) < 1.5 * trunk_bytes  # was one trunk per path
    m = read_manifest(tiny_onnx_dir)
    keys = [set(e["shared_initializers"].values()) for e in m["paths"]]
    assert all(sum(k in ks for ks in keys) >= 2 for k in m["shared_weights"]["tensors"])
    shared = OnnxEncoder(tiny_onnx_dir, threads=1)
    own = OnnxEncoder(tiny_onnx_dir, threads=1, share_weights=False)
    assert shared.runner.shared is not None and own.runner.shared is None
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 14, 14)).astype(np.float32)
    plain = ort.InferenceSession(str(tiny_onnx_dir / "path_r14.onnx"),
                                 providers=["CPUExecutionProvider"])  # no btnet: external data
    ref = plain.run(None, {"input": x})[0]
    assert np.abs(shared.runner.run(14, x) - ref).max() <= 1e-5
    assert np.abs(own.runner.run(14, x) - ref).max() <= 1e-5
