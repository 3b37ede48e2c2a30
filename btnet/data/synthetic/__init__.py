"""Built-in faces: a procedural face generator that makes btnet run with no data at all.

Faces are aligned like ArcFace crops at the requested size ``S`` (drawn at ``max(S, 112)`` then
area-resized). Everything is a pure function of ``(seed, global identity index, image index)``;
identities ``identity_offset + i`` make train and test sets disjoint. Only numpy and Pillow are
used. By responsibility:

* :mod:`~btnet.data.synthetic.identity`: who a face is (coarse family attributes, fine detail);
* :mod:`~btnet.data.synthetic.drawing`: its neutral layer and expression, anti-aliased;
* :mod:`~btnet.data.synthetic.render`: one image under per-image nuisance;
* :mod:`~btnet.data.synthetic.dataset`: :class:`SyntheticFaces`, indexing and caches;
* :mod:`~btnet.data.synthetic.specs`: ``builtin[:...]`` specs;
* :mod:`~btnet.data.synthetic.eval_sets`: built-in verification pairs and open-set protocol.

Exporters for any dataset live in :mod:`btnet.data.export` (re-exported here).
"""

from __future__ import annotations

from btnet.data.base import DatasetImages
from btnet.data.export import export_bin, export_folder, export_rec
from btnet.data.synthetic.dataset import SyntheticFaces
from btnet.data.synthetic.eval_sets import builtin_openset, builtin_pairs
from btnet.data.synthetic.specs import (
    BUILTIN_TEST_OFFSET,
    is_builtin_spec,
    open_builtin,
    parse_builtin_spec,
)

# What cached pipeline stages on built-in faces are keyed by (btnet.pipeline.sources): change
# it whenever generated data change (any pixel, label, pair or protocol of a given spec and
# seed), and never otherwise, so that moving or tidying code retrains nothing.
# tests/data/test_synthetic.py pins image and pair hashes of this version and fails when they
# move. The first declared value is the digest of the old single-module generator's source,
# which stage keys used until then, so caches made before the split stay valid.
GENERATOR_VERSION = "f7a9e48cbf26"

__all__ = [
    "BUILTIN_TEST_OFFSET",
    "GENERATOR_VERSION",
    "DatasetImages",
    "SyntheticFaces",
    "builtin_openset",
    "builtin_pairs",
    "export_bin",
    "export_folder",
    "export_rec",
    "is_builtin_spec",
    "open_builtin",
    "parse_builtin_spec",
]
