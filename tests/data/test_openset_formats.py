"""Open-set protocols: QMUL-SurvFace release layout (.mat lists) and the generic folder layout."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io as sio
from formats_helpers import face

from btnet.data.base import ListImageSource, OpenSetProtocol
from btnet.data.images import write_image
from btnet.data.openset import open_openset, read_openset_folder, write_openset


def _cell(names):
    arr = np.empty((len(names), 1), dtype=object)
    arr[:, 0] = names
    return arr


def _survface(root, mated_ids=(10, 20)):
    d = root / "Face_Identification_Test_Set"
    g = ["10_1.jpg", "10_2.jpg", "20_1.jpg", "30_1.jpg"]
    m = ["10_9.jpg", "20_9.jpg"]
    u = ["u2.jpg", "u1.jpg"]
    for sub, names in (("gallery", g), ("mated_probe", m), ("unmated_probe", u)):
        for k, n in enumerate(names):
            write_image(d / sub / n, face(k, 12)[:10, :8])
    sio.savemat(d / "gallery_img_ID_pairs.mat",
                {"gallery_set": _cell(g), "gallery_ids": np.array([[10], [10], [20], [30]], float)})
    sio.savemat(d / "mated_probe_img_ID_pairs.mat",
                {"mated_probe_set": _cell(m), "mated_probe_ids": np.array([mated_ids], float).T})
    return d


def test_survface_release_layout(tmp_path):
    _survface(tmp_path)
    p = open_openset(tmp_path)  # the folder above Face_Identification_Test_Set also works
    assert p.gallery_ids.tolist() == [10, 10, 20, 30] and p.gallery_ids.dtype == np.int64
    assert p.mated_ids.tolist() == [10, 20]
    assert len(p.unmated) == 2 and p.unmated.paths[0].endswith("u1.jpg")  # sorted
    assert p.gallery[0].shape == (10, 8, 3)
    assert p.mated.paths[1].endswith("mated_probe/20_9.jpg")


def test_survface_mated_identity_absent_from_gallery(tmp_path):
    _survface(tmp_path, mated_ids=(10, 99))
    with pytest.raises(ValueError, match="absent from the gallery.*99"):
        open_openset(tmp_path / "Face_Identification_Test_Set")


def test_survface_missing_pieces(tmp_path):
    d = _survface(tmp_path)
    (d / "gallery" / "20_1.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="20_1.jpg"):
        open_openset(d)
    with pytest.raises(FileNotFoundError, match="QMUL-SurvFace"):
        open_openset(tmp_path / "Face_Identification_Test_Set" / "gallery")


def _protocol(ids_type=int):
    imgs = [face(i, 8) for i in range(7)]
    return OpenSetProtocol(
        name="synth",
        gallery=ListImageSource(imgs[:3]),
        gallery_ids=np.array([ids_type(1), ids_type(1), ids_type(2)], dtype=object),
        mated=ListImageSource(imgs[3:5]),
        mated_ids=np.array([ids_type(2), ids_type(1)], dtype=object),
        unmated=ListImageSource(imgs[5:]),
        extra={"unmated_ids": [ids_type(7), ids_type(8)]},
    )


def test_generic_layout_roundtrip_lossless(tmp_path):
    proto = _protocol()
    out = write_openset(tmp_path / "p", proto, meta={"resolution": 8})
    back = open_openset(out)
    assert back.extra["format"] == "openset-folder" and back.extra["resolution"] == 8
    assert back.gallery_ids.tolist() == [1, 1, 2] and back.gallery_ids.dtype == np.int64
    assert back.mated_ids.tolist() == [2, 1] and len(back.unmated) == 2
    for src, dst in ((proto.gallery, back.gallery), (proto.unmated, back.unmated)):
        for i in range(len(src)):
            assert np.array_equal(src[i], dst[i])  # PNG keeps tiny probes exact


def test_generic_layout_string_ids_and_hand_written_lists(tmp_path):
    write_image(tmp_path / "g" / "a.png", face(1, 8))
    write_image(tmp_path / "g" / "b.png", face(2, 8))
    write_image(tmp_path / "probe one.png", face(3, 8))
    write_image(tmp_path / "u.png", face(4, 8))
    (tmp_path / "gallery.txt").write_text("g/a.png alice\ng/b.png bob\n")
    (tmp_path / "mated.txt").write_text("# probes\nprobe one.png\tbob\n")
    (tmp_path / "unmated.txt").write_text("u.png\n")
    p = read_openset_folder(tmp_path)
    assert p.gallery_ids.tolist() == ["alice", "bob"] and p.mated_ids.tolist() == ["bob"]
    (tmp_path / "unmated.txt").write_text("u.png alice\n")
    with pytest.raises(ValueError, match="unmated.*gallery identities"):
        read_openset_folder(tmp_path)
    (tmp_path / "unmated.txt").write_text("u.png\n")
    (tmp_path / "mated.txt").write_text("probe one.png\tcarol\n")
    with pytest.raises(ValueError, match="carol"):
        read_openset_folder(tmp_path)
    (tmp_path / "mated.txt").write_text("missing.png bob\n")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_openset_folder(tmp_path)
    (tmp_path / "mated.txt").unlink()
    with pytest.raises(FileNotFoundError, match="mated.txt"):
        read_openset_folder(tmp_path)


def test_writer_rejects_ids_with_whitespace(tmp_path):
    proto = _protocol(ids_type=lambda i: f"id {i}")
    with pytest.raises(ValueError, match="whitespace"):
        write_openset(tmp_path / "p", proto)
