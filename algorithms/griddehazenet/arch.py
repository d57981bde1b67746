"""GridDehazeNet: a 3-row grid of residual dense blocks with learned fusion weights."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MakeDense(nn.Module):
    """One dense layer: conv + ReLU, concatenated to its input."""

    def __init__(self, in_channels: int, growth_rate: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, growth_rate, kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, F.relu(self.conv(x))), 1)


class RDB(nn.Module):
    """Residual dense block: dense layers, 1x1 fusion back to ``in_channels``, residual add."""

    def __init__(self, in_channels: int, num_dense_layer: int, growth_rate: int):
        super().__init__()
        layers = [MakeDense(in_channels + i * growth_rate, growth_rate) for i in range(num_dense_layer)]
        self.residual_dense_layers = nn.Sequential(*layers)
        self.conv_1x1 = nn.Conv2d(in_channels + num_dense_layer * growth_rate, in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1x1(self.residual_dense_layers(x)) + x


class DownSample(nn.Module):
    """Stride-2 conv then a conv that multiplies the channels by ``stride``."""

    def __init__(self, in_channels: int, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride, padding=pad)
        self.conv2 = nn.Conv2d(in_channels, stride * in_channels, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class UpSample(nn.Module):
    """Transposed conv to an exact output size, then a conv that divides the channels by ``stride``."""

    def __init__(self, in_channels: int, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.deconv = nn.ConvTranspose2d(in_channels, in_channels, kernel_size, stride=stride, padding=1)
        self.conv = nn.Conv2d(in_channels, in_channels // stride, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor, output_size: torch.Size) -> torch.Tensor:
        x = F.relu(self.deconv(x, output_size=output_size))
        return F.relu(self.conv(x))


class GridDehazeNet(nn.Module):
    """GridDehazeNet: Attention-Based Multi-Scale Network for Image Dehazing
    (Liu, Ma, Shi, Chen; ICCV 2019, arXiv:1908.03245).

    Pre-processing (conv + RDB), a ``height`` x ``width`` grid backbone and post-processing
    (RDB + conv + ReLU). Row i works at 1/stride**i resolution with depth_rate*stride**i
    channels; the left half of the grid goes down (DownSample), the right half up (UpSample).
    Where two streams meet they are fused with per-channel weights ``coefficient[i, j, 0|1]``
    (the paper's attention-based fusion). Input in [-1, 1], output in [0, 1].
    """

    def __init__(self, in_channels: int = 3, depth_rate: int = 16, kernel_size: int = 3, stride: int = 2,
                 height: int = 3, width: int = 6, num_dense_layer: int = 4, growth_rate: int = 16,
                 attention: bool = True):
        super().__init__()
        self.height = height
        self.width = width
        self.stride = stride
        self.depth_rate = depth_rate
        self.rdb_module = nn.ModuleDict()
        self.upsample_module = nn.ModuleDict()
        self.downsample_module = nn.ModuleDict()
        self.coefficient = nn.Parameter(
            torch.ones(height, width, 2, depth_rate * stride ** (height - 1)), requires_grad=attention
        )
        pad = (kernel_size - 1) // 2
        self.conv_in = nn.Conv2d(in_channels, depth_rate, kernel_size, padding=pad)
        self.conv_out = nn.Conv2d(depth_rate, in_channels, kernel_size, padding=pad)
        self.rdb_in = RDB(depth_rate, num_dense_layer, growth_rate)
        self.rdb_out = RDB(depth_rate, num_dense_layer, growth_rate)

        for i in range(height):
            for j in range(width - 1):
                self.rdb_module[f"{i}_{j}"] = RDB(self._channels(i), num_dense_layer, growth_rate)
        for i in range(height - 1):
            for j in range(width // 2):
                self.downsample_module[f"{i}_{j}"] = DownSample(self._channels(i), kernel_size, stride)
        for i in range(height - 2, -1, -1):
            for j in range(width // 2, width):
                self.upsample_module[f"{i}_{j}"] = UpSample(self._channels(i + 1), kernel_size, stride)

    def _channels(self, row: int) -> int:
        return self.depth_rate * self.stride**row

    def _fuse(self, i: int, j: int, along_row: torch.Tensor, across_rows: torch.Tensor) -> torch.Tensor:
        """Attention fusion at grid node (i, j): per-channel weighted sum of the two streams."""
        c = self._channels(i)
        w_row = self.coefficient[i, j, 0, :c][None, :, None, None]
        w_col = self.coefficient[i, j, 1, :c][None, :, None, None]
        return w_row * along_row + w_col * across_rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.width // 2
        grid = [[None] * self.width for _ in range(self.height)]
        grid[0][0] = self.rdb_in(self.conv_in(x))
        for j in range(1, half):
            grid[0][j] = self.rdb_module[f"0_{j - 1}"](grid[0][j - 1])
        for i in range(1, self.height):
            grid[i][0] = self.downsample_module[f"{i - 1}_0"](grid[i - 1][0])
        # left half: right-going RDBs fused with downsampled rows above
        for i in range(1, self.height):
            for j in range(1, half):
                grid[i][j] = self._fuse(
                    i, j,
                    self.rdb_module[f"{i}_{j - 1}"](grid[i][j - 1]),
                    self.downsample_module[f"{i - 1}_{j}"](grid[i - 1][j]),
                )
        # the bottom row crosses the middle with RDBs only
        bottom = self.height - 1
        for j in range(half, self.width):
            grid[bottom][j] = self.rdb_module[f"{bottom}_{j - 1}"](grid[bottom][j - 1])
        # right half: right-going RDBs fused with upsampled rows below
        for i in range(self.height - 2, -1, -1):
            for j in range(half, self.width):
                along_row = self.rdb_module[f"{i}_{j - 1}"](grid[i][j - 1])
                grid[i][j] = self._fuse(
                    i, j, along_row, self.upsample_module[f"{i}_{j}"](grid[i + 1][j], along_row.shape)
                )
        out = self.rdb_out(grid[0][self.width - 1])
        return F.relu(self.conv_out(out))
