"""MB-TaylorFormer, written from

    Qiu, Zhang, Wang, Lu, Zhao, Song. "MB-TaylorFormer: Multi-branch Efficient Transformer
    Expanded by Taylor Formula for Image Dehazing", ICCV 2023 (arXiv:2308.14036).

A Restormer-like U-Net whose stages are multi-branch: deformable patch embeddings of
several receptive fields feed parallel stacks of Taylor-expanded linear attention blocks,
fused by selective kernel feature fusion (SKFF). Parameter names follow the official code
so the released ``{"params": state_dict}`` checkpoints load strictly.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import DeformConv2d


class BiasFreeLayerNorm(nn.Module):
    """Channel LayerNorm of an N x C x H x W map without mean subtraction or bias."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.var(dim=1, keepdim=True, unbiased=False)
        return x / torch.sqrt(var + 1e-5) * self.weight.view(1, -1, 1, 1)


class LayerNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.body = BiasFreeLayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FeedForward(nn.Module):
    """Gated depthwise-conv feed-forward network (Restormer's GDFN)."""

    def __init__(self, dim: int, expansion: float, bias: bool):
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


#: heads per window size of the attention-refinement convolutions, by number of heads
REFINE_WINDOWS = {1: {3: 1}, 2: {3: 2}, 4: {3: 2, 5: 2}, 8: {3: 2, 5: 3, 7: 3}}


class RefineAttention(nn.Module):
    """Multi-scale token-wise weights from the concatenated per-head queries and keys:
    one grouped convolution per window size over a split of the heads."""

    def __init__(self, head_dim: int, windows: dict[int, int]):
        super().__init__()
        self.head_splits = list(windows.values())
        self.conv_list = nn.ModuleList(
            nn.Conv2d(heads * head_dim * 2, heads, window, padding=window // 2, groups=heads)
            for window, heads in windows.items()
        )

    def forward(self, q: torch.Tensor, k: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """q, k: B x heads x N x Ch -> B x heads x N x 1."""
        b, heads, _, ch = q.shape
        h, w = size
        qk = torch.cat((q, k), dim=3).transpose(2, 3).reshape(b, heads * 2 * ch, h, w)
        splits = qk.split([n * 2 * ch for n in self.head_splits], dim=1)
        weight = torch.cat([conv(part) for conv, part in zip(self.conv_list, splits)], dim=1)
        return weight.reshape(b, heads, 1, h * w).transpose(2, 3)


class TaylorAttention(nn.Module):
    """Linear attention from the first-order Taylor expansion of softmax attention:
    ``sum_j (1 + q.k_j) v_j / sum_j (1 + q.k_j)``, with normalised q and k, per-head
    temperature and a sigmoid multi-scale refinement weight."""

    def __init__(self, dim: int, num_heads: int, bias: bool, qk_norm: float):
        super().__init__()
        self.num_heads = num_heads
        self.qk_norm = qk_norm
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)
        self.refine_att = RefineAttention(dim // num_heads, REFINE_WINDOWS[num_heads])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = h * w
        heads = self.num_heads
        # B x heads x N x Ch
        q, k, v = (t.reshape(b, heads, c // heads, n).transpose(2, 3) for t in self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1))
        q = q / (torch.norm(q, p=2, dim=-1, keepdim=True) / self.qk_norm + 1e-6)
        k = k / (torch.norm(k, p=2, dim=-1, keepdim=True) / self.qk_norm + 1e-6)
        refine = torch.sigmoid(self.refine_att(q, k, (h, w)))
        numerator = v.sum(dim=-2, keepdim=True) + q @ (k.transpose(-2, -1) @ v)
        denominator = n + q @ k.sum(dim=-2).unsqueeze(-1) + 1e-6
        out = numerator / denominator * self.temperature * refine
        return self.project_out(out.transpose(2, 3).reshape(b, c, h, w))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool, qk_norm: float):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = TaylorAttention(dim, num_heads, bias, qk_norm)
        self.norm2 = LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class MHCAEncoder(nn.Module):
    """One branch: a stack of transformer blocks."""

    def __init__(self, dim: int, num_layers: int, num_heads: int, ffn_expansion_factor: float, bias: bool, qk_norm: float):
        super().__init__()
        self.MHCA_layers = nn.ModuleList(
            TransformerBlock(dim, num_heads, ffn_expansion_factor, bias, qk_norm) for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.MHCA_layers:
            x = layer(x)
        return x


class SKFF(nn.Module):
    """Selective kernel feature fusion (MIRNet): softmax-over-branches channel attention."""

    def __init__(self, channels: int, height: int, reduction: int = 8, bias: bool = False):
        super().__init__()
        self.height = height
        hidden = max(channels // reduction, 4)
        self.conv_du = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=bias), nn.PReLU())
        self.fcs = nn.ModuleList(nn.Conv2d(hidden, channels, 1, bias=bias) for _ in range(height))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(list(feats), dim=1)  # B x branches x C x H x W
        z = self.conv_du(stacked.sum(dim=1).mean(dim=(2, 3), keepdim=True))
        attention = torch.stack([fc(z) for fc in self.fcs], dim=1).softmax(dim=1)
        return (stacked * attention).sum(dim=1)


class MHCAStage(nn.Module):
    """Parallel branches (one per patch-embedding scale) fused by SKFF."""

    def __init__(self, dim: int, num_layers: int, num_heads: int, ffn_expansion_factor: float, num_path: int, bias: bool, qk_norm: float):
        super().__init__()
        self.mhca_blks = nn.ModuleList(
            MHCAEncoder(dim, num_layers, num_heads, ffn_expansion_factor, bias, qk_norm) for _ in range(num_path)
        )
        self.aggregate = SKFF(dim, height=num_path)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.aggregate([encoder(x) for x, encoder in zip(inputs, self.mhca_blks)])


class DeformableProjEmbed(nn.Module):
    """Depthwise 3x3 deformable convolution (offsets from a depthwise + pointwise conv,
    clamped) followed by a pointwise projection."""

    def __init__(self, in_chans: int, emb_chans: int, offset_clamp: tuple[float, float] | None):
        super().__init__()
        self.offset_clamp = offset_clamp
        self.offset_generator = nn.Sequential(
            nn.Conv2d(in_chans, in_chans, 3, padding=1, groups=in_chans, bias=False),
            nn.Conv2d(in_chans, 18, 1, bias=False),
        )
        self.dcn = DeformConv2d(in_chans, in_chans, 3, padding=1, groups=in_chans, bias=False)
        self.pwconv = nn.Conv2d(in_chans, emb_chans, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset = self.offset_generator(x)
        if self.offset_clamp:
            offset = offset.clamp(*self.offset_clamp)
        return F.hardswish(self.pwconv(self.dcn(x, offset)))


class DWCPatchEmbed(nn.Module):
    def __init__(self, in_chans: int, embed_dim: int, offset_clamp):
        super().__init__()
        self.patch_conv = DeformableProjEmbed(in_chans, embed_dim, offset_clamp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_conv(x)


class PatchEmbedStage(nn.Module):
    """Chained deformable patch embeddings; each one's output feeds one branch, so the
    branches see growing receptive fields."""

    def __init__(self, dim: int, num_path: int, offset_clamp):
        super().__init__()
        self.patch_embeds = nn.ModuleList(DWCPatchEmbed(dim, dim, offset_clamp) for _ in range(num_path))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for embed in self.patch_embeds:
            x = embed(x)
            outputs.append(x)
        return outputs


class OverlapPatchEmbed(nn.Module):
    def __init__(self, in_c: int, embed_dim: int, bias: bool = False):
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False),
            nn.Conv2d(dim, out_dim // 4, 1, bias=False),
            nn.PixelUnshuffle(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False),
            nn.Conv2d(dim, out_dim * 4, 1, bias=False),
            nn.PixelShuffle(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MB_TaylorFormer(nn.Module):
    """MB-TaylorFormer (Qiu et al., ICCV 2023): 4-level U-Net of multi-branch Taylor
    transformer stages with a global residual. Input [0,1] RGB, H and W multiples of 8;
    output ~[0,1].

    ``model_name``, ``num_refinement_blocks``, ``LayerNorm_type`` and ``dual_pixel_task``
    are accepted for the official constructor signature; the official network ignores
    them (its layer norms are bias-free, the refinement stage has ``num_blocks[0]`` blocks).
    """

    def __init__(
        self,
        model_name=None,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: Sequence[int] = (24, 48, 72, 96),
        num_blocks: Sequence[int] = (2, 3, 3, 4),
        num_refinement_blocks: int = 2,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",
        dual_pixel_task: bool = False,
        num_path: Sequence[int] = (2, 2, 2, 2),
        qk_norm: float = 0.5,
        offset_clamp: Sequence[float] | None = (-3, 3),
    ):
        super().__init__()
        clamp = tuple(offset_clamp) if offset_clamp else None

        def stage(width: int, level: int) -> MHCAStage:
            return MHCAStage(width, num_blocks[level], heads[level], ffn_expansion_factor, num_path[level], False, qk_norm)

        def embed(width: int, level: int) -> PatchEmbedStage:
            return PatchEmbedStage(width, num_path[level], clamp)

        self.patch_embed = OverlapPatchEmbed(inp_channels, dim[0])
        self.patch_embed_encoder_level1 = embed(dim[0], 0)
        self.encoder_level1 = stage(dim[0], 0)
        self.down1_2 = Downsample(dim[0], dim[1])
        self.patch_embed_encoder_level2 = embed(dim[1], 1)
        self.encoder_level2 = stage(dim[1], 1)
        self.down2_3 = Downsample(dim[1], dim[2])
        self.patch_embed_encoder_level3 = embed(dim[2], 2)
        self.encoder_level3 = stage(dim[2], 2)
        self.down3_4 = Downsample(dim[2], dim[3])
        self.patch_embed_latent = embed(dim[3], 3)
        self.latent = stage(dim[3], 3)

        self.up4_3 = Upsample(dim[3], dim[2])
        self.reduce_chan_level3 = nn.Sequential(nn.Conv2d(dim[2] * 2, dim[2], 1, bias=bias))
        self.patch_embed_decoder_level3 = embed(dim[2], 2)
        self.decoder_level3 = stage(dim[2], 2)
        self.up3_2 = Upsample(dim[2], dim[1])
        self.reduce_chan_level2 = nn.Sequential(nn.Conv2d(dim[1] * 2, dim[1], 1, bias=bias))
        self.patch_embed_decoder_level2 = embed(dim[1], 1)
        self.decoder_level2 = stage(dim[1], 1)
        self.up2_1 = Upsample(dim[1], dim[0])
        # level 1 decodes at 2 * dim[0] == dim[1] channels (no channel reduction)
        self.patch_embed_decoder_level1 = embed(dim[1], 0)
        self.decoder_level1 = stage(dim[1], 0)
        self.patch_embed_refinement = embed(dim[1], 0)
        self.refinement = stage(dim[1], 0)
        self.output = nn.Sequential(nn.Conv2d(dim[1], out_channels, 3, padding=1, bias=False))

    def forward(self, inp_img: torch.Tensor) -> torch.Tensor:
        enc1 = self.patch_embed(inp_img)
        enc1 = self.encoder_level1(self.patch_embed_encoder_level1(enc1)) + enc1
        enc2 = self.down1_2(enc1)
        enc2 = self.encoder_level2(self.patch_embed_encoder_level2(enc2)) + enc2
        enc3 = self.down2_3(enc2)
        enc3 = self.encoder_level3(self.patch_embed_encoder_level3(enc3)) + enc3
        latent = self.down3_4(enc3)
        latent = self.latent(self.patch_embed_latent(latent)) + latent

        dec3 = self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], dim=1))
        dec3 = self.decoder_level3(self.patch_embed_decoder_level3(dec3)) + dec3
        dec2 = self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], dim=1))
        dec2 = self.decoder_level2(self.patch_embed_decoder_level2(dec2)) + dec2
        dec1 = torch.cat([self.up2_1(dec2), enc1], dim=1)
        dec1 = self.decoder_level1(self.patch_embed_decoder_level1(dec1)) + dec1
        dec1 = self.refinement(self.patch_embed_refinement(dec1)) + dec1
        return self.output(dec1) + inp_img
