"""EfficientNet-lite3 feature extractor (Tan & Le, ICML 2019; the "lite" variant of the TF
model zoo: ReLU6, no squeeze-excitation, fixed stem/head), laid out like the
gen-efficientnet ``tf_efficientnet_lite3`` that D4 and MiDaS split into four stages.

Written from the architecture definition; no weights are downloaded (D4's released checkpoint
carries the trained backbone).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

#: TensorFlow BatchNorm defaults used by the tf_* ports
BN_EPS = 1e-3


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed for every input (asymmetric: the extra
    pixel goes to the bottom/right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride,
                        0, self.dilation, self.groups)


def conv2d_same(in_c: int, out_c: int, kernel_size: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """TF "SAME" convolution: static symmetric padding at stride 1, dynamic otherwise."""
    if stride == 1:
        return nn.Conv2d(in_c, out_c, kernel_size, stride, padding=(kernel_size - 1) // 2, groups=groups, bias=False)
    return SameConv2d(in_c, out_c, kernel_size, stride, padding=0, groups=groups, bias=False)


class DepthwiseSeparableConv(nn.Module):
    """Depthwise conv - BN - ReLU6 - pointwise conv - BN (+ skip when shapes allow)."""

    def __init__(self, in_c: int, out_c: int, kernel_size: int, stride: int):
        super().__init__()
        self.has_skip = stride == 1 and in_c == out_c
        self.conv_dw = conv2d_same(in_c, in_c, kernel_size, stride, groups=in_c)
        self.bn1 = nn.BatchNorm2d(in_c, eps=BN_EPS)
        self.act1 = nn.ReLU6(inplace=True)
        self.conv_pw = nn.Conv2d(in_c, out_c, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_c, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv_pw(self.act1(self.bn1(self.conv_dw(x)))))
        return out + x if self.has_skip else out


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand - BN - ReLU6 - depthwise - BN - ReLU6 - 1x1 project - BN."""

    def __init__(self, in_c: int, out_c: int, kernel_size: int, stride: int, expand_ratio: int):
        super().__init__()
        mid = in_c * expand_ratio
        self.has_skip = stride == 1 and in_c == out_c
        self.conv_pw = nn.Conv2d(in_c, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self.act1 = nn.ReLU6(inplace=True)
        self.conv_dw = conv2d_same(mid, mid, kernel_size, stride, groups=mid)
        self.bn2 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self.act2 = nn.ReLU6(inplace=True)
        self.conv_pwl = nn.Conv2d(mid, out_c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_c, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv_pw(x)))
        out = self.act2(self.bn2(self.conv_dw(out)))
        out = self.bn3(self.conv_pwl(out))
        return out + x if self.has_skip else out


#: tf_efficientnet_lite3 stages after width x1.2 / depth x1.4 scaling (first and last stage
#: repeats fixed): (block, repeats, kernel, stride, expand ratio, out channels)
LITE3_STAGES = (
    ("ds", 1, 3, 1, 1, 24),
    ("ir", 3, 3, 2, 6, 32),
    ("ir", 3, 5, 2, 6, 48),
    ("ir", 5, 3, 2, 6, 96),
    ("ir", 5, 5, 1, 6, 136),
    ("ir", 6, 5, 2, 6, 232),
    ("ir", 1, 3, 1, 6, 384),
)
STEM_CHANNELS = 32


def _stage(kind: str, repeats: int, kernel: int, stride: int, expand: int, in_c: int, out_c: int) -> nn.Sequential:
    blocks = []
    for i in range(repeats):
        s = stride if i == 0 else 1
        c_in = in_c if i == 0 else out_c
        if kind == "ds":
            blocks.append(DepthwiseSeparableConv(c_in, out_c, kernel, s))
        else:
            blocks.append(InvertedResidual(c_in, out_c, kernel, s, expand))
    return nn.Sequential(*blocks)


class EfficientNetLite3Features(nn.Module):
    """tf_efficientnet_lite3 trunk in four parts, outputs at 1/4, 1/8, 1/16 and 1/32 with
    32, 48, 136 and 384 channels:
    layer1 = stem conv, BN, ReLU6, stages 0-1; layer2 = stage 2; layer3 = stages 3-4;
    layer4 = stages 5-6."""

    def __init__(self):
        super().__init__()
        stages = []
        in_c = STEM_CHANNELS
        for kind, repeats, kernel, stride, expand, out_c in LITE3_STAGES:
            stages.append(_stage(kind, repeats, kernel, stride, expand, in_c, out_c))
            in_c = out_c
        self.layer1 = nn.Sequential(
            conv2d_same(3, STEM_CHANNELS, 3, stride=2),
            nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS),
            nn.ReLU6(inplace=True),
            *stages[0:2],
        )
        self.layer2 = nn.Sequential(*stages[2:3])
        self.layer3 = nn.Sequential(*stages[3:5])
        self.layer4 = nn.Sequential(*stages[5:7])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats
