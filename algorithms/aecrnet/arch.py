"""AECR-Net: the compact autoencoder-like dehazing network of

    Wu, Qu, Lin, Zhou, Zhang, Xie, Ma. "Contrastive Learning for Compact Single Image
    Dehazing", CVPR 2021 (arXiv:2104.09367).

Written from the paper and the conformance spec. The official deformable convolution
(CharlesShang's compiled DCNv2) is expressed with ``torchvision.ops.deform_conv2d``, which
has the same bilinear sampling, offset layout and per-tap modulation mask.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import deform_conv2d


class FastDeconv(nn.Module):
    """Network-deconvolution input layer (Ye et al., ICLR 2020), test-time form.

    At inference the learned whitening (``running_deconv``, ``running_mean`` over the
    im2col patches of ``kernel_size**2 * channels`` features) folds into one convolution:
    ``w' = W @ running_deconv`` and ``b' = b - w' @ running_mean``.
    Only the single-block case (in_channels <= 64, groups = 1) used by AECR-Net is
    implemented; the training-time statistics update is not.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.stride = stride
        self.padding = padding
        num_features = kernel_size * kernel_size * in_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_deconv", torch.eye(num_features))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.flatten(1) @ self.running_deconv
        b = self.bias - w @ self.running_mean
        return F.conv2d(x, w.view_as(self.weight), b, self.stride, self.padding)


class ModulatedDeformConv(nn.Module):
    """DCNv2 (Zhu et al., CVPR 2019) with its offsets and mask predicted from the input by
    ``conv_offset_mask`` (parameter layout of CharlesShang/DCNv2 ``DCN``, one deformable group)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.stride = stride
        self.padding = padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.conv_offset_mask = nn.Conv2d(in_channels, 3 * kernel_size * kernel_size, kernel_size, stride, padding)
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset_y_x_1, offset_y_x_2, mask = self.conv_offset_mask(x).chunk(3, dim=1)
        offset = torch.cat((offset_y_x_1, offset_y_x_2), dim=1)
        return deform_conv2d(
            x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding, mask=mask.sigmoid()
        )


class DCNBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.dcn = ModulatedDeformConv(in_channels, out_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dcn(x)


class ChannelAttention(nn.Module):
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


class PixelAttention(nn.Module):
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


class DehazeBlock(nn.Module):
    """FFA-Net style block: conv-ReLU-(+x)-conv, channel then pixel attention, global skip."""

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2)
        self.calayer = ChannelAttention(dim)
        self.palayer = PixelAttention(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = F.relu(self.conv1(x)) + x
        res = self.palayer(self.calayer(self.conv2(res)))
        return res + x


class Mix(nn.Module):
    """Adaptive skip mixing: ``sigmoid(w) * a + (1 - sigmoid(w)) * b``."""

    def __init__(self, init: float):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([init]))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        factor = self.w.sigmoid()
        return a * factor + b * (1 - factor)


class Dehaze(nn.Module):
    """AECR-Net dehazing network (Wu et al., CVPR 2021).

    Deconvolution input layer, a 4x-downsampling encoder, one FFA block applied six times
    (shared weights), one DCN applied twice (shared weights), adaptive-mix skips and a tanh
    decoder. Input [0,1] RGB with H and W multiples of 4; the output is read as [0,1].
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, block_repeats: int = 6, dcn_repeats: int = 2):
        super().__init__()
        self.block_repeats = block_repeats
        self.dcn_repeats = dcn_repeats
        self.deconv = FastDeconv(input_nc, input_nc, kernel_size=3, stride=1, padding=1)
        self.down1 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), nn.ReLU(inplace=True))
        self.down2 = nn.Sequential(nn.Conv2d(ngf, ngf * 2, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.down3 = nn.Sequential(nn.Conv2d(ngf * 2, ngf * 4, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.block = DehazeBlock(ngf * 4, 3)
        self.dcn_block = DCNBlock(ngf * 4, ngf * 4)
        self.up1 = nn.Sequential(
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 3, stride=2, padding=1, output_padding=1), nn.ReLU(inplace=True)
        )
        self.up2 = nn.Sequential(
            nn.ConvTranspose2d(ngf * 2, ngf, 3, stride=2, padding=1, output_padding=1), nn.ReLU(inplace=True)
        )
        self.up3 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh())
        self.mix1 = Mix(-1.0)
        self.mix2 = Mix(-0.6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.deconv(x)
        d1 = self.down1(x)
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        y = d3
        for _ in range(self.block_repeats):
            y = self.block(y)
        for _ in range(self.dcn_repeats):
            y = self.dcn_block(y)
        y = self.up1(self.mix1(d3, y))
        y = self.up2(self.mix2(d2, y))
        return self.up3(y)
