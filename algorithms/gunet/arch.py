"""gUNet: a U-Net of gated depth-wise convolution blocks with selective-kernel skip fusion.

Song, Zhou, Qian, Du, "Rethinking Performance Gains in Image Dehazing Networks",
arXiv:2209.11448. Parameter names follow the official release so its checkpoints load strict.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from algorithms.dehazeformer.arch import PatchEmbed, PatchUnEmbed


class SKFusion(nn.Module):
    """Selective-kernel fusion (gUNet layout: the pooling is the first module of ``mlp``)."""

    def __init__(self, dim: int, height: int = 2, reduction: int = 8):
        super().__init__()
        self.height = height
        hidden = max(int(dim / reduction), 4)
        self.mlp = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(dim, hidden, 1, bias=False),
            nn.ReLU(True),
            nn.Conv2d(hidden, dim * height, 1, bias=False),
        )

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        b, c, h, w = feats[0].shape
        stacked = torch.cat(feats, dim=1).view(b, self.height, c, h, w)
        weights = self.mlp(stacked.sum(dim=1)).view(b, self.height, c, 1, 1).softmax(dim=1)
        return (stacked * weights).sum(dim=1)


class ConvLayer(nn.Module):
    """Gated convolution: (1x1 -> depth-wise kxk) * gate(1x1), then a 1x1 projection."""

    def __init__(self, dim: int, kernel_size: int = 3, gate_act: type[nn.Module] = nn.Sigmoid):
        super().__init__()
        self.Wv = nn.Sequential(
            nn.Conv2d(dim, dim, 1),
            nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, padding_mode="reflect"),
        )
        self.Wg = nn.Sequential(nn.Conv2d(dim, dim, 1), gate_act())
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.Wv(x) * self.Wg(x))


class BasicBlock(nn.Module):
    """Residual ``x + conv(norm(x))``."""

    def __init__(self, dim: int, kernel_size: int, conv_layer: type[nn.Module], norm_layer: type[nn.Module],
                 gate_act: type[nn.Module]):
        super().__init__()
        self.norm = norm_layer(dim)
        self.conv = conv_layer(dim, kernel_size, gate_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.norm(x))


class BasicLayer(nn.Module):
    def __init__(self, dim: int, depth: int, kernel_size: int, conv_layer: type[nn.Module],
                 norm_layer: type[nn.Module], gate_act: type[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(
            BasicBlock(dim, kernel_size, conv_layer, norm_layer, gate_act) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class gUNet(nn.Module):  # noqa: N801 - official class name
    """gUNet (Song et al., arXiv:2209.11448).

    Input RGB in [-1, 1] with H and W multiples of ``patch_size`` (= 2 ** (stages // 2) = 8;
    the official test pads outside the network); output ``x + residual`` in about [-1, 1].
    """

    def __init__(
        self,
        kernel_size: int = 5,
        base_dim: int = 32,
        depths=(4, 4, 4, 4, 4, 4, 4),
        conv_layer: type[nn.Module] = ConvLayer,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        gate_act: type[nn.Module] = nn.Sigmoid,
        fusion_layer: type[nn.Module] = SKFusion,
    ):
        super().__init__()
        self.stage_num = len(depths)
        self.half_num = self.stage_num // 2
        self.patch_size = 2**self.half_num
        encoder_dims = [base_dim * 2**i for i in range(self.half_num)]
        embed_dims = encoder_dims + [base_dim * 2**self.half_num] + encoder_dims[::-1]

        self.inconv = PatchEmbed(1, 3, embed_dims[0], kernel_size=3)
        self.layers = nn.ModuleList(
            BasicLayer(embed_dims[i], depths[i], kernel_size, conv_layer, norm_layer, gate_act)
            for i in range(self.stage_num)
        )
        self.downs = nn.ModuleList(PatchEmbed(2, embed_dims[i], embed_dims[i + 1]) for i in range(self.half_num))
        self.ups = nn.ModuleList(PatchUnEmbed(2, embed_dims[i], embed_dims[i + 1]) for i in range(self.half_num))
        self.skips = nn.ModuleList(nn.Conv2d(embed_dims[i], embed_dims[i], 1) for i in range(self.half_num))
        self.fusions = nn.ModuleList(fusion_layer(embed_dims[i]) for i in range(self.half_num))
        self.outconv = PatchUnEmbed(1, 3, embed_dims[-1], kernel_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.inconv(x)
        skips = []
        for i in range(self.half_num):
            feat = self.layers[i](feat)
            skips.append(self.skips[i](feat))
            feat = self.downs[i](feat)
        feat = self.layers[self.half_num](feat)
        for i in reversed(range(self.half_num)):
            feat = self.fusions[i]([self.ups[i](feat), skips[i]])
            feat = self.layers[self.stage_num - i - 1](feat)
        return self.outconv(feat) + x


#: official constructor arguments of the released sizes
CONFIGS: dict[str, dict] = {
    "t": dict(kernel_size=5, base_dim=24, depths=[2, 2, 2, 4, 2, 2, 2]),
    "s": dict(kernel_size=5, base_dim=24, depths=[4, 4, 4, 8, 4, 4, 4]),
    "b": dict(kernel_size=5, base_dim=24, depths=[8, 8, 8, 16, 8, 8, 8]),
    "d": dict(kernel_size=5, base_dim=24, depths=[16, 16, 16, 32, 16, 16, 16]),
}
