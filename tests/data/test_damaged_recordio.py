"""Damaged packs and indexes: nothing lost, no silent drop, errors name the file and line."""

from __future__ import annotations

import pytest
from formats_helpers import jpeg, make_folder

from btnet.cli.main import main
from btnet.data.pack import pack_folder
from btnet.data.recordio import RecordDataset, RecordIOError, RecordWriter, rebuild_index


def _im2rec(prefix, n=6):
    """An im2rec-style file: image records only, no meta (header) record; labels k % 3."""
    with RecordWriter(prefix) as w:
        for k in range(n):
            w.write_image(k, k % 3, jpeg(k))
    return prefix.with_suffix(".rec"), prefix.with_suffix(".idx")


def test_failed_pack_keeps_the_earlier_pack(tmp_path):
    make_folder(tmp_path / "f", [2, 2])
    pack_folder(tmp_path / "f", tmp_path / "o" / "train")
    before = {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()}
    (tmp_path / "f" / "id01" / "1.jpg").write_bytes(b"not a jpeg")
    make_folder(tmp_path / "f", [2, 2, 3])  # more identities: the new pack would differ
    (tmp_path / "f" / "id01" / "1.jpg").write_bytes(b"not a jpeg")
    assert main(["data", "pack", str(tmp_path / "f"), str(tmp_path / "o" / "train")]) == 2
    after = {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()}
    assert after == before  # same three files, same bytes, no partial leftovers
    assert len(RecordDataset(tmp_path / "o" / "train")) == 4


def test_reindex_refuses_an_empty_rec(tmp_path, capsys):
    (tmp_path / "e.rec").write_bytes(b"")
    assert main(["data", "reindex", str(tmp_path / "e.rec")]) == 2
    assert "e.rec is empty" in capsys.readouterr().err
    assert not (tmp_path / "e.idx").exists()


def test_truncated_rec_is_refused_then_salvaged(tmp_path, capsys):
    make_folder(tmp_path / "f", [3, 3, 3])
    res = pack_folder(tmp_path / "f", tmp_path / "o" / "train")
    rec = res.rec_path
    data = rec.read_bytes()
    offsets = [int(line.split()[1]) for line in res.idx_path.read_text().splitlines()]
    rec.write_bytes(data[: offsets[6] + 20])  # records 0..5 (meta + 5 images) intact
    res.idx_path.unlink()
    with pytest.raises(RecordIOError, match="--salvage` indexes the 6 intact records"):
        rebuild_index(rec)
    assert main(["data", "reindex", str(rec), "--salvage"]) == 1
    assert "identity records were lost" in capsys.readouterr().err
    ds = RecordDataset(rec)
    # 5 images survive: 3 of id00 and 2 of id01, each with the label of its own record
    assert len(ds) == 5 and ds.labels.tolist() == [0, 0, 0, 1, 1]
    assert ds[4][0].shape == (24, 24, 3)


def test_truncated_index_of_an_im2rec_file_is_an_error(tmp_path):
    rec, idx = _im2rec(tmp_path / "t")
    lines = idx.read_text().splitlines(keepends=True)
    idx.write_text("".join(lines[:4]))  # cut at a line boundary: looks valid
    with pytest.raises(RecordIOError, match=r"t\.idx: its last record .* holds more records"):
        RecordDataset(rec)


def test_index_missing_a_key_of_the_meta_range_is_an_error(tmp_path):
    make_folder(tmp_path / "f", [2, 3])
    res = pack_folder(tmp_path / "f", tmp_path / "o" / "train")
    lines = res.idx_path.read_text().splitlines(keepends=True)
    res.idx_path.write_text("".join(lines[:3] + lines[4:]))  # key 3 gone
    with pytest.raises(RecordIOError, match="from key 3, are not in"):
        RecordDataset(res.rec_path)


def test_half_written_last_index_line_names_file_and_line(tmp_path):
    rec, idx = _im2rec(tmp_path / "h")
    text = idx.read_text()
    idx.write_text(text[:-3])  # "5\t<offset>" lost its last digits and the newline
    with pytest.raises(RecordIOError, match=r"h\.idx:6: last line .* incomplete"):
        RecordDataset(rec)


def test_index_without_the_meta_record_is_an_error(tmp_path):
    make_folder(tmp_path / "f", [2, 3])
    res = pack_folder(tmp_path / "f", tmp_path / "o" / "train")
    (tmp_path / "o" / "property").unlink()  # nothing else would notice the wrong labels
    lines = res.idx_path.read_text().splitlines(keepends=True)
    assert lines[0].startswith("0\t")
    res.idx_path.write_text("".join(lines[1:]))
    with pytest.raises(RecordIOError, match=r"train\.idx: lacks key 0, the meta \(header\)"):
        RecordDataset(res.rec_path)


def test_salvage_cut_inside_the_identity_records_keeps_every_image(tmp_path):
    make_folder(tmp_path / "f", [2, 3, 1])
    res = pack_folder(tmp_path / "f", tmp_path / "o" / "train")
    offsets = [int(line.split()[1]) for line in res.idx_path.read_text().splitlines()]
    # records: meta, 6 images (keys 1..6), identity records (keys 7..9); cut inside key 8
    res.rec_path.write_bytes(res.rec_path.read_bytes()[: offsets[8] + 10])
    assert rebuild_index(res.rec_path, salvage=True).dropped_meta
    ds = RecordDataset(res.rec_path)
    assert len(ds) == 6 and ds.labels.tolist() == [0, 0, 1, 1, 1, 2]
