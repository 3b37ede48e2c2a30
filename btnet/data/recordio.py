"""insightface / MXNet RecordIO (``train.rec`` + ``train.idx`` + ``property``) in pure Python.

Byte layout (see ``docs/data-formats.md``): each record is ``uint32 magic 0xCED7230A``,
``uint32 lrec`` (low 29 bits: length, high 3 bits: continuation flag), payload, zero padding to
a multiple of 4. A payload that contains the magic at a 4-byte aligned offset is split there
into parts (cflag 1 = first, 2 = middle, 3 = last) and the reader re-inserts the magic between
them. The payload itself is ``struct IfQQ`` (flag, label, id, id2), ``flag`` float32 labels when
``flag > 0``, then the encoded image.

File handles are opened lazily and re-opened when the process id changes, so one
:class:`RecordFile` (or :class:`RecordDataset`) can be handed to DataLoader worker processes.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from btnet.data.images import CorruptImageError, decode_image

log = logging.getLogger(__name__)

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_FRAME = struct.Struct("<II")
_HEADER = struct.Struct("<IfQQ")
_LEN_MASK = (1 << 29) - 1
MAX_PART = _LEN_MASK


class RecordIOError(ValueError):
    """Malformed RecordIO data; the message names the file and the record key or offset."""


class LabelMismatchError(RecordIOError):
    """A record's own label disagrees with the label the dataset expected (never skipped)."""


@dataclass(frozen=True)
class RecordHeader:
    """The ``IfQQ`` header of a record; ``labels`` holds the float32 label array if flag > 0."""

    flag: int
    label: float
    id: int
    id2: int
    labels: np.ndarray | None = None

    @property
    def class_label(self) -> float:
        """The class of an image record: its label, or the first element of its label array."""
        if self.labels is not None and len(self.labels):
            return float(self.labels[0])
        return float(self.label)


# --------------------------------------------------------------------------- payload (IfQQ)


def pack_payload(header: RecordHeader | tuple, image: bytes = b"") -> bytes:
    """Build a record payload from a header and encoded image bytes.

    A header whose ``labels`` is set is written with ``flag = len(labels)`` and ``label = 0``,
    as insightface does.
    """
    if not isinstance(header, RecordHeader):
        header = RecordHeader(*header)
    if header.labels is not None:
        labels = np.asarray(header.labels, dtype="<f4").ravel()
        head = _HEADER.pack(len(labels), 0.0, header.id, header.id2)
        return head + labels.tobytes() + bytes(image)
    return _HEADER.pack(header.flag, float(header.label), header.id, header.id2) + bytes(image)


def unpack_payload(payload: bytes, source: str = "") -> tuple[RecordHeader, bytes]:
    """Split a payload into its header (with label array) and the encoded image bytes."""
    if len(payload) < _HEADER.size:
        raise RecordIOError(f"record too short for an IfQQ header ({len(payload)} bytes){_at(source)}")
    flag, label, id_, id2 = _HEADER.unpack_from(payload, 0)
    pos = _HEADER.size
    labels = None
    if flag > 0:
        end = pos + 4 * flag
        if end > len(payload):
            raise RecordIOError(
                f"record header announces {flag} labels but holds {len(payload) - pos} bytes"
                f"{_at(source)}"
            )
        labels = np.frombuffer(payload, dtype="<f4", count=flag, offset=pos).copy()
        pos = end
    return RecordHeader(flag, label, id_, id2, labels), bytes(payload[pos:])


def _at(source: str) -> str:
    return f" ({source})" if source else ""


# --------------------------------------------------------------------------- framing


def frame_record(payload: bytes) -> bytes:
    """Frame one payload exactly like dmlc-core's RecordIOWriter (split at aligned magics)."""
    payload = bytes(payload)
    n = len(payload)
    parts: list[bytes] = []
    start = 0
    # dmlc-core only looks at 4-byte aligned positions below the aligned-down length.
    pos = payload.find(_MAGIC_BYTES)
    while pos != -1 and pos + 4 <= (n & ~3):
        if pos % 4 == 0:
            parts.append(payload[start:pos])
            start = pos + 4
            pos = payload.find(_MAGIC_BYTES, start)
        else:
            pos = payload.find(_MAGIC_BYTES, pos + 1)
    parts.append(payload[start:])
    out = bytearray()
    for i, part in enumerate(parts):
        if len(part) > MAX_PART:
            raise RecordIOError(f"record part of {len(part)} bytes exceeds the 2^29-1 limit")
        if len(parts) == 1:
            cflag = 0
        elif i == 0:
            cflag = 1
        elif i == len(parts) - 1:
            cflag = 3
        else:
            cflag = 2
        out += _FRAME.pack(MAGIC, (cflag << 29) | len(part))
        out += part
        out += b"\0" * (-len(part) % 4)
    return bytes(out)


def _read_exact(fd: int, offset: int, size: int) -> bytes:
    data = os.pread(fd, size, offset) if _HAS_PREAD else _seek_read(fd, offset, size)
    return data


def _seek_read(fd: int, offset: int, size: int) -> bytes:  # pragma: no cover - Windows only
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


_HAS_PREAD = hasattr(os, "pread")


def read_framed(fd: int, offset: int, source: str = "", file_size: int | None = None) -> tuple[bytes, int]:
    """Read the record starting at ``offset``; returns (payload, offset of the next record)."""
    chunks: list[bytes] = []
    pos = offset
    expect_more = False
    while True:
        head = _read_exact(fd, pos, _FRAME.size)
        if len(head) < _FRAME.size:
            what = "continuation part" if expect_more else "record header"
            raise RecordIOError(f"file truncated: {what} missing at byte {pos}{_at(source)}")
        magic, lrec = _FRAME.unpack(head)
        if magic != MAGIC:
            raise RecordIOError(
                f"wrong magic 0x{magic:08X} at byte {pos} (expected 0x{MAGIC:08X}; "
                f"not a RecordIO file, or the index points to the wrong place){_at(source)}"
            )
        length, cflag = lrec & _LEN_MASK, lrec >> 29
        # Read the payload and the next frame header in one call when possible (one syscall).
        data = _read_exact(fd, pos + _FRAME.size, length)
        if len(data) < length:
            raise RecordIOError(
                f"file truncated: record at byte {pos} announces {length} bytes, "
                f"only {len(data)} present{_at(source)}"
            )
        pos = pos + _FRAME.size + length + (-length % 4)
        if cflag == 0:
            if expect_more:
                raise RecordIOError(f"unterminated multi-part record before byte {pos}{_at(source)}")
            return data, pos
        if cflag == 1:
            if expect_more:
                raise RecordIOError(f"multi-part record restarted at byte {pos}{_at(source)}")
            chunks = [data]
            expect_more = True
            continue
        if cflag in (2, 3):
            if not expect_more:
                raise RecordIOError(
                    f"continuation part (cflag={cflag}) without a first part at byte {pos}"
                    f"{_at(source)}"
                )
            chunks.append(_MAGIC_BYTES)
            chunks.append(data)
            if cflag == 3:
                return b"".join(chunks), pos
            continue
        raise RecordIOError(f"invalid continuation flag {cflag} at byte {pos}{_at(source)}")


# --------------------------------------------------------------------------- files


def resolve_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """Accept ``prefix``, ``prefix.rec``, ``prefix.idx`` or a folder holding ``train.rec``."""
    p = Path(path)
    if p.is_dir():
        recs = sorted(p.glob("*.rec"))
        cand = p / "train.rec"
        if cand.is_file():
            rec = cand
        elif len(recs) == 1:
            rec = recs[0]
        else:
            found = ", ".join(r.name for r in recs) or "none"
            raise FileNotFoundError(
                f"{p}: expected train.rec or exactly one .rec file in the folder (found {found})"
            )
    elif p.suffix in (".rec", ".idx"):
        rec = p.with_suffix(".rec")
    else:
        rec = p.with_name(p.name + ".rec")
    if not rec.is_file():
        raise FileNotFoundError(f"RecordIO file not found: {rec}")
    return rec, rec.with_suffix(".idx")


def read_index(idx_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Parse a ``.idx`` file into (keys, offsets), both int64, in file order."""
    idx_path = Path(idx_path)
    if not idx_path.is_file():
        raise FileNotFoundError(
            f"RecordIO index not found: {idx_path} (rebuild it with "
            f"`btnet data reindex {idx_path.with_suffix('.rec')}`)"
        )
    keys: list[int] = []
    offsets: list[int] = []
    with open(idx_path, encoding="ascii", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.endswith("\n") and line.strip():
                # Every writer ends each line with a newline: this one was cut off mid-write,
                # so its offset may be cut short too and point into the middle of a record.
                raise RecordIOError(
                    f"{idx_path}:{lineno}: last line {line!r} is incomplete (no newline; the "
                    f"index was cut off while being written): rebuild it with "
                    f"`btnet data reindex {idx_path.with_suffix('.rec')}`"
                )
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise RecordIOError(f"{idx_path}:{lineno}: expected '<key>\\t<offset>', got {line!r}")
            try:
                keys.append(int(parts[0]))
                offsets.append(int(parts[1]))
            except ValueError:
                raise RecordIOError(
                    f"{idx_path}:{lineno}: expected integers '<key>\\t<offset>', got {line!r}"
                ) from None
    return np.asarray(keys, dtype=np.int64), np.asarray(offsets, dtype=np.int64)


class RecordFile:
    """Random access to the records of one ``.rec`` file through its ``.idx``.

    Picklable: the OS file handle is opened on first use in each process.
    """

    def __init__(self, path: str | os.PathLike, idx_path: str | os.PathLike | None = None):
        rec, idx = resolve_paths(path)
        self.rec_path = rec
        self.idx_path = Path(idx_path) if idx_path is not None else idx
        keys, offsets = read_index(self.idx_path)
        self.keys = keys
        self.offsets = offsets
        self._offset_of = dict(zip(keys.tolist(), offsets.tolist()))
        if len(self._offset_of) != len(keys):
            raise RecordIOError(f"{self.idx_path}: duplicate keys in the index")
        self.file_size = self.rec_path.stat().st_size
        bad = offsets[(offsets < 0) | (offsets >= max(self.file_size, 1))]
        if len(bad) and len(keys):
            raise RecordIOError(
                f"{self.idx_path}: offset {int(bad[0])} lies outside {self.rec_path} "
                f"({self.file_size} bytes); index and .rec do not belong together"
            )
        self._fd: int | None = None
        self._pid: int | None = None

    # -- process-safe handle
    def _handle(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:
            # A descriptor inherited through fork is shared with the parent; never reuse it.
            self._fd = os.open(self.rec_path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            self._pid = pid
        return self._fd

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None
        self._pid = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fd"] = None
        state["_pid"] = None
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: S110 - interpreter shutdown
            pass

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: int) -> bool:
        return int(key) in self._offset_of

    def check_covers_file(self) -> None:
        """Raise unless the last indexed record ends where the ``.rec`` ends.

        An index cut short (or one of an earlier, shorter file) would otherwise silently drop
        every record after its last line; one read of one record tells.
        """
        if not len(self.keys):
            return
        i = int(np.argmax(self.offsets))
        key, offset = int(self.keys[i]), int(self.offsets[i])
        _, end = read_framed(self._handle(), offset, self.source(key))
        if end >= self.file_size:
            return
        try:
            payload, _ = read_framed(self._handle(), end, f"{self.rec_path} after key {key}")
            _, image = unpack_payload(payload, f"{self.rec_path} after key {key}")
        except RecordIOError as exc:  # a damaged tail no index can use (a salvaged file)
            log.warning("%s: the %d bytes after the last indexed record are unreadable (%s)",
                        self.rec_path, self.file_size - end, exc)
            return
        if not image:  # identity records a salvaged index left out on purpose, no image
            return
        raise RecordIOError(
            f"{self.idx_path}: its last record (key {key}) ends at byte {end} but "
            f"{self.rec_path} holds more records after it: the index is truncated or "
            f"stale; rebuild it with `btnet data reindex {self.rec_path}`"
        )

    def source(self, key: int) -> str:
        return f"{self.rec_path} key {key}"

    def read_payload(self, key: int) -> bytes:
        """The joined payload of the record with this key."""
        try:
            offset = self._offset_of[int(key)]
        except KeyError:
            raise KeyError(f"{self.rec_path}: no record with key {key} in {self.idx_path}") from None
        payload, _ = read_framed(self._handle(), offset, self.source(key))
        return payload

    def read(self, key: int) -> tuple[RecordHeader, bytes]:
        """(header, encoded image bytes) of the record with this key."""
        return unpack_payload(self.read_payload(key), self.source(key))

    def read_header(self, key: int) -> RecordHeader:
        """Only the header (cheap: reads at most a few hundred bytes unless the record is split)."""
        offset = self._offset_of[int(key)]
        fd = self._handle()
        head = _read_exact(fd, offset, _FRAME.size + _HEADER.size + 4 * 64)
        if len(head) >= _FRAME.size + _HEADER.size:
            magic, lrec = _FRAME.unpack_from(head, 0)
            length, cflag = lrec & _LEN_MASK, lrec >> 29
            if magic == MAGIC and cflag == 0 and length >= _HEADER.size:
                flag = _HEADER.unpack_from(head, _FRAME.size)[0]
                need = _HEADER.size + 4 * flag
                if need <= length and _FRAME.size + need <= len(head):
                    return unpack_payload(head[_FRAME.size : _FRAME.size + need], self.source(key))[0]
        return self.read(key)[0]


def iter_records(path: str | os.PathLike) -> Iterator[tuple[int, bytes]]:
    """Scan a ``.rec`` file sequentially, yielding (byte offset, payload); needs no index."""
    path = Path(path)
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        pos = 0
        n = 0
        while pos < size:
            payload, nxt = read_framed(fd, pos, f"{path} record #{n}")
            yield pos, payload
            pos = nxt
            n += 1
    finally:
        os.close(fd)


@dataclass
class Reindexed:
    """What :func:`rebuild_index` wrote; ``stopped`` says where a salvage gave up, and why."""

    idx_path: Path
    records: int
    stopped: str | None = None
    dropped_meta: bool = False


def rebuild_index(
    rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None, *, salvage: bool = False
) -> Reindexed:
    """Write a ``.idx`` for a ``.rec`` by scanning it (atomically: the old index stays on error).

    Keys are the records' header ``id`` fields when those are unique (insightface and im2rec
    write the key there), otherwise the running record number. A damaged or truncated ``.rec``
    raises, naming the byte; with ``salvage`` the records before the damage are indexed. If the
    damage took identity records of the insightface layout with it, the meta record (key 0) and
    the surviving identity records are left out of the index, so readers take each image's
    label from its own header.
    """
    from btnet.io.atomic import atomic_write_text

    rec_path = resolve_paths(rec_path)[0]
    idx_path = Path(idx_path) if idx_path is not None else rec_path.with_suffix(".idx")
    if rec_path.stat().st_size == 0:
        raise RecordIOError(f"{rec_path} is empty (0 bytes): nothing to index")
    offsets: list[int] = []
    ids: list[int] = []
    metas: list[RecordHeader | None] = []
    stopped = None
    records = iter_records(rec_path)
    while True:
        try:
            offset, payload = next(records)
        except StopIteration:
            break
        except RecordIOError as exc:
            if not salvage or not offsets:
                hint = (f"; `btnet data reindex {rec_path} --salvage` indexes the "
                        f"{len(offsets)} intact records before it") if offsets and not salvage else ""
                raise RecordIOError(f"{exc}{hint}") from None
            stopped = str(exc)
            break
        offsets.append(offset)
        try:
            header = unpack_payload(payload, f"{rec_path} record #{len(ids)}")[0]
            ids.append(header.id)
            metas.append(header)
        except RecordIOError:
            ids.append(-1)
            metas.append(None)
    keys = ids if len(set(ids)) == len(ids) and min(ids, default=0) >= 0 else list(range(len(offsets)))
    dropped_meta = False
    first = metas[0] if metas else None
    if stopped and keys[0] == 0 and first is not None and first.flag >= 2 and first.labels is not None:
        a, b = int(first.labels[0]), int(first.labels[1])
        if not set(range(1, b)) <= set(keys):
            # keep image records only: identity records without the meta would read as images
            kept = [(k, o) for k, o in zip(keys[1:], offsets[1:]) if k < a]
            keys, offsets = [k for k, _ in kept], [o for _, o in kept]
            dropped_meta = True
    atomic_write_text(idx_path, "".join(f"{k}\t{o}\n" for k, o in zip(keys, offsets)))
    return Reindexed(idx_path, len(keys), stopped, dropped_meta)


class RecordWriter:
    """Append records to ``prefix.rec`` and their offsets to ``prefix.idx``."""

    @staticmethod
    def paths_for(prefix: str | os.PathLike) -> tuple[Path, Path]:
        """(``prefix.rec``, ``prefix.idx``); a prefix ending in .rec or .idx is accepted."""
        prefix = Path(prefix)
        if prefix.suffix in (".rec", ".idx"):
            prefix = prefix.with_suffix("")
        return prefix.with_name(prefix.name + ".rec"), prefix.with_name(prefix.name + ".idx")

    def __init__(self, prefix: str | os.PathLike):
        self.rec_path, self.idx_path = self.paths_for(prefix)
        self.rec_path.parent.mkdir(parents=True, exist_ok=True)
        self._rec = open(self.rec_path, "wb")
        self._idx = open(self.idx_path, "w", encoding="ascii")
        self._keys: set[int] = set()

    def write(self, key: int, payload: bytes) -> None:
        key = int(key)
        if key in self._keys:
            raise ValueError(f"{self.rec_path}: key {key} written twice")
        self._keys.add(key)
        offset = self._rec.tell()
        self._rec.write(frame_record(payload))
        self._idx.write(f"{key}\t{offset}\n")

    def write_image(self, key: int, label: float | np.ndarray, image: bytes, id2: int = 0) -> None:
        """Write an image record keyed ``key`` (also stored as header id, like insightface)."""
        if np.ndim(label) == 0:
            header = RecordHeader(0, float(label), key, id2)
        else:
            header = RecordHeader(0, 0.0, key, id2, np.asarray(label, dtype=np.float32))
        self.write(key, pack_payload(header, image))

    def close(self) -> None:
        if not self._rec.closed:
            self._rec.close()
            self._idx.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- property file


def read_property(path: str | os.PathLike) -> tuple[int, int, int]:
    """``property`` file: one line ``num_classes,height,width``."""
    path = Path(path)
    text = path.read_text(encoding="ascii", errors="replace").strip()
    parts = [t.strip() for t in text.replace(" ", ",").split(",") if t.strip()]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise RecordIOError(f"{path}: expected 'num_classes,height,width', got {text!r}")
    return values  # type: ignore[return-value]


def write_property(path: str | os.PathLike, num_classes: int, height: int, width: int) -> None:
    Path(path).write_text(f"{int(num_classes)},{int(height)},{int(width)}\n", encoding="ascii")


# --------------------------------------------------------------------------- dataset


class RecordDataset:
    """A :class:`~btnet.data.base.FaceDataset` over an insightface or im2rec ``.rec``.

    Labels come from the identity records of the insightface layout (no image is read), or
    from scanning every image header (im2rec files). Each read checks the record's label
    against the expected one, so a mismatched index can never produce a wrong label silently.

    ``skip_corrupt=True`` replaces an undecodable image by another image of the same identity,
    counts it in ``skipped`` and logs the file and key; otherwise the error propagates.
    """

    def __init__(self, path: str | os.PathLike, skip_corrupt: bool = False, name: str | None = None):
        self.file = RecordFile(path)
        self.rec_path = self.file.rec_path
        self.name = name or self.rec_path.stem
        self.skip_corrupt = skip_corrupt
        self.skipped = 0
        self.has_meta = False
        self.property: tuple[int, int, int] | None = None
        prop = self.rec_path.parent / "property"
        if prop.is_file():
            self.property = read_property(prop)
        self.keys, raw = self._load_labels()
        self.raw_labels = raw
        self.labels, self.num_classes, self.class_values = self._dense_labels(raw)
        self._by_label: dict[int, np.ndarray] | None = None

    def _load_labels(self) -> tuple[np.ndarray, np.ndarray]:
        f = self.file
        if len(f) == 0:
            raise RecordIOError(f"{f.rec_path}: the index {f.idx_path} lists no records")
        f.check_covers_file()
        meta = None
        if 0 not in f and 0 not in f.offsets:
            self._refuse_unindexed_meta()
        if 0 in f:
            h, img = f.read(0)
            if h.flag >= 2 and h.labels is not None and len(img) == 0:
                meta = (int(h.labels[0]), int(h.labels[1]))
        if meta is None:
            keys = np.sort(f.keys)
            labels = np.array([f.read_header(int(k)).class_label for k in keys], dtype=np.float64)
            return keys, labels
        self.has_meta = True
        a, b = meta
        if a < 1:
            raise RecordIOError(f"{f.rec_path}: meta record (key 0) has invalid range ({a}, {b})")
        img_keys = np.arange(1, a, dtype=np.int64)
        missing = img_keys[~np.isin(img_keys, f.keys)]
        if len(missing):
            raise RecordIOError(
                f"{f.rec_path}: meta record (key 0) says images are keys 1..{a - 1} but "
                f"{len(missing)} of them, from key {int(missing[0])}, are not in {f.idx_path} "
                f"(a truncated index? rebuild it with `btnet data reindex {f.rec_path}`)"
            )
        labels = np.full(len(img_keys), np.nan)
        id_keys = [k for k in range(a, b) if k in f]
        if id_keys and len(id_keys) == b - a:
            for k in id_keys:
                h = f.read_header(k)
                if h.labels is None or len(h.labels) < 2:
                    raise RecordIOError(f"{f.source(k)}: identity record without (start, end)")
                s, e = int(h.labels[0]), int(h.labels[1])
                if not (1 <= s <= e <= a):
                    raise RecordIOError(f"{f.source(k)}: identity range ({s}, {e}) outside 1..{a}")
                if e > s:
                    # The identity's class is the label stored in its first image record.
                    labels[s - 1 : e - 1] = f.read_header(s).class_label
            if np.isnan(labels).any():
                hole = int(img_keys[np.argmax(np.isnan(labels))])
                raise RecordIOError(f"{f.rec_path}: image key {hole} belongs to no identity record")
        else:
            labels = np.array([f.read_header(int(k)).class_label for k in img_keys], dtype=np.float64)
        return img_keys, labels

    def _refuse_unindexed_meta(self) -> None:
        """An index that lost key 0 of an insightface ``.rec`` would make its identity records
        read as images with their key ranges as labels; say so instead."""
        f = self.file
        try:
            payload, _ = read_framed(f._handle(), 0, f"{f.rec_path} byte 0")
            h, img = unpack_payload(payload, f"{f.rec_path} byte 0")
        except RecordIOError:
            return
        if h.flag >= 2 and h.labels is not None and len(img) == 0 and (
                f.keys >= int(h.labels[0])).any():
            raise RecordIOError(
                f"{f.idx_path}: lacks key 0, the meta (header) record at byte 0 of the "
                f"insightface file {f.rec_path}; without it identity records would read as "
                f"images: rebuild the index with `btnet data reindex {f.rec_path}`"
            )

    def _dense_labels(self, raw: np.ndarray) -> tuple[np.ndarray, int, np.ndarray | None]:
        if len(raw) and np.all(raw >= 0) and np.all(raw == np.round(raw)):
            labels = raw.astype(np.int64)
            num = int(labels.max()) + 1
            if self.property is not None:
                if self.property[0] < num:
                    raise RecordIOError(
                        f"{self.rec_path.parent / 'property'} says {self.property[0]} classes "
                        f"but the records use labels up to {num - 1}"
                    )
                num = self.property[0]
            return labels, num, None
        values, inverse = np.unique(raw, return_inverse=True)
        log.warning("%s: labels are not non-negative integers; remapped %d values to 0..%d",
                    self.rec_path, len(values), len(values) - 1)
        return inverse.astype(np.int64), len(values), values

    def __len__(self) -> int:
        return len(self.keys)

    def read_encoded(self, index: int) -> bytes:
        """The encoded image bytes of sample ``index``, label-checked but not decoded."""
        key = int(self.keys[index])
        header, image = self.file.read(key)
        if header.class_label != self.raw_labels[index]:
            raise LabelMismatchError(
                f"{self.file.source(key)}: record label {header.class_label:g} differs from the "
                f"label {self.raw_labels[index]:g} given by the identity records"
            )
        return image

    def source_name(self, index: int) -> str:
        return self.file.source(int(self.keys[index]))

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        index = int(index)
        label = int(self.labels[index])
        try:
            return decode_image(self.read_encoded(index), self.source_name(index)), label
        except LabelMismatchError:
            raise
        except (CorruptImageError, RecordIOError) as exc:
            if not self.skip_corrupt:
                raise
            return self._substitute(index, label, exc), label

    def _substitute(self, index: int, label: int, exc: Exception) -> np.ndarray:
        self.skipped += 1
        log.warning("skipping corrupt sample (%s); %d skipped so far in this process", exc, self.skipped)
        if self._by_label is None:
            order = np.argsort(self.labels, kind="stable")
            bounds = np.searchsorted(self.labels[order], np.arange(self.num_classes + 1))
            self._by_label = {c: order[bounds[c] : bounds[c + 1]] for c in range(self.num_classes)}
        for j in self._by_label[label]:
            if int(j) == index:
                continue
            try:
                return decode_image(self.read_encoded(int(j)), self.source_name(int(j)))
            except (CorruptImageError, RecordIOError):
                self.skipped += 1
        raise CorruptImageError(f"{self.source_name(index)}: corrupt, and no readable image of "
                                f"identity {label} to substitute") from exc
