"""Alignment: Umeyama similarity, warping convention, native scale, landmark files, dlib extra."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest

from btnet.data.images import read_image, write_image
from btnet.data.resolution import downsample
from btnet.deployment.align import (
    ARCFACE_TEMPLATE,
    LANDMARK_COLUMNS,
    AlignExtraMissing,
    align_face,
    align_path,
    apply_transform,
    estimate_similarity,
    points_from_box,
    read_annotations,
    template,
    warp_affine,
)


def _similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def _dlib_installed() -> bool:
    from btnet.deployment.align import dlib_available

    return dlib_available()


@pytest.mark.parametrize("seed", range(5))
def test_umeyama_recovers_a_known_similarity(seed):
    rng = np.random.default_rng(seed)
    m = _similarity(rng.uniform(0.1, 4), rng.uniform(-np.pi, np.pi), *rng.uniform(-50, 50, 2))
    src = rng.uniform(0, 200, (5, 2))
    assert np.allclose(estimate_similarity(src, apply_transform(m, src)), m, atol=1e-9)
    # with noise it is the least-squares fit: residual no worse than the true transform's
    noisy = apply_transform(m, src) + rng.normal(0, 0.5, (5, 2))
    fit = estimate_similarity(src, noisy)
    res = lambda t: ((apply_transform(t, src) - noisy) ** 2).sum()  # noqa: E731
    assert res(fit) <= res(m) + 1e-9
    assert np.linalg.det(fit[:, :2]) > 0  # never a reflection


def test_degenerate_landmarks_and_boxes():
    with pytest.raises(ValueError, match="zero-size"):
        estimate_similarity(np.ones((5, 2)), ARCFACE_TEMPLATE)
    for box in [(10, 10, 10, 30), (10, 10, 30, 10), (30, 10, 10, 30)]:
        with pytest.raises(ValueError, match="zero-size or inverted"):
            points_from_box(box)


def test_warp_uses_integer_pixel_centres():
    img = np.zeros((20, 20, 3), np.uint8)
    img[5, 7] = 255
    out = warp_affine(img, _similarity(2, 0, 3, 1), 48)
    y, x = np.unravel_index(np.argmax(out[..., 0]), out.shape[:2])
    assert (x, y) == (2 * 7 + 3, 2 * 5 + 1)


def _face_photo(face: np.ndarray, m: np.ndarray, shape=(260, 240)):
    """Place an aligned 112 face into a bigger 'photo' by ``m``; its landmarks move with it."""
    return warp_affine(face, m, shape), apply_transform(m, ARCFACE_TEMPLATE)


def test_large_face_aligned_at_s_small_face_at_native_scale(synthetic_faces):
    face = synthetic_faces[0][0]  # 56 px built-in face
    face112 = np.asarray(
        __import__("PIL.Image", fromlist=["Image"]).fromarray(face).resize((112, 112), 3)
    )
    photo, pts = _face_photo(face112, _similarity(1.5, 0.3, 80, 10))
    big = align_face(photo, pts, size=112)
    assert big.output_size == 112 and big.native_size == pytest.approx(168, rel=1e-6)
    inner = (slice(12, -12), slice(12, -12))
    corr = np.corrcoef(big.image[inner].ravel(), face112[inner].ravel())[0, 1]
    assert corr > 0.97
    small_photo, small_pts = _face_photo(face112, _similarity(0.25, -0.2, 30, 40), (100, 100))
    small = align_face(small_photo, small_pts, size=112)
    assert small.output_size == 28 and small.image.shape == (28, 28, 3)  # not up-sampled
    ref = downsample(face112, 28)
    corr = np.corrcoef(small.image[4:-4, 4:-4].ravel(), ref[4:-4, 4:-4].ravel())[0, 1]
    assert corr > 0.9
    assert np.allclose(apply_transform(small.matrix, small_pts), template(28), atol=1e-6)
    up = align_face(small_photo, small_pts, size=112, keep_native=False)
    assert up.output_size == 112


def _lfw_precise_points(shared_data, rel: str) -> np.ndarray:
    """Where the five landmarks.tsv points of ``rel`` landed in its aligned 112 crop."""
    with open(shared_data / "lfw" / "landmarks.tsv") as fh:
        rows = {r["path"]: r for r in csv.DictReader(fh, delimiter="\t")}
    row = rows[rel]
    assert row["detected"] in ("0", "1")
    src = np.array([float(row[c]) for c in LANDMARK_COLUMNS]).reshape(5, 2)
    # The crop was made by the least-squares similarity onto the template (data README).
    return apply_transform(estimate_similarity(src, ARCFACE_TEMPLATE), src)


@pytest.mark.shared_data
def test_real_lfw_face_from_a_landmark_file(shared_data, tmp_path):
    rel = "Aaron_Eckhart/Aaron_Eckhart_0001.jpg"
    face = read_image(shared_data / "lfw" / "images" / rel)
    pts112 = _lfw_precise_points(shared_data, rel)
    assert np.abs(pts112 - ARCFACE_TEMPLATE).max() < 12  # a real face is close to the template
    big_m, small_m = _similarity(1.8, 0.25, 90, 30), _similarity(0.3, -0.1, 20, 25)
    src = tmp_path / "photos"
    write_image(src / "big.png", warp_affine(face, big_m, (330, 330)))
    write_image(src / "sub" / "small.png", warp_affine(face, small_m, (80, 80)))
    ann = tmp_path / "lm.tsv"
    lines = ["path\tdetected\t" + "\t".join(LANDMARK_COLUMNS)]
    for name, m in (("big.png", big_m), ("sub/small.png", small_m)):
        p = apply_transform(m, pts112).ravel()
        lines.append(f"{name}\t1\t" + "\t".join(f"{v:.3f}" for v in p))
    ann.write_text("\n".join(lines) + "\n")
    annotations = read_annotations(ann)
    assert set(annotations) == {"big.png", "sub/small.png"}
    report = align_path(src, tmp_path / "out", annotations=annotations, detect=False)
    assert not report.failed and len(report.written) == 2
    big = read_image(tmp_path / "out" / "big.png")
    small = read_image(tmp_path / "out" / "sub" / "small.png")
    assert big.shape == (112, 112, 3) and small.shape == (34, 34, 3)  # 0.3 x 112 = 33.6
    inner = (slice(10, -10), slice(10, -10))
    assert np.corrcoef(big[inner].ravel(), face[inner].ravel())[0, 1] > 0.97
    ref = downsample(face, 34)
    assert np.corrcoef(small[3:-3, 3:-3].ravel(), ref[3:-3, 3:-3].ravel())[0, 1] > 0.9
    tsv = (tmp_path / "out" / "aligned.tsv").read_text()
    assert "sub/small.png\tsub/small.png\tlandmarks\t33.6\t34\tok" in tsv


def test_boxes_from_a_file_and_bad_rows(synthetic_faces, tmp_path):
    face = synthetic_faces[0][0]
    photo = np.zeros((80, 80, 3), np.uint8)
    photo[10:66, 20:76] = face  # the 56 px crop sits at this box
    write_image(tmp_path / "p" / "a.png", photo)
    (tmp_path / "boxes.csv").write_text("path,x1,y1,x2,y2\na.png,20,10,76,66\nb.png,5,5,5,9\n")
    write_image(tmp_path / "p" / "b.png", photo)
    ann = read_annotations(tmp_path / "boxes.csv")
    report = align_path(
        tmp_path / "p", tmp_path / "o", annotations=ann, detect=False, refine_boxes=False
    )
    assert [w[0] for w in report.written] == ["a.png"] and report.written[0][2].method == "box"
    assert report.failed[0][0] == "b.png" and "zero-size" in report.failed[0][1]
    out = read_image(tmp_path / "o" / "a.png")
    assert out.shape == (56, 56, 3)  # native: the box is 56 px
    assert np.abs(out.astype(int) - face.astype(int)).mean() < 1  # exactly that box
    if _dlib_installed():  # dlib's landmarks inside the box: same face, about the same size
        report = align_path(tmp_path / "p", tmp_path / "o2", annotations=ann, detect=False)
        (_, _, refined), = report.written
        assert refined.method == "box+landmarks" and 40 <= refined.output_size <= 80
    (tmp_path / "bad.csv").write_text("path,foo\na.png,1\n")
    with pytest.raises(ValueError, match="needs a header"):
        read_annotations(tmp_path / "bad.csv")


def test_detection_without_dlib_says_how_to_install(tmp_path, capsys, monkeypatch):
    from btnet.cli.main import main

    monkeypatch.setitem(sys.modules, "dlib", None)  # as if the align extra were not installed
    write_image(tmp_path / "x.png", np.zeros((30, 30, 3), np.uint8))
    with pytest.raises(AlignExtraMissing, match=r"btnet\[align\]"):
        align_path(tmp_path / "x.png", tmp_path / "o")
    assert main(["align", str(tmp_path / "x.png"), str(tmp_path / "o")]) == 2
    assert "align" in capsys.readouterr().err


@pytest.mark.shared_data
@pytest.mark.skipif(not _dlib_installed(), reason="needs the align extra (dlib)")
def test_dlib_detection_on_a_real_photo_like_image(shared_data, tmp_path):
    rel = "AJ_Cook/AJ_Cook_0001.jpg"
    face = read_image(shared_data / "lfw" / "images" / rel)
    m = _similarity(2.0, 0.1, 60, 50)
    write_image(tmp_path / "p" / "x.png", warp_affine(face, m, (340, 340)))
    write_image(tmp_path / "p" / "blank.png", np.full((120, 120, 3), 128, np.uint8))
    report = align_path(tmp_path / "p", tmp_path / "o")
    assert report.failed == [("blank.png", "no face found")]
    (_, _, aligned), = report.written
    expected = apply_transform(m, _lfw_precise_points(shared_data, rel))
    assert np.abs(aligned.points - expected).max() < 12  # detector vs dataset landmarks, 2x scale
    assert aligned.output_size == 112 and aligned.method == "detected"
