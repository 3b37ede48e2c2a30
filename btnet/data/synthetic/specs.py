"""``builtin[:split][,key=value...]`` specs: how commands and configs name built-in faces."""

from __future__ import annotations

from btnet.data.synthetic.dataset import SyntheticFaces

# Test identities start here, far past any training set, so ``builtin:test`` never shares an
# identity with ``builtin:train`` for the same seed.
BUILTIN_TEST_OFFSET = 100_000

_SPLITS = {
    "train": {"ids": 500, "per_id": 20, "offset": 0},
    "test": {"ids": 100, "per_id": 10, "offset": BUILTIN_TEST_OFFSET},
}
_SPEC_KEYS = {
    "ids": int, "per_id": int, "size": int, "seed": int, "offset": int,
    "variation": float, "families": int, "jitter": float,
}


def is_builtin_spec(spec: object) -> bool:
    """True for ``builtin`` and ``builtin:...`` strings."""
    return isinstance(spec, str) and (spec == "builtin" or spec.startswith("builtin:"))


def parse_builtin_spec(spec: str) -> dict:
    """``builtin[:split][,key=value...]`` -> keyword arguments for :class:`SyntheticFaces`.

    ``split`` is ``train`` (default: 500 identities x 20 images) or ``test`` (100 x 10,
    identities offset by :data:`BUILTIN_TEST_OFFSET`, so never those of ``train``). Keys:
    ``ids``, ``per_id``, ``size`` (default 112), ``seed`` (0), ``offset``, ``variation``,
    ``families``, ``jitter``; e.g. ``builtin:ids=200,per_id=20,size=56,seed=3`` or
    ``builtin:test,ids=50``.
    """
    if not is_builtin_spec(spec):
        raise ValueError(f"not a built-in faces spec: {spec!r} (expected builtin[:...])")
    rest = spec[len("builtin"):].lstrip(":")
    split = "train"
    values: dict[str, float | int] = {}
    for token in filter(None, (t.strip() for t in rest.replace(":", ",").split(","))):
        if "=" not in token:
            if token not in _SPLITS:
                raise ValueError(
                    f"{spec!r}: unknown built-in split {token!r} (use train or test)"
                )
            split = token
            continue
        key, value = (s.strip() for s in token.split("=", 1))
        if key not in _SPEC_KEYS:
            raise ValueError(f"{spec!r}: unknown key {key!r}; use {', '.join(_SPEC_KEYS)}")
        try:
            values[key] = _SPEC_KEYS[key](value)
        except ValueError:
            raise ValueError(f"{spec!r}: {key}={value!r} is not a number") from None
    base = _SPLITS[split]
    kwargs = {
        "num_identities": int(values.get("ids", base["ids"])),
        "images_per_identity": int(values.get("per_id", base["per_id"])),
        "size": int(values.get("size", 112)),
        "seed": int(values.get("seed", 0)),
        "identity_offset": int(values.get("offset", base["offset"])),
    }
    if "variation" in values:
        kwargs["variation"] = float(values["variation"])
    if "families" in values:
        kwargs["families"] = int(values["families"])
    if "jitter" in values:
        kwargs["coarse_jitter"] = float(values["jitter"])
    kwargs["name"] = spec
    return kwargs


def open_builtin(spec: str = "builtin") -> SyntheticFaces:
    """The built-in faces named by ``spec`` (see :func:`parse_builtin_spec`)."""
    return SyntheticFaces(**parse_builtin_spec(spec))

