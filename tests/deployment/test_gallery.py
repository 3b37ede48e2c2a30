"""Gallery: enrol, search (faiss == numpy), open-set identify, crash safety, bad files."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from deployhelpers import random_unit

from btnet.deployment import gallery as gallery_mod
from btnet.deployment.gallery import (
    Gallery,
    GalleryCorruptError,
    GalleryMismatchError,
    recover_manifest,
    threshold_for_fpir,
)
from btnet.deployment.search import faiss_available, topk, topk_numpy

D = 16
FP = "sha256:test-model"


def _gallery(tmp_path, n_ids=5, per_id=3, seed=0):
    g = Gallery.create(tmp_path / "g", fingerprint=FP, embedding_size=D)
    centres = random_unit(n_ids, D, seed)
    rng = np.random.default_rng(seed + 1)
    emb = np.repeat(centres, per_id, axis=0) + 0.15 * rng.standard_normal((n_ids * per_id, D))
    labels = [f"id{i}" for i in range(n_ids) for _ in range(per_id)]
    g.append(emb.astype(np.float32), labels, source_sizes=np.full((len(labels), 2), 20))
    return g, centres


def test_enrol_search_identify(tmp_path):
    g, centres = _gallery(tmp_path)
    g.append(random_unit(2, D, 9), ["late", "late"])
    g = Gallery.open(tmp_path / "g", fingerprint=FP, embedding_size=D)
    assert len(g) == 17 and len(g.identities()) == 6
    assert g.source_sizes.shape == (17, 2)
    res = g.search(centres, k=3)
    assert [row[0] for row in res.labels] == [f"id{i}" for i in range(5)]
    assert np.all(np.diff(res.scores, axis=1) <= 0)
    img = g.search(centres, k=3, level="image")
    assert all(lab == f"id{i}" for i, row in enumerate(img.labels) for lab in row)
    # open-set: strangers calibrate the threshold, enrolled people pass it, strangers mostly not
    strangers = random_unit(200, D, 42)
    t = g.calibrate(strangers, 0.1)
    assert np.mean(g.unmated_scores() >= t) <= 0.1
    decisions = g.identify(centres)
    assert [d.label for d in decisions] == [f"id{i}" for i in range(5)]
    fresh = g.identify(random_unit(100, D, 77))
    assert sum(d.label is not None for d in fresh) <= 25
    assert all(d.label is None or d.score >= d.threshold for d in fresh)
    # the calibration persists and is recomputed against the gallery as it grows
    g2 = Gallery.open(tmp_path / "g")
    assert g2.threshold() == pytest.approx(t)
    g2.append(random_unit(30, D, 5), [f"new{i}" for i in range(30)])
    assert g2.threshold() >= t


def test_threshold_for_fpir_is_exact():
    rng = np.random.default_rng(0)
    scores = rng.uniform(-1, 1, 1000).astype(np.float32)
    for target in (0.3, 0.2, 0.1, 0.01, 0.0):
        t = threshold_for_fpir(scores, target)
        fpir = np.mean(scores >= t)
        assert fpir <= target + 1e-12
        assert fpir >= target - 1.5 / len(scores)  # as permissive as the target allows
    ties = np.array([0.5] * 10 + [0.1] * 90, np.float32)
    assert np.mean(ties >= threshold_for_fpir(ties, 0.05)) == 0.0


@pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
@pytest.mark.parametrize("n,k", [(1, 1), (50, 10), (5000, 7), (3, 8)])
def test_faiss_and_numpy_give_the_same_results(n, k):
    g, q = random_unit(n, 32, 1), random_unit(20, 32, 2)
    sf, if_ = topk(g, q, k, "faiss")
    sn, in_ = topk(g, q, k, "numpy")
    assert np.array_equal(if_, in_)
    assert np.allclose(sf, sn, atol=1e-5)
    s2, i2 = topk_numpy(g, q, k, chunk_rows=13)  # the chunked merge is exact too
    assert np.array_equal(i2, in_)
    brute = np.argsort(-(q @ g.T), axis=1, kind="stable")[:, :k]
    assert np.array_equal(in_[:, : brute.shape[1]], brute)


def test_numpy_backend_without_faiss(tmp_path, monkeypatch):
    g, centres = _gallery(tmp_path)
    expected = g.search(centres, 4)
    monkeypatch.setattr("btnet.deployment.search.faiss_available", lambda: False)
    got = g.search(centres, 4)  # auto -> numpy
    assert got.labels == expected.labels
    assert np.allclose(got.scores, expected.scores, atol=1e-5)
    with pytest.raises(ImportError, match="faiss-cpu"):
        g.search(centres, 4, backend="faiss")


def test_model_mismatch_is_refused(tmp_path):
    _gallery(tmp_path)
    with pytest.raises(GalleryMismatchError, match="another model"):
        Gallery.open(tmp_path / "g", fingerprint="sha256:other", embedding_size=D)
    with pytest.raises(GalleryMismatchError, match="16-d"):
        Gallery.open(tmp_path / "g", fingerprint=FP, embedding_size=D * 2)
    g = Gallery.open(tmp_path / "g")
    with pytest.raises(GalleryMismatchError):
        g.append(random_unit(2, D + 1), ["a", "b"])
    with pytest.raises(GalleryMismatchError):
        g.search(random_unit(2, D + 1), 1)


def test_crash_during_commit_loses_nothing(tmp_path, monkeypatch):
    g, centres = _gallery(tmp_path)
    before = g.search(centres, 3)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(gallery_mod, "_write_manifest", boom)
    with pytest.raises(OSError):
        g.append(random_unit(4, D, 3), ["x"] * 4)
    monkeypatch.undo()
    g2 = Gallery.open(tmp_path / "g", fingerprint=FP)
    assert len(g2) == 15
    assert g2.search(centres, 3).labels == before.labels
    g2.append(random_unit(4, D, 3), ["x"] * 4)  # the uncommitted shard name is reused cleanly
    assert len(Gallery.open(tmp_path / "g")) == 19


@pytest.mark.parametrize("where", ["shard", "manifest"])
def test_process_killed_mid_write_loses_nothing(tmp_path, where):
    """A real process dies (``os._exit``) half-way through writing; the gallery survives."""
    g, centres = _gallery(tmp_path)
    before = g.search(centres, 3).labels
    code = textwrap.dedent(f"""
        import os, numpy as np
        import btnet.deployment.gallery as gm
        import safetensors.numpy as stn
        def half_then_die(path, data):
            with open(path, "wb") as fh:
                fh.write(data[: len(data) // 2]); fh.flush()
            os._exit(9)
        if {where!r} == "shard":
            real = stn.save_file
            def save_file(t, path, metadata=None):
                real(t, path, metadata=metadata)
                half_then_die(path, open(path, "rb").read())
            stn.save_file = save_file
        else:
            gm._write_manifest = lambda folder, data: half_then_die(
                str(folder / ".gallery.json.tmp"), json.dumps(data).encode())
        import json
        g = gm.Gallery.open({str(tmp_path / "g")!r})
        g.append(np.ones((3, {D}), np.float32), ["ghost"] * 3)
        print("not reached")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 9, out.stderr
    g2 = Gallery.open(tmp_path / "g", fingerprint=FP)
    assert len(g2) == 15 and "ghost" not in g2.identities()
    assert g2.search(centres, 3).labels == before
    g2.append(random_unit(2, D, 8), ["after", "after"])
    assert len(Gallery.open(tmp_path / "g")) == 17


def test_corrupted_files_give_clear_errors_and_recover(tmp_path):
    g, centres = _gallery(tmp_path)
    g.append(random_unit(4, D, 3), ["second"] * 4)
    shard2 = tmp_path / "g" / "shard-000002.safetensors"
    data = bytearray(shard2.read_bytes())
    data[-5] ^= 0xFF
    shard2.write_bytes(bytes(data))
    with pytest.raises(GalleryCorruptError, match="shard-000002.safetensors is corrupted"):
        Gallery.open(tmp_path / "g").search(centres, 1)
    # the intact first shard is still all there: recover keeps it, reports the damaged one
    shard2.write_bytes(b"garbage")
    (tmp_path / "g" / "gallery.json").write_text('{"format": "btnet-gal')
    with pytest.raises(GalleryCorruptError, match="gallery recover"):
        Gallery.open(tmp_path / "g")
    rec = recover_manifest(tmp_path / "g")
    assert rec.rows == 15 and rec.skipped == ["shard-000002.safetensors"]
    g3 = Gallery.open(tmp_path / "g", fingerprint=FP, embedding_size=D)
    assert [r[0] for r in g3.search(centres, 1).labels] == [f"id{i}" for i in range(5)]
    assert (tmp_path / "g" / "gallery.json.bad").exists()
    g3.append(random_unit(1, D), ["z"])  # never overwrites an existing shard file
    assert json.loads((tmp_path / "g" / "gallery.json").read_text())["shards"][-1]["file"] == (
        "shard-000003.safetensors"
    )


def test_cli_enroll_search_identify(tiny_model_dir, other_model_dir, face_folder, tmp_path, capsys):
    from btnet.cli.main import main

    gal = str(tmp_path / "gal")
    ids = sorted(p for p in face_folder.iterdir())
    enrolled, strangers = ids[:3], ids[3:]
    assert main(["gallery", "enroll", gal, *map(str, enrolled), "--model", str(tiny_model_dir), "-q"]) == 0
    g = Gallery.open(gal)
    assert len(g) == 9 and g.identities() == [p.name for p in enrolled]
    assert sorted(set(g.served_paths.tolist())) == [7, 14, 56]  # 8, 20 and 56 px faces
    capsys.readouterr()
    probe = str(enrolled[0] / "2.png")
    assert main(["gallery", "search", gal, probe, "-k", "2", "-q", "--level", "image",
                 "--json", str(tmp_path / "s.json")]) == 0
    rows = json.loads((tmp_path / "s.json").read_text())
    # an enrolled image finds itself (image level: an untrained model's identity means need not)
    assert rows[0]["candidates"][0]["label"] == enrolled[0].name
    assert main(["gallery", "calibrate", gal, str(strangers[0]), "--fpir", "0.34", "-q"]) == 0
    assert main(["gallery", "search", gal, probe, "-k", "1", "-q",
                 "--json", str(tmp_path / "t.json")]) == 0
    top = json.loads((tmp_path / "t.json").read_text())[0]["candidates"][0]  # identity level
    assert main(["identify", gal, probe, "-q", "--json", str(tmp_path / "i.json")]) == 0
    dec = json.loads((tmp_path / "i.json").read_text())[0]
    # identify = the identity-level top candidate, accepted only above the calibrated threshold
    assert dec["best"] == top["label"] and abs(dec["score"] - top["score"]) < 1e-5
    assert dec["identity"] == (dec["best"] if dec["score"] >= dec["threshold"] else None)
    # a gallery from another model: clear error (exit 2), nothing written
    err_before = (tmp_path / "gal" / "gallery.json").read_text()
    capsys.readouterr()
    assert main(["gallery", "enroll", gal, str(strangers[0]), "--model", str(other_model_dir)]) == 2
    assert "another model" in capsys.readouterr().err
    assert (tmp_path / "gal" / "gallery.json").read_text() == err_before
    assert main(["gallery", "info", gal]) == 0
