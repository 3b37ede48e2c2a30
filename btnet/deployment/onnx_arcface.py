"""Export a backbone the way insightface's arcface_torch ``torch2onnx.py`` does.

Why a second exporter beside :func:`btnet.deployment.onnx_export.export_onnx`: that one writes
btnet's own deployment folder (one graph per path plus a manifest). Tools built for insightface
(its ``model_zoo``, face-search services, other people's pipelines) expect instead the single
graph arcface_torch writes, and the ONNX importer (:mod:`btnet.io.onnx_import`) is tested on
exactly that graph. The steps follow ``convert_onnx`` in arcface_torch:

* one random image of the canonical size, normalised ``(x / 255 - 0.5) / 0.5``, as the example;
* ``torch.onnx.export(net, img, path, input_names=["data"], keep_initializers_as_inputs=False,
  opset_version=11)`` in eval mode (which folds each BatchNorm after a convolution into it);
* the batch dimension of the input renamed to the symbolic ``"None"``, so any batch size runs.

arcface_torch calls the TorchScript exporter (PyTorch's default then); PyTorch 2.9+ defaults to
the ``torch.export``-based one, so ``dynamo=False`` is passed to keep the same graph.
``simplify=True`` runs onnx-simplifier as ``--simplify`` does, where that package is installed.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from btnet.io.atomic import atomic_write_with

ARCFACE_INPUT_NAME = "data"
ARCFACE_OPSET = 11


def export_arcface_onnx(backbone: torch.nn.Module, path: str | Path, *, opset: int = ARCFACE_OPSET,
                        simplify: bool = False, seed: int = 0) -> Path:
    """Write ``backbone`` (a btnet IResNet or any arcface_torch-layout module) to ``path``."""
    import onnx

    size = int(getattr(backbone, "input_size", 112))
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, size=(size, size, 3), dtype=np.int32).astype(np.float64)
    img = (img / 255.0 - 0.5) / 0.5
    x = torch.from_numpy(img.transpose(2, 0, 1).copy()).unsqueeze(0).float()
    was_training = backbone.training
    backbone.eval()
    path = Path(path)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(backbone, x, str(tmp), input_names=[ARCFACE_INPUT_NAME],
                              keep_initializers_as_inputs=False, verbose=False,
                              opset_version=opset, dynamo=False)
        model = onnx.load(str(tmp))
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "None"
        if simplify:
            try:
                from onnxsim import simplify as onnxsim_simplify
            except ImportError as exc:
                raise ImportError("simplify=True needs onnx-simplifier (pip install onnxsim)") \
                    from exc
            model, ok = onnxsim_simplify(model)
            if not ok:
                raise RuntimeError("onnx-simplifier could not validate the simplified graph")
        onnx.save(model, str(tmp))

    try:
        atomic_write_with(path, write)
    finally:
        backbone.train(was_training)
    return path
