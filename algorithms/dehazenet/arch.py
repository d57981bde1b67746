"""DehazeNet transmission estimator, as in the PyTorch port that released ``defog4_noaug.pth``."""
from __future__ import annotations

import torch
from torch import nn


class BReLU(nn.Hardtanh):
    """Bilateral ReLU of the paper: min(max(x, 0), 1)."""

    def __init__(self):
        super().__init__(0.0, 1.0)


class Maxout(nn.Module):
    """Max over groups of consecutive channels: C channels -> ``groups`` channels."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.view(b, self.groups, c // self.groups, h, w).amax(dim=2)


class DehazeNet(nn.Module):
    """DehazeNet: An End-to-End System for Single Image Haze Removal
    (Cai, Xu, Jia, Qing, Tao; IEEE TIP 2016).

    Regresses the medium transmission t of a 16x16 patch: feature extraction (conv + Maxout),
    multi-scale mapping (parallel 3/5/7 convolutions), local extremum (7x7 max pool) and
    non-linear regression (conv + BReLU). Fully convolutional: an H x W input yields
    (H - 15) x (W - 15) values, returned flattened as (B, (H-15)*(W-15)) like the port does
    (a 16x16 patch gives (B, 1)). Input: ImageNet-normalised RGB.
    """

    def __init__(self, groups: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 5)
        self.maxout = Maxout(groups)
        self.conv2 = nn.Conv2d(groups, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(groups, 16, 5, padding=2)
        self.conv4 = nn.Conv2d(groups, 16, 7, padding=3)
        self.maxpool = nn.MaxPool2d(7, stride=1)
        self.conv5 = nn.Conv2d(48, 1, 6)
        self.brelu = BReLU()

    def transmission_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised RGB -> (B, 1, H - 15, W - 15) transmission."""
        features = self.maxout(self.conv1(x))
        multi_scale = torch.cat((self.conv2(features), self.conv3(features), self.conv4(features)), 1)
        return self.brelu(self.conv5(self.maxpool(multi_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transmission_map(x).reshape(x.shape[0], -1)
