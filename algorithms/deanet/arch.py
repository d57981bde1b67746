"""DEA-Net inference backbone (detail-enhanced convolutions already re-parameterised)."""
from __future__ import annotations

import torch
from torch import nn


def conv3x3(dim: int) -> nn.Conv2d:
    return nn.Conv2d(dim, dim, 3, padding=1, bias=True)


class SpatialAttention(nn.Module):
    """7x7 conv (reflect padding) on the channel-wise mean and max."""

    def __init__(self):
        super().__init__()
        self.sa = nn.Conv2d(2, 1, 7, padding=3, padding_mode="reflect", bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat((x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)), 1)
        return self.sa(pooled)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation weights (no sigmoid: the CGA adds them to the spatial map)."""

    def __init__(self, dim: int, reduction: int = 8):
        super().__init__()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.ca = nn.Sequential(
            nn.Conv2d(dim, dim // reduction, 1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim // reduction, dim, 1, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ca(self.gap(x))


class PixelAttention(nn.Module):
    """Refines the coarse attention per channel: a grouped 7x7 conv over interleaved
    [feature_c, coarse_c] channel pairs, then a sigmoid."""

    def __init__(self, dim: int):
        super().__init__()
        self.pa2 = nn.Conv2d(2 * dim, dim, 7, padding=3, padding_mode="reflect", groups=dim, bias=True)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        pairs = torch.stack((x, coarse.expand_as(x)), dim=2).reshape(b, 2 * c, h, w)
        return self.sigmoid(self.pa2(pairs))


class ContentGuidedAttention(nn.Module):
    """CGA: channel + spatial coarse attention refined by pixel attention."""

    def __init__(self, dim: int, reduction: int = 8):
        super().__init__()
        self.sa = SpatialAttention()
        self.ca = ChannelAttention(dim, reduction)
        self.pa = PixelAttention(dim)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        return self.pa(x, self.sa(x) + self.ca(x))


class DEBlock(nn.Module):
    """Detail-enhanced block (inference form: DEConv merged into ``conv1``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = conv3x3(dim)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.act1(self.conv1(x)) + x
        return self.conv2(res) + x


class DEABlock(ContentGuidedAttention):
    """Detail-enhanced attention block: DEBlock body re-weighted by content-guided attention."""

    def __init__(self, dim: int, reduction: int = 8):
        super().__init__(dim, reduction)
        self.conv1 = conv3x3(dim)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.conv2(self.act1(self.conv1(x)) + x)
        return res * self.attention(res) + x


class CGAFusion(ContentGuidedAttention):
    """CGA-based mixup fusion of an encoder skip ``x`` and a decoder feature ``y``."""

    def __init__(self, dim: int, reduction: int = 8):
        super().__init__(dim, reduction)
        self.conv = nn.Conv2d(dim, dim, 1, bias=True)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        initial = x + y
        # the official fusion applies a second sigmoid on top of the pixel attention's own
        weight = self.sigmoid(self.attention(initial))
        return self.conv(initial + weight * x + (1 - weight) * y)


class DEANet(nn.Module):
    """DEA-Net: Single Image Dehazing Based on Detail-Enhanced Convolution and Content-Guided
    Attention (Chen, He, Lu; IEEE TIP 2024, arXiv:2301.04805).

    The re-parameterised inference ``Backbone``: a 3-level U-shaped network with DEBlocks at
    full and half resolution, DEABlocks at quarter resolution and CGA fusion of the skips.
    Input [0,1] RGB with H, W multiples of 4; output ~[0,1], no global residual.
    """

    def __init__(self, base_dim: int = 32):
        super().__init__()
        d1, d2, d3 = base_dim, base_dim * 2, base_dim * 4
        self.down1 = nn.Sequential(nn.Conv2d(3, d1, 3, padding=1))
        self.down2 = nn.Sequential(nn.Conv2d(d1, d2, 3, stride=2, padding=1), nn.ReLU(True))
        self.down3 = nn.Sequential(nn.Conv2d(d2, d3, 3, stride=2, padding=1), nn.ReLU(True))
        for i in range(1, 5):
            setattr(self, f"down_level1_block{i}", DEBlock(d1))
        for i in range(1, 5):
            setattr(self, f"up_level1_block{i}", DEBlock(d1))
        self.fe_level_2 = nn.Conv2d(d2, d2, 3, padding=1)
        for i in range(1, 5):
            setattr(self, f"down_level2_block{i}", DEBlock(d2))
        for i in range(1, 5):
            setattr(self, f"up_level2_block{i}", DEBlock(d2))
        self.fe_level_3 = nn.Conv2d(d3, d3, 3, padding=1)
        for i in range(1, 9):
            setattr(self, f"level3_block{i}", DEABlock(d3))
        self.up1 = nn.Sequential(nn.ConvTranspose2d(d3, d2, 3, stride=2, padding=1, output_padding=1), nn.ReLU(True))
        self.up2 = nn.Sequential(nn.ConvTranspose2d(d2, d1, 3, stride=2, padding=1, output_padding=1), nn.ReLU(True))
        self.up3 = nn.Sequential(nn.Conv2d(d1, 3, 3, padding=1))
        self.mix1 = CGAFusion(d3, reduction=8)
        self.mix2 = CGAFusion(d2, reduction=4)

    def _blocks(self, prefix: str, count: int, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, count + 1):
            x = getattr(self, f"{prefix}{i}")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level1 = self._blocks("down_level1_block", 4, self.down1(x))
        skip2 = self.down2(level1)
        level2 = self._blocks("down_level2_block", 4, self.fe_level_2(skip2))
        skip3 = self.down3(level2)
        level3 = self._blocks("level3_block", 8, self.fe_level_3(skip3))
        up = self._blocks("up_level2_block", 4, self.up1(self.mix1(skip3, level3)))
        up = self._blocks("up_level1_block", 4, self.up2(self.mix2(skip2, up)))
        return self.up3(up)
