"""Built-in faces: determinism, identity structure, fine detail lost at low resolution, specs,
protocols and exports."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from btnet.data.base import FaceDataset, OpenSetProtocol, PairSet
from btnet.data.resolution import downsample
from btnet.data.synthetic import (
    BUILTIN_TEST_OFFSET,
    SyntheticFaces,
    builtin_openset,
    builtin_pairs,
    export_folder,
    is_builtin_spec,
    open_builtin,
    parse_builtin_spec,
)


def _face_vectors(images: np.ndarray, r: int) -> np.ndarray:
    """Centred, unit-norm raw pixels of the inner face after area down-sampling to r."""
    rows, cols = slice(int(r * 0.25), int(r * 0.9)), slice(int(r * 0.2), int(r * 0.8))
    x = np.stack([downsample(im, r)[rows, cols] for im in images]).reshape(len(images), -1)
    x = x.astype(np.float64)
    x -= x.mean(1, keepdims=True)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-9)


def _rank1(images: np.ndarray, labels: np.ndarray, per_id: int, r: int) -> float:
    """Nearest-neighbour identification: first image of each identity is the gallery."""
    f = _face_vectors(images, r)
    gallery = np.arange(len(f)) % per_id == 0
    sim = f[~gallery] @ f[gallery].T
    return float((labels[gallery][sim.argmax(1)] == labels[~gallery]).mean())


def test_protocol_shapes_and_labels():
    ds = SyntheticFaces(5, 3, size=56, seed=2)
    assert isinstance(ds, FaceDataset)
    assert len(ds) == 15 and ds.num_classes == 5
    np.testing.assert_array_equal(ds.labels, np.repeat(np.arange(5), 3))
    img, label = ds[7]
    assert img.shape == (56, 56, 3) and img.dtype == np.uint8 and label == 2
    assert ds[-1][1] == 4
    with pytest.raises(IndexError):
        ds[15]
    assert SyntheticFaces(1, 1, size=112)[0][0].shape == (112, 112, 3)
    assert SyntheticFaces(1, 1, size=32)[0][0].shape == (32, 32, 3)


def test_deterministic_by_seed_and_picklable():
    a, b = SyntheticFaces(3, 4, size=56, seed=5), SyntheticFaces(3, 4, size=56, seed=5)
    order = [11, 0, 5, 5, 3]
    for i in order:
        np.testing.assert_array_equal(a[i][0], b[i][0])
    c = pickle.loads(pickle.dumps(a))  # noqa: S301 - our own bytes (DataLoader workers)
    np.testing.assert_array_equal(c[4][0], a[4][0])
    other = SyntheticFaces(3, 4, size=56, seed=6)
    assert not np.array_equal(other[0][0], a[0][0])


def test_identity_offset_selects_global_identities():
    base = SyntheticFaces(6, 2, size=56, seed=1)
    shifted = SyntheticFaces(2, 2, size=56, seed=1, identity_offset=4)
    np.testing.assert_array_equal(shifted[0][0], base[8][0])  # identity 4, image 0
    test = SyntheticFaces(2, 2, size=56, seed=1, identity_offset=BUILTIN_TEST_OFFSET)
    assert not np.array_equal(test[0][0], base[0][0])


def test_identities_differ_and_images_of_one_identity_vary():
    ds = SyntheticFaces(4, 2, size=56, seed=0)
    firsts = [ds[2 * i][0].astype(int) for i in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(firsts[i] - firsts[j]).mean() > 5
    assert np.abs(ds[0][0].astype(int) - ds[1][0].astype(int)).mean() > 3
    p0, p1 = ds.identity(0), ds.identity(1)
    assert not np.array_equal(p0.freckles, p1.freckles)


def test_variation_zero_gives_the_neutral_face():
    ds = SyntheticFaces(2, 3, size=56, seed=0, variation=0.0)
    np.testing.assert_array_equal(ds[0][0], ds[2][0])


def test_same_identity_more_similar_than_different_at_full_resolution():
    per_id = 4
    ds = SyntheticFaces(24, per_id, size=56, seed=3)
    images = np.stack([ds[i][0] for i in range(len(ds))])
    f = _face_vectors(images, 56)
    sim = f @ f.T
    same = ds.labels[:, None] == ds.labels[None, :]
    off_diag = ~np.eye(len(f), dtype=bool)
    assert sim[same & off_diag].mean() > sim[~same].mean() + 0.1


def test_fine_identity_detail_is_lost_at_low_resolution():
    # Mild nuisance and one shared family (coarse looks alike), so identity lies mostly in the
    # fine detail; nearest neighbour on raw pixels should find it at 56 px, not at 7 px.
    per_id = 4
    ds = SyntheticFaces(40, per_id, size=56, seed=1, variation=0.12, families=1)
    images = np.stack([ds[i][0] for i in range(len(ds))])
    acc = {r: _rank1(images, ds.labels, per_id, r) for r in (56, 14, 7)}
    assert acc[56] > 0.8, acc
    assert acc[56] >= acc[14] >= acc[7] - 0.02, acc
    assert acc[56] - acc[7] > 0.08, acc


def test_specs():
    assert is_builtin_spec("builtin") and is_builtin_spec("builtin:test")
    assert not is_builtin_spec("builtins") and not is_builtin_spec(3)
    kw = parse_builtin_spec("builtin:ids=200,per_id=20,size=56,seed=3")
    assert (kw["num_identities"], kw["images_per_identity"], kw["size"], kw["seed"]) == (
        200, 20, 56, 3)
    assert kw["identity_offset"] == 0
    test = parse_builtin_spec("builtin:test,ids=7")
    assert test["identity_offset"] == BUILTIN_TEST_OFFSET and test["num_identities"] == 7
    ds = open_builtin("builtin:ids=3,per_id=2,size=48,variation=0.5,families=2,jitter=0.1")
    assert len(ds) == 6 and ds[0][0].shape == (48, 48, 3) and ds.families == 2
    assert len(open_builtin("builtin")) == 500 * 20
    for bad in ("builtin:valid", "builtin:ids=x", "builtin:colour=3", "faces"):
        with pytest.raises(ValueError):
            parse_builtin_spec(bad)


def test_pairs_are_balanced_folded_and_deterministic():
    pairs = builtin_pairs(num_identities=20, images_per_identity=4, num_pairs=200, size=32,
                          seed=4)
    assert isinstance(pairs, PairSet) and len(pairs) == 200
    labels = np.repeat(np.arange(20), 4)
    same = labels[pairs.left] == labels[pairs.right]
    np.testing.assert_array_equal(same, pairs.issame)
    assert (pairs.left != pairs.right).all()
    for f in range(10):
        fold = pairs.issame[f * 20 : (f + 1) * 20]
        assert fold.sum() == 10 and fold[:10].all()  # genuine first, like LFW
        ids = set(labels[pairs.left[f * 20 : (f + 1) * 20]])
        assert ids <= set(range(2 * f, 2 * f + 2))  # identity-disjoint folds
    again = builtin_pairs(num_identities=20, images_per_identity=4, num_pairs=200, size=32,
                          seed=4)
    np.testing.assert_array_equal(again.left, pairs.left)
    np.testing.assert_array_equal(again.images[3], pairs.images[3])
    assert pairs.images[0].shape == (32, 32, 3)


def test_openset_protocol():
    proto = builtin_openset(num_gallery=5, num_unmated=3, images_per_identity=4, size=32)
    assert isinstance(proto, OpenSetProtocol)
    assert len(proto.gallery) == 5 and len(proto.mated) == 15 and len(proto.unmated) == 12
    assert set(proto.mated_ids) == set(proto.gallery_ids)
    assert not set(proto.extra["unmated_ids"]) & set(proto.gallery_ids)
    assert proto.unmated[0].shape == (32, 32, 3)


def test_export_folder_round_trips(tmp_path):
    from btnet.data.folders import ImageFolderDataset

    ds = SyntheticFaces(3, 2, size=32, seed=0)
    root = export_folder(ds, tmp_path / "faces")
    back = ImageFolderDataset(root)
    assert len(back) == 6 and back.num_classes == 3
    np.testing.assert_array_equal(back[3][0], ds[3][0])  # PNG is lossless
    assert back[3][1] == 1


def test_export_rec_and_bin(tmp_path):
    from btnet.data.pair_sets import read_bin
    from btnet.data.recordio import RecordDataset
    from btnet.data.synthetic import export_bin, export_rec

    ds = SyntheticFaces(3, 2, size=32, seed=0)
    export_rec(ds, tmp_path / "train")
    rec = RecordDataset(tmp_path / "train")
    assert len(rec) == 6 and rec.num_classes == 3
    np.testing.assert_array_equal(rec[5][0], ds[5][0])
    pairs = builtin_pairs(num_identities=4, images_per_identity=3, num_pairs=20, size=32, folds=2)
    path = export_bin(pairs, tmp_path / "pairs.bin")
    back = read_bin(path)
    assert len(back) == 20
    np.testing.assert_array_equal(back.issame, pairs.issame)
    assert back.images[0].shape == (32, 32, 3)


def test_finished_images_are_kept_within_their_budget_and_not_pickled():
    ds = SyntheticFaces(3, 2, size=32, seed=0)
    first = [ds[i][0] for i in range(len(ds))]
    again = [ds[i][0] for i in range(len(ds))]
    assert all(a is b for a, b in zip(first, again))  # served from the cache
    assert not first[0].flags.writeable  # a consumer cannot corrupt later epochs
    assert np.array_equal(first[0], ds.render(0, 0))
    state = ds.__getstate__()  # what pickling sends to DataLoader workers
    assert "_images" not in state and "_cache" not in state
    none = SyntheticFaces(3, 2, size=32, seed=0, image_cache_mb=0)
    a, b = none[0][0], none[0][0]
    assert a is not b and np.array_equal(a, b) and a.flags.writeable


# sha256 of generated data under GENERATOR_VERSION, recorded from the single-module generator
# before it was split by responsibility (the split kept every pixel). If one of these moves,
# built-in data changed: bump GENERATOR_VERSION (cached pipeline stages must retrain) and
# record the new hashes here.
PINNED_VERSION = "f7a9e48cbf26"
PINNED_FACES = [
    (dict(size=112, seed=0),
     "4e05a4694542174097ec49bd7a90ca2f9a21298bf761f5c9a63610a6421cb05f"),
    (dict(size=56, seed=3, identity_offset=100000),
     "ae740375ef7a0c1cb517d9b97694e633bb2595d216f112c5a1b2aca4e2089813"),
    (dict(size=24, seed=1, variation=0.0),
     "1801f1bed76ec59455a21baa185d0ae2ec9eb78d483dec4d5766b30549ed13b8"),
    (dict(size=160, seed=2, families=3, coarse_jitter=0.5),
     "1c651a74c0cfcfe426d30ab39bc8a782a8569e254ce1c2e76cdf2036cba03e93"),
]
PINNED_PAIRS = "5e404b9bb53b33791458f37afb18dbb77acab77ab019fc5c216d3767fc2d7adf"
PINNED_OPENSET = "043704d3341f7bb237e9724a42cd5df3ad6467832ef044e364f7c097a889cf70"


def test_generated_data_match_the_declared_generator_version():
    import hashlib

    from btnet.data.synthetic import GENERATOR_VERSION

    assert GENERATOR_VERSION == PINNED_VERSION, "new version: record the new hashes below it"
    bump = "built-in data changed: bump GENERATOR_VERSION and record new hashes"
    for kwargs, expected in PINNED_FACES:
        faces = SyntheticFaces(3, 4, **kwargs)
        h = hashlib.sha256()
        for i in range(len(faces)):
            h.update(faces[i][0].tobytes())
        assert h.hexdigest() == expected, f"{kwargs}: {bump}"

    pairs = builtin_pairs(12, 3, num_pairs=40, size=32, seed=4)
    h = hashlib.sha256()
    for a in (pairs.left, pairs.right, pairs.issame):
        h.update(np.asarray(a).tobytes())
    for i in range(0, len(pairs.images), 7):
        h.update(pairs.images[i].tobytes())
    assert h.hexdigest() == PINNED_PAIRS, f"builtin_pairs: {bump}"

    proto = builtin_openset(4, 2, images_per_identity=3, size=32, seed=1)
    h = hashlib.sha256()
    for source in (proto.gallery, proto.mated, proto.unmated):
        for i in range(len(source)):
            h.update(source[i].tobytes())
    h.update(np.asarray(proto.gallery_ids).tobytes())
    h.update(np.asarray(proto.mated_ids).tobytes())
    assert h.hexdigest() == PINNED_OPENSET, f"builtin_openset: {bump}"


def test_builtin_stages_are_keyed_by_the_generator_version_not_its_source(monkeypatch):
    """Moving generator code keeps cached stages; a new version retrains them."""
    import btnet.pipeline.sources as sources
    from btnet.pipeline.options import StudyOptions

    source = sources.resolve_source(StudyOptions())
    before = source.train_params()
    assert before["generator"] == PINNED_VERSION
    monkeypatch.setattr(sources, "GENERATOR_VERSION", "next")
    assert source.train_params() != before
