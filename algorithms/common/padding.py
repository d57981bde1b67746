"""Padding to multiples and overlap-blended tiled inference for large images."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F


def padded_size(size: int, multiple: int = 1, minimum: int = 0) -> int:
    """Smallest value >= max(size, minimum) that is a multiple of ``multiple``."""
    target = max(size, minimum)
    return int(math.ceil(target / multiple) * multiple) if multiple > 1 else target


def mirror_pad_past_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """RIDCP's test-time padding: to the next multiple of ``multiple`` strictly above each side,
    filled by concatenating the flipped image (symmetric padding, edge pixel repeated; repeated
    for images smaller than the pad)."""
    h, w = x.shape[-2:]
    ph, pw = (h // multiple + 1) * multiple, (w // multiple + 1) * multiple
    while x.shape[-2] < ph:
        x = torch.cat([x, torch.flip(x, [-2])], -2)
    while x.shape[-1] < pw:
        x = torch.cat([x, torch.flip(x, [-1])], -1)
    return x[..., :ph, :pw]


def pad_bottom_right(x: torch.Tensor, pad_h: int, pad_w: int, mode: str = "reflect") -> torch.Tensor:
    """Pad an N x C x H x W tensor on the bottom/right.

    ``reflect`` works for any amount: when the pad is not smaller than the side (which
    ``F.pad`` refuses), the image is reflected repeatedly, like a mirrored tiling.
    """
    if pad_h == 0 and pad_w == 0:
        return x
    if mode == "constant":
        return F.pad(x, (0, pad_w, 0, pad_h), mode="constant", value=0.0)
    if mode == "replicate":
        return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    if mode != "reflect":
        raise ValueError(f"unknown pad mode {mode!r}")
    while pad_h > 0 or pad_w > 0:
        h, w = x.shape[-2:]
        step_h = min(pad_h, h - 1) if h > 1 else 0
        step_w = min(pad_w, w - 1) if w > 1 else 0
        if step_h == 0 and step_w == 0:  # a 1-pixel side cannot reflect
            return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        x = F.pad(x, (0, step_w, 0, step_h), mode="reflect")
        pad_h -= step_h
        pad_w -= step_w
    return x


def pad_to_multiple(x: torch.Tensor, multiple: int = 1, minimum: int = 0, mode: str = "reflect"):
    """Pad H and W up to multiples (and at least ``minimum``). Returns (padded, (H, W))."""
    h, w = x.shape[-2:]
    ph = padded_size(h, multiple, minimum) - h
    pw = padded_size(w, multiple, minimum) - w
    return pad_bottom_right(x, ph, pw, mode), (h, w)


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int,
    overlap: int,
    multiple: int = 1,
) -> torch.Tensor:
    """Apply an image -> image function over overlapping tiles and blend them.

    ``fn`` maps N x C x h x w to N x C' x h x w (same spatial size). Tiles are ``tile`` pixels
    (rounded down to ``multiple``) with ``overlap`` pixels shared between neighbours; the
    overlapping strips are cross-faded linearly, so seams are invisible for networks whose
    receptive field is smaller than the overlap. Memory is bounded by one tile's activations
    plus the output buffer.
    """
    n, _, h, w = x.shape
    if multiple > 1:
        tile = max(multiple, tile // multiple * multiple)
    overlap = min(overlap, tile // 2)
    if h <= tile and w <= tile:
        return fn(x)
    ys, xs = _tile_starts(h, tile, overlap), _tile_starts(w, tile, overlap)
    out = None
    weight = torch.zeros(1, 1, h, w, device=x.device, dtype=torch.float32)
    for iy, y0 in enumerate(ys):
        th = min(tile, h - y0)
        for ix, x0 in enumerate(xs):
            tw = min(tile, w - x0)
            piece = fn(x[:, :, y0 : y0 + th, x0 : x0 + tw]).float()
            if out is None:
                out = torch.zeros(n, piece.shape[1], h, w, device=x.device, dtype=torch.float32)
            # overlap actually shared with the previous/next tile on each axis
            oy0 = (ys[iy - 1] + tile - y0) if iy > 0 else 0
            oy1 = (y0 + th - ys[iy + 1]) if iy + 1 < len(ys) else 0
            ox0 = (xs[ix - 1] + tile - x0) if ix > 0 else 0
            ox1 = (x0 + tw - xs[ix + 1]) if ix + 1 < len(xs) else 0
            wy = torch.ones(th, device=x.device)
            wx = torch.ones(tw, device=x.device)
            if oy0 > 0:
                wy[:oy0] = (torch.arange(oy0, device=x.device) + 0.5) / oy0
            if oy1 > 0:
                wy[th - oy1 :] = torch.minimum(wy[th - oy1 :], ((torch.arange(oy1, device=x.device) + 0.5) / oy1).flip(0))
            if ox0 > 0:
                wx[:ox0] = (torch.arange(ox0, device=x.device) + 0.5) / ox0
            if ox1 > 0:
                wx[tw - ox1 :] = torch.minimum(wx[tw - ox1 :], ((torch.arange(ox1, device=x.device) + 0.5) / ox1).flip(0))
            wgt = (wy[:, None] * wx[None, :])[None, None]
            out[:, :, y0 : y0 + th, x0 : x0 + tw] += piece * wgt
            weight[:, :, y0 : y0 + th, x0 : x0 + tw] += wgt
    return out / weight
