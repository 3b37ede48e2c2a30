"""Open-set 1:N identification protocols: QMUL-SurvFace and a generic list layout.

QMUL-SurvFace ships ``Face_Identification_Test_Set/{gallery,mated_probe,unmated_probe}/`` with
``gallery_img_ID_pairs.mat`` (``gallery_set``, ``gallery_ids``) and
``mated_probe_img_ID_pairs.mat`` (``mated_probe_set``, ``mated_probe_ids``); unmated probes are
every image of ``unmated_probe/``.

The generic layout is a folder that users write for their own data::

    protocol/
      gallery.txt    relative/path.jpg <identity>      (one line per gallery image)
      mated.txt      relative/path.jpg <identity>      (identity must be in the gallery)
      unmated.txt    relative/path.jpg [<identity>]    (identity, if given, must NOT be)
      meta.json      optional, loaded into OpenSetProtocol.extra

Fields are separated by a tab, or by spaces when the line has no tab. Paths are relative to
the folder. Identities are strings, read back as integers when all of them are integers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from btnet.data.base import OpenSetProtocol
from btnet.data.images import FileImageSource, encode_image, is_image_file
from btnet.data.text_lists import list_rows, tab_hint

SURVFACE_DIR = "Face_Identification_Test_Set"
LIST_FILES = ("gallery.txt", "mated.txt", "unmated.txt")


# --------------------------------------------------------------------------- QMUL-SurvFace


def _flatten_cell(value: np.ndarray) -> list:
    """Flatten a MATLAB cell / string / numeric array from ``loadmat`` into Python scalars."""
    out: list = []

    def walk(v) -> None:
        if isinstance(v, np.ndarray):
            if v.dtype == object:
                for x in v.flat:
                    walk(x)
            elif v.dtype.kind == "U":
                out.extend(str(x).strip() for x in v.ravel().tolist())
            elif v.dtype.kind == "S":
                out.extend(x.decode("utf-8", "replace").strip() for x in v.ravel().tolist())
            else:
                out.extend(v.ravel().tolist())
        elif isinstance(v, bytes):
            out.append(v.decode("utf-8", "replace"))
        else:
            out.append(v)

    walk(value)
    return out


def _load_mat_lists(mat_path: Path, set_key: str, id_key: str) -> tuple[list[str], np.ndarray]:
    from scipy.io import loadmat

    if not mat_path.is_file():
        raise FileNotFoundError(f"QMUL-SurvFace id list not found: {mat_path}")
    try:
        mat = loadmat(str(mat_path))
    except Exception as exc:  # scipy raises several unrelated types for bad files
        raise ValueError(f"{mat_path}: not a readable MATLAB file ({exc})") from exc
    for key in (set_key, id_key):
        if key not in mat:
            found = ", ".join(k for k in mat if not k.startswith("__"))
            raise ValueError(f"{mat_path}: variable {key!r} missing (found: {found})")
    names = [str(n).strip() for n in _flatten_cell(mat[set_key])]
    ids = _flatten_cell(mat[id_key])
    if len(names) != len(ids):
        raise ValueError(f"{mat_path}: {len(names)} images in {set_key} but {len(ids)} ids in "
                         f"{id_key}")
    arr = np.asarray(ids)
    if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    return names, arr


def _find_survface_dir(path: Path) -> Path:
    for cand in (path, path / SURVFACE_DIR, path / "QMUL-SurvFace" / SURVFACE_DIR):
        if (cand / "gallery").is_dir() and (cand / "gallery_img_ID_pairs.mat").is_file():
            return cand
    raise FileNotFoundError(
        f"{path}: not a QMUL-SurvFace identification set (expected {SURVFACE_DIR}/ with "
        "gallery/, mated_probe/, unmated_probe/ and gallery_img_ID_pairs.mat)"
    )


def _existing(folder: Path, names: list[str], what: str) -> list[Path]:
    paths = [folder / n for n in names]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} {what} image(s) listed in the .mat file are "
                                f"missing, e.g. {missing[0]}")
    return paths


def read_survface(path: str | os.PathLike, name: str = "survface") -> OpenSetProtocol:
    """Read the QMUL-SurvFace face-identification test set."""
    d = _find_survface_dir(Path(path))
    g_names, g_ids = _load_mat_lists(d / "gallery_img_ID_pairs.mat", "gallery_set", "gallery_ids")
    m_names, m_ids = _load_mat_lists(
        d / "mated_probe_img_ID_pairs.mat", "mated_probe_set", "mated_probe_ids"
    )
    unmated_dir = d / "unmated_probe"
    if not unmated_dir.is_dir():
        raise FileNotFoundError(f"{unmated_dir}: folder of unmated probes missing")
    u_names = sorted(e.name for e in os.scandir(unmated_dir) if is_image_file(e.name))
    _check_mated(m_ids, g_ids, d / "mated_probe_img_ID_pairs.mat")
    return OpenSetProtocol(
        name=name,
        gallery=FileImageSource(_existing(d / "gallery", g_names, "gallery")),
        gallery_ids=g_ids,
        mated=FileImageSource(_existing(d / "mated_probe", m_names, "mated probe")),
        mated_ids=m_ids,
        unmated=FileImageSource([unmated_dir / n for n in u_names]),
        extra={"format": "survface", "root": str(d)},
    )


def _check_mated(mated_ids: np.ndarray, gallery_ids: np.ndarray, where: Path) -> None:
    gallery = set(np.asarray(gallery_ids).tolist())
    absent = [i for i in np.asarray(mated_ids).tolist() if i not in gallery]
    if absent:
        raise ValueError(f"{where}: {len(absent)} mated probe(s) have identities absent from the "
                         f"gallery, e.g. {absent[0]!r}")


# --------------------------------------------------------------------------- generic layout


def _parse_list(path: Path, need_id: bool) -> tuple[list[str], list[str | None]]:
    paths: list[str] = []
    ids: list[str | None] = []
    for lineno, line, toks in list_rows(path):
        if len(toks) == 2:
            paths.append(toks[0])
            ids.append(toks[1])
        elif len(toks) == 1 and not need_id:
            paths.append(toks[0])
            ids.append(None)
        else:
            form = "path identity" if need_id else "path [identity]"
            raise ValueError(f"{path}:{lineno}: expected '{form}', got {line!r}"
                             f"{tab_hint(line, toks, 2)}")
    return paths, ids


def _ids_array(ids: list[str]) -> np.ndarray:
    try:
        return np.asarray([int(i) for i in ids], dtype=np.int64)
    except ValueError:
        return np.asarray(ids, dtype=object)


def read_openset_folder(path: str | os.PathLike, name: str | None = None) -> OpenSetProtocol:
    """Read the generic open-set layout described in this module's docstring."""
    root = Path(path)
    for f in LIST_FILES:
        if not (root / f).is_file():
            raise FileNotFoundError(f"{root}: open-set list {f} missing (need {', '.join(LIST_FILES)})")
    g_paths, g_ids = _parse_list(root / "gallery.txt", True)
    m_paths, m_ids = _parse_list(root / "mated.txt", True)
    u_paths, u_ids = _parse_list(root / "unmated.txt", False)
    if not g_paths:
        raise ValueError(f"{root / 'gallery.txt'}: empty gallery")
    all_ids = _ids_array([*g_ids, *m_ids])  # parse jointly so both sides get one type
    gallery_ids, mated_ids = all_ids[: len(g_ids)], all_ids[len(g_ids) :]
    _check_mated(mated_ids, gallery_ids, root / "mated.txt")
    gallery_set = set(g_ids)
    clash = [i for i in u_ids if i is not None and i in gallery_set]
    if clash:
        raise ValueError(f"{root / 'unmated.txt'}: {len(clash)} unmated probe(s) carry gallery "
                         f"identities, e.g. {clash[0]!r}")
    for list_name, rel in (("gallery.txt", g_paths), ("mated.txt", m_paths),
                           ("unmated.txt", u_paths)):
        missing = [p for p in rel if not (root / p).is_file()]
        if missing:
            raise FileNotFoundError(f"{root / list_name}: {len(missing)} image(s) missing, "
                                    f"e.g. {root / missing[0]}")
    extra: dict = {"format": "openset-folder", "root": str(root)}
    if (root / "meta.json").is_file():
        extra.update(json.loads((root / "meta.json").read_text(encoding="utf-8")))
    if any(i is not None for i in u_ids):
        extra["unmated_ids"] = [i for i in u_ids]
    return OpenSetProtocol(
        name=name or root.name,
        gallery=FileImageSource([root / p for p in g_paths]),
        gallery_ids=gallery_ids,
        mated=FileImageSource([root / p for p in m_paths]),
        mated_ids=mated_ids,
        unmated=FileImageSource([root / p for p in u_paths]),
        extra=extra,
    )


def _id_token(value, where: str) -> str:
    tok = str(value.item() if isinstance(value, np.generic) else value)
    if not tok or any(c.isspace() for c in tok):
        raise ValueError(f"{where}: identity {tok!r} is empty or contains whitespace")
    return tok


def write_openset(
    out_dir: str | os.PathLike,
    protocol: OpenSetProtocol,
    image_format: str = "png",
    quality: int = 95,
    meta: dict | None = None,
) -> Path:
    """Write ``protocol`` in the generic layout (images under gallery/, mated/, unmated/).

    PNG by default: low-resolution probes would lose their remaining detail to JPEG again.
    ``meta`` (JSON-serialisable) is stored in ``meta.json`` and comes back in ``extra``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ext = "jpg" if image_format.lower() in ("jpg", "jpeg") else image_format.lower()
    unmated_ids = protocol.extra.get("unmated_ids")
    parts = (
        ("gallery", protocol.gallery, protocol.gallery_ids),
        ("mated", protocol.mated, protocol.mated_ids),
        ("unmated", protocol.unmated, unmated_ids),
    )
    if len(protocol.gallery) != len(protocol.gallery_ids) or len(protocol.mated) != len(
        protocol.mated_ids
    ):
        raise ValueError(f"{protocol.name}: image and identity counts differ")
    for part, images, ids in parts:
        (out / part).mkdir(exist_ok=True)
        lines = []
        for i in range(len(images)):
            rel = f"{part}/{i:07d}.{ext}"
            (out / rel).write_bytes(encode_image(images[i], ext, quality))
            if ids is not None and ids[i] is not None:
                lines.append(f"{rel}\t{_id_token(ids[i], f'{protocol.name} {part} {i}')}")
            else:
                lines.append(rel)
        (out / f"{part}.txt").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    if meta:
        (out / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out


# --------------------------------------------------------------------------- dispatch


def open_openset(path: str | os.PathLike, name: str | None = None) -> OpenSetProtocol:
    """Open a QMUL-SurvFace release or a generic open-set folder."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"open-set protocol not found: {p}")
    if (p / "gallery.txt").is_file():
        return read_openset_folder(p, name)
    return read_survface(p, name or "survface")
