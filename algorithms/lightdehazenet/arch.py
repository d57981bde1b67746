"""Light-DehazeNet."""
from __future__ import annotations

import torch
from torch import nn


class LightDehazeNet(nn.Module):
    """Light-DehazeNet: A Novel Lightweight CNN Architecture for Single Image Dehazing
    (Ullah, Muhammad, Irfan, Anwar, Sajjad, Imran, de Albuquerque; IEEE TIP 2021).

    Eight convolutions with three concatenation points estimate K(x) of the transformed
    scattering model; J = K * I - K + 1. Parameter names follow the official ``LightDehaze_Net``.
    """

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.e_conv_layer1 = nn.Conv2d(3, 8, 1, 1, 0, bias=True)
        self.e_conv_layer2 = nn.Conv2d(8, 8, 3, 1, 1, bias=True)
        self.e_conv_layer3 = nn.Conv2d(8, 8, 5, 1, 2, bias=True)
        self.e_conv_layer4 = nn.Conv2d(16, 16, 7, 1, 3, bias=True)
        self.e_conv_layer5 = nn.Conv2d(16, 16, 3, 1, 1, bias=True)
        self.e_conv_layer6 = nn.Conv2d(16, 16, 3, 1, 1, bias=True)
        self.e_conv_layer7 = nn.Conv2d(32, 32, 3, 1, 1, bias=True)
        self.e_conv_layer8 = nn.Conv2d(56, 3, 3, 1, 1, bias=True)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        c1 = self.relu(self.e_conv_layer1(img))
        c2 = self.relu(self.e_conv_layer2(c1))
        c3 = self.relu(self.e_conv_layer3(c2))
        c4 = self.relu(self.e_conv_layer4(torch.cat((c1, c3), 1)))
        c5 = self.relu(self.e_conv_layer5(c4))
        c6 = self.relu(self.e_conv_layer6(c5))
        c7 = self.relu(self.e_conv_layer7(torch.cat((c4, c6), 1)))
        k = self.relu(self.e_conv_layer8(torch.cat((c2, c5, c7), 1)))
        return self.relu(k * img - k + 1)
