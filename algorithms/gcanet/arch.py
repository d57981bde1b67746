"""GCANet: Gated Context Aggregation Network for Image Dehazing and Deraining.

Chen et al., WACV 2019, arXiv:1811.08747. Parameter names follow the official release
(cddlyf/GCANet), so ``wacv_gcanet_dehaze.pth`` loads with ``strict=True``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.common.layers import GroupNorm


def instance_norm(channels: int) -> GroupNorm:
    """Affine instance normalisation (the official ``InstanceNorm2d(affine=True)``): a group
    norm with one channel per group computes the same, has the same parameters and no buffers,
    and runs several times faster on CPU."""
    return GroupNorm(channels, channels, eps=1e-5, affine=True)


class ShareSepConv(nn.Module):
    """Separable-and-shared convolution: one learnable k x k kernel applied depthwise to every
    channel. It smooths the input of a dilated conv, removing gridding artifacts; initialised
    to the identity (a centred delta)."""

    def __init__(self, kernel_size: int):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("ShareSepConv needs an odd kernel size")
        self.padding = (kernel_size - 1) // 2
        weight = torch.zeros(1, 1, kernel_size, kernel_size)
        weight[0, 0, self.padding, self.padding] = 1.0
        self.weight = nn.Parameter(weight)
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        kernel = self.weight.expand(channels, 1, self.kernel_size, self.kernel_size).contiguous()
        return F.conv2d(x, kernel, None, 1, self.padding, 1, channels)


class SmoothDilatedResidualBlock(nn.Module):
    """Residual block of two dilated 3x3 convs, each preceded by a ShareSepConv of size
    ``2 * dilation - 1``, with affine instance normalisation."""

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.pre_conv1 = ShareSepConv(dilation * 2 - 1)
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.norm1 = instance_norm(channels)
        self.pre_conv2 = ShareSepConv(dilation * 2 - 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.norm2 = instance_norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(self.pre_conv1(x))))
        y = self.norm2(self.conv2(self.pre_conv2(y)))
        return F.relu(x + y)


class ResidualBlock(nn.Module):
    """Plain residual block of two 3x3 convs with affine instance normalisation."""

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.norm1 = instance_norm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.norm2 = instance_norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(x + y)


class GCANet(nn.Module):
    """GCANet (Chen et al., WACV 2019): smoothed dilated residual blocks whose low-, mid- and
    high-level features are combined by a gated fusion sub-network.

    Input: 4 channels in pixel units minus 128: RGB in [0, 255] and the edge map (see
    :func:`algorithms.gcanet.preprocess.edge_map`); H, W even. Output (``only_residual``): the
    residual to add to the [0, 255] RGB image. When ``pre_image`` (that RGB image) is given,
    forward adds it and returns the restored image in [0, 255].
    """

    def __init__(self, in_c: int = 4, out_c: int = 3, only_residual: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, 64, 3, 1, 1, bias=False)
        self.norm1 = instance_norm(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 1, 1, bias=False)
        self.norm2 = instance_norm(64)
        self.conv3 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.norm3 = instance_norm(64)

        self.res1 = SmoothDilatedResidualBlock(64, dilation=2)
        self.res2 = SmoothDilatedResidualBlock(64, dilation=2)
        self.res3 = SmoothDilatedResidualBlock(64, dilation=2)
        self.res4 = SmoothDilatedResidualBlock(64, dilation=4)
        self.res5 = SmoothDilatedResidualBlock(64, dilation=4)
        self.res6 = SmoothDilatedResidualBlock(64, dilation=4)
        self.res7 = ResidualBlock(64, dilation=1)

        self.gate = nn.Conv2d(64 * 3, 3, 3, 1, 1, bias=True)

        self.deconv3 = nn.ConvTranspose2d(64, 64, 4, 2, 1)
        self.norm4 = instance_norm(64)
        self.deconv2 = nn.Conv2d(64, 64, 3, 1, 1)
        self.norm5 = instance_norm(64)
        self.deconv1 = nn.Conv2d(64, out_c, 1)
        self.only_residual = only_residual

    def decoder_features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder, gated context aggregation and the first two decoder layers (64 channels)."""
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        y1 = F.relu(self.norm3(self.conv3(y)))

        y = self.res3(self.res2(self.res1(y1)))
        y2 = self.res4(y)
        y = self.res6(self.res5(y2))
        y3 = self.res7(y)

        gates = self.gate(torch.cat((y1, y2, y3), dim=1))
        gated = y1 * gates[:, [0]] + y2 * gates[:, [1]] + y3 * gates[:, [2]]
        y = F.relu(self.norm4(self.deconv3(gated)))
        return F.relu(self.norm5(self.deconv2(y)))

    def forward(self, x: torch.Tensor, pre_image: torch.Tensor | None = None) -> torch.Tensor:
        y = self.deconv1(self.decoder_features(x))
        if not self.only_residual:
            return F.relu(y)
        return y if pre_image is None else y + pre_image
