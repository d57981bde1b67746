"""2-D neighborhood attention (NAT / DiNAT) with a backend switch.

Neighborhood attention (Hassani et al., "Neighborhood Attention Transformer", CVPR 2023;
"Dilated Neighborhood Attention Transformer", arXiv:2209.15001) lets every token attend to the
``kernel_size x kernel_size`` tokens around it, taken every ``dilation`` pixels. Semantics,
identical to natten's:

* a window never leaves the feature map: near a border it is *clamped* (shifted inwards), it is
  not zero-padded, so every query always sees exactly ``kernel_size**2`` keys;
* with dilation ``d`` the map splits into ``d x d`` interleaved groups (rows ``i`` with the
  same ``i % d``); attention stays inside a group and the clamping happens within the group;
* every axis must hold at least ``kernel_size * dilation`` tokens;
* optional relative positional bias ``rpb`` [heads, 2k-1, 2k-1] (natten <= 0.17), indexed by
  ``key - query + k - 1`` in group coordinates; no causal masking.

Backends: natten's fused kernels on CUDA when natten is installed, its ``na2d`` API is the one we
know and no ``rpb`` is given (natten >= 0.20 dropped it); our pure-PyTorch implementation
everywhere else. Ours works on query *tiles*: the queries of a ``tile x tile`` block share a
``(tile + k - 1)``-sided key region, and a mask keeps each query's own window. All tiles go
through one ``scaled_dot_product_attention`` call (tiles as its batch), whose fused CPU kernel
never materialises the logits, so memory stays linear in the image size (natten's CPU path, flex
attention, runs out of memory at a 256 x 256 input).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["neighborhood_attention_2d", "NeighborhoodAttention2D", "natten_available"]

@lru_cache(maxsize=None)
def natten_available() -> bool:
    """natten is importable, has the CUDA library, and exposes the ``na2d`` signature we call."""
    try:
        import natten
        from natten.functional import na2d
    except ImportError:
        return False
    params = inspect.signature(na2d).parameters
    return getattr(natten, "HAS_LIBNATTEN", False) and all(
        p in params for p in ("query", "key", "value", "kernel_size", "dilation", "scale")
    )


def neighborhood_attention_2d(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    kernel_size: int,
    dilation: int = 1,
    scale: float | None = None,
    rpb: torch.Tensor | None = None,
    backend: str = "auto",
    tile: int = 8,
) -> torch.Tensor:
    """Neighborhood attention on natten's heads-last layout.

    ``query``/``key``/``value``: [batch, H, W, heads, head_dim]; returns the same shape.
    ``scale`` defaults to ``head_dim ** -0.5``. ``backend``: "auto", "natten" or "torch".
    """
    b, h, w, heads, dim = query.shape
    if h < kernel_size * dilation or w < kernel_size * dilation:
        raise ValueError(
            f"neighborhood attention needs every axis >= kernel_size*dilation = {kernel_size * dilation}, "
            f"got {h}x{w}"
        )
    scale = dim**-0.5 if scale is None else scale
    if backend == "auto":
        backend = "natten" if query.is_cuda and rpb is None and natten_available() else "torch"
    if backend == "natten":
        if rpb is not None:
            raise ValueError("natten >= 0.20 has no relative positional bias; use backend='torch'")
        from natten.functional import na2d

        return na2d(query, key, value, kernel_size=kernel_size, dilation=dilation, scale=scale)
    if backend != "torch":
        raise ValueError(f"unknown neighborhood-attention backend {backend!r}")
    # [b, h, w, heads, d] -> [b*heads, h, w, d]
    q, k, v = (t.permute(0, 3, 1, 2, 4).reshape(b * heads, h, w, dim) for t in (query, key, value))
    out = _dilated(q * scale, k, v, kernel_size, dilation, rpb, tile)
    return out.reshape(b, heads, h, w, dim).permute(0, 2, 3, 1, 4)


# --- dilation: split into interleaved groups, attend within each with dilation 1 -------------


def _dilated(q, k, v, kernel_size, dilation, rpb, tile):
    if dilation == 1:
        return _neighborhood(q, k, v, kernel_size, rpb, tile)
    n, h, w, dim = q.shape
    d = dilation
    nh, nw = -(-h // d), -(-w // d)  # group length along each axis (longest groups)
    long_h, long_w = h - (nh - 1) * d, w - (nw - 1) * d  # how many groups have that length

    def groups(x):
        # pad to whole groups, then [n, group_y, group_x, nh, nw, dim]
        x = F.pad(x, (0, 0, 0, nw * d - w, 0, nh * d - h))
        return x.reshape(n, nh, d, nw, d, dim).permute(0, 2, 4, 1, 3, 5)

    qg, kg, vg = groups(q), groups(k), groups(v)
    out = torch.empty_like(qg)
    # the groups fall into at most 2 x 2 classes of equal shape; each class is one batch
    for gy, ly in ((slice(0, long_h), nh), (slice(long_h, d), nh - 1)):
        for gx, lx in ((slice(0, long_w), nw), (slice(long_w, d), nw - 1)):
            sel = (slice(None), gy, gx, slice(0, ly), slice(0, lx))
            part = qg[sel]
            if part.numel() == 0:
                continue
            gys, gxs = part.shape[1:3]

            def batch(x):
                return x[sel].reshape(n * gys * gxs, ly, lx, dim)

            # batch order (batch, head, group): rpb is shared by the groups of a head
            res = _neighborhood(batch(qg), batch(kg), batch(vg), kernel_size, rpb, tile, rpb_repeat=gys * gxs)
            out[sel] = res.reshape(n, gys, gxs, ly, lx, dim)
    return out.permute(0, 3, 1, 4, 2, 5).reshape(n, nh * d, nw * d, dim)[:, :h, :w]


# --- dilation 1: tiled, masked attention -------------------------------------------------------


@dataclass(frozen=True)
class _AxisPlan:
    """How one axis of length ``length`` is cut into query tiles and their key regions.

    Tile ``a`` holds queries ``a*tile ... a*tile + tile - 1`` (queries past the end are dummies,
    cropped afterwards) and scores keys ``a*tile - pad_before + j`` for ``j < region``, read with
    ``unfold`` from the key map padded by ``pad_before``/``pad_after`` (padding is masked).
    """

    tile: int
    tiles: int
    region: int
    pad_before: int
    pad_after: int
    inside: torch.Tensor  # bool [tiles, tile, region]: key in the query's (clamped) window
    rel: torch.Tensor  # long [tiles, tile, region]: key - query + kernel_size - 1 (clamped)


@lru_cache(maxsize=256)
def _axis_plan(length: int, kernel_size: int, tile: int) -> _AxisPlan:
    radius = kernel_size // 2
    # the region [a*tile - radius, a*tile + tile + radius) holds every window of tile a, except
    # when the last tile has <= radius real queries (their windows are clamped further back):
    # pick a tile size without such a remainder, else one tile spanning the whole axis
    sizes = [t for t in (*range(tile, radius, -1), *range(tile + 1, 2 * tile)) if length > t + 2 * radius]
    tile = next((t for t in sizes if length % t == 0 or length % t > radius), None)
    if tile is None:
        tile, tiles, region, pad_before = length, 1, length, 0
    else:
        tiles = -(-length // tile)
        region, pad_before = tile + 2 * radius, radius
    pad_after = (tiles - 1) * tile + region - pad_before - length
    query = torch.arange(tiles * tile).view(tiles, tile, 1)
    key = (torch.arange(tiles) * tile - pad_before).view(tiles, 1, 1) + torch.arange(region)
    window_start = (query - radius).clamp(0, length - kernel_size)
    inside = (key >= window_start) & (key < window_start + kernel_size)
    rel = (key - query + kernel_size - 1).clamp(0, 2 * kernel_size - 2)
    return _AxisPlan(tile, tiles, region, pad_before, pad_after, inside, rel)


@lru_cache(maxsize=32)
def _window_mask(h: int, w: int, kernel_size: int, tile: int, device) -> torch.Tensor:
    """Boolean mask [tiles_y * tiles_x, 1, ty*tx, ry*rx]: True where the key is in the query's window."""
    py, px = _axis_plan(h, kernel_size, tile), _axis_plan(w, kernel_size, tile)
    inside = py.inside[:, None, :, None, :, None] & px.inside[None, :, None, :, None, :]
    return inside.reshape(py.tiles * px.tiles, 1, py.tile * px.tile, py.region * px.region).to(device)


def _neighborhood(q, k, v, kernel_size, rpb, tile, rpb_repeat=1):
    """Dilation-1 neighborhood attention on [n, h, w, d] (q already scaled).

    Every query tile and its key region form one (masked) attention problem, solved by
    ``scaled_dot_product_attention`` (a fused kernel on CPU: the tile x region logits are never
    materialised). Tiles are the SDPA batch and ``n`` its heads, so one window mask serves all."""
    n, h, w, dim = q.shape
    py, px = _axis_plan(h, kernel_size, tile), _axis_plan(w, kernel_size, tile)
    dev = q.device
    ty, tx, ry, rx = py.tile, px.tile, py.region, px.region
    tiles = py.tiles * px.tiles
    mask = _window_mask(h, w, kernel_size, tile, dev)
    if rpb is not None:
        # rpb[head, rel_y, rel_x] -> [tiles, heads, ty*tx, ry*rx], then over (batch, head, group)
        pos = rpb.to(q.dtype)[:, py.rel.to(dev)[:, None, :, None, :, None], px.rel.to(dev)[None, :, None, :, None, :]]
        pos = pos.reshape(rpb.shape[0], tiles, ty * tx, ry * rx).transpose(0, 1)
        pos = pos.repeat_interleave(rpb_repeat, dim=1).repeat(1, n // (rpb.shape[0] * rpb_repeat), 1, 1)
        mask = pos.masked_fill(~mask, float("-inf"))

    q = F.pad(q, (0, 0, 0, px.tiles * tx - w, 0, py.tiles * ty - h))
    # [tiles, n, ty*tx, dim]
    q = q.view(n, py.tiles, ty, px.tiles, tx, dim).permute(1, 3, 0, 2, 4, 5).reshape(tiles, n, ty * tx, dim)

    def regions(t):  # key/value regions [tiles, n, ry*rx, dim]
        t = F.pad(t, (0, 0, px.pad_before, px.pad_after, py.pad_before, py.pad_after)).unfold(1, ry, ty).unfold(2, rx, tx)
        return t.permute(1, 2, 0, 4, 5, 3).reshape(tiles, n, ry * rx, dim)

    out = F.scaled_dot_product_attention(q, regions(k), regions(v), attn_mask=mask, scale=1.0)
    out = out.view(py.tiles, px.tiles, n, ty, tx, dim).permute(2, 0, 3, 1, 4, 5)
    return out.reshape(n, py.tiles * ty, px.tiles * tx, dim)[:, :h, :w]


class NeighborhoodAttention2D(nn.Module):
    """natten's ``NeighborhoodAttention2D`` module (same parameter names: ``qkv``, ``proj`` and,
    with ``rel_pos_bias``, ``rpb``) on the switchable backend. Input/output [B, H, W, C]."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        kernel_size: int,
        dilation: int = 1,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        rel_pos_bias: bool = False,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim**-0.5
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        if rel_pos_bias:
            self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * kernel_size - 1, 2 * kernel_size - 1))
        else:
            self.register_parameter("rpb", None)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        qkv = self.qkv(x).reshape(b, h, w, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.unbind(3)
        out = neighborhood_attention_2d(q, k, v, self.kernel_size, self.dilation, self.scale, self.rpb)
        return self.proj(out.reshape(b, h, w, c))

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, kernel_size={self.kernel_size}, dilation={self.dilation}"
