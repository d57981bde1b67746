"""MixDehazeNet: the LKD-Net / DehazeFormer five-stage U-Net with Mix Structure Blocks."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from algorithms.lkdnet.arch import DehazeUNet


class MixStructureBlock(nn.Module):
    """Multi-scale parallel large convolution (dilated depthwise 7/5/3, dilation 3) and an
    enhanced parallel attention (simple channel, channel and pixel attention), each pre-normed
    with BatchNorm, fused by a 3C -> 4C -> C GELU MLP and residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv2 = nn.Conv2d(dim, dim, 5, padding=2, padding_mode="reflect")
        self.conv3_19 = nn.Conv2d(dim, dim, 7, padding=9, groups=dim, dilation=3, padding_mode="reflect")
        self.conv3_13 = nn.Conv2d(dim, dim, 5, padding=6, groups=dim, dilation=3, padding_mode="reflect")
        self.conv3_7 = nn.Conv2d(dim, dim, 3, padding=3, groups=dim, dilation=3, padding_mode="reflect")
        # simple channel attention: value branch gated by a global channel weight
        self.Wv = nn.Sequential(
            nn.Conv2d(dim, dim, 1),
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, padding_mode="reflect"),
        )
        self.Wg = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, dim, 1), nn.Sigmoid())
        self.ca = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, dim, 1), nn.GELU(), nn.Conv2d(dim, dim, 1), nn.Sigmoid()
        )
        self.pa = nn.Sequential(
            nn.Conv2d(dim, dim // 8, 1), nn.GELU(), nn.Conv2d(dim // 8, 1, 1), nn.Sigmoid()
        )
        self.mlp = nn.Sequential(nn.Conv2d(dim * 3, dim * 4, 1), nn.GELU(), nn.Conv2d(dim * 4, dim, 1))
        self.mlp2 = nn.Sequential(nn.Conv2d(dim * 3, dim * 4, 1), nn.GELU(), nn.Conv2d(dim * 4, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(self.norm1(x)))
        y = torch.cat([self.conv3_19(y), self.conv3_13(y), self.conv3_7(y)], dim=1)
        x = x + self.mlp(y)
        y = self.norm2(x)
        y = torch.cat([self.Wv(y) * self.Wg(y), self.ca(y) * y, self.pa(y) * y], dim=1)
        return x + self.mlp2(y)


class MixDehazeNet(DehazeUNet):
    """MixDehazeNet (Lu et al., "MixDehazeNet: Mix Structure Block For Image Dehazing Network",
    IJCNN 2024, arXiv:2305.17654)."""

    def __init__(
        self,
        in_chans: int = 3,
        out_chans: int = 4,
        embed_dims: Sequence[int] = (24, 48, 96, 48, 24),
        depths: Sequence[int] = (1, 1, 2, 1, 1),
    ):
        super().__init__(
            lambda dim, stage: MixStructureBlock(dim),
            in_chans, out_chans, embed_dims, depths, merge_kernel_size=3,
        )
