"""A restricted unpickler for insightface verification ``.bin`` files.

A pickle is a program: ``pickle.load`` on a downloaded file can run any code. The ``.bin``
files only ever hold tuples, lists, bytes, booleans and 1-D uint8 numpy arrays, so this
unpickler resolves just the few callables needed to rebuild those (each wrapped to accept only
byte/bool dtypes) and refuses every other global before anything is called.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

_ALLOWED_DTYPES = {np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.bool_)}


class UnsafePickleError(ValueError):
    """The pickle references something a ``.bin`` file never contains; nothing was executed."""


def _as_str(x: Any) -> Any:
    return x.decode("latin1") if isinstance(x, bytes) else x


def _checked_dtype(spec: Any, *_args: Any) -> np.dtype:
    spec = _as_str(spec)
    if not isinstance(spec, (str, np.dtype)):
        raise UnsafePickleError(f"refusing numpy dtype built from {type(spec).__name__}")
    try:
        dt = np.dtype(spec)
    except TypeError as exc:
        raise UnsafePickleError(f"refusing numpy dtype {spec!r}: {exc}") from None
    if dt not in _ALLOWED_DTYPES:
        raise UnsafePickleError(f"refusing numpy dtype {spec!r} (only uint8/bool arrays allowed)")
    return dt


class _NdarrayToken:
    """Stands in for ``numpy.ndarray`` so the pickle can name it but never call it directly."""


def _checked_reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    if cls is not _NdarrayToken:
        raise UnsafePickleError(f"refusing to reconstruct {cls!r} (only numpy.ndarray)")
    # The real dtype arrives later through __setstate__, whose dtype came from _checked_dtype.
    return np.ndarray.__new__(np.ndarray, (0,), np.uint8)


def _checked_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    dt = _checked_dtype(dtype)
    if not isinstance(buf, (bytes, bytearray, memoryview, pickle.PickleBuffer)):
        raise UnsafePickleError(f"refusing numpy buffer of type {type(buf).__name__}")
    arr = np.frombuffer(bytes(buf), dtype=dt)
    return arr.reshape(tuple(shape), order=_as_str(order) or "C").copy()


def _checked_scalar(dtype: Any, data: Any = b"") -> Any:
    dt = _checked_dtype(dtype)
    if not isinstance(data, (bytes, bytearray)):
        data = _as_str(data).encode("latin1") if isinstance(data, str) else None
    if data is None or len(data) != dt.itemsize:
        raise UnsafePickleError("refusing malformed numpy scalar")
    return np.frombuffer(bytes(data), dtype=dt)[0]


def _checked_codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Python 3 pickles bytes at protocol < 3 as _codecs.encode(latin1 text, 'latin1').
    if not isinstance(obj, str) or str(encoding).lower() not in ("latin1", "latin-1"):
        raise UnsafePickleError("refusing _codecs.encode other than latin1 text")
    return obj.encode("latin1")


_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMPY_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")

_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NdarrayToken,
    ("numpy", "dtype"): _checked_dtype,
    ("_codecs", "encode"): _checked_codecs_encode,
    **{(m, "_reconstruct"): _checked_reconstruct for m in _NUMPY_CORE},
    **{(m, "scalar"): _checked_scalar for m in _NUMPY_CORE},
    **{(m, "_frombuffer"): _checked_frombuffer for m in _NUMPY_NUMERIC},
}


class _BinUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load global {module}.{name}: a verification .bin holds only "
                "images and flags (the file may be malicious or not a .bin)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing persistent ids in pickle")


def restricted_loads(data: bytes, source: str = "") -> Any:
    """Unpickle ``data`` admitting only .bin contents; Python-2 pickles load via bytes."""
    where = f"{source}: " if source else ""
    try:
        return _BinUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{where}{exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError,
            AttributeError, KeyError, MemoryError) as exc:
        raise ValueError(f"{where}not a readable pickle ({type(exc).__name__}: {exc})") from None


def restricted_load(path: str | os.PathLike) -> Any:
    """Read and :func:`restricted_loads` a file."""
    path = Path(path)
    return restricted_loads(path.read_bytes(), str(path))
