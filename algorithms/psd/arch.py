"""PSD: Principled Synthetic-to-Real Dehazing Guided by Physical Priors.

Chen et al., CVPR 2021. PSD fine-tunes a pre-trained dehazing backbone with physical priors;
its backbones gain a transmission head (``conv_T_*``) and an atmospheric-light U-Net (``ANet``)
so that the hazy image can be re-synthesised as ``I = T * J + (1 - T) * A``. Parameter names
follow the official release (zychen-ustc/PSD-Principled-Synthetic-to-Real-Dehazing-Guided-by-
Physical-Priors).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.ffanet.arch import FFA
from algorithms.gcanet.arch import GCANet
from algorithms.gcanet.preprocess import PIXEL_SHIFT


def _instance_norm(norm: nn.InstanceNorm2d, y: torch.Tensor) -> torch.Tensor:
    """Instance norm that returns 0 for a 1x1 map, like the PyTorch versions PSD was written
    for ((y - mean) / std of a single element is 0); current PyTorch raises there instead."""
    if y.shape[-2] * y.shape[-1] == 1:
        return torch.zeros_like(y)
    return norm(y)


class BlockUNet1(nn.Module):
    """U-Net stage: activation, then a stride-2 conv (down) or transposed conv (up),
    optional instance norm. Both convs exist in every stage (official layout); only one runs."""

    def __init__(self, in_channels: int, out_channels: int, upsample: bool = False,
                 relu: bool = False, drop: bool = False, bn: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 4, 2, 1, bias=False)
        self.deconv = nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False)
        self.dropout = nn.Dropout2d(0.5)
        self.batch = nn.InstanceNorm2d(out_channels)
        self.upsample = upsample
        self.relu = relu
        self.drop = drop
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(x) if self.relu else F.leaky_relu(x, 0.2)
        y = self.deconv(y) if self.upsample else self.conv(y)
        if self.bn:
            y = _instance_norm(self.batch, y)
        if self.upsample and self.drop:
            y = self.dropout(y)
        return y


class G2(nn.Module):
    """PSD's atmospheric-light network: an 8-level U-Net on the hazy image resized to
    256 x 256, globally average-pooled to one RGB value."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 4, 2, 1, bias=False)
        self.layer1 = BlockUNet1(8, 16)
        self.layer2 = BlockUNet1(16, 32)
        self.layer3 = BlockUNet1(32, 64)
        self.layer4 = BlockUNet1(64, 64)
        self.layer5 = BlockUNet1(64, 64)
        self.layer6 = BlockUNet1(64, 64)
        self.layer7 = BlockUNet1(64, 64)
        self.dlayer7 = BlockUNet1(64, 64, upsample=True, relu=True, drop=True, bn=False)
        self.dlayer6 = BlockUNet1(128, 64, upsample=True, relu=True, drop=True)
        self.dlayer5 = BlockUNet1(128, 64, upsample=True, relu=True, drop=True)
        self.dlayer4 = BlockUNet1(128, 64, upsample=True, relu=True)
        self.dlayer3 = BlockUNet1(128, 32, upsample=True, relu=True)
        self.dlayer2 = BlockUNet1(64, 16, upsample=True, relu=True)
        self.dlayer1 = BlockUNet1(32, 8, upsample=True, relu=True)
        self.dconv = nn.ConvTranspose2d(16, out_channels, 4, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.conv(x)]
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4, self.layer5, self.layer6):
            skips.append(layer(skips[-1]))
        y = self.dlayer7(self.layer7(skips[-1]))
        for layer, skip in zip(
            (self.dlayer6, self.dlayer5, self.dlayer4, self.dlayer3, self.dlayer2, self.dlayer1),
            reversed(skips[1:]),
        ):
            y = layer(torch.cat((y, skip), dim=1))
        y = self.dconv(F.relu(torch.cat((y, skips[0]), dim=1)))
        y = F.leaky_relu(y, 0.2)
        return F.avg_pool2d(y, (y.shape[2], y.shape[3]))


class PSDFFANet(FFA):
    """PSD-FFANet (Chen et al., CVPR 2021): FFA-Net with PSD's dehazed-image (``conv_J_*``),
    transmission (``conv_T_*``) and atmospheric-light (``ANet``) heads.

    Input: RGB in [-1, 1] (``x * 2 - 1``), and for the physics outputs the same image resized
    to 256 x 256. ``forward(haze)`` returns the dehazed image J (what the official test saves;
    read as [0, 1]); ``forward(haze, haze_A, all_outputs=True)`` returns the official tuple
    ``(features, J, T, A, I)``. FFA's ``post`` head is kept for the checkpoint but unused.
    """

    def __init__(self, gps: int = 3, blocks: int = 19):
        super().__init__(gps, blocks)
        self.conv_J_1 = nn.Conv2d(64, 64, 3, 1, 1, bias=False)
        self.conv_J_2 = nn.Conv2d(64, 3, 3, 1, 1, bias=False)
        self.conv_T_1 = nn.Conv2d(64, 16, 3, 1, 1, bias=False)
        self.conv_T_2 = nn.Conv2d(16, 1, 3, 1, 1, bias=False)
        self.ANet = G2(3, 3)

    def forward(self, haze: torch.Tensor, haze_A: torch.Tensor | None = None, all_outputs: bool = False):
        features = self.fused_features(haze)
        out_J = self.conv_J_2(self.conv_J_1(features)) + haze
        if not all_outputs:
            return out_J
        if haze_A is None:
            raise ValueError("all_outputs needs haze_A, the hazy image resized to 256 x 256")
        out_T = self.conv_T_2(self.conv_T_1(features))
        out_A = self.ANet(haze_A)
        out_I = out_T * out_J + (1 - out_T) * out_A
        return features, out_J, out_T, out_A, out_I


class PSDGCANet(GCANet):
    """PSD-GCANet (Chen et al., CVPR 2021): GCANet with PSD's transmission (``conv_T_*``) and
    atmospheric-light (``ANet``) heads, which only the fine-tuning losses use.

    Input: GCANet's 4-channel input (RGB in [0, 255] and edge map, minus 128). ``forward``
    is the official test call (``Val=True``): the dehazed image J in [0, 255], i.e. the
    predicted residual plus the un-shifted input RGB.
    """

    def __init__(self, in_c: int = 4, out_c: int = 3, only_residual: bool = True):
        if not only_residual:
            raise ValueError("PSD-GCANet predicts a residual (only_residual=True)")
        super().__init__(in_c, out_c, only_residual)
        self.conv_T_1 = nn.Conv2d(64, 16, 3, 1, 1, bias=False)
        self.conv_T_2 = nn.Conv2d(16, 1, 3, 1, 1, bias=False)
        self.ANet = G2(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv1(self.decoder_features(x)) + x[:, :3] + PIXEL_SHIFT
