"""Build any backbone by name: the one place that maps architecture names to classes."""

from __future__ import annotations

from typing import Any

from btnet.models.backbone import Backbone
from btnet.models.iresnet import IRESNET_LAYERS, IResNet
from btnet.models.mobilefacenet import MobileFaceNet

MBF_VARIANTS = {"mbf": ((1, 4, 6, 2), 2), "mbf_large": ((2, 8, 12, 4), 4)}

ARCHITECTURES: tuple[str, ...] = tuple(IRESNET_LAYERS) + tuple(MBF_VARIANTS)

_ALIASES = {f"r{name[len('iresnet'):]}": name for name in IRESNET_LAYERS}


def build_backbone(arch: str, **kwargs: Any) -> Backbone:
    """``build_backbone("iresnet50")`` or ``build_backbone("iresnet18", input_size=56, width=16)``.

    Accepts arcface_torch's short names too (``r50``, ``r100``).
    """
    name = _ALIASES.get(arch, arch)
    if name in IRESNET_LAYERS:
        allowed = {"input_size", "width", "embedding_size", "dropout"}
        _check_kwargs(name, kwargs, allowed)
        return IResNet(IRESNET_LAYERS[name], arch=name, **kwargs)
    if name in MBF_VARIANTS:
        _check_kwargs(name, kwargs, {"input_size", "embedding_size", "blocks", "scale"})
        blocks, scale = MBF_VARIANTS[name]
        kwargs.setdefault("blocks", tuple(blocks))
        kwargs.setdefault("scale", scale)
        kwargs["blocks"] = tuple(kwargs["blocks"])
        return MobileFaceNet(arch=name, **kwargs)
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def backbone_from_config(config: dict[str, Any]) -> Backbone:
    """Rebuild a backbone from its ``config`` dict (as stored next to its weights)."""
    kwargs = dict(config)
    return build_backbone(kwargs.pop("arch"), **kwargs)


def _check_kwargs(arch: str, kwargs: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(kwargs) - allowed
    if unknown:
        raise ValueError(
            f"{arch} does not take {', '.join(sorted(unknown))}; it takes {', '.join(sorted(allowed))}"
        )
