"""TSDNet: two-branch dehazing network with a haze-attention front end."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicConv(nn.Module):
    """Bias-free convolution ("same" zero padding) + LeakyReLU(0.01)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.act = nn.LeakyReLU(0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class SPP(nn.Module):
    """Spatial pyramid of convolutions: ``[conv9(x), conv7(x), conv5(x), x]`` concatenated."""

    def __init__(self, channels: int, kernel_sizes: tuple[int, ...] = (5, 7, 9)):
        super().__init__()
        self.conv = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, k, padding=k // 2)) for k in kernel_sizes
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([conv(x) for conv in reversed(self.conv)] + [x], dim=1)


def _upsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[2:], mode="bilinear", align_corners=False)


class T_Attention(nn.Module):
    """Haze attention map: a half-resolution sigmoid map, upsampled and multiplied with the input."""

    def __init__(self, channels: int = 32):
        super().__init__()
        self.conv_in = nn.Sequential(
            nn.MaxPool2d(3, stride=2, padding=1),
            BasicConv(3, channels, 3),
            SPP(channels),
            BasicConv(4 * channels, channels, 1),
            BasicConv(channels, channels, 3),
            nn.Conv2d(channels, 3, 3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _upsample_to(self.conv_in(x), x) * x


class TIDFE(nn.Module):
    """Three-level U-Net branch (max-pool down, bilinear up, additive skips)."""

    def __init__(self):
        super().__init__()
        self.conv1_1 = nn.Sequential(BasicConv(3, 32), BasicConv(32, 32))
        self.conv2_1 = nn.Sequential(nn.MaxPool2d(3, 2, 1), BasicConv(32, 64), *(BasicConv(64, 64) for _ in range(3)))
        self.conv3_1 = nn.Sequential(nn.MaxPool2d(3, 2, 1), BasicConv(64, 128), *(BasicConv(128, 128) for _ in range(3)))
        self.conv4_0 = BasicConv(128, 64)
        self.conv4_1 = nn.Sequential(*(BasicConv(64, 64) for _ in range(3)))
        self.conv5_0 = BasicConv(64, 32)
        self.conv5_1 = nn.Sequential(*(BasicConv(32, 32) for _ in range(3)))
        self.conv5_2 = nn.Conv2d(32, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1_1(x)
        x2 = self.conv2_1(x1)
        x3 = self.conv3_1(x2)
        y = self.conv4_1(self.conv4_0(_upsample_to(x3, x2)) + x2)
        y = self.conv5_1(self.conv5_0(_upsample_to(y, x1)) + x1)
        return self.conv5_2(y)


class FDFE(nn.Module):
    """Full-resolution densely connected branch (newest features first in each concatenation)."""

    def __init__(self, channels: int = 32):
        super().__init__()
        self.conv1 = BasicConv(3, channels)
        self.conv2 = BasicConv(channels, channels)
        self.conv3 = BasicConv(2 * channels, channels)
        self.conv4 = BasicConv(3 * channels, channels)
        self.conv5 = BasicConv(4 * channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x2 = self.conv2(x1)
        x3 = self.conv3(torch.cat([x2, x1], dim=1))
        x4 = self.conv4(torch.cat([x3, x2, x1], dim=1))
        return self.conv5(torch.cat([x4, x3, x2, x1], dim=1))


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Sequential(BasicConv(channels, channels), BasicConv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class FI(nn.Module):
    """Fusion of the attended input and both branch outputs (9 channels) into the image."""

    def __init__(self, channels: int = 32, n_blocks: int = 5):
        super().__init__()
        self.conv = nn.Sequential(
            BasicConv(9, channels),
            *(ResBlock(channels) for _ in range(n_blocks)),
            nn.Conv2d(channels, 3, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class GNet(nn.Module):
    """TSDNet (Liu, Guo, Lu, Chui, Gupta, "Deep network-enabled haze visibility enhancement
    for visual IoT-driven intelligent transportation systems", IEEE TII 19(2), 2022).

    ``forward`` returns the restored image (input and output in [0, 1]);
    :meth:`forward_branches` returns the official tuple ``(A_map, out1, out2, out)``.
    """

    def __init__(self):
        super().__init__()
        self.a = T_Attention()
        self.t = TIDFE()
        self.f = FDFE()
        self.r = FI()

    def forward_branches(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a_map = self.a(x)
        attended = x + a_map
        out1 = self.t(attended)
        out2 = self.f(attended)
        out = self.r(torch.cat([attended, out1, out2], dim=1))
        return a_map, out1, out2, out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_branches(x)[-1]
