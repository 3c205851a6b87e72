"""Widening a trained generator for a fine-tune (``--init-weights`` of a narrower model).

Net2Net-style: the wider generator starts as exactly the narrower one's function, so a fine-tune
tests what added capacity gives without first relearning what the model already knew.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..models.generator import AttentionUNet, UnetSkipBlock


@torch.no_grad()
def widen_into(source: AttentionUNet, target: AttentionUNet) -> None:
    """Copy ``source`` into the wider ``target`` (same levels, larger ``ngf``) so that it computes
    the same function (Net2Net-style widening: a fine-tune can then use the added capacity).

    Each of ``source``'s channels keeps its weights at its place in ``target`` (inside a skip
    concatenation [x, inner], each half keeps its own place). The added channels get ``target``'s
    own initial weights for what they read, and zero weights wherever a layer reads them, so
    nothing they compute reaches the output until training changes those zeros; their
    normalisation starts as the identity. ``target`` is changed in place.
    """
    if source.num_downs != target.num_downs or source.code_dim != target.code_dim:
        raise ValueError("widen_into needs generators with the same levels and code length")
    if source.code_dim > 0:
        target.weight.copy_(source.weight)
    old, new = source.model, target.model
    while old is not None:
        _widen_block(old, new)
        old, new = _inner_block(old), _inner_block(new)


def _inner_block(block: UnetSkipBlock) -> UnetSkipBlock | None:
    return next((m for m in block.model if isinstance(m, UnetSkipBlock)), None)


def _places(old: int, new: int, concatenated: bool) -> Tensor:
    """Where ``old`` channels sit among ``new`` ones: the first ``old``, or in each half."""
    first = torch.arange(old)
    return torch.cat([first, first + new]) if concatenated else first


def _widen_block(old: UnetSkipBlock, new: UnetSkipBlock) -> None:
    convs = [(o, n) for o, n in zip(old.model, new.model) if isinstance(o, (nn.Conv2d, nn.ConvTranspose2d))]
    norms = [(o, n) for o, n in zip(old.model, new.model) if isinstance(o, nn.BatchNorm2d)]
    (down_old, down_new), (up_old, up_new) = convs
    has_inner = _inner_block(old) is not None
    inner_old, inner_new = down_old.out_channels, down_new.out_channels
    if old.outermost:  # the image and code channels in, the output channels out: unchanged
        down_in = torch.arange(down_old.in_channels)
        up_out = torch.arange(up_old.out_channels)
        outer_old = outer_new = None
    else:
        outer_old, outer_new = down_old.in_channels, down_new.in_channels
        down_in = up_out = _places(outer_old, outer_new, False)
    inner = _places(inner_old, inner_new, False)
    _copy_conv(down_old, down_new, inputs=down_in, outputs=inner)
    _copy_conv(up_old, up_new, inputs=_places(inner_old, inner_new, has_inner), outputs=up_out)
    places = [inner, up_out] if len(norms) == 2 else [up_out]  # the innermost has no inner norm
    for (norm_old, norm_new), where in zip(norms, places):
        _copy_norm(norm_old, norm_new, where)
    if old.attention is not None:
        both = _places(outer_old, outer_new, True)
        _copy_conv(old.attention[0], new.attention[0], inputs=both, outputs=both)


def _copy_conv(old: nn.Module, new: nn.Module, inputs: Tensor, outputs: Tensor) -> None:
    in_dim = 0 if isinstance(new, nn.ConvTranspose2d) else 1  # ConvTranspose2d stores (in, out, kh, kw)
    out_dim = 1 - in_dim
    added = torch.ones(new.weight.shape[in_dim], dtype=torch.bool)
    added[inputs] = False
    new.weight.index_fill_(in_dim, added.nonzero().flatten(), 0.0)
    rows, cols = (outputs, inputs) if out_dim == 0 else (inputs, outputs)
    new.weight[rows[:, None], cols[None, :]] = old.weight
    if old.bias is not None:
        new.bias[outputs] = old.bias


def _copy_norm(old: nn.BatchNorm2d, new: nn.BatchNorm2d, where: Tensor) -> None:
    new.reset_parameters()
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, name)[where] = getattr(old, name)
    new.num_batches_tracked.copy_(old.num_batches_tracked)
