"""RecordIO: framing, continuation, padding, headers, layouts, bad files, worker safety."""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest
import torch
from formats_helpers import MAGIC, frame, header, jpeg, make_folder, write_raw_rec

from btnet.data.images import CorruptImageError, decode_image
from btnet.data.pack import pack_folder
from btnet.data.recordio import (
    LabelMismatchError,
    RecordDataset,
    RecordFile,
    RecordHeader,
    RecordIOError,
    RecordWriter,
    frame_record,
    iter_records,
    pack_payload,
    rebuild_index,
    unpack_payload,
)

MAGIC_BYTES = struct.pack("<I", MAGIC)


def test_payload_header_roundtrip_with_and_without_label_array():
    h, img = unpack_payload(pack_payload(RecordHeader(0, 5.0, 9, 0), b"IMG"))
    assert (h.flag, h.label, h.id, h.class_label, img) == (0, 5.0, 9, 5.0, b"IMG")
    h, img = unpack_payload(pack_payload(RecordHeader(0, 0, 3, 0, np.array([7.0, 2.0])), b"X"))
    assert h.flag == 2 and h.label == 0.0 and list(h.labels) == [7.0, 2.0]
    assert h.class_label == 7.0 and img == b"X"
    raw = struct.pack("<IfQQ", 0, 1.5, 1, 2)
    assert pack_payload(RecordHeader(0, 1.5, 1, 2)) == raw  # exactly the IfQQ layout, 24 bytes


def test_frame_is_padded_to_four_bytes():
    for n in range(0, 9):
        data = frame_record(b"a" * n)
        assert len(data) % 4 == 0 and len(data) == 8 + n + (-n % 4)
        magic, lrec = struct.unpack_from("<II", data)
        assert magic == MAGIC and lrec == n  # cflag 0, length n
        assert data[8 + n :] == b"\0" * (-n % 4)


def test_aligned_magic_splits_into_continuation_parts(tmp_path):
    payload = b"AAAA" + MAGIC_BYTES + b"BBBBBBBB" + MAGIC_BYTES + b"CC"
    data = frame_record(payload)
    flags = []
    pos = 0
    while pos < len(data):
        magic, lrec = struct.unpack_from("<II", data, pos)
        assert magic == MAGIC
        n = lrec & ((1 << 29) - 1)
        flags.append(lrec >> 29)
        pos += 8 + n + (-n % 4)
    assert flags == [1, 2, 3]
    rec, _ = write_raw_rec(tmp_path / "c", [(0, data), (1, frame_record(b"next"))])
    f = RecordFile(rec)
    assert f.read_payload(0) == payload and f.read_payload(1) == b"next"


def test_unaligned_magic_is_not_split():
    payload = b"AB" + MAGIC_BYTES + b"CD"
    data = frame_record(payload)
    assert struct.unpack_from("<II", data)[1] >> 29 == 0 and len(data) == 8 + 8


def test_hand_built_continuation_and_padding_are_joined(tmp_path):
    # payload = header + image "xy" + MAGIC + "z" (hand framed: parts of odd lengths, padded)
    img_a, img_b = b"xy", b"z"
    part1 = header(3, 1) + img_a
    recs = [(1, frame(part1, 1) + frame(img_b, 3)), (2, frame(header(4, 2) + b"q"))]
    rec, _ = write_raw_rec(tmp_path / "h", recs)
    f = RecordFile(rec)
    h, img = f.read(1)
    assert h.label == 3 and img == img_a + MAGIC_BYTES + img_b
    assert f.read(2)[1] == b"q"
    assert [p for _, p in iter_records(rec)][0] == part1 + MAGIC_BYTES + img_b


def test_continuation_without_first_part_is_an_error(tmp_path):
    rec, _ = write_raw_rec(tmp_path / "x", [(0, frame(header(0, 0) + b"a", 3))])
    with pytest.raises(RecordIOError, match="without a first part"):
        RecordFile(rec).read(0)


def test_im2rec_file_without_meta_uses_header_labels(tmp_path):
    recs = [(k, frame(header(float(lab), k) + jpeg(k))) for k, lab in enumerate([2, 0, 1, 2])]
    recs.append((4, frame(header(0, 4, labels=[1.0, 9.0]) + jpeg(4))))  # label array: first wins
    rec, _ = write_raw_rec(tmp_path / "im2rec", recs)
    ds = RecordDataset(rec)
    assert not ds.has_meta
    assert ds.labels.tolist() == [2, 0, 1, 2, 1] and ds.num_classes == 3
    img, label = ds[2]
    assert label == 1 and img.shape == (24, 24, 3)


def test_insightface_layout_with_meta_and_identity_records(tmp_path):
    labels = [0, 0, 1, 1, 1]
    recs = [(0, frame(header(0, 0, labels=[6.0, 8.0])))]
    recs += [(k + 1, frame(header(float(lab), k + 1) + jpeg(k))) for k, lab in enumerate(labels)]
    recs += [(6, frame(header(0, 6, labels=[1.0, 3.0]))), (7, frame(header(0, 7, labels=[3.0, 6.0])))]
    rec, _ = write_raw_rec(tmp_path / "train", recs)
    (tmp_path / "property").write_text("2,24,24\n")
    ds = RecordDataset(tmp_path)  # folder holding train.rec
    assert ds.has_meta and len(ds) == 5 and ds.num_classes == 2
    assert ds.labels.tolist() == labels
    assert ds[4][1] == 1


def test_identity_records_that_disagree_with_images_never_give_wrong_labels(tmp_path):
    recs = [(0, frame(header(0, 0, labels=[3.0, 4.0])))]
    recs += [(1, frame(header(0.0, 1) + jpeg(1))), (2, frame(header(5.0, 2) + jpeg(2)))]
    recs += [(3, frame(header(0, 3, labels=[1.0, 3.0])))]  # claims keys 1,2 are one identity
    rec, _ = write_raw_rec(tmp_path / "bad", recs)
    ds = RecordDataset(rec, skip_corrupt=True)
    assert ds[0][1] == 0
    with pytest.raises(LabelMismatchError, match="key 2"):
        ds[1]


def test_writer_roundtrip_and_pack_folder(tmp_path):
    make_folder(tmp_path / "f", [2, 3, 1])
    res = pack_folder(tmp_path / "f", tmp_path / "out" / "train")
    assert res.num_images == 6 and res.num_classes == 3 and res.image_size == (24, 24)
    assert (tmp_path / "out" / "property").read_text().strip() == "3,24,24"
    ds = RecordDataset(tmp_path / "out" / "train.rec")
    assert ds.labels.tolist() == [0, 0, 1, 1, 1, 2]
    src = (tmp_path / "f" / "id01" / "2.jpg").read_bytes()
    assert ds.read_encoded(4) == src  # JPEG stored byte for byte
    assert np.array_equal(ds[4][0], decode_image(src))


def test_truncated_file_names_file_and_key(tmp_path):
    with RecordWriter(tmp_path / "t") as w:
        for k in range(3):
            w.write_image(k, k, jpeg(k, 64))
    rec = tmp_path / "t.rec"
    data = rec.read_bytes()
    rec.write_bytes(data[:-50])
    f = RecordFile(rec)
    with pytest.raises(RecordIOError, match=r"truncated.*t\.rec key 2"):
        f.read(2)
    assert f.read(1)[0].label == 1


def test_wrong_magic_and_garbage_index(tmp_path):
    rec = tmp_path / "w.rec"
    rec.write_bytes(b"\x00" * 64)
    (tmp_path / "w.idx").write_text("0\t0\n")
    with pytest.raises(RecordIOError, match="wrong magic"):
        RecordFile(rec).read(0)
    (tmp_path / "w.idx").write_text("0\t100000\n")
    with pytest.raises(RecordIOError, match="outside"):
        RecordFile(rec)
    (tmp_path / "w.idx").write_text("zero\tnothing\n")
    with pytest.raises(RecordIOError, match=r"w\.idx:1"):
        RecordFile(rec)


def test_missing_index_is_explained_and_rebuildable(tmp_path):
    with RecordWriter(tmp_path / "m") as w:
        for k in range(4):
            w.write_image(k, k % 2, jpeg(k))
    idx = tmp_path / "m.idx"
    original = idx.read_text()
    idx.unlink()
    with pytest.raises(FileNotFoundError, match="reindex"):
        RecordDataset(tmp_path / "m")
    rebuild_index(tmp_path / "m.rec")
    assert idx.read_text() == original
    assert RecordDataset(tmp_path / "m").labels.tolist() == [0, 1, 0, 1]


def test_property_with_too_few_classes_is_rejected(tmp_path):
    make_folder(tmp_path / "f", [1, 1, 1])
    pack_folder(tmp_path / "f", tmp_path / "o" / "train")
    (tmp_path / "o" / "property").write_text("2,24,24\n")
    with pytest.raises(RecordIOError, match="property"):
        RecordDataset(tmp_path / "o" / "train")


def test_skip_corrupt_substitutes_same_identity_and_counts(tmp_path):
    with RecordWriter(tmp_path / "s") as w:
        w.write_image(0, 0, jpeg(0))
        w.write_image(1, 0, b"\xff\xd8 not a jpeg")
        w.write_image(2, 1, jpeg(2))
    strict = RecordDataset(tmp_path / "s")
    with pytest.raises(CorruptImageError, match=r"s\.rec key 1"):
        strict[1]
    lenient = RecordDataset(tmp_path / "s", skip_corrupt=True)
    img, label = lenient[1]
    assert label == 0 and np.array_equal(img, lenient[0][0]) and lenient.skipped == 1


def test_pickle_and_dataloader_workers(tmp_path):
    make_folder(tmp_path / "f", [3, 3])
    pack_folder(tmp_path / "f", tmp_path / "train")
    ds = RecordDataset(tmp_path / "train")
    first = ds[0][0]  # opens the handle in this process
    clone = pickle.loads(pickle.dumps(ds))  # noqa: S301 - our own bytes (worker transfer)
    assert clone.file._fd is None and np.array_equal(clone[0][0], first)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    labels = torch.cat([b[1] for b in loader]).tolist()
    assert labels == ds.labels.tolist()
    assert ds.file._pid == os.getpid()
