"""Reusable layers, one concept per file."""

from .partial_conv import PartialConv2d, partial_conv2d

__all__ = ["PartialConv2d", "partial_conv2d"]
