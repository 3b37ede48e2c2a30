"""Image folders, pack from folders/datasets, training-set dispatch and inspect summaries."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from formats_helpers import face, make_folder
from PIL import Image

from btnet.data.base import FaceDataset
from btnet.data.folders import ImageFolderDataset
from btnet.data.images import CorruptImageError, write_image
from btnet.data.inspect import inspect_dataset
from btnet.data.pack import pack_dataset, pack_folder
from btnet.data.recordio import RecordDataset
from btnet.data.training_sets import open_training_set


def test_folder_labels_sorted_empty_and_loose_files(tmp_path):
    make_folder(tmp_path, [2, 1, 3])
    (tmp_path / "empty_person").mkdir()
    (tmp_path / ".hidden").mkdir()
    write_image(tmp_path / ".hidden" / "x.jpg", face(0))
    write_image(tmp_path / "loose.jpg", face(0))
    (tmp_path / "id01" / "notes.txt").write_text("not an image")
    write_image(tmp_path / "id02" / "sub" / "deep.png", face(5))
    ds = ImageFolderDataset(tmp_path)
    assert ds.class_names == ["id00", "id01", "id02"] and ds.num_classes == 3
    assert ds.labels.tolist() == [0, 0, 1, 2, 2, 2, 2]
    assert ds.empty_identities == ["empty_person"] and ds.loose_files == 1
    assert isinstance(ds, FaceDataset)
    img, label = pickle.loads(pickle.dumps(ds))[3]  # noqa: S301 - our own bytes
    assert label == 2 and img.shape == (24, 24, 3)


def test_min_images_and_no_images(tmp_path):
    make_folder(tmp_path / "a", [1, 3, 2])
    ds = ImageFolderDataset(tmp_path / "a", min_images=2)
    assert ds.class_names == ["id01", "id02"] and ds.labels.tolist() == [0, 0, 0, 1, 1]
    (tmp_path / "b" / "nobody").mkdir(parents=True)
    with pytest.raises(ValueError, match="no identity folders with images"):
        ImageFolderDataset(tmp_path / "b")
    with pytest.raises(FileNotFoundError):
        ImageFolderDataset(tmp_path / "c")


def test_corrupt_file_error_or_counted_skip(tmp_path):
    make_folder(tmp_path, [2, 1])
    (tmp_path / "id00" / "9.jpg").write_bytes(b"\xff\xd8\xff truncated")
    with pytest.raises(CorruptImageError, match=r"id00/9\.jpg"):
        ImageFolderDataset(tmp_path)[2]
    ds = ImageFolderDataset(tmp_path, skip_corrupt=True)
    img, label = ds[2]
    assert label == 0 and np.array_equal(img, ds[0][0]) and ds.skipped == 1


def test_pack_converts_modes_and_skips_corrupt(tmp_path):
    make_folder(tmp_path / "f", [2, 2])
    buf = io.BytesIO()
    Image.fromarray(face(7)).convert("CMYK").save(buf, format="JPEG")
    (tmp_path / "f" / "id00" / "cmyk.jpg").write_bytes(buf.getvalue())
    Image.fromarray(face(8)[:, :, 0]).save(tmp_path / "f" / "id01" / "gray.png")
    (tmp_path / "f" / "id01" / "bad.jpg").write_bytes(b"junk")
    with pytest.raises(CorruptImageError, match="bad.jpg"):
        pack_folder(tmp_path / "f", tmp_path / "o1" / "train")
    res = pack_folder(tmp_path / "f", tmp_path / "o2" / "train", skip_corrupt=True)
    assert res.num_images == 6 and res.reencoded == 2 and len(res.skipped) == 1
    ds = RecordDataset(tmp_path / "o2" / "train")
    folder = ImageFolderDataset(tmp_path / "f", skip_corrupt=True)
    good = [i for i, p in enumerate(folder.paths) if not p.endswith("bad.jpg")]
    assert ds.labels.tolist() == folder.labels[good].tolist()
    for j, i in enumerate(good):
        assert ds[j][0].shape == (24, 24, 3)
        assert np.abs(ds[j][0].astype(int) - folder[i][0].astype(int)).mean() < 16  # re-encoded CMYK: lossy twice


class _ArrayDataset:
    name = "arrays"

    def __init__(self):
        self.labels = np.array([1, 0, 1, 0, 2], dtype=np.int64)
        self.num_classes = 4  # class 3 has no samples

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return face(i, 16), int(self.labels[i])


def test_pack_dataset_lossless_keeps_labels_and_empty_classes(tmp_path):
    src = _ArrayDataset()
    res = pack_dataset(src, tmp_path / "synth", image_format="png")
    assert res.num_classes == 4 and res.num_images == 5
    ds = open_training_set(tmp_path / "synth")
    assert ds.num_classes == 4 and sorted(ds.labels.tolist()) == [0, 0, 1, 1, 2]
    pairs = sorted((int(lab), ds[i][0].tobytes()) for i, lab in enumerate(ds.labels))
    want = sorted((src[i][1], src[i][0].tobytes()) for i in range(5))
    assert pairs == want


def test_open_training_set_dispatch(tmp_path):
    make_folder(tmp_path / "f", [1, 2])
    assert isinstance(open_training_set(tmp_path / "f"), ImageFolderDataset)
    pack_folder(tmp_path / "f", tmp_path / "r" / "train")
    for spec in (tmp_path / "r", tmp_path / "r" / "train", tmp_path / "r" / "train.rec"):
        assert isinstance(open_training_set(str(spec)), RecordDataset)
    with pytest.raises(FileNotFoundError, match="builtin"):
        open_training_set(tmp_path / "nothing")


def test_inspect_every_kind(tmp_path):
    make_folder(tmp_path / "f", [1, 2, 4], size=16)
    write_image(tmp_path / "f" / "id02" / "odd.png", face(1, 16)[:9, :13])
    s = inspect_dataset(tmp_path / "f")
    assert (s.num_images, s.num_identities) == (8, 3)
    assert s.per_identity == {"min": 1, "median": 2.0, "mean": 8 / 3, "max": 5}
    assert s.image_sizes == {"16x16": 7, "9x13": 1}
    text = s.render()
    assert "identities:  3" in text and "9x13 (1)" in text
    pack_folder(tmp_path / "f", tmp_path / "r" / "train")
    r = inspect_dataset(tmp_path / "r" / "train.rec", verify=True)
    assert (r.num_images, r.num_identities, r.corrupt) == (8, 3, 0)
    assert any("meta record" in n for n in r.notes)
    lst = tmp_path / "pairs.txt"
    lst.write_text("f/id00/0.jpg f/id01/0.jpg 0\nf/id01/0.jpg f/id01/1.jpg 1\n")
    p = inspect_dataset(lst)
    assert (p.num_pairs, p.num_same, p.num_images) == (2, 1, 3)
    (tmp_path / "f" / "id01" / "1.jpg").write_bytes(b"\xff\xd8 broken")
    v = inspect_dataset(tmp_path / "f", verify=True)
    assert v.corrupt == 1 and "1.jpg" in v.corrupt_examples[0]
