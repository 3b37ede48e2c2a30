"""Pair and open-set lists as editors write them: BOM, spaces in paths."""

from __future__ import annotations

import pytest
from formats_helpers import face

from btnet.data.images import write_image
from btnet.data.verification import open_pair_set, read_lfw_pairs


def _images(root, names):
    for i, n in enumerate(names):
        write_image(root / n, face(i))


def test_pair_list_with_a_utf8_bom(tmp_path):
    _images(tmp_path, ["imgs/a.jpg", "imgs/b.jpg"])
    (tmp_path / "pairs.lst").write_bytes("imgs/a.jpg imgs/b.jpg 1\nimgs/b.jpg imgs/a.jpg 0\n"
                                         .encode("utf-8-sig"))
    ps = open_pair_set(tmp_path / "pairs.lst")
    assert len(ps) == 2 and ps.issame.tolist() == [True, False]
    assert ps.images.source_name(0).endswith("imgs/a.jpg")  # no "\ufeff" in the path


def test_lfw_pairs_with_a_utf8_bom(tmp_path):
    _images(tmp_path / "images", ["Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Bob/Bob_0001.jpg"])
    (tmp_path / "pairs.txt").write_bytes("1 1\nAnn 1 2\nAnn 1 Bob 1\n".encode("utf-8-sig"))
    ps = read_lfw_pairs(tmp_path / "pairs.txt")  # the header "1 1" is still recognised
    assert ps.issame.tolist() == [True, False]


def test_space_separated_paths_with_spaces_get_a_tab_hint(tmp_path):
    _images(tmp_path, ["my photos/a.jpg", "my photos/b.jpg"])
    lst = tmp_path / "pairs.lst"
    lst.write_text("my photos/a.jpg my photos/b.jpg 1\n")
    with pytest.raises(ValueError, match=r"pairs\.lst:1: .*separate the fields with tabs"):
        open_pair_set(lst)
    lst.write_text("my photos/a.jpg\tmy photos/b.jpg\t1\n")
    assert len(open_pair_set(lst)) == 1  # the hinted fix works


def test_openset_list_with_spaces_gets_the_hint(tmp_path):
    from btnet.data.openset import _parse_list

    lst = tmp_path / "gallery.txt"
    lst.write_text("my photos/a.jpg 7\n")
    with pytest.raises(ValueError, match=r"gallery\.txt:1: .*separate the fields with tabs"):
        _parse_list(lst, need_id=True)
