"""Encoders: turn face images of any size into embeddings in one shared space.

Every recogniser in btnet is used through an :class:`Encoder`, which owns its *input
convention*: a BTNet routes each face to the path its size selects and feeds it at that path's
native resolution (no interpolation up to the canonical size), an up-sampling baseline (phi_hr,
phi_mr) resizes every face to the canonical size, and phi_mm picks its per-resolution model.
Evaluation and deployment only call :meth:`Encoder.encode`.

Images are processed in chunks, so a benchmark's images are decoded once and never all held
in memory; inside a chunk, faces are grouped by path and run in batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from btnet.data.resolution import fit_to
from btnet.data.transforms import to_tensor
from btnet.models import Backbone, BranchSelector, BTNet

CHUNK = 1024


@dataclass
class EncodeResult:
    """L2-normalised embeddings (N x D, float32) and the path (input resolution) of each face.

    ``norms`` are the L2 norms of the raw (flip-fused) network outputs before normalisation:
    insightface's template convention weights each face by its feature norm.
    """

    embeddings: np.ndarray
    paths: list[int]
    norms: np.ndarray | None = None


@runtime_checkable
class Encoder(Protocol):
    name: str
    canonical: int
    shared_space: bool  # False where different sizes land in unrelated spaces (phi_mm)

    def encode(
        self,
        images: Sequence[np.ndarray],
        batch_size: int = 64,
        flip: bool = False,
        progress: bool = False,
    ) -> EncodeResult: ...


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class _RoutedEncoder:
    """Shared machinery: route -> resize -> batch -> (flip-fuse) -> normalise."""

    name: str
    canonical: int
    shared_space: bool = True

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)

    def route(self, height: int, width: int) -> int:
        raise NotImplementedError

    def _module_for(self, path: int) -> nn.Module:
        raise NotImplementedError

    @torch.inference_mode()
    def _embed(self, path: int, batch: list[np.ndarray], flip: bool) -> np.ndarray:
        x = to_tensor(batch).to(self.device)
        module = self._module_for(path)
        emb = module(x)
        if flip:
            emb = emb + module(torch.flip(x, dims=[3]))
        return emb.float().cpu().numpy()

    def encode(
        self,
        images: Sequence[np.ndarray],
        batch_size: int = 64,
        flip: bool = False,
        progress: bool = False,
    ) -> EncodeResult:
        n = len(images)
        out: np.ndarray | None = None
        paths = [0] * n
        bar = tqdm(total=n, desc=f"embed {self.name}", unit="img", disable=not progress, leave=False)
        for start in range(0, n, CHUNK):
            groups: dict[int, list[tuple[int, np.ndarray]]] = {}
            for i in range(start, min(n, start + CHUNK)):
                img = images[i]
                path = self.route(*img.shape[:2])
                paths[i] = path
                groups.setdefault(path, []).append((i, fit_to(img, path)))
            for path, items in groups.items():
                for b in range(0, len(items), batch_size):
                    part = items[b : b + batch_size]
                    emb = self._embed(path, [im for _, im in part], flip)
                    if out is None:
                        out = np.zeros((n, emb.shape[1]), dtype=np.float32)
                    out[[i for i, _ in part]] = emb
                    bar.update(len(part))
        bar.close()
        if out is None:
            out = np.zeros((0, self.embedding_size), dtype=np.float32)
        return EncodeResult(_l2n(out).astype(np.float32), paths,
                            np.linalg.norm(out, axis=1).astype(np.float32))


class MultiResolutionEncoder(_RoutedEncoder):
    """A BTNet behind its branch-selection policy: any face size in, one shared space out."""

    def __init__(
        self,
        model: BTNet,
        selector: BranchSelector | None = None,
        *,
        name: str = "BTNet",
        device: str | torch.device = "cpu",
    ):
        super().__init__(device)
        self.model = model.eval().to(self.device)
        self.canonical = model.canonical
        self.embedding_size = model.embedding_size
        self.selector = selector or BranchSelector.from_rule(model.input_sizes, "min", "near")
        missing = set(self.selector.paths) - set(model.input_sizes)
        if missing:
            raise ValueError(f"selector routes to {sorted(missing)}, which this BTNet lacks")
        self.name = name

    @property
    def paths(self) -> tuple[int, ...]:
        """Input resolutions served (branches and the canonical size)."""
        return self.model.input_sizes

    def with_selector(self, selector: BranchSelector) -> MultiResolutionEncoder:
        """The same model behind another policy (Table 2 compares nine of them)."""
        return MultiResolutionEncoder(self.model, selector, name=self.name, device=self.device)

    def route(self, height: int, width: int) -> int:
        return self.selector.select(height, width)

    def _module_for(self, path: int) -> nn.Module:
        return self.model.path(path)


class UpsamplingEncoder(_RoutedEncoder):
    """A plain recogniser (phi_hr, phi_mr): every face is resized to the canonical size."""

    def __init__(self, backbone: Backbone, *, name: str = "model", device: str | torch.device = "cpu"):
        super().__init__(device)
        self.backbone = backbone.eval().to(self.device)
        self.canonical = backbone.input_size
        self.embedding_size = backbone.embedding_size
        self.name = name

    def route(self, height: int, width: int) -> int:
        return self.canonical

    def _module_for(self, path: int) -> nn.Module:
        return self.backbone


class PerResolutionEncoder(_RoutedEncoder):
    """phi_mm: one independently trained model per input resolution, chosen by face size.

    The models do not share an embedding space, so cross-resolution comparisons are undefined
    (``shared_space`` is False); evaluation reports only same-resolution settings for it.
    """

    shared_space = False

    def __init__(
        self,
        models: dict[int, nn.Module],
        selector: BranchSelector | None = None,
        *,
        embedding_size: int,
        name: str = "phi_mm",
        device: str | torch.device = "cpu",
    ):
        super().__init__(device)
        self.models = {int(r): m.eval().to(self.device) for r, m in models.items()}
        self.canonical = max(self.models)
        self.embedding_size = embedding_size
        self.selector = selector or BranchSelector.from_rule(sorted(self.models), "min", "near")
        self.name = name

    def route(self, height: int, width: int) -> int:
        return self.selector.select(height, width)

    def _module_for(self, path: int) -> nn.Module:
        return self.models[path]
