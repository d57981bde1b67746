"""SGID-PFF (Bai, Pan, Xiang, Tang, IEEE TIP 2022): self-guided dehazing with progressive
feature fusion.

A pre-dehazer (a U-Net estimating the transmission map) produces a first dehazed image; its
features and those of the hazy input are fused progressively, and a second U-Net estimates the
final transmission map from the fused features. Both stages invert the atmospheric scattering
model with the airlight fixed to 1: ``J = I / t + (t - 1) / t``.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

KERNEL = 5


def conv(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, KERNEL, stride=stride, padding=KERNEL // 2)


class ResBlock(nn.Module):
    """conv5x5, ReLU, conv5x5, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv(channels, channels)
        self.relu = nn.ReLU()
        self.conv2 = conv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


def res_blocks(channels: int, n: int) -> list[nn.Module]:
    return [ResBlock(channels) for _ in range(n)]


class UNet(nn.Module):
    """Two stride-2 levels of residual blocks with additive skips; ``feat_in`` networks take
    ``n_feat``-channel features and have no input conv."""

    def __init__(self, in_channels: int, out_channels: int, n_resblock: int, n_feat: int, feat_in: bool):
        super().__init__()
        head = [] if feat_in else [nn.Sequential(conv(in_channels, n_feat), nn.ReLU())]
        self.inBlock = nn.Sequential(*head, *res_blocks(n_feat, n_resblock))
        self.encoder_1 = nn.Sequential(self._down(n_feat, n_feat * 2), *res_blocks(n_feat * 2, n_resblock))
        self.encoder_2 = nn.Sequential(self._down(n_feat * 2, n_feat * 4), *res_blocks(n_feat * 4, n_resblock))
        self.decoder_2 = nn.Sequential(*res_blocks(n_feat * 4, n_resblock), self._up(n_feat * 4, n_feat * 2))
        self.decoder_1 = nn.Sequential(*res_blocks(n_feat * 2, n_resblock), self._up(n_feat * 2, n_feat))
        self.outBlock = nn.Sequential(*res_blocks(n_feat, n_resblock), conv(n_feat, out_channels))

    @staticmethod
    def _down(in_ch: int, out_ch: int) -> nn.Sequential:
        return nn.Sequential(conv(in_ch, out_ch, stride=2), nn.ReLU())

    @staticmethod
    def _up(in_ch: int, out_ch: int) -> nn.Sequential:
        return nn.Sequential(nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level0 = self.inBlock(x)
        level1 = self.encoder_1(level0)
        level2 = self.encoder_2(level1)
        up1 = self.decoder_2(level2)
        up0 = self.decoder_1(up1 + level1)
        return self.outBlock(up0 + level0)


class TransmissionNet(nn.Module):
    """U-Net -> sigmoid -> transmission map, kept away from 0 and 1."""

    def __init__(self, in_channels: int, out_channels: int, n_resblock: int, n_feat: int, feat_in: bool):
        super().__init__()
        self.unet_body = UNet(in_channels, out_channels, n_resblock, n_feat, feat_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.sigmoid(self.unet_body(x)), 1e-8, 1 - 1e-8)


def invert_scattering(hazy: torch.Tensor, trans: torch.Tensor, air: torch.Tensor) -> torch.Tensor:
    """J from I = J t + A (1 - t)."""
    return hazy / trans + (trans - 1) / trans * air


class PreDehazer(nn.Module):
    """First stage: transmission from the hazy image alone."""

    def __init__(self, img_channels: int, t_channels: int, n_resblock: int, n_feat: int):
        super().__init__()
        self.trans_net = TransmissionNet(img_channels, t_channels, n_resblock, n_feat, feat_in=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trans = self.trans_net(x)
        return invert_scattering(x, trans, torch.ones_like(x)), trans


class FusionBlock(nn.Module):
    """One step of progressive feature fusion (``BinResBlock`` in the official code).

    A shared conv reads each stream together with the fused features (``[x, H]`` and
    ``[y, H]``); its ReLU outputs become the streams of the next step, and a second conv over
    both adds a residual to the fused features.
    """

    def __init__(self, n_feat: int):
        super().__init__()
        self.conv1 = conv(n_feat * 2, n_feat)
        self.conv2 = conv(n_feat * 2, n_feat)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor, y: torch.Tensor, fused: torch.Tensor):
        x = self.relu(self.conv1(torch.cat([x, fused], dim=1)))
        y = self.relu(self.conv1(torch.cat([y, fused], dim=1)))
        return x, y, fused + self.conv2(torch.cat([x, y], dim=1))


class ProgressiveFeatureFusion(nn.Module):
    """Fuses hazy-image and reference-image features, starting from their sum."""

    def __init__(self, n_feat: int):
        super().__init__()
        self.block1 = FusionBlock(n_feat)
        self.block2 = FusionBlock(n_feat)

    def forward(self, hazy_feat: torch.Tensor, ref_feat: torch.Tensor) -> torch.Tensor:
        x, y, fused = self.block1(hazy_feat, ref_feat, hazy_feat + ref_feat)
        _, _, fused = self.block2(x, y, fused)
        return fused


class GuidedDehazer(nn.Module):
    """Second stage: transmission from the fused features of the hazy image and the
    pre-dehazed reference (one feature extractor shared by both)."""

    def __init__(self, img_channels: int, t_channels: int, n_resblock: int, n_feat: int):
        super().__init__()
        self.extra_feat = nn.Sequential(conv(img_channels, n_feat), nn.ReLU(), ResBlock(n_feat))
        self.fusion_feat = ProgressiveFeatureFusion(n_feat)
        self.trans_net = TransmissionNet(n_feat, t_channels, n_resblock, n_feat, feat_in=True)

    def forward(self, x: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fused = self.fusion_feat(self.extra_feat(x), self.extra_feat(reference))
        trans = self.trans_net(fused)
        return invert_scattering(x, trans, torch.ones_like(x)), trans


class Stages(NamedTuple):
    """The official forward's outputs (its fifth, a training loss, is not computed here)."""

    pre_dehazed: torch.Tensor
    output: torch.Tensor
    trans: torch.Tensor
    air: torch.Tensor


class SGIDPFF(nn.Module):
    """SGID-PFF: Bai, Pan, Xiang, Tang. "Self-Guided Image Dehazing Using Progressive Feature
    Fusion", IEEE Transactions on Image Processing, 2022.

    Input RGB in [0, 1] with H and W multiples of 4. ``forward`` returns the dehazed image (the
    element the official ``inference.py`` keeps); :meth:`stages` returns every stage.
    """

    def __init__(self, img_channels: int = 3, t_channels: int = 1, n_resblock: int = 3, n_feat: int = 32):
        super().__init__()
        self.pre_dehaze = PreDehazer(img_channels, t_channels, n_resblock, n_feat)
        self.dehaze = GuidedDehazer(img_channels, t_channels, n_resblock, n_feat)

    def stages(self, x: torch.Tensor) -> Stages:
        pre_dehazed, _ = self.pre_dehaze(x)
        output, trans = self.dehaze(x, pre_dehazed)
        return Stages(pre_dehazed, output, trans, torch.ones_like(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x).output
