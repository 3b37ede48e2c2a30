"""Decoding and encoding of face images, with errors that say which file or record broke.

Every reader in :mod:`btnet.data` decodes through :func:`decode_image`, so all formats share one
policy: any colour mode (grayscale, RGBA, CMYK, palette, 16-bit) becomes uint8 HxWx3 RGB, and a
corrupt or truncated image raises :class:`CorruptImageError` naming its source instead of
yielding a half-grey picture.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

# Pillow's default already refuses truncated files; make it explicit, a partial face is wrong data.
ImageFile.LOAD_TRUNCATED_IMAGES = False

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class CorruptImageError(ValueError):
    """An image could not be decoded; the message names the file or record it came from."""


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB the way a face reader should."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: rescale instead of clipping, otherwise the face saturates to white.
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / 65535.0 if hi > 255 else 1.0
        arr8 = np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # Composite on black, like OpenCV's IMREAD_COLOR which drops alpha onto the stored colour.
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def decode_image(data: bytes | bytearray | memoryview | np.ndarray, source: str = "") -> np.ndarray:
    """Decode encoded image bytes to a uint8 HxWx3 RGB array.

    ``source`` (a file name, ``file.rec key 17``...) is put into the error message.
    """
    if isinstance(data, np.ndarray):
        data = data.tobytes()
    where = f" ({source})" if source else ""
    if len(data) == 0:
        raise CorruptImageError(f"empty image data{where}")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            rgb = _to_rgb(img)
            arr = np.asarray(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(f"cannot decode image{where}: {exc}") from exc
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise CorruptImageError(f"decoded image has unusable shape {arr.shape}{where}")
    return np.ascontiguousarray(arr)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read and decode one image file to uint8 HxWx3 RGB."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path}") from None
    return decode_image(data, str(path))


def image_size(data: bytes, source: str = "") -> tuple[int, int]:
    """(height, width) read from the image header only, without decoding the pixels."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        where = f" ({source})" if source else ""
        raise CorruptImageError(f"cannot read image header{where}: {exc}") from exc
    return h, w


def image_format(data: bytes) -> tuple[str | None, str | None]:
    """(Pillow format name, mode) of encoded bytes, or (None, None) if unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format, img.mode
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None, None


def _check_rgb(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr)


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """Encode an RGB uint8 array as JPEG bytes (the insightface storage format)."""
    buf = io.BytesIO()
    Image.fromarray(_check_rgb(image), mode="RGB").save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def encode_png(image: np.ndarray) -> bytes:
    """Encode an RGB uint8 array as lossless PNG bytes (for tiny low-resolution probes)."""
    buf = io.BytesIO()
    Image.fromarray(_check_rgb(image), mode="RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def encode_image(image: np.ndarray, fmt: str = "jpg", quality: int = 95) -> bytes:
    """Encode with a format named like a file extension: ``jpg``/``jpeg`` or ``png``."""
    fmt = fmt.lower().lstrip(".")
    if fmt in ("jpg", "jpeg"):
        return encode_jpeg(image, quality)
    if fmt == "png":
        return encode_png(image)
    raise ValueError(f"unsupported image format {fmt!r} (use jpg or png)")


def write_image(path: str | os.PathLike, image: np.ndarray, quality: int = 95) -> None:
    """Write an RGB array to ``path``; the extension picks the format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_image(image, path.suffix or "png", quality))


def is_image_file(path: str | os.PathLike) -> bool:
    """True for file names with a known image extension that are not hidden."""
    name = os.path.basename(os.fspath(path))
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


class FileImageSource:
    """An :class:`~btnet.data.base.ImageSource` over image files, decoded on access."""

    def __init__(self, paths: list[str | os.PathLike]):
        self.paths = [str(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return read_image(self.paths[index])

    def read_encoded(self, index: int) -> bytes:
        """The file's bytes, undecoded (for packing and header-only inspection)."""
        return Path(self.paths[index]).read_bytes()

    def source_name(self, index: int) -> str:
        return self.paths[index]
