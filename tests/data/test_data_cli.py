"""``btnet data pack / inspect / export-bin / reindex`` end to end through the CLI parser."""

from __future__ import annotations

from formats_helpers import make_folder

from btnet.cli.main import main
from btnet.data.pair_sets import read_bin
from btnet.data.recordio import RecordDataset


def test_pack_then_inspect_then_reindex(tmp_path, capsys):
    make_folder(tmp_path / "f", [2, 3])
    assert main(["data", "pack", str(tmp_path / "f"), str(tmp_path / "o" / "train")]) == 0
    assert "5 images, 2 identities, 24x24" in capsys.readouterr().out
    assert RecordDataset(tmp_path / "o" / "train").labels.tolist() == [0, 0, 1, 1, 1]
    assert main(["data", "inspect", str(tmp_path / "o" / "train.rec")]) == 0
    out = capsys.readouterr().out
    assert "images:      5" in out and "identities:  2" in out
    (tmp_path / "o" / "train.idx").unlink()
    assert main(["data", "inspect", str(tmp_path / "o" / "train.rec")]) == 2
    assert "reindex" in capsys.readouterr().err
    assert main(["data", "reindex", str(tmp_path / "o" / "train.rec")]) == 0
    assert main(["data", "inspect", str(tmp_path / "o")]) == 0


def test_export_bin_and_bad_input(tmp_path, capsys):
    make_folder(tmp_path / "f", [2, 1])
    lst = tmp_path / "pairs.txt"
    lst.write_text("f/id00/0.jpg f/id00/1.jpg 1\nf/id00/0.jpg f/id01/0.jpg 0\n")
    assert main(["data", "export-bin", str(lst), str(tmp_path / "p.bin")]) == 0
    assert read_bin(tmp_path / "p.bin").issame.tolist() == [True, False]
    assert main(["data", "inspect", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["data"]) == 2
