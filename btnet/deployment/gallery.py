"""An on-disk gallery of enrolled faces: who is this, or nobody we know?

Layout of a gallery folder::

    gallery.json              manifest: model fingerprint, embedding size, committed shards
                              (name, rows, sha256), optional calibration set
    shard-000001.safetensors  one per enrolment: embeddings (N x D float32), source_size
                              (N x 2: height, width), path (N: the model path that served each
                              face); labels and file names in the safetensors metadata
    calibration.safetensors   optional: embeddings of unmated probes for the open-set threshold
    gallery.lock              serialises writers

Why this shape: enrolment only ever *adds* a new shard file (written to a temporary name,
fsynced, renamed) and then commits it by atomically replacing the manifest. A crash at any point
leaves the previous manifest and every shard it lists untouched; a shard that was written but
never committed is ignored (and overwritten by the next enrolment). Every shard's checksum is
verified when the gallery is read, so a damaged file is reported by name instead of silently
returning wrong neighbours. Each shard also carries the fingerprint, the model path and a
checksum of its own content, so :func:`recover_manifest` can rebuild a lost manifest from the
shards without ever accepting bytes it cannot verify: a shard that disagrees with the manifest's
checksum (or, without a manifest, with its own) is moved to ``quarantine/``, never re-blessed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from btnet.deployment.search import topk
from btnet.inference.encoding import l2_normalize
from btnet.io.atomic import atomic_write_text, atomic_write_with, file_sha256

FORMAT = "btnet-gallery"
VERSION = 1
MANIFEST = "gallery.json"
LOCK = "gallery.lock"
CALIBRATION = "calibration.safetensors"
_SHARD_RE = re.compile(r"^shard-(\d{6})\.safetensors$")
LEVELS = ("identity", "image")


class GalleryError(ValueError):
    """A gallery cannot be used as asked; the message says why and what to do."""


class GalleryMismatchError(GalleryError):
    """The gallery was enrolled with another model (fingerprint or embedding size differ)."""


class GalleryCorruptError(GalleryError):
    """A gallery file is damaged (unreadable manifest, checksum mismatch, bad shard)."""


@dataclass
class SearchResult:
    """Top-k candidates per probe: labels (Q lists of k), scores (Q x k) and row indices.

    ``indices`` are gallery rows for ``level="image"`` and identity numbers for ``"identity"``.
    """

    labels: list[list[str | None]]
    scores: np.ndarray
    indices: np.ndarray
    level: str


@dataclass
class Identification:
    """Open-set decision for one probe: ``label`` is None when the best score is below threshold."""

    label: str | None
    score: float
    best_label: str | None
    threshold: float


def _shard_name(n: int) -> str:
    return f"shard-{n:06d}.safetensors"


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Exclusive lock on ``gallery.lock`` (POSIX); two enrolments never interleave commits."""
    fh = open(folder / LOCK, "a+")
    try:
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - non-POSIX: single writer assumed
            pass
        yield
    finally:
        fh.close()


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a btnet gallery (no {MANIFEST})")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GalleryCorruptError(
            f"{path} is damaged ({exc}); the enrolled shards are untouched: rebuild the "
            f"manifest with `btnet gallery recover {folder}`"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise GalleryCorruptError(f"{path}: not a btnet gallery manifest")
    if int(data.get("version", 0)) > VERSION:
        raise GalleryError(f"{path}: written by a newer btnet (version {data['version']})")
    for key in ("fingerprint", "embedding_size", "shards", "next_shard"):
        if key not in data:
            raise GalleryCorruptError(f"{path}: manifest lacks {key!r}")
    return data


def _write_manifest(folder: Path, data: dict[str, Any]) -> None:
    atomic_write_text(folder / MANIFEST, json.dumps(data, indent=1) + "\n")


def content_digest(tensors: dict[str, np.ndarray], meta: dict[str, str]) -> str:
    """SHA-256 over a shard's tensors (name, dtype, shape, bytes) and its descriptive metadata.

    Stored inside the shard, it lets :func:`recover_manifest` verify a shard with no manifest
    to compare against; a single flipped byte or a NaN written into a row changes it.
    """
    h = hashlib.sha256()
    for key in sorted(tensors):
        arr = np.ascontiguousarray(tensors[key])
        h.update(f"{key}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    for key in sorted(k for k in meta if k != "content_sha256"):
        h.update(f"{key}={meta[key]}|".encode())
    return "sha256:" + h.hexdigest()


def _check_content(path: Path, data: dict[str, Any]) -> bool:
    """Raise if a loaded shard's own checksum or its values are wrong; False if it has none.

    Stored rows are unit vectors, so NaN, infinity or a wrong norm is damage even in a shard
    written before shards carried a checksum.
    """
    emb = data["embeddings"]
    if emb.ndim != 2 or not np.isfinite(emb).all():
        raise GalleryCorruptError(f"gallery file {path.name} holds non-finite embeddings")
    norms = np.linalg.norm(emb.astype(np.float64), axis=1)
    if emb.shape[0] and np.abs(norms - 1.0).max() > 1e-3:
        row = int(np.argmax(np.abs(norms - 1.0)))
        raise GalleryCorruptError(f"gallery file {path.name}: row {row} is not a unit vector")
    stored = data["meta"].get("content_sha256")
    if stored is None:
        return False
    tensors = {k: v for k, v in data.items() if isinstance(v, np.ndarray)}
    if content_digest(tensors, data["meta"]) != stored:
        raise GalleryCorruptError(f"gallery file {path.name} fails its own content checksum")
    return True


def _load_shard(path: Path, expected_sha: str | None) -> dict[str, Any]:
    from safetensors import safe_open

    if not path.is_file():
        raise GalleryCorruptError(f"gallery file {path} is missing (listed in {MANIFEST})")
    if expected_sha is not None and file_sha256(path) != expected_sha:
        raise GalleryCorruptError(
            f"gallery file {path.name} is corrupted (checksum mismatch); other shards are "
            "intact: restore this file from a backup, or run `btnet gallery recover` to move it "
            "to quarantine/ and go on without its faces"
        )
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            out = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        out["labels"] = json.loads(meta.get("labels", "[]"))
        out["files"] = json.loads(meta.get("files", "[]"))
        out["meta"] = meta
    except Exception as exc:
        raise GalleryCorruptError(f"gallery file {path.name} is unreadable ({exc})") from exc
    n = out["embeddings"].shape[0] if "embeddings" in out else -1
    if n < 0 or len(out["labels"]) != n:
        raise GalleryCorruptError(f"gallery file {path.name} is inconsistent (labels vs rows)")
    return out


def threshold_for_fpir(unmated_scores: np.ndarray, target_fpir: float) -> float:
    """Smallest threshold t with FPIR(t) = mean(score >= t) <= ``target_fpir``.

    With n unmated scores at most floor(target * n) may pass; t sits just above the next one.
    """
    s = np.sort(np.asarray(unmated_scores, dtype=np.float32).ravel())[::-1]
    if s.size == 0:
        raise GalleryError("calibration needs at least one unmated probe")
    if not 0.0 <= target_fpir <= 1.0:
        raise ValueError(f"target FPIR must be in [0, 1], got {target_fpir}")
    allowed = int(np.floor(target_fpir * s.size + 1e-9))
    if allowed >= s.size:
        return float(s[-1])
    return float(np.nextafter(s[allowed], np.float32(np.inf)))


class Gallery:
    """A gallery folder; open with :meth:`create`, :meth:`open` or :meth:`open_or_create`."""

    def __init__(self, folder: Path, manifest: dict[str, Any]):
        self.folder = folder
        self.manifest = manifest
        self._data: dict[str, Any] | None = None
        self._templates: tuple[list[str], np.ndarray] | None = None
        self._cal_scores: np.ndarray | None = None

    # --- opening -----------------------------------------------------------------------------
    @classmethod
    def create(
        cls, folder: str | Path, *, fingerprint: str, embedding_size: int, model: str = ""
    ) -> Gallery:
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise GalleryError(f"{folder} is a file, not a gallery folder")
        if (folder / MANIFEST).exists():
            raise GalleryError(f"{folder} already holds a gallery")
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "fingerprint": fingerprint,
            "embedding_size": int(embedding_size),
            "model": model,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "shards": [],
            "next_shard": 1,
            "calibration": None,
        }
        with _locked(folder):
            _write_manifest(folder, manifest)
        return cls(folder, manifest)

    @classmethod
    def open(
        cls,
        folder: str | Path,
        *,
        fingerprint: str | None = None,
        embedding_size: int | None = None,
    ) -> Gallery:
        """Open and check that the gallery belongs to the given model (when given)."""
        folder = Path(folder)
        g = cls(folder, _read_manifest(folder))
        g.check_model(fingerprint, embedding_size)
        return g

    @classmethod
    def open_or_create(
        cls, folder: str | Path, *, fingerprint: str, embedding_size: int, model: str = ""
    ) -> Gallery:
        folder = Path(folder)
        if (folder / MANIFEST).exists():
            return cls.open(folder, fingerprint=fingerprint, embedding_size=embedding_size)
        return cls.create(folder, fingerprint=fingerprint, embedding_size=embedding_size, model=model)

    def check_model(self, fingerprint: str | None, embedding_size: int | None) -> None:
        m = self.manifest
        if embedding_size is not None and int(embedding_size) != int(m["embedding_size"]):
            raise GalleryMismatchError(
                f"{self.folder}: gallery holds {m['embedding_size']}-d embeddings, the model "
                f"makes {embedding_size}-d ones: use the model the gallery was enrolled with "
                f"({m.get('model') or 'see gallery.json'})"
            )
        if fingerprint is not None and fingerprint != m["fingerprint"]:
            raise GalleryMismatchError(
                f"{self.folder}: gallery was enrolled with another model (fingerprint "
                f"{m['fingerprint'][:19]}..., this model {fingerprint[:19]}...); embeddings of "
                f"different models are not comparable: use {m.get('model') or 'the same model'} "
                "or enrol into a new gallery"
            )

    # --- contents ----------------------------------------------------------------------------
    @property
    def embedding_size(self) -> int:
        return int(self.manifest["embedding_size"])

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["fingerprint"])

    def __len__(self) -> int:
        return int(sum(s["rows"] for s in self.manifest["shards"]))

    def _load(self) -> dict[str, Any]:
        if self._data is None:
            d = self.embedding_size
            parts = [_load_shard(self.folder / s["file"], s["sha256"]) for s in self.manifest["shards"]]
            for s, p in zip(self.manifest["shards"], parts):
                if p["embeddings"].shape != (s["rows"], d):
                    raise GalleryCorruptError(f"{s['file']}: shape {p['embeddings'].shape}")
            cat = np.concatenate
            self._data = {
                "embeddings": cat([p["embeddings"] for p in parts]) if parts else np.zeros((0, d), np.float32),
                "source_size": cat([p["source_size"] for p in parts]) if parts else np.zeros((0, 2), np.int32),
                "path": cat([p["path"] for p in parts]) if parts else np.zeros(0, np.int32),
                "labels": [lab for p in parts for lab in p["labels"]],
                "files": [f for p in parts for f in p["files"]],
            }
        return self._data

    @property
    def embeddings(self) -> np.ndarray:
        return self._load()["embeddings"]

    @property
    def labels(self) -> list[str]:
        return self._load()["labels"]

    @property
    def source_sizes(self) -> np.ndarray:
        return self._load()["source_size"]

    @property
    def served_paths(self) -> np.ndarray:
        return self._load()["path"]

    @property
    def files(self) -> list[str]:
        return self._load()["files"]

    def identities(self) -> list[str]:
        return sorted(set(self.labels))

    def templates(self) -> tuple[list[str], np.ndarray]:
        """Per-identity mean of the (normalised) embeddings, re-normalised (SurvFace protocol)."""
        if self._templates is None:
            names = self.identities()
            pos = {n: i for i, n in enumerate(names)}
            idx = np.array([pos[lab] for lab in self.labels], dtype=np.int64)
            sums = np.zeros((len(names), self.embedding_size), dtype=np.float64)
            np.add.at(sums, idx, self.embeddings.astype(np.float64))
            self._templates = (names, l2_normalize(sums, dtype=np.float64).astype(np.float32))
        return self._templates

    # --- enrolment ---------------------------------------------------------------------------
    def append(
        self,
        embeddings: np.ndarray,
        labels: Sequence[str],
        *,
        source_sizes: np.ndarray | None = None,
        paths: Sequence[int] | None = None,
        files: Sequence[str] | None = None,
    ) -> str:
        """Enrol rows as one new shard and commit it; returns the shard's file name."""
        from safetensors.numpy import save_file

        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        if not np.isfinite(emb).all():
            raise ValueError("embeddings contain NaN or infinity; refusing to enrol them")
        emb = np.ascontiguousarray(l2_normalize(emb))
        n = emb.shape[0] if emb.ndim == 2 else -1
        if n < 0 or emb.shape[1] != self.embedding_size:
            raise GalleryMismatchError(
                f"embeddings of shape {emb.shape} do not fit this {self.embedding_size}-d gallery"
            )
        if len(labels) != n:
            raise ValueError(f"{n} embeddings but {len(labels)} labels")
        if n == 0:
            raise ValueError("nothing to enrol")
        sizes = np.zeros((n, 2), np.int32) if source_sizes is None else np.asarray(source_sizes)
        tensors = {
            "embeddings": emb,
            "source_size": np.ascontiguousarray(sizes, dtype=np.int32).reshape(n, 2),
            "path": np.asarray(paths if paths is not None else [0] * n, dtype=np.int32).reshape(n),
        }
        meta = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "embedding_size": str(self.embedding_size),
            "labels": json.dumps([str(x) for x in labels]),
            "files": json.dumps([str(x) for x in (files if files is not None else [""] * n)]),
            "model": str(self.manifest.get("model") or ""),
        }
        meta["content_sha256"] = content_digest(tensors, meta)
        with _locked(self.folder):
            current = _read_manifest(self.folder)  # another process may have committed meanwhile
            if current["fingerprint"] != self.fingerprint:
                raise GalleryMismatchError(f"{self.folder}: gallery changed model while open")
            _remove_stale_temporaries(self.folder)  # left by a writer killed mid-write
            name = _shard_name(int(current["next_shard"]))
            path = self.folder / name
            atomic_write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
            entry = {"file": name, "rows": n, "sha256": file_sha256(path)}
            updated = {
                **current,
                "shards": [*current["shards"], entry],
                "next_shard": int(current["next_shard"]) + 1,
            }
            _write_manifest(self.folder, updated)
        self.manifest = updated
        self._data = self._templates = self._cal_scores = None
        return name

    # --- search ------------------------------------------------------------------------------
    def search(
        self, probes: np.ndarray, k: int = 5, *, level: str = "identity", backend: str = "auto"
    ) -> SearchResult:
        """Top-k by cosine similarity against identity templates or single enrolled images."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        q = l2_normalize(probes)
        if q.ndim != 2 or q.shape[1] != self.embedding_size:
            raise GalleryMismatchError(
                f"probe embeddings of shape {q.shape} do not fit this {self.embedding_size}-d gallery"
            )
        if len(self) == 0:
            raise GalleryError(f"{self.folder}: the gallery is empty; enrol faces first")
        if level == "identity":
            names, vectors = self.templates()
        else:
            names, vectors = self.labels, self.embeddings
        scores, idx = topk(vectors, q, k, backend)
        labels = [[names[i] if i >= 0 else None for i in row] for row in idx]
        return SearchResult(labels, scores, idx, level)

    # --- open-set ----------------------------------------------------------------------------
    def calibrate(self, unmated: np.ndarray, target_fpir: float, *, backend: str = "auto") -> float:
        """Store unmated probe embeddings and the target FPIR; returns the threshold now.

        The embeddings are stored (not just the threshold) so the threshold follows the gallery
        as identities are added: it is recomputed against the current gallery when used.
        """
        from safetensors.numpy import save_file

        emb = np.ascontiguousarray(l2_normalize(unmated))
        if emb.ndim != 2 or emb.shape[1] != self.embedding_size or emb.shape[0] == 0:
            raise GalleryMismatchError(f"calibration embeddings of shape {emb.shape} do not fit")
        if not 0.0 < target_fpir < 1.0:
            raise ValueError(f"target FPIR must be in (0, 1), got {target_fpir}")
        meta = {"fingerprint": self.fingerprint, "target_fpir": repr(float(target_fpir))}
        meta["content_sha256"] = content_digest({"embeddings": emb}, meta)
        with _locked(self.folder):
            current = _read_manifest(self.folder)
            path = self.folder / CALIBRATION
            atomic_write_with(path, lambda tmp: save_file({"embeddings": emb}, str(tmp), metadata=meta))
            current["calibration"] = {
                "file": CALIBRATION,
                "rows": int(emb.shape[0]),
                "sha256": file_sha256(path),
                "target_fpir": float(target_fpir),
            }
            _write_manifest(self.folder, current)
        self.manifest = current
        self._cal_scores = None
        return self.threshold(backend=backend)

    def unmated_scores(self, backend: str = "auto") -> np.ndarray:
        cal = self.manifest.get("calibration")
        if not cal:
            raise GalleryError(
                f"{self.folder}: no calibration set; run `btnet gallery calibrate` with unmated "
                "probes (people not enrolled) or pass a fixed --threshold"
            )
        if self._cal_scores is None:
            data = _load_calibration(self.folder / cal["file"], cal["sha256"])
            self._cal_scores = self.search(data, 1, backend=backend).scores[:, 0]
        return self._cal_scores

    def threshold(self, target_fpir: float | None = None, *, backend: str = "auto") -> float:
        """Threshold for ``target_fpir`` (default: the calibrated target) on the current gallery."""
        cal = self.manifest.get("calibration") or {}
        target = cal.get("target_fpir") if target_fpir is None else target_fpir
        scores = self.unmated_scores(backend)
        if target is None:  # pragma: no cover - calibration always stores a target
            raise GalleryError("no target FPIR given")
        return threshold_for_fpir(scores, float(target))

    def identify(
        self,
        probes: np.ndarray,
        *,
        threshold: float | None = None,
        target_fpir: float | None = None,
        backend: str = "auto",
    ) -> list[Identification]:
        """Rank-1 identity if its score reaches the threshold, else None (not enrolled)."""
        t = threshold if threshold is not None else self.threshold(target_fpir, backend=backend)
        res = self.search(probes, 1, backend=backend)
        out = []
        for labels, score in zip(res.labels, res.scores[:, 0]):
            best = labels[0]
            out.append(Identification(best if score >= t else None, float(score), best, float(t)))
        return out


def _load_calibration(path: Path, sha: str) -> np.ndarray:
    from safetensors.numpy import load_file

    if not path.is_file():
        raise GalleryCorruptError(f"calibration file {path} is missing; run calibrate again")
    if file_sha256(path) != sha:
        raise GalleryCorruptError(f"calibration file {path.name} is corrupted; run calibrate again")
    try:
        return load_file(str(path))["embeddings"]
    except Exception as exc:
        raise GalleryCorruptError(f"calibration file {path.name} is unreadable ({exc})") from exc


QUARANTINE = "quarantine"
_TMP_RE = re.compile(r"^\.(gallery\.json|shard-\d{6}\.safetensors|calibration\.safetensors)\..*\.tmp$")


def _remove_stale_temporaries(folder: Path) -> list[str]:
    """Delete temporary files of writes that never finished (call only under the lock)."""
    removed = []
    for p in folder.iterdir():
        if _TMP_RE.match(p.name) and p.is_file():
            p.unlink()
            removed.append(p.name)
    return sorted(removed)


def _free_name(path: Path) -> Path:
    """``path`` itself, or ``path.1``, ``path.2``, ... : the first that does not exist yet."""
    if not path.exists():
        return path
    n = 1
    while path.with_name(f"{path.name}.{n}").exists():
        n += 1
    return path.with_name(f"{path.name}.{n}")


def _quarantine(folder: Path, name: str) -> str:
    target = _free_name(folder / QUARANTINE / name)
    target.parent.mkdir(exist_ok=True)
    os.replace(folder / name, target)
    return str(target.relative_to(folder))


@dataclass
class Recovery:
    """What :func:`recover_manifest` did; nothing is deleted except stale temporary files."""

    rows: int = 0
    kept: list[str] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (moved to, why)
    missing: list[str] = field(default_factory=list)  # listed in the manifest, file absent
    ignored: list[str] = field(default_factory=list)  # uncommitted or unverifiable, left alone
    removed_tmp: list[str] = field(default_factory=list)
    calibration: str = "none"  # kept, restored, dropped (why) or none
    model: str = ""
    backup: str | None = None  # where the replaced manifest was saved
    had_manifest: bool = False
    changed: bool = False

    @property
    def skipped(self) -> list[str]:
        return [Path(q).name for q, _ in self.quarantined] + self.missing + self.ignored


def _reason(exc: Exception) -> str:
    """The finding of an error without its advice (recover is acting on it already)."""
    return str(exc).split(";")[0]


def _shard_number(name: str) -> int:
    m = _SHARD_RE.match(name)
    return int(m.group(1)) if m else 0


def recover_manifest(folder: str | Path, *, trust_unverified: bool = False) -> Recovery:
    """Repair a gallery: keep what verifies, quarantine what does not, never guess.

    With a readable manifest, a shard is kept only if its file still has the checksum the
    manifest recorded; a damaged one is moved to ``quarantine/`` and the manifest rewritten
    without it, keeping the model and the calibration. Shards the manifest does not list were
    never committed and stay out. With no readable manifest, a shard is taken only if its own
    content checksum verifies; shards written before btnet stored that checksum are left out
    unless ``trust_unverified`` (then their values must still be finite unit vectors). A
    replaced manifest is saved as ``gallery.json.bad`` (``.bad.1``, ... : never overwritten).
    A healthy gallery is left as it is.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a gallery folder")
    rec = Recovery()
    with _locked(folder):
        rec.removed_tmp = _remove_stale_temporaries(folder)
        try:
            old: dict[str, Any] | None = _read_manifest(folder)
        except (GalleryCorruptError, FileNotFoundError):
            old = None  # a newer btnet's manifest (GalleryError) is not ours to rebuild
        rec.had_manifest = old is not None
        on_disk = sorted(p.name for p in folder.iterdir() if _SHARD_RE.match(p.name))
        entries: list[dict[str, Any]] = []
        shapes: dict[str, tuple[int, int]] = {}
        metas: dict[str, dict[str, str]] = {}
        if old is not None:
            listed = {e["file"] for e in old["shards"]}
            rec.ignored = [n for n in on_disk if n not in listed]  # uncommitted
            for e in old["shards"]:
                path = folder / e["file"]
                if not path.is_file():
                    rec.missing.append(e["file"])
                    continue
                try:
                    data = _load_shard(path, e["sha256"])
                    if data["embeddings"].shape != (e["rows"], int(old["embedding_size"])):
                        raise GalleryCorruptError(f"{e['file']}: shape {data['embeddings'].shape}")
                except GalleryCorruptError as exc:
                    rec.quarantined.append((_quarantine(folder, e["file"]), _reason(exc)))
                    continue
                entries.append(e)
            fingerprint, size = old["fingerprint"], int(old["embedding_size"])
        else:
            for name in on_disk:
                path = folder / name
                try:
                    data = _load_shard(path, None)
                    verified = _check_content(path, data)
                except GalleryCorruptError as exc:
                    rec.quarantined.append((_quarantine(folder, name), _reason(exc)))
                    continue
                if not verified and not trust_unverified:
                    rec.ignored.append(name)
                    continue
                shapes[name] = data["embeddings"].shape
                metas[name] = data["meta"]
            if not shapes:
                raise GalleryCorruptError(
                    f"{folder}: no manifest and no shard that verifies; nothing recovered"
                    + (" (shards without a content checksum need --trust-unverified)"
                       if rec.ignored else "")
                )
            fps = [metas[n].get("fingerprint", "") for n in shapes]
            fingerprint = max(sorted(set(fps)), key=fps.count)
            size = 0
            for name in list(shapes):
                if metas[name].get("fingerprint", "") != fingerprint:
                    rec.ignored.append(name)  # another model's shard: not comparable
                    continue
                size = int(shapes[name][1])
                entries.append({"file": name, "rows": int(shapes[name][0]),
                                "sha256": file_sha256(folder / name)})
        rec.kept = [e["file"] for e in entries]
        rec.rows = int(sum(e["rows"] for e in entries))
        rec.calibration, calibration = _recover_calibration(folder, old, fingerprint)
        if old is not None:
            rec.model = str(old.get("model") or "")
        else:
            rec.model = next((metas[n].get("model", "") for n in reversed(rec.kept)
                              if metas[n].get("model")), "")
        rec.changed = old is None or bool(rec.quarantined or rec.missing) or (
            calibration != old.get("calibration"))
        if not rec.changed:
            return rec
        numbers = [_shard_number(n) for n in on_disk] + [0]
        next_shard = max(numbers) + 1 if old is None else max(
            int(old["next_shard"]), max([_shard_number(n) for n in rec.kept] + [0]) + 1)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "fingerprint": fingerprint,
            "embedding_size": size,
            "model": rec.model,
            "created": (old or {}).get("created") or time.strftime("%Y-%m-%dT%H:%M:%S"),
            "shards": entries,
            "next_shard": next_shard,
            "calibration": calibration,
            "recovered": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        manifest_path = folder / MANIFEST
        if manifest_path.exists():
            backup = _free_name(folder / (MANIFEST + ".bad"))
            os.link(manifest_path, backup)  # the old manifest stays in place until replaced
            rec.backup = backup.name
        _write_manifest(folder, manifest)
    return rec


def _recover_calibration(
    folder: Path, old: dict[str, Any] | None, fingerprint: str
) -> tuple[str, dict[str, Any] | None]:
    """Keep a calibration whose checksum verifies (against the manifest, or its own)."""
    path = folder / CALIBRATION
    if old is not None:
        cal = old.get("calibration")
        if not cal:
            return "none", None
        try:
            _load_calibration(folder / cal["file"], cal["sha256"])
        except GalleryCorruptError as exc:
            if (folder / cal["file"]).is_file():
                _quarantine(folder, cal["file"])
            return f"dropped ({exc})", None
        return "kept", cal
    if not path.is_file():
        return "none", None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            emb = fh.get_tensor("embeddings")
    except Exception as exc:
        _quarantine(folder, CALIBRATION)
        return f"dropped ({CALIBRATION} unreadable: {exc})", None
    stored = meta.get("content_sha256")
    if stored is None or content_digest({"embeddings": emb}, meta) != stored:
        return f"dropped ({CALIBRATION} cannot be verified: run calibrate again)", None
    if meta.get("fingerprint") != fingerprint:
        return "dropped (calibration of another model)", None
    cal = {"file": CALIBRATION, "rows": int(emb.shape[0]), "sha256": file_sha256(path),
           "target_fpir": float(meta["target_fpir"])}
    return "restored", cal
