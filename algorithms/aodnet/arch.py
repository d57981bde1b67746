"""AOD-Net, as in the PyTorch port used by the released ``dehazer.pth``."""
from __future__ import annotations

import torch
from torch import nn


class AODNet(nn.Module):
    """AOD-Net: All-in-One Dehazing Network (Li, Peng, Wang, Xu, Feng; ICCV 2017).

    Five small convolutions with multi-scale concatenations estimate K(x); the clean image
    follows from the reformulated scattering model J = K * I - K + 1 (bias b = 1).
    Parameter names follow the MayankSingal/PyTorch-Image-Dehazing ``dehaze_net``.
    """

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.e_conv1 = nn.Conv2d(3, 3, 1, 1, 0, bias=True)
        self.e_conv2 = nn.Conv2d(3, 3, 3, 1, 1, bias=True)
        self.e_conv3 = nn.Conv2d(6, 3, 5, 1, 2, bias=True)
        self.e_conv4 = nn.Conv2d(6, 3, 7, 1, 3, bias=True)
        self.e_conv5 = nn.Conv2d(12, 3, 3, 1, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.relu(self.e_conv1(x))
        x2 = self.relu(self.e_conv2(x1))
        x3 = self.relu(self.e_conv3(torch.cat((x1, x2), 1)))
        x4 = self.relu(self.e_conv4(torch.cat((x2, x3), 1)))
        k = self.relu(self.e_conv5(torch.cat((x1, x2, x3, x4), 1)))
        return self.relu(k * x - k + 1)
