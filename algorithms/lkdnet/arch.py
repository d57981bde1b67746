"""LKD-Net and the five-stage U-Net it shares with MixDehazeNet.

Both networks keep the DehazeFormer layout (Song et al., TIP 2023): a 3x3 patch embedding,
five stages of blocks at full, 1/2, 1/4, 1/2 and full resolution, selective-kernel fusion of the
skips, and a 4-channel head giving the soft reconstruction ``K * x - B + x``. Only the block
differs, so the backbone takes a block factory.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

#: ``block_factory(dim, stage_index) -> nn.Module`` builds one block of a stage
BlockFactory = Callable[[int, int], nn.Module]


class PatchEmbed(nn.Module):
    """Strided convolution (reflect padding) that embeds or downsamples by ``patch_size``."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, kernel_size: int | None = None):
        super().__init__()
        kernel_size = kernel_size or patch_size
        self.proj = nn.Conv2d(
            in_chans, embed_dim, kernel_size, stride=patch_size,
            padding=(kernel_size - patch_size + 1) // 2, padding_mode="reflect",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class PatchUnEmbed(nn.Module):
    """Convolution followed by pixel shuffle: upsamples by ``patch_size``."""

    def __init__(self, patch_size: int, out_chans: int, embed_dim: int, kernel_size: int = 1):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans * patch_size**2, kernel_size,
                      padding=kernel_size // 2, padding_mode="reflect"),
            nn.PixelShuffle(patch_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class SKFusion(nn.Module):
    """Selective-kernel fusion: softmax attention over ``height`` feature maps, per channel."""

    def __init__(self, dim: int, height: int = 2, reduction: int = 8):
        super().__init__()
        self.height = height
        hidden = max(dim // reduction, 4)
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(hidden, dim * height, 1, bias=False),
        )

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        b, c = feats[0].shape[:2]
        pooled = F.adaptive_avg_pool2d(sum(feats), 1)
        attn = self.mlp(pooled).view(b, self.height, c, 1, 1).softmax(dim=1)
        return sum(f * attn[:, i] for i, f in enumerate(feats))


class BasicLayer(nn.Module):
    """A stage: ``depth`` blocks in sequence."""

    def __init__(self, blocks: Sequence[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class DehazeUNet(nn.Module):
    """Five-stage U-Net with soft reconstruction ``K * x - B + x`` (DehazeFormer layout).

    The input is reflect-padded bottom/right to a multiple of 4 and the output cropped back.
    ``merge_kernel_size`` is the kernel of the two downsampling convolutions (2 in LKD-Net,
    3 in MixDehazeNet).
    """

    def __init__(
        self,
        block_factory: BlockFactory,
        in_chans: int = 3,
        out_chans: int = 4,
        embed_dims: Sequence[int] = (24, 48, 96, 48, 24),
        depths: Sequence[int] = (1, 1, 2, 1, 1),
        merge_kernel_size: int | None = None,
    ):
        super().__init__()
        self.patch_size = 4
        d = embed_dims

        def stage(i: int) -> BasicLayer:
            return BasicLayer([block_factory(d[i], i) for _ in range(depths[i])])

        self.patch_embed = PatchEmbed(1, in_chans, d[0], kernel_size=3)
        self.layer1 = stage(0)
        self.patch_merge1 = PatchEmbed(2, d[0], d[1], kernel_size=merge_kernel_size)
        self.skip1 = nn.Conv2d(d[0], d[0], 1)
        self.layer2 = stage(1)
        self.patch_merge2 = PatchEmbed(2, d[1], d[2], kernel_size=merge_kernel_size)
        self.skip2 = nn.Conv2d(d[1], d[1], 1)
        self.layer3 = stage(2)
        self.patch_split1 = PatchUnEmbed(2, d[3], d[2])
        assert d[1] == d[3] and d[0] == d[4], "skip fusion needs matching encoder/decoder widths"
        self.fusion1 = SKFusion(d[3])
        self.layer4 = stage(3)
        self.patch_split2 = PatchUnEmbed(2, d[4], d[3])
        self.fusion2 = SKFusion(d[4])
        self.layer5 = stage(4)
        self.patch_unembed = PatchUnEmbed(1, out_chans, d[4], kernel_size=3)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(self.patch_embed(x))
        skip1 = x
        x = self.layer2(self.patch_merge1(x))
        skip2 = x
        x = self.layer3(self.patch_merge2(x))
        x = self.patch_split1(x)
        x = self.fusion1([x, self.skip2(skip2)]) + x
        x = self.layer4(x)
        x = self.patch_split2(x)
        x = self.fusion2([x, self.skip1(skip1)]) + x
        x = self.layer5(x)
        return self.patch_unembed(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        p = self.patch_size
        x = F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p), mode="reflect")
        k, b = torch.split(self.forward_features(x), (1, 3), dim=1)
        return (k * x - b + x)[:, :, :h, :w]


# --- LKD-Net ------------------------------------------------------------------------------


class SampleLayerNorm(nn.Module):
    """Layer norm over (C, H, W) jointly, per sample, with a per-channel affine."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def scale_shift(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample, per-channel ``(scale, shift)`` with ``norm(x) == x * scale + shift``."""
        var, mean = torch.var_mean(x, dim=(1, 2, 3), unbiased=False, keepdim=True)
        scale = torch.rsqrt(var + self.eps) * self.weight
        return scale, self.bias - mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self.scale_shift(x)
        return x * scale + shift


class ConvMlp(nn.Module):
    """1x1 expand -> depthwise 3x3 -> ReLU -> 1x1 project.

    At inference on large maps the MLP runs on horizontal bands (with a one-row halo for the
    3x3 conv): the result is the same, but the 4x-wide hidden map stays in cache, which makes
    it about twice as fast on CPU.
    """

    band_rows = 32

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, hidden, 1),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[2]
        if self.training or h <= 2 * self.band_rows:
            return self.mlp(x)
        bands = []
        for top in range(0, h, self.band_rows):
            bottom = min(h, top + self.band_rows)
            lo, hi = max(0, top - 1), min(h, bottom + 1)
            bands.append(self.mlp(x[:, :, lo:hi])[:, :, top - lo : bottom - lo])
        return torch.cat(bands, dim=2)


class CEFN(nn.Module):
    """Channel-enhanced feed-forward network: ``LN(MLP(x)) * CA(x) * scaler``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.mlp = ConvMlp(dim, hidden)
        self.norm = SampleLayerNorm(dim)
        self.scaler = nn.Parameter(torch.ones(dim, 1, 1))
        self.ca = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(dim, dim // 8, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim // 8, dim, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.mlp(x)
        # norm(hidden) * gain folded into one multiply-add (per-channel coefficients)
        scale, shift = self.norm.scale_shift(hidden)
        gain = self.ca(x) * self.scaler
        return torch.addcmul(shift * gain, hidden, scale * gain)


class LKDBlock(nn.Module):
    """Decomposed large-kernel conv block (DLKCB) + CEFN, each pre-normed (BatchNorm) and residual.

    DLKCB: 1x1 -> depthwise 5x5 -> depthwise 7x7 dilation 3 (a 21x21 receptive field) -> 1x1.
    """

    def __init__(self, dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.Linear1 = nn.Conv2d(dim, dim, 1)
        self.DWConv = nn.Conv2d(dim, dim, 5, padding=2, groups=dim, padding_mode="reflect")
        self.DWDConv = nn.Conv2d(dim, dim, 7, padding=9, groups=dim, dilation=3, padding_mode="reflect")
        self.Linear2 = nn.Conv2d(dim, dim, 1)
        self.norm2 = nn.BatchNorm2d(dim)
        self.cemlp = CEFN(dim, int(mlp_ratio) * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.Linear1(self.norm1(x))
        x = x + self.Linear2(self.DWDConv(self.DWConv(y)))
        return x + self.cemlp(self.norm2(x))


class LKDNet(DehazeUNet):
    """LKD-Net (Luo et al., "LKD-Net: Large Kernel Convolution Network for Single Image
    Dehazing", ICME 2023, arXiv:2209.01788). Official class name: ``Dehaze``."""

    def __init__(
        self,
        in_chans: int = 3,
        out_chans: int = 4,
        embed_dims: Sequence[int] = (24, 48, 96, 48, 24),
        mlp_ratios: Sequence[float] = (4.0, 4.0, 4.0, 4.0, 4.0),
        depths: Sequence[int] = (1, 1, 2, 1, 1),
    ):
        super().__init__(
            lambda dim, stage: LKDBlock(dim, mlp_ratios[stage]),
            in_chans, out_chans, embed_dims, depths, merge_kernel_size=2,
        )
