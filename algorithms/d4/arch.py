"""D4 dehazing network (Yang et al., CVPR 2022).

Yang Yang, Chaoyue Wang, Risheng Liu, Lin Zhang, Xiaojie Guo, Dacheng Tao: "Self-augmented
Unpaired Image Dehazing via Density and Depth Decomposition", CVPR 2022.

Only the haze-removal generator (``net_h2c``) runs at test time: a MiDaS-small style
encoder-decoder (EfficientNet-lite3 trunk + feature-fusion decoder) predicts the transmission
map t, and the clean image follows from the scattering model J = (I - A) / t + A.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from algorithms.d4.efficientnet_lite import EfficientNetLite3Features


class ResidualConvUnit(nn.Module):
    """ReLU - 3x3 conv - ReLU - 3x3 conv (reflection padding), plus the input."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, padding_mode="reflect")
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class FeatureFusionBlock(nn.Module):
    """Fuses a decoder path with a skip, upsamples x2 (bilinear, corners aligned), 1x1 conv."""

    def __init__(self, features: int, expand: bool):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features // 2 if expand else features, 1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class Interpolate(nn.Module):
    def __init__(self, scale_factor: float, mode: str = "bilinear"):
        super().__init__()
        self.scale_factor, self.mode = scale_factor, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode, align_corners=False)


class Scratch(nn.Module):
    """The decoder: per-level 3x3 projections, four fusion blocks and the output head."""

    def __init__(self, in_channels: tuple[int, ...], features: int):
        super().__init__()
        widths = (features, features * 2, features * 4, features * 8)
        for i, (c_in, c_out) in enumerate(zip(in_channels, widths), start=1):
            setattr(self, f"layer{i}_rn", nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3, bias=False)))
        self.refinenet4 = FeatureFusionBlock(features * 8, expand=True)
        self.refinenet3 = FeatureFusionBlock(features * 4, expand=True)
        self.refinenet2 = FeatureFusionBlock(features * 2, expand=True)
        self.refinenet1 = FeatureFusionBlock(features, expand=False)
        self.output_conv = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(features, features // 2, 3),
            Interpolate(scale_factor=2),
            nn.ReflectionPad2d(1),
            nn.Conv2d(features // 2, 32, 3),
            nn.ReLU(True),
            nn.Conv2d(32, 1, 1),
        )

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        rn = [getattr(self, f"layer{i}_rn")(f) for i, f in enumerate(feats, start=1)]
        path = self.refinenet4(rn[3])
        path = self.refinenet3(path, rn[2])
        path = self.refinenet2(path, rn[1])
        path = self.refinenet1(path, rn[0])
        return self.output_conv(path)


class HazeRemovalNet(nn.Module):
    """D4 haze-removal generator (Yang et al., CVPR 2022).

    ``forward(x, use_guided_filter=False)`` with x RGB in [0, 1] (H, W multiples of 32) returns
    ``(J, t)``: the dehazed image clamped to [0, 1] and the transmission map in [0.05, 0.95].
    The atmospheric light is the per-channel image maximum (``use_dc_A=False``, the released
    SOTS-indoor configuration) or the dark-channel estimate (``use_dc_A=True``);
    ``use_guided_filter`` refines t with a guided filter, as the official test does for data
    sets other than SOTS-indoor.

    ``final_conv_beta_*`` (the scattering-coefficient head used in training) are kept so that the
    checkpoint loads, and are not evaluated here.
    """

    def __init__(self, base_channel_nums: int = 32, min_beta: float = 0.6, max_beta: float = 1.8,
                 min_d: float = 0.2, max_d: float = 5.0, use_dc_A: bool = False):
        super().__init__()
        self.min_beta, self.max_beta, self.min_d, self.max_d = min_beta, max_beta, min_d, max_d
        self.use_dc_A = use_dc_A
        self.pretrained = EfficientNetLite3Features()
        self.scratch = Scratch((32, 48, 136, 384), base_channel_nums)
        self.final_conv_beta_1 = nn.Sequential(nn.Conv2d(32 + 48 + 136 + 384, 64, 1))
        self.final_conv_beta_2 = nn.Sequential(nn.Conv2d(64, 1, 1))
        self.transmission_estimator = TransmissionEstimator()

    def forward(self, x: torch.Tensor, use_guided_filter: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.scratch(self.pretrained(x))
        t = ((torch.tanh(raw) + 1) / 2).clamp(0.05, 0.95)
        if use_guided_filter:
            t = self.transmission_estimator.refine_transmission(x, t)
        if self.use_dc_A:
            atmosphere = self.transmission_estimator.atmospheric_light(x)
        else:
            atmosphere = x.amax(dim=(2, 3), keepdim=True)
        clean = ((x - atmosphere) / t + atmosphere).clamp(0, 1)
        return clean, t


def box_filter(x: torch.Tensor, r: int) -> torch.Tensor:
    """Sum over (2r+1)^2 windows clipped at the borders (cumulative-sum box filter)."""

    def along(t: torch.Tensor, dim: int) -> torch.Tensor:
        t = t.cumsum(dim)
        n = t.shape[dim]
        left = t.narrow(dim, r, r + 1)
        middle = t.narrow(dim, 2 * r + 1, n - 2 * r - 1) - t.narrow(dim, 0, n - 2 * r - 1)
        right = t.narrow(dim, n - 1, 1) - t.narrow(dim, n - 2 * r - 1, r)
        return torch.cat([left, middle, right], dim)

    return along(along(x, 2), 3)


def guided_filter(guide: torch.Tensor, src: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """He et al.'s guided filter with a box of radius r (needs H, W > 2r + 1)."""
    ones = guide.new_ones((1, 1, *guide.shape[-2:]))
    n = box_filter(ones, r)
    mean_g = box_filter(guide, r) / n
    mean_s = box_filter(src, r) / n
    cov = box_filter(guide * src, r) / n - mean_g * mean_s
    var = box_filter(guide * guide, r) / n - mean_g * mean_g
    a = cov / (var + eps)
    b = mean_s - a * mean_g
    return box_filter(a, r) / n * guide + box_filter(b, r) / n


class TransmissionEstimator(nn.Module):
    """Dark-channel helpers of the official test path: atmospheric light and guided refinement."""

    def __init__(self, width: int = 15, top_fraction: float = 0.001, max_light: float = 220.0 / 255,
                 radius: int = 40, eps: float = 1e-3):
        super().__init__()
        self.width, self.top_fraction, self.max_light = width, top_fraction, max_light
        self.radius, self.eps = radius, eps

    def dark_channel(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.width // 2
        dark = F.pad(x.amin(dim=1, keepdim=True), (pad, pad, pad, pad), mode="constant", value=1.0)
        return -F.max_pool2d(-dark, self.width, stride=1)

    def atmospheric_light(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel maximum over the brightest 0.1% dark-channel pixels, capped at 220/255."""
        n, c, h, w = x.shape
        dark = self.dark_channel(x).view(n, 1, -1)
        top = torch.argsort(dark, dim=2, descending=True)[:, :, : int(h * w * self.top_fraction)]
        picked = torch.gather(x.view(n, c, -1), 2, top.expand(-1, c, -1))
        return picked.amax(dim=2, keepdim=True).unsqueeze(3).clamp(max=self.max_light)

    def refine_transmission(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Guided filter of t with the min-max normalised image as guide; each colour channel
        of the guide gives one filtered map and the official code averages them."""
        lo = x.flatten(1).amin(1).view(-1, 1, 1, 1)
        hi = x.flatten(1).amax(1).view(-1, 1, 1, 1)
        return guided_filter((x - lo) / (hi - lo), t, self.radius, self.eps).mean(dim=1, keepdim=True)
