"""MSFNet: a three-stream encoder with cross-scale feature fusion and a gated coarse-to-fine decoder.

Written from the paper and the conformance facts (shared/conformance/msfnet/spec.json); the
parameter names are the official ones, so the released ``indoor.pth``/``outdoor.pth`` load with
``strict=True``.

Layout (C = 16 channels at full resolution, 2C at 1/2, 4C at 1/4):

* ``first`` (encoder): a 3x3 conv, then two stride-2 down-samplings of that feature give the three
  streams; each stream goes through a residual dense block, then through two fusion stages
  (``f1``, ``f2``). In a stage every stream receives the other two, resampled to its own scale,
  as a per-channel weighted sum ``c0*low + c1*medium + c2*high`` (``coefficient`` rows 0-2, the
  terms in scale order), which a 3x3 ``refine`` conv turns into the update; the stream becomes
  ``c3*itself + c4*update``; one residual dense block per stream follows.
* ``second`` (decoder): at 1/4 two residual dense blocks and a two-conv head (image at 1/4); the
  feature is resampled to 1/2 and concatenated with the encoder's 1/2 stream, a "gate" conv
  squeezes the concatenation back, two residual dense blocks and a head give the image at 1/2;
  the same once more at full resolution. Every bias-free conv is followed by a ReLU, so the three
  images are >= 0.

No operation is global (all convolutions, nearest resizes to the skip's size), so any input
size works and tiles are independent.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# the same residual dense block and stride-2 down-sampling as GridDehazeNet (same parameter
# names, same forward): dense 3x3 conv + ReLU layers, 1x1 fusion, residual add; and
# ReLU(conv3x3(ReLU(conv3x3 stride 2))) doubling the channels.
from algorithms.griddehazenet.arch import RDB, DownSample

NUM_DENSE_LAYERS = 4
GROWTH_RATE = 16


def _rdb(channels: int) -> RDB:
    return RDB(channels, NUM_DENSE_LAYERS, GROWTH_RATE)


class ResizeConvUp(nn.Module):
    """Resize-convolution up-sampling ("better_upsampling"): nearest resize to the size of a
    reference feature, explicit zero padding of 1, 3x3 convolution without padding. No
    activation."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=0)

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=ref.shape[2:], mode="nearest")
        return self.conv(F.pad(x, (1, 1, 1, 1)))


class ConvReLU(nn.Module):
    """Bias-free 3x3 convolution followed by a ReLU (decoder heads and gates)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv1(x))


class _ScaleFusion(nn.Module):
    """Shared arithmetic of the three fusion blocks. ``coefficient`` [5, C] holds per-channel
    weights: rows 0-2 weigh the (low, medium, high) terms at this block's scale, row 3 the
    block's own stream, row 4 the refined sum."""

    def __init__(self, channels: int):
        super().__init__()
        self.coefficient = nn.Parameter(torch.ones(5, channels))
        self.refine = nn.Conv2d(channels, channels, 3, padding=1)

    def _weight(self, row: int) -> torch.Tensor:
        return self.coefficient[row][None, :, None, None]

    def _fuse(self, own: torch.Tensor, low: torch.Tensor, medium: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        mixed = self._weight(0) * low + self._weight(1) * medium + self._weight(2) * high
        return self._weight(3) * own + self._weight(4) * self.refine(mixed)


class LowFeatureFusion(_ScaleFusion):
    """Fusion at full resolution: the medium and high streams are resized up to the low one."""

    def __init__(self, channels: int):
        super().__init__(channels)
        self.up_medium = ResizeConvUp(2 * channels, channels)
        self.up_high = ResizeConvUp(4 * channels, channels)

    def forward(self, low: torch.Tensor, medium: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return self._fuse(low, low, self.up_medium(medium, low), self.up_high(high, low))


class MediumFeatureFusion(_ScaleFusion):
    """Fusion at 1/2: the low stream is down-sampled once, the high one resized up."""

    def __init__(self, channels: int):
        super().__init__(channels)
        self.down_low = DownSample(channels // 2)
        self.up_high = ResizeConvUp(2 * channels, channels)

    def forward(self, low: torch.Tensor, medium: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return self._fuse(medium, self.down_low(low), medium, self.up_high(high, medium))


class HighFeatureFusion(_ScaleFusion):
    """Fusion at 1/4: the low stream is down-sampled twice, the medium one once."""

    def __init__(self, channels: int):
        super().__init__(channels)
        self.down_low_1 = DownSample(channels // 4)
        self.down_low_2 = DownSample(channels // 2)
        self.down_medium = DownSample(channels // 2)

    def forward(self, low: torch.Tensor, medium: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return self._fuse(high, self.down_low_2(self.down_low_1(low)), self.down_medium(medium), high)


class FusionStage(nn.Module):
    """One cross-scale exchange: the three fusions see the same inputs, then one residual dense
    block per stream."""

    def __init__(self, channels: int):
        super().__init__()
        self.low_feature_fusion = LowFeatureFusion(channels)
        self.medium_feature_fusion = MediumFeatureFusion(2 * channels)
        self.high_feature_fusion = HighFeatureFusion(4 * channels)
        self.conv1 = _rdb(channels)
        self.conv2 = _rdb(2 * channels)
        self.conv3 = _rdb(4 * channels)

    def forward(self, low, medium, high):
        fused = (
            self.low_feature_fusion(low, medium, high),
            self.medium_feature_fusion(low, medium, high),
            self.high_feature_fusion(low, medium, high),
        )
        return self.conv1(fused[0]), self.conv2(fused[1]), self.conv3(fused[2])


class MultiStreamEncoder(nn.Module):
    """``first_Net``: three streams at full, 1/2 and 1/4 resolution, two fusion stages."""

    def __init__(self, in_channels: int = 3, channels: int = 16):
        super().__init__()
        self.conv01 = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down_1 = DownSample(channels)
        self.down_2 = DownSample(2 * channels)
        self.conv1 = _rdb(channels)
        self.conv2 = _rdb(2 * channels)
        self.conv3 = _rdb(4 * channels)
        self.f1 = FusionStage(channels)
        self.f2 = FusionStage(channels)

    def forward(self, x: torch.Tensor):
        x = self.conv01(x)
        half = self.down_1(x)
        quarter = self.down_2(half)
        streams = (self.conv1(x), self.conv2(half), self.conv3(quarter))
        streams = self.f1(*streams)
        return self.f2(*streams)


class GatedDecoder(nn.Module):
    """``second_Net``: coarse-to-fine decoder with an image head at every scale."""

    def __init__(self, out_channels: int = 3, channels: int = 16):
        super().__init__()
        c1, c2, c4 = channels, 2 * channels, 4 * channels
        self.conv11 = _rdb(c4)
        self.conv12 = _rdb(c4)
        self.conv13 = ConvReLU(c4, c4)
        self.conv14 = ConvReLU(c4, out_channels)
        self.up1 = ResizeConvUp(c4, c2)
        self.gate21 = ConvReLU(2 * c2, c2)
        self.conv21 = _rdb(c2)
        self.conv22 = _rdb(c2)
        self.conv23 = ConvReLU(c2, c2)
        self.conv24 = ConvReLU(c2, out_channels)
        self.up2 = ResizeConvUp(c2, c1)
        self.gate31 = ConvReLU(2 * c1, c1)
        self.conv31 = _rdb(c1)
        self.conv32 = _rdb(c1)
        self.conv41 = ConvReLU(c1, c1)
        self.conv42 = ConvReLU(c1, out_channels)

    def forward(self, low: torch.Tensor, medium: torch.Tensor, high: torch.Tensor):
        quarter = self.conv12(self.conv11(high))
        x_out = self.conv14(self.conv13(quarter))
        half = self.gate21(torch.cat((self.up1(quarter, medium), medium), 1))
        half = self.conv22(self.conv21(half))
        y_out = self.conv24(self.conv23(half))
        full = self.gate31(torch.cat((self.up2(half, low), low), 1))
        full = self.conv32(self.conv31(full))
        z_out = self.conv42(self.conv41(full))
        return x_out, y_out, z_out


class MSFNet(nn.Module):
    """``final_Net`` of the official code. Input RGB in [-1, 1], any size.

    The official forward returns ``(x_out, y_out, z_out)``: the restored image at 1/4, 1/2 and
    full resolution (all >= 0, [0, 1] scale); the dehazed image is ``z_out``. That tuple is
    :meth:`forward_scales`. ``forward`` returns ``z_out`` alone (the bare network's contract:
    ``net(x)`` is the restored image), or the tuple when built with ``return_all=True``.
    """

    def __init__(self, in_channels: int = 3, channels: int = 16, return_all: bool = False):
        super().__init__()
        self.return_all = return_all
        self.first = MultiStreamEncoder(in_channels, channels)
        self.second = GatedDecoder(in_channels, channels)

    def forward_scales(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.second(*self.first(x))

    def forward(self, x: torch.Tensor):
        outputs = self.forward_scales(x)
        return outputs if self.return_all else outputs[2]
