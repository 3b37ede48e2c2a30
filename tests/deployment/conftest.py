"""Fixtures for the deployment tests: a tiny stored BTNet, its ONNX export, built-in faces."""

from __future__ import annotations

from pathlib import Path

import pytest
from deployhelpers import make_tiny_btnet

from btnet.data.images import write_image
from btnet.io.model_store import save_btnet


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_btnet(make_tiny_btnet(0), folder, meta={"name": "tiny"})
    return folder


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory) -> Path:
    """Same architecture, other weights: a different embedding space."""
    folder = tmp_path_factory.mktemp("models") / "other"
    save_btnet(make_tiny_btnet(1), folder)
    return folder


@pytest.fixture(scope="session")
def tiny_onnx_dir(tiny_model_dir, tmp_path_factory) -> Path:
    from btnet.deployment.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "tiny"
    export_onnx(tiny_model_dir, out)
    return out


@pytest.fixture(scope="session")
def synthetic_faces():
    """Built-in faces: 4 identities x 3 images at 56 px."""
    from btnet.data.synthetic import SyntheticFaces

    ds = SyntheticFaces(4, 3, 56, seed=3)
    return [ds[i][0] for i in range(len(ds))], [int(ds[i][1]) for i in range(len(ds))]


@pytest.fixture()
def face_folder(tmp_path, synthetic_faces) -> Path:
    """id_<label>/<k>.png at mixed sizes (8, 20, 56 px) so every path gets used."""
    from btnet.data.resolution import downsample

    images, labels = synthetic_faces
    root = tmp_path / "faces"
    sizes = (8, 20, 56)
    count: dict[int, int] = {}
    for img, lab in zip(images, labels):
        k = count.get(lab, 0)
        count[lab] = k + 1
        write_image(root / f"id_{lab}" / f"{k}.png", downsample(img, sizes[k % 3]))
    return root
