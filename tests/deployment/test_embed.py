"""``btnet embed``: any size in, one shared space out, with the chosen path reported."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from btnet.data.images import CorruptImageError, read_image
from btnet.data.resolution import downsample
from btnet.deployment.embed import collect_images, embed_files, write_embeddings
from btnet.inference import load_encoder


def test_collect_images_from_files_folders_and_lists(face_folder, tmp_path):
    files = collect_images([face_folder])
    assert len(files) == 12 and files == sorted(files)
    lst = tmp_path / "some.txt"
    lst.write_text(f"# probes\n{files[0]}\n\nfaces/id_1/0.png\n")
    assert collect_images([lst, files[3]]) == [files[0], tmp_path / "faces/id_1/0.png", files[3]]
    with pytest.raises(FileNotFoundError, match="no such image"):
        collect_images([tmp_path / "nope.png"])


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_embed_routes_by_size_and_writes_index(
    backend, tiny_model_dir, tiny_onnx_dir, face_folder, tmp_path
):
    enc = load_encoder(tiny_model_dir if backend == "torch" else tiny_onnx_dir)
    assert enc.backend == backend and enc.embedding_size == 32
    files = collect_images([face_folder])
    res = embed_files(enc, files, batch_size=3)
    sizes = [read_image(f).shape[0] for f in files]
    expected = {8: 7, 20: 14, 56: 56}  # min/near routing of 7/14/28/56
    assert res.paths == [expected[s] for s in sizes]
    assert np.allclose(np.linalg.norm(res.embeddings, axis=1), 1.0, atol=1e-5)
    out, index = write_embeddings(tmp_path / "e.npy", res, fingerprint=enc.fingerprint)
    assert np.array_equal(np.load(out), res.embeddings)
    rows = list(csv.DictReader(index.read_text().splitlines()))
    assert [int(r["path"]) for r in rows] == res.paths
    assert {r["branch"] for r in rows} == {"branch_r7", "branch_r14", "trunk"}
    assert [int(r["height"]) for r in rows] == sizes
    out, index = write_embeddings(tmp_path / "e.safetensors", res, index_format="json",
                                  fingerprint=enc.fingerprint)
    t = load_file(str(out))
    assert np.array_equal(t["embeddings"], res.embeddings) and t["path"].tolist() == res.paths
    doc = json.loads(index.read_text())
    assert doc["fingerprint"] == enc.fingerprint and len(doc["rows"]) == 12


def test_torch_and_onnx_fingerprints_agree(tiny_model_dir, tiny_onnx_dir, other_model_dir):
    a, b = load_encoder(tiny_model_dir), load_encoder(tiny_onnx_dir)
    assert a.fingerprint == b.fingerprint != load_encoder(other_model_dir).fingerprint


def test_same_face_at_any_size_lands_in_one_space(tiny_model_dir, synthetic_faces):
    """Different sizes of one face go through different paths but stay comparable vectors."""
    enc = load_encoder(tiny_model_dir)
    face = synthetic_faces[0][0]
    images = [downsample(face, s) for s in (6, 12, 25, 40)] + [face]
    res = enc.encode(images)
    assert res.paths == [7, 14, 28, 28, 56]
    assert res.embeddings.shape == (5, 32) and np.isfinite(res.embeddings).all()


def test_unreadable_images(tiny_model_dir, face_folder, tmp_path, capsys):
    from btnet.cli.main import main

    bad = face_folder / "id_0" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    enc = load_encoder(tiny_model_dir)
    with pytest.raises(CorruptImageError, match="broken.jpg"):
        embed_files(enc, collect_images([face_folder]))
    res = embed_files(enc, collect_images([face_folder]), skip_errors=True)
    assert len(res.files) == 12 and res.failed[0][0].endswith("broken.jpg")
    out = tmp_path / "o.npy"
    assert main(["embed", str(tiny_model_dir), str(face_folder), "-o", str(out), "-q"]) == 2
    assert "broken.jpg" in capsys.readouterr().err and not out.exists()
    code = main(["embed", str(tiny_model_dir), str(face_folder), "-o", str(out), "-q",
                 "--skip-errors", "--selector", "min/floor"])
    assert code == 1 and np.load(out).shape == (12, 32)  # exit 1: done, but something skipped
    rows = list(csv.DictReader((tmp_path / "o.index.csv").read_text().splitlines()))
    assert rows[-1]["error"] and rows[-1]["file"].endswith("broken.jpg")
    assert {r["path"] for r in rows[:-1]} == {"7", "14", "56"}  # floor: 20 px -> 14
    assert main(["embed", str(tmp_path / "no_model"), str(face_folder), "-o", str(out)]) == 2


@pytest.mark.shared_data
def test_real_lfw_faces(shared_data, tiny_model_dir, tiny_onnx_dir):
    files = sorted((shared_data / "lfw" / "images" / "Aaron_Eckhart").glob("*.jpg"))[:1]
    files += sorted((shared_data / "lfw" / "images" / "AJ_Cook").glob("*.jpg"))[:1]
    img = read_image(files[0])
    assert img.shape == (112, 112, 3)
    images = [img, downsample(img, 24), downsample(img, 9), read_image(files[1])]
    a = load_encoder(tiny_model_dir).encode(images, flip=True)
    b = load_encoder(tiny_onnx_dir).encode(images, flip=True)
    assert a.paths == b.paths == [56, 28, 7, 56]
    assert np.abs(a.embeddings - b.embeddings).max() <= 1e-4
