"""Decoding of every colour mode to RGB, and clear errors for broken images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from formats_helpers import face
from PIL import Image

from btnet.data.images import CorruptImageError, decode_image, encode_jpeg, image_size, read_image


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_grayscale_becomes_three_equal_channels():
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    out = decode_image(_encode(Image.fromarray(gray, "L"), "PNG"))
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert np.array_equal(out[:, :, 0], gray) and np.array_equal(out[:, :, 2], gray)


def test_rgba_drops_alpha_keeps_colour():
    rgba = np.zeros((6, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 7
    out = decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert out.shape == (6, 5, 3)
    assert tuple(out[0, 0]) == (200, 100, 50)


def test_cmyk_jpeg_and_palette_png_decode_to_rgb():
    rgb = face(1, 16)
    cmyk = _encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=98)
    out = decode_image(cmyk)
    assert out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 12
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    out = decode_image(_encode(pal, "PNG"))
    assert out.shape == (16, 16, 3)


def test_sixteen_bit_grayscale_is_rescaled_not_saturated():
    arr = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000)
    img = Image.fromarray(arr.astype(np.uint16))
    out = decode_image(_encode(img, "PNG"))
    assert out.shape == (4, 4, 3)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] < 255 and out[-1, -1, 0] > 200


def test_odd_sizes_survive():
    out = decode_image(encode_jpeg(face(2, 8)[:7, :5]))
    assert out.shape == (7, 5, 3)
    assert image_size(encode_jpeg(face(2, 8)[:7, :5])) == (7, 5)


def test_truncated_jpeg_names_its_source():
    data = encode_jpeg(face(3, 64))
    with pytest.raises(CorruptImageError, match="faces.rec key 7"):
        decode_image(data[: len(data) // 2], "faces.rec key 7")


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\xff\xd8\xff\xe0garbage"])
def test_garbage_raises(data):
    with pytest.raises(CorruptImageError):
        decode_image(data, "x")


def test_read_image_missing_file_and_corrupt_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        read_image(tmp_path / "nope.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 broken")
    with pytest.raises(CorruptImageError, match="bad.jpg"):
        read_image(bad)
