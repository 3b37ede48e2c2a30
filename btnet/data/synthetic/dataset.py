"""Built-in faces as a :class:`~btnet.data.base.FaceDataset`: indexing, seeds and caches."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from PIL import Image

from btnet.data.synthetic.drawing import Grid, render_identity_layer
from btnet.data.synthetic.identity import REF, IdentityParams, make_identity
from btnet.data.synthetic.render import image_draws, noise_bank, render_face


class SyntheticFaces:
    """Procedural face identities as a :class:`~btnet.data.base.FaceDataset`.

    Sample ``i`` is image ``i % images_per_identity`` of identity ``i // images_per_identity``;
    its label is the local identity index. ``variation`` scales every per-image nuisance
    (1: the level of real aligned faces, see
    :data:`btnet.data.synthetic.render.NUISANCE_AT_VARIATION_1`; 0: the identity's
    neutral, frontal, evenly lit face every time). ``families`` and
    ``coarse_jitter`` set how ambiguous coarse appearance is across identities. Identity
    layers are cached (LRU, ``cache_size`` identities) and finished images are kept up to
    ``image_cache_mb`` (training re-reads every image once per epoch, and rendering costs more
    than a CPU training step spends on it); neither cache is pickled, so the object is cheap to
    send to DataLoader workers.
    """

    def __init__(
        self,
        num_identities: int,
        images_per_identity: int,
        size: int = 112,
        seed: int = 0,
        identity_offset: int = 0,
        variation: float = 1.0,
        families: int = 8,
        coarse_jitter: float = 0.12,
        cache_size: int = 1024,
        image_cache_mb: float = 512.0,
        name: str | None = None,
    ):
        if num_identities < 1 or images_per_identity < 1:
            raise ValueError("need at least one identity and one image per identity")
        if size < 4:
            raise ValueError(f"face size must be >= 4, got {size}")
        if families < 1:
            raise ValueError("families must be >= 1")
        if not 0.0 <= coarse_jitter <= 1.0:
            raise ValueError("coarse_jitter must be in [0, 1]")
        self.num_identities = int(num_identities)
        self.images_per_identity = int(images_per_identity)
        self.size = int(size)
        self.seed = int(seed)
        self.identity_offset = int(identity_offset)
        self.variation = float(variation)
        self.families = int(families)
        self.coarse_jitter = float(coarse_jitter)
        self.cache_size = int(cache_size)
        self.image_cache_bytes = int(image_cache_mb * 2**20)
        self.render_size = max(self.size, int(REF))
        self.name = name or (
            f"builtin(ids={num_identities},per_id={images_per_identity},size={size},"
            f"seed={seed},offset={identity_offset})"
        )
        self.num_classes = self.num_identities
        self.labels = np.repeat(
            np.arange(self.num_identities, dtype=np.int64), self.images_per_identity
        )
        self._init_cache()

    def _init_cache(self) -> None:
        self._grid: Grid | None = None
        self._noise: np.ndarray | None = None
        self._cache: OrderedDict[int, tuple[IdentityParams, np.ndarray]] = OrderedDict()
        self._images: dict[int, np.ndarray] = {}
        self._image_bytes = 0

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_grid", "_noise", "_cache", "_images", "_image_bytes"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_cache()

    def __len__(self) -> int:
        return self.num_identities * self.images_per_identity

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        n = len(self)
        index = int(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"{self.name}: index {index} out of range [0, {n})")
        label, k = divmod(index, self.images_per_identity)
        image = self._images.get(index)
        if image is None:
            image = self.render(label, k)
            if self._image_bytes + image.nbytes <= self.image_cache_bytes:
                image.setflags(write=False)  # shared by every later read of this index
                self._images[index] = image
                self._image_bytes += image.nbytes
        return image, label

    def identity(self, label: int) -> IdentityParams:
        """Parameters of local identity ``label``."""
        return self._identity(label)[0]

    def _identity(self, label: int) -> tuple[IdentityParams, np.ndarray]:
        if not 0 <= label < self.num_identities:
            raise IndexError(f"{self.name}: identity {label} out of range")
        hit = self._cache.get(label)
        if hit is not None:
            self._cache.move_to_end(label)
            return hit
        if self._grid is None:
            self._grid = Grid(self.size)
        params = make_identity(
            self.seed, self.identity_offset + label, self.families, self.coarse_jitter
        )
        # Draw at >= 112 px so fine marks are resolved, then area-resize: the layer at S keeps
        # exactly the detail an S-pixel camera would see, without aliasing.
        big = Grid(self.render_size) if self.render_size != self.size else self._grid
        layer = render_identity_layer(params, big)
        if big is not self._grid:
            im = Image.fromarray(layer, "RGBA").resize((self.size, self.size), Image.Resampling.BOX)
            layer = np.asarray(im).copy()
        entry = (params, layer)
        self._cache[label] = entry
        while len(self._cache) > max(1, self.cache_size):
            self._cache.popitem(last=False)
        return entry

    def _noise_bank(self) -> np.ndarray:
        if self._noise is None:
            self._noise = noise_bank(self.seed, self.size)
        return self._noise

    def render(self, label: int, image_index: int) -> np.ndarray:
        """Image ``image_index`` of local identity ``label`` (any non-negative index works)."""
        params, base = self._identity(label)
        assert self._grid is not None
        u = image_draws(self.seed, self.identity_offset + label, image_index)
        return render_face(params, base, self._grid, u, self.variation, self._noise_bank)

