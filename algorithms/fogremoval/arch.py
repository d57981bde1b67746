"""SRDefog / FogRemoval generator (Jin et al., ACCV 2022).

Jin, Yan, Yang, Tan: "Structure Representation Network and Uncertainty Feedback Learning
for Dense Non-Uniform Fog Removal", ACCV 2022. The dehazing generator is a U-GAT-IT style
encoder / class-activation-map / AdaILN decoder ("light" variant) with a global residual on
the [-1, 1] input.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _instance_layer_norm(x: torch.Tensor, rho: torch.Tensor, eps: float) -> torch.Tensor:
    """rho * InstanceNorm(x) + (1 - rho) * LayerNorm(x), both with the unbiased variance."""
    in_mean, in_var = x.mean(dim=(2, 3), keepdim=True), x.var(dim=(2, 3), keepdim=True)
    ln_mean, ln_var = x.mean(dim=(1, 2, 3), keepdim=True), x.var(dim=(1, 2, 3), keepdim=True)
    out_in = (x - in_mean) / torch.sqrt(in_var + eps)
    out_ln = (x - ln_mean) / torch.sqrt(ln_var + eps)
    return rho * out_in + (1 - rho) * out_ln


class AdaILN(nn.Module):
    """Adaptive instance-layer normalisation: scale/shift come from the style branch."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.rho = nn.Parameter(torch.full((1, num_features, 1, 1), 0.9))

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        out = _instance_layer_norm(x, self.rho, self.eps)
        return out * gamma[:, :, None, None] + beta[:, :, None, None]


class ILN(nn.Module):
    """Instance-layer normalisation with its own affine parameters."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.rho = nn.Parameter(torch.zeros(1, num_features, 1, 1))
        self.gamma = nn.Parameter(torch.ones(1, num_features, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, num_features, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _instance_layer_norm(x, self.rho, self.eps) * self.gamma + self.beta


class ResnetBlock(nn.Module):
    """Residual block: (reflect pad, 3x3 conv, InstanceNorm) x 2 with a ReLU between."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=False),
            nn.InstanceNorm2d(dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=False),
            nn.InstanceNorm2d(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetAdaILNBlock(nn.Module):
    """Residual block whose normalisations are AdaILN driven by (gamma, beta)."""

    def __init__(self, dim: int):
        super().__init__()
        self.pad1 = nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(dim, dim, 3, bias=False)
        self.norm1 = AdaILN(dim)
        self.relu1 = nn.ReLU(True)
        self.pad2 = nn.ReflectionPad2d(1)
        self.conv2 = nn.Conv2d(dim, dim, 3, bias=False)
        self.norm2 = AdaILN(dim)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.norm1(self.conv1(self.pad1(x)), gamma, beta))
        out = self.norm2(self.conv2(self.pad2(out)), gamma, beta)
        return out + x


class ResnetGenerator(nn.Module):
    """SRDefog generator (Jin et al., ACCV 2022), U-GAT-IT "light" layout.

    ``forward(x)`` with x in [-1, 1] returns ``(out, cam_logit, heatmap)``: the defogged image
    ``tanh(decoder(x) + x)`` in (-1, 1), the class-activation logits (N, 2) and the CAM heatmap
    (N, 1, H/4, W/4). H and W must be multiples of 4.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 4,
                 img_size: int = 512, light: bool = True):
        super().__init__()
        if not light:
            raise NotImplementedError("only the light generator (used by the released SRDefog model) is implemented")
        self.n_blocks = n_blocks
        n_down = 2
        mult = 2**n_down
        width = ngf * mult

        down = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, 7, bias=False),
            nn.InstanceNorm2d(ngf),
            nn.ReLU(True),
        ]
        for i in range(n_down):
            c = ngf * 2**i
            down += [nn.ReflectionPad2d(1), nn.Conv2d(c, c * 2, 3, stride=2, bias=False),
                     nn.InstanceNorm2d(c * 2), nn.ReLU(True)]
        down += [ResnetBlock(width) for _ in range(n_blocks)]
        self.DownBlock = nn.Sequential(*down)

        # class activation map
        self.gap_fc = nn.Linear(width, 1, bias=False)
        self.gmp_fc = nn.Linear(width, 1, bias=False)
        self.conv1x1 = nn.Conv2d(width * 2, width, 1, bias=True)
        self.relu = nn.ReLU(True)

        # gamma / beta of the AdaILN decoder (light: from globally pooled features)
        self.FC = nn.Sequential(
            nn.Linear(width, width, bias=False), nn.ReLU(True),
            nn.Linear(width, width, bias=False), nn.ReLU(True),
        )
        self.gamma = nn.Linear(width, width, bias=False)
        self.beta = nn.Linear(width, width, bias=False)

        for i in range(n_blocks):
            setattr(self, f"UpBlock1_{i + 1}", ResnetAdaILNBlock(width))

        up = []
        for i in range(n_down):
            c = ngf * 2 ** (n_down - i)
            up += [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1),
                   nn.Conv2d(c, c // 2, 3, bias=False), ILN(c // 2), nn.ReLU(True)]
        up += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, bias=False)]
        self.UpBlock2 = nn.Sequential(*up)

    def forward(self, x: torch.Tensor):
        feat = self.DownBlock(x)
        n = feat.shape[0]

        gap_logit = self.gap_fc(F.adaptive_avg_pool2d(feat, 1).view(n, -1))
        gap = feat * self.gap_fc.weight[:, :, None, None]
        gmp_logit = self.gmp_fc(F.adaptive_max_pool2d(feat, 1).view(n, -1))
        gmp = feat * self.gmp_fc.weight[:, :, None, None]
        cam_logit = torch.cat([gap_logit, gmp_logit], 1)

        feat = self.relu(self.conv1x1(torch.cat([gap, gmp], 1)))
        heatmap = feat.sum(dim=1, keepdim=True)

        style = self.FC(F.adaptive_avg_pool2d(feat, 1).view(n, -1))
        gamma, beta = self.gamma(style), self.beta(style)
        for i in range(self.n_blocks):
            feat = getattr(self, f"UpBlock1_{i + 1}")(feat, gamma, beta)
        out = torch.tanh(self.UpBlock2(feat) + x)
        return out, cam_logit, heatmap
