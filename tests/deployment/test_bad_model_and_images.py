"""Damaged models and unusable images: a clear error naming the file, never NaN output."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from btnet.cli.main import main
from btnet.data.images import write_image


def _copy(model_dir, tmp_path):
    dst = tmp_path / "m"
    shutil.copytree(model_dir, dst)
    return dst


@pytest.mark.parametrize("doc, message", [
    ([1, 2], "expected a JSON object describing a stored btnet model, got a JSON list"),
    ("drop-backbone", "lacks the key 'backbone'"),
])
def test_damaged_model_json_is_named(tiny_model_dir, face_folder, tmp_path, capsys, doc, message):
    m = _copy(tiny_model_dir, tmp_path)
    if doc == "drop-backbone":
        doc = json.loads((m / "model.json").read_text())
        doc.pop("backbone")
    (m / "model.json").write_text(json.dumps(doc))
    assert main(["embed", str(m), str(face_folder), "-o", str(tmp_path / "e.npy"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "model.json" in err and message in err and "Traceback" not in err


def test_nan_weights_are_refused_and_nothing_written(tiny_model_dir, face_folder, tmp_path, capsys):
    m = _copy(tiny_model_dir, tmp_path)
    state = load_file(str(m / "trunk.safetensors"))
    key = next(k for k in sorted(state) if k.endswith("conv1.weight"))
    state[key].view(-1)[0] = float("nan")
    save_file(state, str(m / "trunk.safetensors"))
    out = tmp_path / "e.npy"
    assert main(["embed", str(m), str(face_folder), "-o", str(out), "-q"]) == 2
    assert f"tensor {key!r} holds NaN" in capsys.readouterr().err
    assert not out.exists()


def test_nan_embeddings_from_any_encoder_are_an_error(tiny_model_dir, face_folder):
    from btnet.deployment.embed import NonFiniteEmbeddingError, embed_files
    from btnet.inference import load_encoder

    encoder = load_encoder(tiny_model_dir)
    real = encoder.encode

    def poisoned(images, **kw):
        res = real(images, **kw)
        res.embeddings[1] = np.nan  # e.g. an ONNX graph with damaged weights
        return res

    encoder.encode = poisoned
    files = sorted(face_folder.rglob("*.png"))
    with pytest.raises(NonFiniteEmbeddingError, match=str(files[1])):
        embed_files(encoder, files)


def test_a_one_pixel_image_is_refused_with_the_minimum(tiny_model_dir, face_folder, tmp_path,
                                                       capsys):
    tiny = tmp_path / "tiny.png"
    write_image(tiny, np.zeros((1, 1, 3), np.uint8))
    out = tmp_path / "e.npy"
    assert main(["embed", str(tiny_model_dir), str(tiny), "-o", str(out), "-q"]) == 2
    assert "1x1 image is too small to hold a face (the minimum is 4 px" in capsys.readouterr().err
    assert main(["embed", str(tiny_model_dir), str(tiny), str(face_folder / "id_0"), "-o",
                 str(out), "-q", "--skip-errors"]) == 1
    assert np.load(out).shape == (3, 32)  # the three real faces only
