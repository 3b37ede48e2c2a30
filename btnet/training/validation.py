"""Periodic verification during training (a thin hook over :mod:`btnet.evaluation`).

Sets are named like everywhere else in btnet: a pair-set path (``.bin``, LFW ``pairs.txt``, a
pair list or folder) or ``builtin[:ids=..,per_id=..,seed=..,pairs=..]`` for built-in faces of
identities the built-in training sets never use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from btnet.data.base import PairSet
from btnet.training.config import Config, ConfigError
from btnet.training.specs import with_defaults

log = logging.getLogger(__name__)


def builtin_pairs(spec: str, size: int) -> PairSet:
    """``builtin[:ids=..,per_id=..,seed=..,pairs=..,folds=..]``: pairs over built-in *test*
    identities (never those of a built-in training set), fixed by seed. Generator keys are
    those of :func:`btnet.data.synthetic.parse_builtin_spec`; ``pairs``/``folds`` are the
    protocol's."""
    from btnet.data.synthetic import BUILTIN_TEST_OFFSET, parse_builtin_spec
    from btnet.data.synthetic import builtin_pairs as make_pairs

    protocol = {"pairs": 200, "folds": 10}
    rest = []
    for token in filter(None, spec[len("builtin"):].lstrip(":").split(",")):
        key, eq, value = (t.strip() for t in token.partition("="))
        if eq and key in protocol:
            protocol[key] = int(value)
        else:
            rest.append(token)
    spec_rest = "builtin:" + ",".join(rest) if rest else "builtin"
    try:
        kw = parse_builtin_spec(with_defaults(spec_rest, "test", ids=20, per_id=4, seed=1,
                                              size=size))
    except ValueError as e:
        raise ConfigError(f"eval set {spec!r}: {e} (pair-set keys: pairs, folds)") from None
    if kw["identity_offset"] < BUILTIN_TEST_OFFSET:
        raise ConfigError(f"eval set {spec!r}: evaluation identities must be the built-in test "
                          f"ones (offset >= {BUILTIN_TEST_OFFSET}), never training identities")
    kw.pop("name")
    return make_pairs(kw.pop("num_identities"), kw.pop("images_per_identity"),
                      protocol["pairs"], folds=protocol["folds"], **kw)


def open_eval_set(spec: str, size: int) -> PairSet:
    from btnet.data.synthetic import is_builtin_spec

    if is_builtin_spec(spec):
        return builtin_pairs(spec, size)
    from btnet.data.pair_sets import open_pair_set

    return open_pair_set(spec)


def make_verifier(cfg: Config) -> Callable | None:
    """``verifier(recipe, step) -> {"<set>/<r1&r2>": accuracy, ...}``, or None without sets."""
    if not cfg.eval.sets:
        return None
    from btnet.evaluation.verification import evaluate_pairs, parse_settings

    canonical = cfg.model.input_size
    try:
        settings = parse_settings(cfg.eval.pairs, canonical)
    except ValueError as e:
        raise ConfigError(f"eval.pairs {cfg.eval.pairs!r}: {e}") from None
    sets = [open_eval_set(s, canonical) for s in cfg.eval.sets]  # fail before training

    def verify(recipe, step: int) -> dict:
        chosen = settings
        if recipe.eval_resolutions is not None:
            allowed = set(recipe.eval_resolutions)
            chosen = [s for s in settings if s.r1 in allowed and s.r2 in allowed] or [
                type(settings[0])(r, r) for r in sorted(allowed)
            ]
        encoder = recipe.encoder()
        out = {}
        for ps in sets:
            for res in evaluate_pairs(encoder, ps, chosen, canonical, model_name=recipe.name,
                                      batch_size=cfg.eval.batch_size, progress=False):
                out[f"{ps.name}/{res.setting}"] = round(float(res.accuracy_mean), 6)
        log.info("step %d verification: %s", step, out)
        return out

    return verify
