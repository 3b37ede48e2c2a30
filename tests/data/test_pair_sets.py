"""Verification sets: safe .bin reading/writing, LFW pairs.txt, plain pair lists, dispatch."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from formats_helpers import face, jpeg, make_folder

from btnet.data.images import decode_image, write_image
from btnet.data.safe_pickle import UnsafePickleError, restricted_loads
from btnet.data.verification import (
    export_pairs_to_bin,
    open_pair_set,
    read_bin,
    read_lfw_pairs,
    write_bin,
)


class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_bin_that_tries_to_run_code_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.bin"
    evil.write_bytes(pickle.dumps(([_RunsCode(str(marker)), b"x"], [True]), protocol=2))
    with pytest.raises(UnsafePickleError, match=r"evil\.bin.*system"):
        read_bin(evil)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    (eval, ("1",)),
    (getattr, ("x", "upper")),
    (np.load, ("x.npy",)),
])
def test_other_callables_are_refused(payload):
    class Bad:
        def __reduce__(self):
            return payload

    with pytest.raises(UnsafePickleError):
        restricted_loads(pickle.dumps(Bad()))


def test_object_arrays_are_refused():
    with pytest.raises(UnsafePickleError, match="dtype"):
        restricted_loads(pickle.dumps(([np.array([b"a"], dtype=object)], [True])))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_bin_with_numpy_images_any_protocol(tmp_path, protocol):
    blobs = [np.frombuffer(jpeg(i), dtype=np.uint8) for i in range(4)]
    path = tmp_path / "np.bin"
    path.write_bytes(pickle.dumps((blobs, [True, np.bool_(False)]), protocol=protocol))
    ps = read_bin(path)
    assert len(ps) == 2 and ps.issame.tolist() == [True, False]
    assert ps.left.tolist() == [0, 2] and ps.right.tolist() == [1, 3]
    assert np.array_equal(ps.images[3], decode_image(jpeg(3)))


def test_python2_pickle_loads_as_bytes(tmp_path):
    # Python 2's protocol-2 output: str images (SHORT_BINSTRING) and a numpy.core array.
    img = b"abc"
    py2 = (
        b"\x80\x02(]q\x00(cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b"
        b"\x87R(K\x01K\x03\x85cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNN"
        b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U\x03" + img + b"tbU\x02xye]q\x01(\x88\x89et."
    )
    bins, issame = restricted_loads(py2)
    assert bins[0].dtype == np.uint8 and bins[0].tobytes() == img and bins[1] == b"xy"
    assert issame == [True, False]


def test_bin_roundtrip_through_writer(tmp_path):
    blobs = [jpeg(i) for i in range(6)]
    path = write_bin(tmp_path / "mine.bin", blobs, [True, False, True])
    ps = open_pair_set(path)
    assert ps.name == "mine" and ps.issame.tolist() == [True, False, True]
    assert ps.images.read_encoded(5) == blobs[5]
    with pytest.raises(ValueError, match="2N"):
        write_bin(tmp_path / "x.bin", blobs[:5], [True, False, True])


def test_bin_with_wrong_structure(tmp_path):
    p = tmp_path / "b.bin"
    p.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True, False])))
    with pytest.raises(ValueError, match="3 images for 2 pairs"):
        read_bin(p)
    p.write_bytes(b"definitely not a pickle")
    with pytest.raises(ValueError, match=r"b\.bin"):
        read_bin(p)


def _lfw_tree(root):
    for name, n in (("Ann_A", 3), ("Bob_B", 1), ("C.J._Cee", 2)):
        for k in range(1, n + 1):
            write_image(root / "images" / name / f"{name}_{k:04d}.jpg", face(len(name) + k))


def test_lfw_pairs_both_line_forms(tmp_path):
    _lfw_tree(tmp_path)
    (tmp_path / "pairs.txt").write_text(
        "1\t2\nAnn_A\t1\t3\nC.J._Cee\t1\t2\nAnn_A\t2\tBob_B\t1\nBob_B 1 C.J._Cee 2\n"
    )
    ps = open_pair_set(tmp_path / "pairs.txt")
    assert ps.issame.tolist() == [True, True, False, False]
    assert len(ps.images) == 6  # each file once
    first = ps.images.paths[ps.left[0]]
    assert first.endswith("images/Ann_A/Ann_A_0001.jpg")
    assert ps.images.paths[ps.right[3]].endswith("C.J._Cee_0002.jpg")
    assert open_pair_set(tmp_path).issame.tolist() == ps.issame.tolist()  # folder form


def test_lfw_pairs_errors(tmp_path):
    _lfw_tree(tmp_path)
    p = tmp_path / "pairs.txt"
    p.write_text("1\t3\nAnn_A\t1\t3\n")
    with pytest.raises(ValueError, match="announces 6 pairs but 1"):
        read_lfw_pairs(p)
    p.write_text("Ann_A\t1\t9\n")
    with pytest.raises(FileNotFoundError, match="Ann_A_0009"):
        read_lfw_pairs(p)
    p.write_text("Ann_A\t1\n")
    with pytest.raises(ValueError, match=r"pairs\.txt:1"):
        read_lfw_pairs(p)


def test_plain_pair_list(tmp_path):
    make_folder(tmp_path / "imgs", [2, 1])
    lst = tmp_path / "my pairs.txt"
    lst.write_text("# mine\nimgs/id00/0.jpg imgs/id00/1.jpg 1\nimgs/id00/0.jpg\timgs/id01/0.jpg\t0\n")
    ps = open_pair_set(lst)
    assert ps.issame.tolist() == [True, False] and ps.left.tolist() == [0, 0]
    assert ps.right.tolist() == [1, 2]
    lst.write_text("imgs/id00/0.jpg imgs/id00/1.jpg maybe\n")
    with pytest.raises(ValueError, match="0 or 1"):
        open_pair_set(lst)
    lst.write_text("imgs/id00/0.jpg imgs/gone.jpg 1\n")
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        open_pair_set(lst)


def test_export_pairs_to_bin_keeps_bytes(tmp_path):
    make_folder(tmp_path / "imgs", [2, 1])
    lst = tmp_path / "p.txt"
    lst.write_text("imgs/id00/0.jpg imgs/id00/1.jpg 1\nimgs/id00/0.jpg imgs/id01/0.jpg 0\n")
    out = export_pairs_to_bin(open_pair_set(lst), tmp_path / "p.bin")
    ps = read_bin(out)
    assert ps.issame.tolist() == [True, False]
    assert ps.images.read_encoded(3) == (tmp_path / "imgs/id01/0.jpg").read_bytes()


@pytest.mark.shared_data
def test_real_lfw_pairs(shared_data):
    ps = open_pair_set(shared_data / "lfw" / "pairs.txt")
    assert len(ps) == 6000 and int(ps.issame.sum()) == 3000
    # folds are contiguous blocks of 300 same then 300 different
    assert ps.issame[:300].all() and not ps.issame[300:600].any()
    assert ps.images[int(ps.left[0])].shape == (112, 112, 3)
    dev = open_pair_set(shared_data / "lfw" / "pairsDevTrain.txt")
    assert len(dev) == 2200 and int(dev.issame.sum()) == 1100
