"""C2PNet: Curricular Contrastive Regularization for Physics-aware Single Image Dehazing.

Zheng, Zhan, He, Dong, Du, CVPR 2023, arXiv:2303.14218. The FFA-Net skeleton with every pixel
attention replaced by a physics-aware dual-branch unit (PDU). Parameter names follow the
official release (YuZheng9/C2PNet).
"""
from __future__ import annotations

import torch
from torch import nn

from algorithms.ffanet.arch import CALayer, Group, default_conv, fuse_groups, fusion_attention


class PDU(nn.Module):
    """Physics-aware dual-branch unit: ``J = (1 - t) * A + t * x`` with the atmospheric light
    ``A`` from a pooled channel branch (``ka``) and the transmission ``t`` from a conv branch
    (``td``), following the scattering model in feature space."""

    def __init__(self, channels: int):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.ka = nn.Sequential(
            nn.Conv2d(channels, channels // 8, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // 8, channels, 1),
            nn.Sigmoid(),
        )
        self.td = nn.Sequential(
            default_conv(channels, channels, 3),
            default_conv(channels, channels // 8, 3),
            nn.ReLU(inplace=True),
            default_conv(channels // 8, channels, 3),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.ka(self.avg_pool(x))
        t = self.td(x)
        return (1 - t) * a + t * x


class PDUBlock(nn.Module):
    """FFA block with the PDU in place of pixel attention."""

    def __init__(self, conv, dim: int, kernel_size: int):
        super().__init__()
        self.conv1 = conv(dim, dim, kernel_size)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv(dim, dim, kernel_size)
        self.calayer = CALayer(dim)
        self.pdu = PDU(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.act1(self.conv1(x)) + x
        res = self.pdu(self.calayer(self.conv2(res)))
        return res + x


class C2PNet(nn.Module):
    """C2PNet (Zheng et al., CVPR 2023): physics-aware FFA-style dehazing network.

    Input: RGB in [0, 1] (no normalisation). Output: restored RGB ~[0, 1] as a residual on the
    input.
    """

    def __init__(self, gps: int = 3, blocks: int = 19, conv=default_conv):
        super().__init__()
        if gps != 3:
            raise ValueError("C2PNet has exactly three groups (g1, g2, g3)")
        self.gps = gps
        self.dim = 64
        kernel_size = 3
        self.pre = nn.Sequential(conv(3, self.dim, kernel_size))
        self.g1 = Group(conv, self.dim, kernel_size, blocks, block=PDUBlock)
        self.g2 = Group(conv, self.dim, kernel_size, blocks, block=PDUBlock)
        self.g3 = Group(conv, self.dim, kernel_size, blocks, block=PDUBlock)
        self.ca = fusion_attention(self.dim, gps)
        self.pdu = PDU(self.dim)
        self.post = nn.Sequential(conv(self.dim, self.dim, kernel_size), conv(self.dim, 3, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res1 = self.g1(self.pre(x))
        res2 = self.g2(res1)
        res3 = self.g3(res2)
        out = self.pdu(fuse_groups(self.ca, (res1, res2, res3), self.dim))
        return self.post(out) + x
