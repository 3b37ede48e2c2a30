"""Template evaluation runner over IJB-C's meta files or a generic layout.

IJB-C (as the insightface evaluation reads it)::

    root/meta/ijbc_face_tid_mid.txt        <image name> <template id> <media id>
    root/meta/ijbc_template_pair_label.txt <template 1> <template 2> <0|1>
    root/meta/ijbc_name_5pts_score.txt     optional: <image name> <10 landmark values> <score>
    root/meta/ijbc_1N_gallery_G1.csv, ijbc_1N_gallery_G2.csv, ijbc_1N_probe_mixed.csv
                                           optional 1:N lists (TEMPLATE_ID, SUBJECT_ID columns)
    root/<images>/                         the faces, named as in ijbc_face_tid_mid.txt

The faces must already be aligned (e.g. 112x112 ArcFace crops); ``images`` defaults to the
first of ``aligned/``, ``loose_crop/``, ``images/`` that exists. The detector score is used as
the feature weight when the 5-point file is present (``use_weights``).

How features become templates and which 1:1 figure is reported is the ``convention``
(``"nist"``, the default, or ``"insightface"``): see :mod:`btnet.evaluation.metrics_templates`.

Generic layout (tab- or space-separated, ``#`` comments)::

    root/faces.txt    <relative image path> <template id> <media id> [<weight>]
    root/pairs.txt    optional: <template 1> <template 2> <0|1>
    root/gallery.txt  optional: <template id> <subject id>   (1:N enrolment)
    root/probes.txt   optional: <template id> <subject id>   (1:N searches)
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from btnet.data.base import ImageSource
from btnet.data.text_lists import list_rows
from btnet.evaluation.embedding import Encoder, embed_source
from btnet.evaluation.metrics_identification import DEFAULT_FPIRS
from btnet.evaluation.metrics_templates import (
    CONVENTION_DESCRIPTIONS,
    IJBC_FARS,
    aggregate_templates,
    check_convention,
    template_identification_metrics,
    template_pair_scores,
    template_verification_metrics,
)

log = logging.getLogger(__name__)

IJBC_TID_MID = "ijbc_face_tid_mid.txt"
IJBC_PAIRS = "ijbc_template_pair_label.txt"
IJBC_SCORES = "ijbc_name_5pts_score.txt"
IJBC_1N = {"G1": "ijbc_1N_gallery_G1.csv", "G2": "ijbc_1N_gallery_G2.csv"}
IJBC_1N_PROBES = "ijbc_1N_probe_mixed.csv"


@dataclass
class TemplateProtocol:
    """Images grouped into templates, with 1:1 template pairs and/or 1:N enrolment lists."""

    name: str
    images: ImageSource
    template_ids: np.ndarray
    media_ids: np.ndarray
    weights: np.ndarray | None = None
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # t1, t2, label
    galleries: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    probes: tuple[np.ndarray, np.ndarray] | None = None  # template ids, subject ids


def _rows(path: Path, min_fields: int) -> list[list[str]]:
    out = []
    for lineno, line, toks in list_rows(path):
        if len(toks) < min_fields:
            raise ValueError(f"{path}:{lineno}: expected at least {min_fields} fields, got {line!r}")
        out.append(toks)
    return out


def _ints(values: Sequence[str], where: Path) -> np.ndarray:
    try:
        return np.asarray([int(v) for v in values], dtype=np.int64)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _pairs(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = _rows(path, 3)
    return (_ints([r[0] for r in rows], path), _ints([r[1] for r in rows], path),
            _ints([r[2] for r in rows], path).astype(bool))


def _files(paths: list[Path]):
    from btnet.data.images import FileImageSource

    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} template image(s) missing, e.g. {missing[0]}")
    return FileImageSource(paths)


def _read_1n_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (TEMPLATE_ID, SUBJECT_ID) rows of an IJB-C 1:N csv (one row per image)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = {c.strip().upper(): c for c in reader.fieldnames or []}
        if "TEMPLATE_ID" not in cols or "SUBJECT_ID" not in cols:
            raise ValueError(f"{path}: needs TEMPLATE_ID and SUBJECT_ID columns")
        seen: dict[int, int] = {}
        for row in reader:
            seen.setdefault(int(row[cols["TEMPLATE_ID"]]), int(row[cols["SUBJECT_ID"]]))
    t = np.asarray(list(seen), dtype=np.int64)
    return t, np.asarray([seen[k] for k in t.tolist()], dtype=np.int64)


def read_ijbc(root: str | os.PathLike, images: str | os.PathLike | None = None,
              name: str = "IJBC") -> TemplateProtocol:
    """Read IJB-C (or IJB-B with the same file names) meta files; see the module docstring."""
    root = Path(root)
    meta = root / "meta" if (root / "meta" / IJBC_TID_MID).is_file() else root
    if not (meta / IJBC_TID_MID).is_file():
        raise FileNotFoundError(f"{root}: {IJBC_TID_MID} not found (in {root} or {root}/meta)")
    if images is None:
        for cand in ("aligned", "loose_crop", "images"):
            if (root / cand).is_dir():
                images = root / cand
                break
        else:
            raise FileNotFoundError(f"{root}: no image folder (aligned/, loose_crop/, images/)")
    img_dir = Path(images)
    rows = _rows(meta / IJBC_TID_MID, 3)
    names = [r[0] for r in rows]
    weights = None
    if (meta / IJBC_SCORES).is_file():
        score = {r[0]: float(r[-1]) for r in _rows(meta / IJBC_SCORES, 2)}
        weights = np.asarray([score.get(n, 1.0) for n in names], dtype=np.float64)
    proto = TemplateProtocol(
        name=name,
        images=_files([img_dir / n for n in names]),
        template_ids=_ints([r[1] for r in rows], meta / IJBC_TID_MID),
        media_ids=_ints([r[2] for r in rows], meta / IJBC_TID_MID),
        weights=weights,
    )
    if (meta / IJBC_PAIRS).is_file():
        proto.pairs = _pairs(meta / IJBC_PAIRS)
    for key, fname in IJBC_1N.items():
        if (meta / fname).is_file():
            proto.galleries[key] = _read_1n_csv(meta / fname)
    if proto.galleries and (meta / IJBC_1N_PROBES).is_file():
        proto.probes = _read_1n_csv(meta / IJBC_1N_PROBES)
    return proto


def read_template_folder(root: str | os.PathLike, name: str | None = None) -> TemplateProtocol:
    """Read the generic template layout (see the module docstring)."""
    root = Path(root)
    if not (root / "faces.txt").is_file():
        raise FileNotFoundError(f"{root}: faces.txt missing")
    rows = _rows(root / "faces.txt", 3)
    weights = None
    if any(len(r) >= 4 for r in rows):
        weights = np.asarray([float(r[3]) if len(r) >= 4 else 1.0 for r in rows])
    proto = TemplateProtocol(
        name=name or root.name,
        images=_files([root / r[0] for r in rows]),
        template_ids=np.asarray([r[1] for r in rows], dtype=object),
        media_ids=np.asarray([r[2] for r in rows], dtype=object),
        weights=weights,
    )
    if (root / "pairs.txt").is_file():
        rows_p = _rows(root / "pairs.txt", 3)
        proto.pairs = (np.asarray([r[0] for r in rows_p], dtype=object),
                       np.asarray([r[1] for r in rows_p], dtype=object),
                       _ints([r[2] for r in rows_p], root / "pairs.txt").astype(bool))
    if (root / "gallery.txt").is_file() and (root / "probes.txt").is_file():
        g = _rows(root / "gallery.txt", 2)
        p = _rows(root / "probes.txt", 2)
        proto.galleries["gallery"] = (np.asarray([r[0] for r in g], dtype=object),
                                      np.asarray([r[1] for r in g], dtype=object))
        proto.probes = (np.asarray([r[0] for r in p], dtype=object),
                        np.asarray([r[1] for r in p], dtype=object))
    return proto


def open_template_protocol(path: str | os.PathLike, images: str | os.PathLike | None = None,
                           name: str | None = None) -> TemplateProtocol:
    """The generic layout if ``faces.txt`` is there, else IJB-C meta files."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"template protocol not found: {p}")
    if (p / "faces.txt").is_file():
        return read_template_folder(p, name)
    return read_ijbc(p, images, name or p.name)


def _select(templates: np.ndarray, feats: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    pos = {v: i for i, v in enumerate(templates.tolist())}
    missing = [t for t in wanted.tolist() if t not in pos]
    if missing:
        raise ValueError(f"{len(missing)} 1:N template(s) have no images, e.g. {missing[0]!r}")
    return feats[[pos[t] for t in wanted.tolist()]]


def evaluate_templates(
    encoder: Encoder,
    protocol: TemplateProtocol,
    model_name: str | None = None,
    far_targets: Sequence[float] = IJBC_FARS,
    rank: int = 20,
    fpir_targets: Sequence[float] = DEFAULT_FPIRS,
    use_weights: bool = True,
    resolution: int | None = None,
    canonical: int = 112,
    batch_size: int = 64,
    flip: bool = False,
    progress: bool = True,
    convention: str = "nist",
) -> dict:
    """1:1 over template pairs and 1:N per gallery, JSON-ready.

    ``resolution`` degrades every face to ``r x r`` first (the multi-resolution IJB-C study).
    ``convention="nist"``: unit-length image features, TAR at FAR <= f; ``"insightface"``:
    image features keep their norms (the encoder must report them), TPR at the nearest FPR.
    Both multiply by the detector score when ``use_weights`` and the protocol has one.
    """
    check_convention(convention)
    name = model_name or getattr(encoder, "name", None) or "model"
    transform = None
    if resolution is not None:
        from btnet.evaluation.verification import resolution_transform

        fn = resolution_transform(int(resolution), canonical)

        def transform(img: np.ndarray) -> np.ndarray:
            return fn(img, 0)

    norm_parts: list[np.ndarray] | None = [] if convention == "insightface" else None
    feats = embed_source(encoder, protocol.images, transform=transform, batch_size=batch_size,
                         flip=flip, progress=progress, desc=f"{name} {protocol.name}",
                         norms_out=norm_parts)
    norms = np.concatenate(norm_parts) if norm_parts else None
    weights = protocol.weights if use_weights else None
    templates, agg = aggregate_templates(feats, protocol.template_ids, protocol.media_ids,
                                         weights, norms=norms)
    out: dict = {"model": name, "protocol": protocol.name, "resolution": resolution,
                 "convention": convention,
                 "convention_definition": CONVENTION_DESCRIPTIONS[convention],
                 "detector_weights": weights is not None,
                 "n_images": int(len(feats)), "n_templates": int(len(templates))}
    if protocol.pairs is not None:
        t1, t2, label = protocol.pairs
        scores = template_pair_scores(templates, agg, t1, t2)
        out["verification"] = template_verification_metrics(scores, label, far_targets,
                                                             convention)
    if protocol.galleries and protocol.probes is not None:
        p_t, p_s = protocol.probes
        p_feats = _select(templates, agg, p_t)
        out["identification"] = {}
        for gname, (g_t, g_s) in protocol.galleries.items():
            out["identification"][gname] = template_identification_metrics(
                _select(templates, agg, g_t), g_s, p_feats, p_s, rank, fpir_targets)
    return out
