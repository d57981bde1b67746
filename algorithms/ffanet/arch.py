"""FFA-Net: Feature Fusion Attention Network for Single Image Dehazing.

Qin, Wang, Bai, Xie, Jia, AAAI 2020, arXiv:1911.07559. Parameter names follow the official
release (zhilin007/FFA-Net) so its checkpoints load with ``strict=True``.
"""
from __future__ import annotations

import torch
from torch import nn


def default_conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> nn.Conv2d:
    """Stride-1 convolution with 'same' zero padding."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class CALayer(nn.Module):
    """Channel attention: global average pool -> 1x1 bottleneck (/8) -> sigmoid channel weights."""

    def __init__(self, channels: int):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.ca = nn.Sequential(
            nn.Conv2d(channels, channels // 8, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // 8, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.ca(self.avg_pool(x))


class PALayer(nn.Module):
    """Pixel attention: 1x1 bottleneck (/8) -> one sigmoid weight per pixel."""

    def __init__(self, channels: int):
        super().__init__()
        self.pa = nn.Sequential(
            nn.Conv2d(channels, channels // 8, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // 8, 1, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.pa(x)


class Block(nn.Module):
    """FFA basic block: local residual conv, then channel and pixel attention, plus the input."""

    def __init__(self, conv, dim: int, kernel_size: int):
        super().__init__()
        self.conv1 = conv(dim, dim, kernel_size)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv(dim, dim, kernel_size)
        self.calayer = CALayer(dim)
        self.palayer = PALayer(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.act1(self.conv1(x)) + x
        res = self.palayer(self.calayer(self.conv2(res)))
        return res + x


class Group(nn.Module):
    """``blocks`` blocks and a closing conv, with a residual connection around the group."""

    def __init__(self, conv, dim: int, kernel_size: int, blocks: int, block=Block):
        super().__init__()
        layers = [block(conv, dim, kernel_size) for _ in range(blocks)]
        layers.append(conv(dim, dim, kernel_size))
        self.gp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gp(x) + x


class FFA(nn.Module):
    """FFA-Net (Qin et al., AAAI 2020): three groups fused by learned channel weights.

    Input: RGB normalised with mean (0.64, 0.6, 0.58) and std (0.14, 0.15, 0.152). Output: the
    restored RGB in [0, 1] (before clamping), predicted as a residual on the normalised input.
    """

    def __init__(self, gps: int = 3, blocks: int = 19, conv=default_conv):
        super().__init__()
        if gps != 3:
            raise ValueError("FFA-Net has exactly three groups (g1, g2, g3)")
        self.gps = gps
        self.dim = 64
        kernel_size = 3
        self.pre = nn.Sequential(conv(3, self.dim, kernel_size))
        self.g1 = Group(conv, self.dim, kernel_size, blocks)
        self.g2 = Group(conv, self.dim, kernel_size, blocks)
        self.g3 = Group(conv, self.dim, kernel_size, blocks)
        self.ca = fusion_attention(self.dim, gps)
        self.palayer = PALayer(self.dim)
        self.post = nn.Sequential(conv(self.dim, self.dim, kernel_size), conv(self.dim, 3, kernel_size))

    def fused_features(self, x: torch.Tensor) -> torch.Tensor:
        """Group outputs fused by the attention weights, then pixel attention (64 channels)."""
        res1 = self.g1(self.pre(x))
        res2 = self.g2(res1)
        res3 = self.g3(res2)
        out = fuse_groups(self.ca, (res1, res2, res3), self.dim)
        return self.palayer(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.fused_features(x)) + x


def fusion_attention(dim: int, groups: int) -> nn.Sequential:
    """Channel attention over the concatenated group outputs (keys ca.1, ca.3)."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Conv2d(dim * groups, dim // 16, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(dim // 16, dim * groups, 1),
        nn.Sigmoid(),
    )


def fuse_groups(attention: nn.Module, features: tuple[torch.Tensor, ...], dim: int) -> torch.Tensor:
    """Weighted sum of the group outputs with per-group, per-channel attention weights."""
    w = attention(torch.cat(features, dim=1)).view(-1, len(features), dim, 1, 1)
    return sum(w[:, i] * f for i, f in enumerate(features))
