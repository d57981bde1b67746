"""RIDCP (Wu et al., CVPR 2023): real image dehazing with a codebook of high-quality priors.

A hazy image is encoded (convs + residual Swin blocks) to a latent at 1/4 resolution, matched
against a VQGAN codebook of high-quality priors (HQPs) with controllable matching (CHM: the
distances are reweighted by ``exp(alpha * w)``), decoded by the frozen VQGAN decoder, and a
second decoder fuses the encoder features with the VQGAN decoder features through normalised
feature alignment (NFA: modulated deformable convs). The released model's image is that second
decoder's output.

Every op is plain PyTorch; the modulated deformable conv (DCNv2) is
``algorithms.common.layers.modulated_deform_conv2d`` (torchvision's semantics, a faster CPU path).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn

from algorithms.common.layers import GroupNorm, modulated_deform_conv2d
from algorithms.common.padding import mirror_pad_past_multiple
from algorithms.ridcp.swin import SwinLayers

#: feature channels at each resolution of the 256-pixel training crop
CHANNELS = {8: 256, 16: 256, 32: 256, 64: 256, 128: 128, 256: 64, 512: 32}
#: the Swin layers' nominal latent size (official default): shifted blocks store their attention
#: masks for it, and latents of exactly this size (padded inputs of 128 x 128) use the stored ones
SWIN_RESOLUTION = (32, 32)


class NormLayer(nn.Module):
    """GroupNorm(32), the only norm RIDCP's released model uses."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = GroupNorm(32, channels, eps=1e-6, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class ResBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, SiLU, conv3x3) x 2, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Sequential(
            NormLayer(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, 1, 1),
            NormLayer(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + x


def up_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """Nearest x2 upsampling, conv3x3, two residual blocks."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2),
        nn.Conv2d(in_ch, out_ch, 3, 1, 1),
        ResBlock(out_ch),
        ResBlock(out_ch),
    )


class DecoderBlock(nn.Module):
    """One x2 stage of the VQGAN decoder."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.block = up_block(in_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class MultiScaleEncoder(nn.Module):
    """conv4x4, ``depth`` stride-2 stages (conv + 2 residual blocks), then the Swin layers
    (none with ``swin_resolution=None``: the plain VQGAN encoder of the codebook prior)."""

    def __init__(self, in_channel: int, depth: int, input_res: int, swin_resolution: tuple[int, int] | None):
        super().__init__()
        self.in_conv = nn.Conv2d(in_channel, CHANNELS[input_res], 4, padding=1)
        self.blocks = nn.ModuleList()
        res = input_res
        for _ in range(depth):
            in_ch, out_ch = CHANNELS[res], CHANNELS[res // 2]
            down = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1)
            self.blocks.append(nn.Sequential(down, ResBlock(out_ch), ResBlock(out_ch)))
            res //= 2
        if swin_resolution is not None:
            self.blocks.append(SwinLayers(input_resolution=swin_resolution, embed_dim=CHANNELS[res]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features after every stage, shallowest first."""
        features = []
        x = self.in_conv(x)
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class VectorQuantizer(nn.Module):
    """Nearest-codeword lookup with controllable HQP matching (CHM).

    With ``use_weight`` the squared distances are multiplied by ``exp(weight_alpha * weight)``,
    ``weight`` being a per-codeword statistic of how often clear-image features pick it.
    """

    def __init__(self, n_e: int, e_dim: int, use_weight: bool, weight_alpha: float):
        super().__init__()
        self.e_dim = e_dim
        self.use_weight = use_weight
        self.weight_alpha = weight_alpha
        self.embedding = nn.Embedding(n_e, e_dim)
        if use_weight:
            self.weight = nn.Parameter(torch.ones(n_e))

    @staticmethod
    def squared_distance(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        return (
            torch.sum(x**2, dim=1, keepdim=True)
            + torch.sum(codebook**2, dim=1)
            - 2 * torch.matmul(x, codebook.t())
        )

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """N x e_dim x H x W -> (quantised latent, codeword indices N x 1 x H x W)."""
        z = z.permute(0, 2, 3, 1).contiguous()
        flat = z.view(-1, self.e_dim)
        codebook = self.embedding.weight
        d = self.squared_distance(flat, codebook)
        if self.use_weight:
            d = d * torch.exp(self.weight_alpha * self.weight)
        indices = torch.argmin(d, dim=1)
        z_q = codebook[indices].view(z.shape)
        # straight-through estimator as trained (z + (z_q - z)), kept for bit-faithful numerics
        z_q = z + (z_q - z)
        n, h, w, _ = z.shape
        return z_q.permute(0, 3, 1, 2).contiguous(), indices.view(n, 1, h, w)


class CombineQuantBlock(nn.Module):
    """conv3x3 after quantisation."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class DCNv2Pack(nn.Module):
    """Modulated deformable conv whose offsets and masks are predicted from a guide feature."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, padding: int = 1, deformable_groups: int = 4):
        super().__init__()
        self.padding = padding
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.conv_offset = nn.Conv2d(in_ch, deformable_groups * 3 * kernel_size * kernel_size, kernel_size, 1, padding)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        o1, o2, mask = torch.chunk(self.conv_offset(guide), 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        return modulated_deform_conv2d(x, offset, torch.sigmoid(mask), self.weight, self.bias, self.padding)


class WarpBlock(nn.Module):
    """Aligns VQGAN decoder features to the residual-branch features (the alignment of NFA)."""

    def __init__(self, channels: int):
        super().__init__()
        self.offset = nn.Conv2d(channels * 2, channels, 3, 1, 1)
        self.dcn = DCNv2Pack(channels, channels, 3, padding=1, deformable_groups=4)

    def forward(self, x_vq: torch.Tensor, x_residual: torch.Tensor) -> torch.Tensor:
        guide = self.offset(torch.cat([x_vq, x_residual], dim=1))
        return self.dcn(x_vq, guide)


class MultiScaleDecoder(nn.Module):
    """Residual-branch decoder: upsamples encoder features and, at each scale, adds the aligned
    VQGAN decoder features rescaled to the residual features' mean (normalised feature alignment).
    ``stage_tail(channels)``, if given, appends a block to every upsampling stage (WPXNet's
    FFA-style DehazeBlock)."""

    def __init__(self, depth: int, input_res: int, stage_tail: Callable[[int], nn.Module] | None = None):
        super().__init__()
        self.upsampler = nn.ModuleList()
        self.warp = nn.ModuleList()
        res = input_res // 2**depth
        for _ in range(depth):
            in_ch, out_ch = CHANNELS[res], CHANNELS[res * 2]
            stage = up_block(in_ch, out_ch)
            if stage_tail is not None:
                stage.append(stage_tail(out_ch))
            self.upsampler.append(stage)
            self.warp.append(WarpBlock(out_ch))
            res *= 2

    def forward(self, x: torch.Tensor, vq_features: list[torch.Tensor]) -> torch.Tensor:
        for upsample, warp, x_vq in zip(self.upsampler, self.warp, vq_features):
            x = upsample(x)
            aligned = warp(x_vq, x)
            x = x + aligned * (x.mean() / aligned.mean())
        return x


class VQWeightDehazeNet(nn.Module):
    """RIDCP: Wu, Duan, Guo, Chai, Li. "RIDCP: Revitalizing Real Image Dehazing via
    High-Quality Codebook Priors", CVPR 2023, arXiv:2304.03994.

    The LQ-stage (dehazing) network with one codebook. ``forward`` is the official ``test()``:
    the image is mirror-padded to the next multiple of 32 (always adding 1..32 rows/columns),
    and the result is ``(image, [codeword indices])``, the image in ~[0, 1] cropped to the
    input size.
    """

    pad_multiple = 32

    def __init__(
        self,
        codebook_params=((64, 1024, 512),),
        gt_resolution: int = 256,
        in_channel: int = 3,
        use_weight: bool = True,
        weight_alpha: float = -21.25,
    ):
        super().__init__()
        if len(codebook_params) != 1:
            raise ValueError("RIDCP's released model has exactly one codebook")
        scale, n_e, e_dim = (int(v) for v in codebook_params[0])
        depth = int(math.log2(gt_resolution // scale))
        self.multiscale_encoder = MultiScaleEncoder(in_channel, depth, gt_resolution, SWIN_RESOLUTION)
        self.multiscale_decoder = MultiScaleDecoder(depth, gt_resolution)
        self.decoder_group = nn.ModuleList()
        for i in range(depth):
            res = gt_resolution // 2**depth * 2**i
            self.decoder_group.append(DecoderBlock(CHANNELS[res], CHANNELS[res * 2]))
        out_ch = CHANNELS[gt_resolution]
        self.out_conv = nn.Conv2d(out_ch, 3, 3, 1, 1)
        self.residual_conv = nn.Conv2d(out_ch, 3, 3, 1, 1)
        self.quantize_group = nn.ModuleList([VectorQuantizer(n_e, e_dim, use_weight, weight_alpha)])
        self.before_quant_group = nn.ModuleList([nn.Conv2d(CHANNELS[scale], e_dim, 1)])
        self.after_quant_group = nn.ModuleList([CombineQuantBlock(e_dim, CHANNELS[scale])])

    @property
    def weight_alpha(self) -> float:
        """CHM strength: negative values favour codewords that clear images use often."""
        return self.quantize_group[0].weight_alpha

    @weight_alpha.setter
    def weight_alpha(self, value: float) -> None:
        self.quantize_group[0].weight_alpha = value

    def encode_and_decode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (VQGAN-decoder image, residual-branch image, codeword indices)."""
        latent = self.multiscale_encoder(x)[-1]
        z_q, indices = self.quantize_group[0](self.before_quant_group[0](latent))
        feat = self.after_quant_group[0](z_q)
        vq_features = []
        for block in self.decoder_group:
            feat = block(feat)
            vq_features.append(feat)
        vq_image = self.out_conv(feat)
        residual_image = self.residual_conv(self.multiscale_decoder(latent, vq_features))
        return vq_image, residual_image, indices

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h, w = x.shape[-2:]
        _, image, indices = self.encode_and_decode(mirror_pad_past_multiple(x, self.pad_multiple))
        return image[..., :h, :w], [indices]
