"""Inference: encoders that embed faces of any size through the right model path."""

from btnet.inference.encoders import (
    Encoder,
    EncodeResult,
    MultiResolutionEncoder,
    PerResolutionEncoder,
    UpsamplingEncoder,
    fit_to,
)
from btnet.inference.loading import load_encoder

__all__ = [
    "EncodeResult",
    "Encoder",
    "MultiResolutionEncoder",
    "PerResolutionEncoder",
    "UpsamplingEncoder",
    "fit_to",
    "load_encoder",
]
