"""Write training sets as insightface RecordIO (``prefix.rec``, ``prefix.idx``, ``property``).

The layout is insightface's: key 0 a meta record (flag 2, labels ``(a, b)``), image records at
keys ``1..a-1`` with their class as label, identity records at keys ``a..b-1`` holding
``(start, end)`` key ranges, and a ``property`` file ``num_classes,height,width``. Readers of
insightface (and :class:`~btnet.data.recordio.RecordDataset`) load it unchanged.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from btnet.data.base import FaceDataset
from btnet.data.folders import ImageFolderDataset
from btnet.data.images import CorruptImageError, decode_image, encode_image, image_format
from btnet.data.recordio import (
    RecordHeader,
    RecordWriter,
    frame_record,
    pack_payload,
    write_property,
)

log = logging.getLogger(__name__)

_MAX_EXACT_FLOAT32 = 1 << 24  # keys stored as float32 labels must stay exact


@dataclass
class PackResult:
    """What a pack run wrote; ``skipped`` lists the corrupt inputs left out."""

    rec_path: Path
    idx_path: Path
    property_path: Path
    num_images: int
    num_classes: int
    image_size: tuple[int, int] | None
    reencoded: int = 0
    skipped: list[str] = field(default_factory=list)


def write_insightface_rec(
    prefix: str | os.PathLike,
    items: Iterable[tuple[int, bytes, tuple[int, int]]],
    num_classes: int,
) -> PackResult:
    """Write ``(label, encoded image, (h, w))`` items, sorted by label, in insightface layout.

    Everything is written to temporary files beside the targets and moved into place only when
    the whole pack succeeded: a failure (a corrupt image, a full disk, Ctrl-C) leaves an earlier
    pack at the same prefix untouched and no partial ``.rec`` behind.
    """
    final = RecordWriter.paths_for(prefix)
    tmp_prefix = final[0].with_name(f".{final[0].stem}.partial-{os.getpid()}")
    writer = RecordWriter(tmp_prefix)
    tmp_prop = tmp_prefix.with_name(tmp_prefix.name + ".property")
    try:
        result = _write_records(writer, items, num_classes, tmp_prop)
        for tmp, target in ((writer.rec_path, final[0]), (writer.idx_path, final[1]),
                            (tmp_prop, final[0].parent / "property")):
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
    finally:
        writer.close()
        for tmp in (writer.rec_path, writer.idx_path, tmp_prop):
            tmp.unlink(missing_ok=True)
    result.rec_path, result.idx_path = final
    result.property_path = final[0].parent / "property"
    return result


def _write_records(
    writer: RecordWriter,
    items: Iterable[tuple[int, bytes, tuple[int, int]]],
    num_classes: int,
    prop: Path,
) -> PackResult:
    rec_path, idx_path = writer.rec_path, writer.idx_path
    meta_placeholder = pack_payload(RecordHeader(2, 0.0, 0, 0, np.zeros(2, np.float32)))
    sizes: Counter = Counter()
    starts = np.zeros(num_classes + 1, dtype=np.int64)
    counts = np.zeros(num_classes, dtype=np.int64)
    key = 1
    last = -1
    try:
        writer.write(0, meta_placeholder)
        for label, blob, hw in items:
            label = int(label)
            if not 0 <= label < num_classes:
                raise ValueError(f"label {label} outside 0..{num_classes - 1}")
            if label < last:
                raise ValueError("items must come grouped by label in increasing order")
            last = label
            writer.write_image(key, float(label), blob)
            counts[label] += 1
            sizes[tuple(hw)] += 1
            key += 1
        a = key
        if a + num_classes >= _MAX_EXACT_FLOAT32:
            raise ValueError("too many records for float32 meta labels (insightface limit)")
        starts[1:] = np.cumsum(counts)
        for c in range(num_classes):
            rng = np.array([1 + starts[c], 1 + starts[c + 1]], dtype=np.float32)
            writer.write(a + c, pack_payload(RecordHeader(0, 0.0, a + c, 0, rng)))
        b = a + num_classes
    finally:
        writer.close()
    meta = frame_record(pack_payload(RecordHeader(2, 0.0, 0, 0, np.array([a, b], np.float32))))
    if len(meta) != len(frame_record(meta_placeholder)):  # pragma: no cover - fixed-size record
        raise RuntimeError("meta record changed size")
    with open(rec_path, "r+b") as f:
        f.write(meta)
    size = sizes.most_common(1)[0][0] if sizes else None
    if len(sizes) > 1:
        log.warning("%s: images have %d different sizes; property records the most common %s",
                    rec_path, len(sizes), size)
    h, w = size if size else (0, 0)
    write_property(prop, num_classes, h, w)
    return PackResult(rec_path, idx_path, prop, int(counts.sum()), num_classes, size)


def pack_folder(
    folder: str | os.PathLike,
    out_prefix: str | os.PathLike,
    skip_corrupt: bool = False,
    quality: int = 95,
    min_images: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> PackResult:
    """Pack ``folder/<identity>/<image>`` into ``out_prefix.rec/.idx`` plus ``property``.

    RGB JPEG and PNG files are stored byte for byte; other formats or colour modes (grayscale,
    CMYK, ...) are decoded and re-encoded as JPEG at ``quality``. Every image is decoded once
    to check it: a corrupt one raises (naming the file) unless ``skip_corrupt`` is set, in
    which case it is left out and listed in ``PackResult.skipped``. Labels equal those of
    :class:`~btnet.data.folders.ImageFolderDataset` on the same folder.
    """
    ds = ImageFolderDataset(folder, min_images=min_images)
    skipped: list[str] = []
    reencoded = 0

    def items() -> Iterator[tuple[int, bytes, tuple[int, int]]]:
        nonlocal reencoded
        for i in range(len(ds)):
            path = ds.paths[i]
            try:
                blob = ds.read_encoded(i)
                img = decode_image(blob, path)
            except (CorruptImageError, OSError) as exc:
                if not skip_corrupt:
                    raise CorruptImageError(str(exc)) from exc
                log.warning("skipping %s", exc)
                skipped.append(path)
                continue
            fmt, mode = image_format(blob)
            if fmt not in ("JPEG", "PNG") or mode != "RGB":
                blob = encode_image(img, "jpg", quality)
                reencoded += 1
            if progress is not None:
                progress(i + 1, len(ds))
            yield int(ds.labels[i]), blob, img.shape[:2]

    result = write_insightface_rec(out_prefix, items(), ds.num_classes)
    result.skipped = skipped
    result.reencoded = reencoded
    return result


def pack_dataset(
    dataset: FaceDataset,
    out_prefix: str | os.PathLike,
    image_format: str = "jpg",
    quality: int = 95,
) -> PackResult:
    """Pack any :class:`FaceDataset` (e.g. the built-in synthetic faces) into RecordIO.

    Images are encoded with ``image_format`` (``jpg`` like insightface, or lossless ``png``);
    labels are kept as they are, so the ``.rec`` has ``dataset.num_classes`` classes.
    """
    order = np.argsort(np.asarray(dataset.labels), kind="stable")

    def items() -> Iterator[tuple[int, bytes, tuple[int, int]]]:
        for i in order:
            img, label = dataset[int(i)]
            yield int(label), encode_image(img, image_format, quality), img.shape[:2]

    return write_insightface_rec(out_prefix, items(), int(dataset.num_classes))
