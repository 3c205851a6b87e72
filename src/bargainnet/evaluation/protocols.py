"""The named scoring protocols (``published``, ``standard``): what every reported number is computed under
(docs/design.md §3; details in :mod:`bargainnet.evaluation.metrics`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class Protocol:
    """How outputs are turned into numbers; see the module docstring."""

    name: str
    composite_output: bool  # score out*M + composite*(1-M) instead of the raw output
    quantize: bool  # uint8 by truncation (published) or float on [0, 255]
    psnr_peak: str  # "output_range" (max - min of the output) or "255"
    description: str


PROTOCOLS: dict[str, Protocol] = {
    "published": Protocol(
        name="published",
        composite_output=False,
        quantize=True,
        psnr_peak="output_range",
        description=(
            "published test.py: 256x256 bilinear resize, raw generator output, uint8 by "
            "truncating (x+1)/2*255, PSNR data range = output max - min per image, fMSE with the "
            "binarised nearest-resized mask"
        ),
    ),
    "standard": Protocol(
        name="standard",
        composite_output=True,
        quantize=False,
        psnr_peak="255",
        description=(
            "composited output out*M + composite*(1-M), float values on [0, 255] (no rounding), "
            "PSNR peak 255, fMSE with the binarised mask"
        ),
    ),
}


def get_protocol(protocol: str | Protocol) -> Protocol:
    """The :class:`Protocol` named ``protocol`` (``"published"`` or ``"standard"``)."""
    if isinstance(protocol, Protocol):
        return protocol
    try:
        return PROTOCOLS[protocol]
    except KeyError:
        raise InputError(
            f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}"
        ) from None

PROTOCOL_NAMES = tuple(PROTOCOLS)
