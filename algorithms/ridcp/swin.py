"""Residual Swin Transformer blocks (the RSTB of SwinIR, Liang et al., ICCVW 2021) as RIDCP's
encoder uses them: window self-attention with a relative position bias, shifted windows on
every other block, and a 3x3 conv closing each residual group.

Tokens are N x (H*W) x C; each block receives the current spatial size ``(H, W)``.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """N x H x W x C -> (N * windows) x window x window x C."""
    n, h, w, c = x.shape
    x = x.view(n, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window, window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """(N * windows) x window x window x C -> N x H x W x C."""
    n = windows.shape[0] // (h * w // window // window)
    x = windows.view(n, h // window, w // window, window, window, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(n, h, w, -1)


def relative_position_index(window: int) -> torch.Tensor:
    """(window^2) x (window^2) index into the (2*window-1)^2 bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    coords = coords.flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += window - 1
    rel[:, :, 1] += window - 1
    rel[:, :, 0] *= 2 * window - 1
    return rel.sum(-1)


def shifted_window_mask(size: tuple[int, int], window: int, shift: int) -> torch.Tensor:
    """windows x (window^2) x (window^2): -100 between tokens from different regions of the
    cyclically shifted image, 0 within a region."""
    h, w = size
    regions = torch.zeros((1, h, w, 1))
    label = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            regions[:, hs, ws, :] = label
            label += 1
    regions = window_partition(regions, window).view(-1, window * window)
    mask = regions.unsqueeze(1) - regions.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside square windows, with a learned relative position bias."""

    def __init__(self, dim: int, window: int, num_heads: int):
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.view(b // windows, windows, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinTransformerBlock(nn.Module):
    """Pre-norm (shifted-)window attention + MLP, both residual.

    Shifted blocks keep the attention mask of ``input_resolution`` as a (persistent) buffer, as
    the official checkpoints do, and use it only when the feature map has exactly that size;
    other sizes get their mask computed on the fly.
    """

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        window: int,
        shift: int,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        self.input_resolution = tuple(input_resolution)
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(self.input_resolution, window, shift) if shift > 0 else None
        self.register_buffer("attn_mask", mask)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        if self.shift > 0:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = window_partition(x, self.window).view(-1, self.window * self.window, c)
        if self.shift == 0:
            mask = None
        elif tuple(size) == self.input_resolution:
            mask = self.attn_mask
        else:
            mask = shifted_window_mask(size, self.window, self.shift).to(x)
        windows = self.attn(windows, mask=mask).view(-1, self.window, self.window, c)
        x = window_reverse(windows, self.window, h, w)
        if self.shift > 0:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + x.view(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class BasicLayer(nn.Module):
    """``depth`` Swin blocks, alternating regular and half-window-shifted windows."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int, window: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, input_resolution, num_heads, window, shift=0 if i % 2 == 0 else window // 2)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, size)
        return x


class RSTB(nn.Module):
    """Residual Swin Transformer Block: Swin blocks, a 3x3 conv, and a skip around both."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int, window: int):
        super().__init__()
        self.residual_group = BasicLayer(dim, input_resolution, depth, num_heads, window)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        y = self.residual_group(x, size).transpose(1, 2).view(b, c, *size)
        return self.conv(y).flatten(2).transpose(1, 2) + x


class SwinLayers(nn.Module):
    """RIDCP's encoder head: four RSTBs over the N x C x H x W latent."""

    def __init__(
        self,
        input_resolution=(32, 32),
        embed_dim: int = 256,
        depth: int = 6,
        num_heads: int = 8,
        window: int = 8,
        num_rstb: int = 4,
    ):
        super().__init__()
        self.swin_blks = nn.ModuleList(
            RSTB(embed_dim, input_resolution, depth, num_heads, window) for _ in range(num_rstb)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b, c, h * w).transpose(1, 2)
        for rstb in self.swin_blks:
            x = rstb(x, (h, w))
        return x.transpose(1, 2).reshape(b, c, h, w)
