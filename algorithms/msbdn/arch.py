"""MSBDN-DFF (v1-1): multi-scale boosted U-Net with dense feature fusion."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvLayer(nn.Module):
    """Reflection padding (kernel // 2) then a convolution."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.reflection_pad(x))


class UpsampleConvLayer(nn.Module):
    """Unpadded transposed convolution (the caller resizes its output to the skip)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.conv2d = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(x)


class ResidualBlock(nn.Module):
    """conv - PReLU - conv, scaled by 0.1, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, 1)
        self.conv2 = ConvLayer(channels, channels, 3, 1)
        self.relu = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(x))) * 0.1 + x


def residual_group(channels: int, count: int = 3) -> nn.Sequential:
    return nn.Sequential(*[ResidualBlock(channels) for _ in range(count)])


class ConvBlock(nn.Module):
    """conv + PReLU (stride-2 down-projection of the DFF module)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 4, stride: int = 2, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=True)
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class DeconvBlock(nn.Module):
    """transposed conv + PReLU (stride-2 up-projection of the DFF module)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 4, stride: int = 2, padding: int = 1):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, bias=True)
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.deconv(x))


class EncoderDFF(nn.Module):
    """Dense feature fusion in the encoder (``Encoder_MDCBlock1``, mode 'iter2').

    For every earlier, higher-resolution feature (oldest first) the current fused feature is
    projected up to its scale, the difference to it is projected back down and added: a
    back-projection that boosts the current feature with what the earlier ones carry.
    """

    def __init__(self, num_filter: int, num_ft: int):
        super().__init__()
        self.num_ft = num_ft - 1
        self.up_convs = nn.ModuleList(
            DeconvBlock(num_filter // 2**i, num_filter // 2 ** (i + 1)) for i in range(self.num_ft)
        )
        self.down_convs = nn.ModuleList(
            ConvBlock(num_filter // 2 ** (i + 1), num_filter // 2**i) for i in range(self.num_ft)
        )

    def forward(self, ft_l: torch.Tensor, ft_h_list: list[torch.Tensor]) -> torch.Tensor:
        fused = ft_l
        for i, earlier in enumerate(ft_h_list):
            steps = self.num_ft - i
            ft = fused
            for j in range(steps):
                ft = self.up_convs[j](ft)
            ft = ft - earlier
            for j in reversed(range(steps)):
                ft = self.down_convs[j](ft)
            fused = fused + ft
        return fused


class DecoderDFF(nn.Module):
    """Dense feature fusion in the decoder (``Decoder_MDCBlock1``, mode 'iter2'): the mirror
    of :class:`EncoderDFF` with earlier, lower-resolution features."""

    def __init__(self, num_filter: int, num_ft: int):
        super().__init__()
        self.num_ft = num_ft - 1
        self.down_convs = nn.ModuleList(
            ConvBlock(num_filter * 2**i, num_filter * 2 ** (i + 1)) for i in range(self.num_ft)
        )
        self.up_convs = nn.ModuleList(
            DeconvBlock(num_filter * 2 ** (i + 1), num_filter * 2**i) for i in range(self.num_ft)
        )

    def forward(self, ft_h: torch.Tensor, ft_l_list: list[torch.Tensor]) -> torch.Tensor:
        fused = ft_h
        for i, earlier in enumerate(ft_l_list):
            steps = self.num_ft - i
            ft = fused
            for j in range(steps):
                ft = self.down_convs[j](ft)
            ft = ft - earlier
            for j in reversed(range(steps)):
                ft = self.up_convs[j](ft)
            fused = fused + ft
        return fused


class MSBDN(nn.Module):
    """Multi-Scale Boosted Dehazing Network with Dense Feature Fusion
    (Dong, Pan, Xiao, Hu, Yang, Wang, Yang; CVPR 2020, arXiv:2004.13388).

    The released ``MSBDN-DFF-v1-1`` ``Net``: a 4-level encoder (stride-2 convs, residual groups,
    DFF), ``res_blocks`` residual blocks at 1/16 resolution, and a decoder whose SOS boosting
    step is ``dense(skip + up) - up`` followed by DFF. Input [0,1] RGB, H and W multiples of 16.
    """

    def __init__(self, res_blocks: int = 18):
        super().__init__()
        self.conv_input = ConvLayer(3, 16, 11, 1)
        self.dense0 = residual_group(16)

        self.conv2x = ConvLayer(16, 32, 3, 2)
        self.fusion1 = EncoderDFF(32, 2)
        self.dense1 = residual_group(32)

        self.conv4x = ConvLayer(32, 64, 3, 2)
        self.fusion2 = EncoderDFF(64, 3)
        self.dense2 = residual_group(64)

        self.conv8x = ConvLayer(64, 128, 3, 2)
        self.fusion3 = EncoderDFF(128, 4)
        self.dense3 = residual_group(128)

        self.conv16x = ConvLayer(128, 256, 3, 2)
        self.fusion4 = EncoderDFF(256, 5)

        self.dehaze = nn.Sequential()
        for i in range(res_blocks):
            self.dehaze.add_module(f"res{i}", ResidualBlock(256))

        self.convd16x = UpsampleConvLayer(256, 128, 3, 2)
        self.dense_4 = residual_group(128)
        self.fusion_4 = DecoderDFF(128, 2)

        self.convd8x = UpsampleConvLayer(128, 64, 3, 2)
        self.dense_3 = residual_group(64)
        self.fusion_3 = DecoderDFF(64, 3)

        self.convd4x = UpsampleConvLayer(64, 32, 3, 2)
        self.dense_2 = residual_group(32)
        self.fusion_2 = DecoderDFF(32, 4)

        self.convd2x = UpsampleConvLayer(32, 16, 3, 2)
        self.dense_1 = residual_group(16)
        self.fusion_1 = DecoderDFF(16, 5)

        self.conv_output = ConvLayer(16, 3, 3, 1)

    @staticmethod
    def _boost(up: nn.Module, dense: nn.Sequential, fusion: DecoderDFF, low: torch.Tensor,
               skip: torch.Tensor, memory: list[torch.Tensor]) -> torch.Tensor:
        """Decoder step: upsample ``low`` to ``skip``, strengthen-operate-subtract, fuse."""
        upsampled = F.interpolate(up(low), skip.shape[2:], mode="bilinear", align_corners=False)
        boosted = skip + upsampled
        out = fusion(dense(boosted) + boosted - upsampled, memory)
        memory.append(out)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res1x = self.conv_input(x)
        memory = [res1x]
        feat1x = self.dense0(res1x) + res1x

        res2x = self.fusion1(self.conv2x(feat1x), memory)
        memory.append(res2x)
        res2x = self.dense1(res2x) + res2x

        res4x = self.fusion2(self.conv4x(res2x), memory)
        memory.append(res4x)
        res4x = self.dense2(res4x) + res4x

        res8x = self.fusion3(self.conv8x(res4x), memory)
        memory.append(res8x)
        res8x = self.dense3(res8x) + res8x

        res16x = self.fusion4(self.conv16x(res8x), memory)
        doubled = res16x * 2
        res16x = self.dehaze(doubled) + doubled - res16x

        memory_up = [res16x]
        res8x = self._boost(self.convd16x, self.dense_4, self.fusion_4, res16x, res8x, memory_up)
        res4x = self._boost(self.convd8x, self.dense_3, self.fusion_3, res8x, res4x, memory_up)
        res2x = self._boost(self.convd4x, self.dense_2, self.fusion_2, res4x, res2x, memory_up)
        feat1x = self._boost(self.convd2x, self.dense_1, self.fusion_1, res2x, feat1x, memory_up)
        return self.conv_output(feat1x)
