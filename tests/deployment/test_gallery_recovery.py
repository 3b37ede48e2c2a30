"""``gallery recover`` never blesses bytes it cannot verify; enrolment can be resumed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from deployhelpers import random_unit
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from btnet.deployment.gallery import Gallery, GalleryCorruptError, recover_manifest

D = 16
FP = "sha256:test-model"


def _gallery(tmp_path):
    g = Gallery.create(tmp_path / "g", fingerprint=FP, embedding_size=D, model="/models/m")
    g.append(random_unit(6, D, 0), [f"a{i % 3}" for i in range(6)])
    g.append(random_unit(4, D, 1), ["b"] * 4)
    g.calibrate(random_unit(5, D, 2), 0.2)
    return g, tmp_path / "g"


def _rewrite_row(path, value):
    """Write a value into one row, re-saving a *valid* safetensors file (only checksums see it)."""
    with safe_open(str(path), framework="numpy") as fh:
        meta = fh.metadata()
    data = load_file(str(path))
    data["embeddings"][1, :] = value
    save_file(data, str(path), metadata=meta)


@pytest.mark.parametrize("damage", ["nan", "huge", "flip"])
def test_recover_quarantines_a_damaged_shard_and_keeps_model_and_calibration(tmp_path, damage):
    g, folder = _gallery(tmp_path)
    shard = folder / "shard-000002.safetensors"
    if damage == "flip":
        raw = bytearray(shard.read_bytes())
        raw[-3] ^= 0x01
        shard.write_bytes(bytes(raw))
    else:
        _rewrite_row(shard, np.nan if damage == "nan" else 1e30)
    with pytest.raises(GalleryCorruptError, match="shard-000002"):
        Gallery.open(folder).search(random_unit(1, D, 5), 1)
    rec = recover_manifest(folder)
    assert rec.rows == 6 and rec.kept == ["shard-000001.safetensors"]
    assert [q for q, _ in rec.quarantined] == ["quarantine/shard-000002.safetensors"]
    assert not shard.exists() and (folder / "quarantine" / shard.name).is_file()
    g2 = Gallery.open(folder, fingerprint=FP)
    assert len(g2) == 6 and "b" not in g2.identities()
    assert g2.manifest["model"] == "/models/m"  # identify still knows the model
    assert g2.manifest["calibration"]["target_fpir"] == 0.2
    g2.threshold()  # calibration still verifies
    # a second recover finds the gallery healthy and changes nothing
    before = (folder / "gallery.json").read_bytes()
    assert not recover_manifest(folder).changed
    assert (folder / "gallery.json").read_bytes() == before


def test_recover_on_a_healthy_gallery_changes_nothing(tmp_path):
    g, folder = _gallery(tmp_path)
    before = (folder / "gallery.json").read_bytes()
    rec = recover_manifest(folder)
    assert not rec.changed and rec.rows == 10 and rec.calibration == "kept"
    assert (folder / "gallery.json").read_bytes() == before
    assert not (folder / "gallery.json.bad").exists()


def test_recover_never_overwrites_an_earlier_backup(tmp_path):
    g, folder = _gallery(tmp_path)
    (folder / "gallery.json").write_text("{broken 1")
    assert recover_manifest(folder).backup == "gallery.json.bad"
    (folder / "gallery.json").write_text("{broken 2")
    assert recover_manifest(folder).backup == "gallery.json.bad.1"
    assert (folder / "gallery.json.bad").read_text() == "{broken 1"
    assert (folder / "gallery.json.bad.1").read_text() == "{broken 2"


def test_recover_without_manifest_verifies_each_shard_by_its_own_checksum(tmp_path):
    g, folder = _gallery(tmp_path)
    (folder / "gallery.json").unlink()
    _rewrite_row(folder / "shard-000001.safetensors", 0.25)  # finite but altered
    rec = recover_manifest(folder)
    assert rec.kept == ["shard-000002.safetensors"] and rec.rows == 4
    assert rec.quarantined[0][0] == "quarantine/shard-000001.safetensors"
    m = json.loads((folder / "gallery.json").read_text())
    assert m["model"] == "/models/m"  # recorded in every shard
    assert rec.calibration == "restored" and m["calibration"]["target_fpir"] == 0.2
    assert m["next_shard"] == 3  # a quarantined shard's number is never reused


def test_recover_cleans_temporaries_and_ignores_uncommitted_shards(tmp_path):
    g, folder = _gallery(tmp_path)
    tmp = folder / ".shard-000003.safetensors.x1y2.tmp"
    tmp.write_bytes(b"half a shard")
    # a complete shard written but never committed (the process died before the manifest)
    save_file({"embeddings": random_unit(2, D, 9), "source_size": np.zeros((2, 2), np.int32),
               "path": np.zeros(2, np.int32)}, str(folder / "shard-000003.safetensors"),
              metadata={"format": "btnet-gallery", "fingerprint": FP, "labels": '["x", "x"]'})
    rec = recover_manifest(folder)
    assert rec.removed_tmp == [tmp.name] and not tmp.exists()
    assert rec.ignored == ["shard-000003.safetensors"] and not rec.changed
    assert len(Gallery.open(folder)) == 10 and "x" not in Gallery.open(folder).identities()


def test_cli_recover_reports_quarantine(tmp_path, capsys):
    from btnet.cli.main import main

    g, folder = _gallery(tmp_path)
    _rewrite_row(folder / "shard-000001.safetensors", np.nan)
    assert main(["gallery", "info", str(folder)]) == 2
    assert "shard-000001.safetensors is corrupted" in capsys.readouterr().err
    assert main(["gallery", "recover", str(folder)]) == 1  # something was lost: not a clean 0
    out = capsys.readouterr()
    assert "4 faces" in out.out and "calibration: kept" in out.out and "/models/m" in out.out
    assert "quarantined quarantine/shard-000001.safetensors" in out.err
    assert main(["gallery", "info", str(folder)]) == 0
    out = capsys.readouterr()
    assert "all checksums ok" in out.out and "shard-000001.safetensors" in out.err  # not silent


def test_interrupted_enroll_keeps_committed_chunks_and_resumes(tiny_model_dir, face_folder,
                                                              tmp_path, capsys):
    from btnet.cli.main import main

    gal = str(tmp_path / "gal")
    bad = face_folder / "id_3" / "0.png"  # the 10th of 12 images in sorted order
    good = bad.read_bytes()
    bad.write_bytes(b"not an image")
    args = ["gallery", "enroll", gal, str(face_folder), "--model", str(tiny_model_dir), "-q"]
    assert main([*args, "--chunk", "3"]) == 2  # stops at the broken image
    assert len(Gallery.open(gal)) == 9  # the three chunks before it are committed
    bad.write_bytes(good)
    capsys.readouterr()
    assert main([*args, "--chunk", "3", "--resume"]) == 0
    assert "9 of 12 images already enrolled" in capsys.readouterr().out
    g = Gallery.open(gal)
    assert len(g) == 12 and sorted(g.files) == sorted(
        str(p) for p in face_folder.rglob("*.png"))  # each image exactly once


def test_enroll_onto_a_file_is_a_clear_error(tiny_model_dir, face_folder, tmp_path, capsys):
    from btnet.cli.main import main

    target = tmp_path / "not_a_folder"
    target.write_text("keep me")
    assert main(["gallery", "enroll", str(target), str(face_folder), "--model",
                 str(tiny_model_dir), "-q"]) == 2
    assert "is a file, not a gallery folder" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_enroll_killed_mid_run_keeps_committed_chunks(tiny_model_dir, face_folder, tmp_path):
    """A real process dies (``os._exit``) while embedding its third chunk; rerun with --resume."""
    import subprocess
    import sys
    import textwrap

    from btnet.cli.main import main

    gal = tmp_path / "gal"
    args = ["gallery", "enroll", str(gal), str(face_folder), "--model", str(tiny_model_dir),
            "-q", "--chunk", "4"]
    code = textwrap.dedent(f"""
        import os
        import btnet.deployment.embed as e
        real, calls = e.embed_files, []
        def dying(*a, **k):
            calls.append(1)
            if len(calls) == 3:
                os._exit(9)
            return real(*a, **k)
        e.embed_files = dying
        from btnet.cli.main import main
        main({args!r})
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 9, out.stderr
    assert len(Gallery.open(gal)) == 8  # two chunks of 4 survived the kill
    assert main([*args, "--resume"]) == 0
    assert len(Gallery.open(gal)) == 12 and len(set(Gallery.open(gal).files)) == 12
