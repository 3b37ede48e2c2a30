"""Built-in faces specs with training-side defaults; :mod:`btnet.data.synthetic` parses them.

The data layer's parser knows every key and the ``train``/``test`` splits; training only adds
defaults of its own (the model's canonical size, small evaluation sets). They are put *before*
the user's tokens, so whatever the spec says explicitly wins (the parser keeps the last value).
"""

from __future__ import annotations

from btnet.data.synthetic import is_builtin_spec


def with_defaults(spec: str, *tokens: str, **defaults: object) -> str:
    """``spec`` with ``tokens`` (a split: ``test``) and ``key=value`` defaults it lacks, e.g.
    ``with_defaults("builtin:ids=8", size=56) == "builtin:size=56,ids=8"``."""
    if not is_builtin_spec(spec):
        raise ValueError(f"not a built-in faces spec: {spec!r} (expected builtin[:...])")
    rest = spec[len("builtin"):].lstrip(":")
    parts = [*tokens, *(f"{k}={v}" for k, v in defaults.items()), *([rest] if rest else [])]
    return "builtin:" + ",".join(parts)
