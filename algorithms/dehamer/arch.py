"""Dehamer: a CNN U-Net modulated by a Swin transformer with a transmission-aware 3D position embedding.

Guo, Yan, Anwar, Cong, Ren, Li. *Image Dehazing Transformer with Transmission-Aware 3D Position
Embedding.* CVPR 2022. Re-implemented from the paper and the conformance facts; parameter names are
the official ones (``UNet_emb`` in Li-Chongyi/Dehamer), so the released checkpoints load strict.

Layout (H x W input, all scales relative to it):

- ``swin_1``: a 3-stage Swin transformer (patch 2, window 7) gives features at 1/2, 1/4, 1/8. Before
  the first stage, a sine position embedding over (x, y, z) is added to the patch embedding, where z
  is the dark channel of the input (a rough transmission estimate) resized to the feature grid.
- CNN encoder ``E_block1..4`` (two convs + max-pool each), every stage followed by a pyramid pooling
  module ``PPM*`` that doubles the channels: 64 @ 1/2, 128 @ 1/4, 256 @ 1/8, 512 @ 1/16.
- Decoder: ``_block*`` (two convs + bilinear x2 upsampling). At each of 1/8, 1/4, 1/2 the Swin
  features give a scale and a shift that modulate the instance-normalised encoder features; the
  encoder features, the modulated ones and the upsampled decoder features are concatenated and fused
  by a 3x3 conv (``conv1``, ``conv2``, ``conv3``). The upsampled decoder features at 1/4 and 1/2 are
  first refined by MIRNet multi-scale residual blocks (``MSRB2``, ``MSRB3``).

The official constructor also builds modules its forward never calls (``E_block5``, ``_block2``,
``_block6``, ``MSRB1``, ``MSRB4``, ``conv3_3``, ``conv4_1``..``conv4_4``); they are kept so that the
released checkpoints load strict.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------------
# Transmission-aware 3D position embedding
# --------------------------------------------------------------------------------------------------


def dark_channel(x: torch.Tensor, kernel_size: int = 15) -> torch.Tensor:
    """He et al.'s dark channel: channel minimum, then a reflect-padded local minimum. B x 1 x H x W."""
    channel_min = x.amin(dim=1, keepdim=True)
    padded = F.pad(channel_min, (kernel_size // 2,) * 4, mode="reflect")
    return -F.max_pool2d(-padded, kernel_size, stride=1)


def _sine_encoding(coordinate: torch.Tensor, num_feats: int, temperature: float) -> torch.Tensor:
    """B x h x w coordinates -> B x h x w x num_feats, interleaved sin/cos (DETR style)."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=coordinate.device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_feats)
    phase = coordinate[..., None] / dim_t
    return torch.stack((phase[..., 0::2].sin(), phase[..., 1::2].cos()), dim=4).flatten(3)


def transmission_position_embedding(
    depth: torch.Tensor, num_feats: int = 32, temperature: float = 10000.0, eps: float = 1e-6
) -> torch.Tensor:
    """3D sine embedding (x, y, transmission z) of a B x 1 x h x w map -> B x 3*num_feats x h x w.

    Each coordinate is normalised to [0, 2*pi]: x and y by their last index, z by its maximum
    (per image; the official code takes it over the batch, which is the same at batch size 1). The
    embedding is computed in float32 whatever the network's dtype, as the official code does.
    """
    z = depth[:, 0].float()
    b, h, w = z.shape
    y = torch.arange(h, dtype=torch.float32, device=z.device).view(1, h, 1).expand(b, h, w)
    x = torch.arange(w, dtype=torch.float32, device=z.device).view(1, 1, w).expand(b, h, w)
    scale = 2 * math.pi
    y = y / (y[:, -1:, :] + eps) * scale
    x = x / (x[:, :, -1:] + eps) * scale
    z = z / (z.amax(dim=(1, 2), keepdim=True) + eps) * scale
    codes = [_sine_encoding(c, num_feats, temperature) for c in (x, y, z)]
    return torch.cat(codes, dim=3).permute(0, 3, 1, 2)


# --------------------------------------------------------------------------------------------------
# Swin transformer backbone (Liu et al., ICCV 2021; dense-prediction variant that pads to windows)
# --------------------------------------------------------------------------------------------------


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """B x H x W x C -> (B * windows) x window_size x window_size x C."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)


def window_reverse(windows: torch.Tensor, window_size: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`."""
    b = windows.shape[0] // ((h // window_size) * (w // window_size))
    x = windows.view(b, h // window_size, w // window_size, window_size, window_size, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window, with a learned relative position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
        coords = coords.flatten(1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
        self.register_buffer("relative_position_index", relative[..., 0] * (2 * window_size - 1) + relative[..., 1])
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.view(b // windows, windows, self.num_heads, n, n) + mask[None, :, None]
            attn = attn.view(-1, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int, attn_mask: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        ws = self.window_size
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        x = F.pad(x, (0, 0, 0, -w % ws, 0, -h % ws))  # pad right/bottom to whole windows
        hp, wp = x.shape[1:3]
        if self.shift_size:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        windows = window_partition(x, ws).reshape(-1, ws * ws, c)
        windows = self.attn(windows, attn_mask if self.shift_size else None)
        x = window_reverse(windows.view(-1, ws, ws, c), ws, hp, wp)
        if self.shift_size:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = shortcut + x[:, :h, :w].reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbourhood -> one token with twice the channels."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class BasicLayer(nn.Module):
    """One Swin stage: alternating regular / shifted window blocks, then optional patch merging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float, downsample: bool):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def _shift_mask(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """-100 between tokens that the cyclic shift brought from different image regions."""
        ws, shift = self.window_size, self.shift_size
        hp, wp = math.ceil(h / ws) * ws, math.ceil(w / ws) * ws
        region = torch.zeros((1, hp, wp, 1), dtype=like.dtype, device=like.device)
        label = 0
        for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
                region[:, hs, wsl, :] = label
                label += 1
        windows = window_partition(region, ws).reshape(-1, ws * ws)
        mask = windows.unsqueeze(1) - windows.unsqueeze(2)
        return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)

    def forward(self, x: torch.Tensor, h: int, w: int):
        mask = self._shift_mask(h, w, x)
        for block in self.blocks:
            x = block(x, h, w, mask)
        if self.downsample is None:
            return x, h, w, x, h, w
        return x, h, w, self.downsample(x, h, w), (h + 1) // 2, (w + 1) // 2


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        x = F.pad(x, (0, -x.shape[-1] % p, 0, -x.shape[-2] % p))
        x = self.proj(x)
        b, c, h, w = x.shape
        return self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).view(b, c, h, w)


class SwinTransformer(nn.Module):
    """Swin backbone with Dehamer's transmission-aware 3D position embedding on the patch tokens.

    Returns the (layer-normed) output of every stage as B x C x h x w maps.
    """

    def __init__(
        self,
        patch_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 2),
        num_heads: tuple[int, ...] = (3, 6, 12),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        if embed_dim % 3:
            raise ValueError("embed_dim must split evenly over the x, y, z position codes")
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.layers = nn.ModuleList(
            BasicLayer(embed_dim * 2**i, depth, num_heads[i], window_size, mlp_ratio, downsample=i < len(depths) - 1)
            for i, depth in enumerate(depths)
        )
        self.num_features = [embed_dim * 2**i for i in range(len(depths))]
        for i, dim in enumerate(self.num_features):
            self.add_module(f"norm{i}", nn.LayerNorm(dim))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        tokens = self.patch_embed(x)
        h, w = tokens.shape[2:]
        depth = F.interpolate(dark_channel(x), size=(h, w), mode="bicubic", align_corners=False)
        tokens = tokens + transmission_position_embedding(depth, self.embed_dim // 3).to(tokens.dtype)
        tokens = tokens.flatten(2).transpose(1, 2)
        outs = []
        for i, layer in enumerate(self.layers):
            out, out_h, out_w, tokens, h, w = layer(tokens, h, w)
            out = getattr(self, f"norm{i}")(out)
            outs.append(out.view(-1, out_h, out_w, self.num_features[i]).permute(0, 3, 1, 2).contiguous())
        return outs


# --------------------------------------------------------------------------------------------------
# MIRNet multi-scale residual block (Zamir et al., ECCV 2020), width 1
# --------------------------------------------------------------------------------------------------


class SpatialConv(nn.Module):
    def __init__(self, kernel_size: int = 5):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SpatialAttention(nn.Module):
    """Gate from a conv over the channel-wise max and mean."""

    def __init__(self, kernel_size: int = 5):
        super().__init__()
        self.spatial = SpatialConv(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat((x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)), dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(x.mean(dim=(2, 3), keepdim=True))


class DualAttentionUnit(nn.Module):
    """Conv-act-conv, then spatial and channel attention branches fused by a 1x1 conv; residual."""

    def __init__(self, channels: int, act: nn.Module):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            act,
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        )
        self.SA = SpatialAttention()
        self.CA = ChannelAttention(channels)
        self.conv1x1 = nn.Conv2d(2 * channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        return self.conv1x1(torch.cat([self.SA(res), self.CA(res)], dim=1)) + x


class SelectiveKernelFusion(nn.Module):
    """Softmax attention across the branches (per channel) from their pooled sum."""

    def __init__(self, channels: int, branches: int = 3, reduction: int = 8):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.conv_du = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.PReLU())
        self.fcs = nn.ModuleList(nn.Conv2d(hidden, channels, 1, bias=False) for _ in range(branches))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(feats, dim=1)
        z = self.conv_du(stacked.sum(dim=1).mean(dim=(2, 3), keepdim=True))
        weights = torch.stack([fc(z) for fc in self.fcs], dim=1).softmax(dim=1)
        return (stacked * weights).sum(dim=1)


class AntiAliasDownsample(nn.Module):
    """Blur-pool (Zhang, ICML 2019): reflect pad, fixed depthwise 3x3 filter ``filt``, stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        filt = taps[:, None] * taps[None, :]
        self.register_buffer("filt", (filt / filt.sum()).expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


class ResidualDownSample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.top = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.PReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.PReLU(),
            AntiAliasDownsample(channels),
            nn.Conv2d(channels, channels * 2, 1, bias=False),
        )
        self.bot = nn.Sequential(AntiAliasDownsample(channels), nn.Conv2d(channels, channels * 2, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top(x) + self.bot(x)


class ResidualUpSample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.top = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.PReLU(),
            nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.PReLU(),
            nn.Conv2d(channels, channels // 2, 1, bias=False),
        )
        self.bot = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(channels, channels // 2, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top(x) + self.bot(x)


class ResampleChain(nn.Module):
    """log2(factor) residual down- (channels x2 each) or up-samplings (channels /2 each)."""

    def __init__(self, channels: int, factor: int, up: bool):
        super().__init__()
        steps = []
        for _ in range(int(math.log2(factor))):
            steps.append(ResidualUpSample(channels) if up else ResidualDownSample(channels))
            channels = channels // 2 if up else channels * 2
        self.body = nn.Sequential(*steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MSRB(nn.Module):
    """MIRNet multi-scale residual block with ``height`` resolutions and width 1.

    With width 1 the forward runs one dual attention unit per resolution (each fed the downsampled
    output of the previous), brings the results back up with ``last_up`` and fuses them with
    ``selective_kernel[0]``. The mesh resamplers ``down``/``up`` other than ``down[f"{c}_2"]`` and the
    other fusion modules belong to the width > 1 mesh and are only constructed.
    """

    def __init__(self, n_feat: int, act: nn.Module, height: int = 3, stride: int = 2):
        super().__init__()
        self.height = height
        feats = [n_feat * stride**i for i in range(height)]
        scales = [2**i for i in range(1, height)][::-1]
        self.blocks = nn.ModuleList(nn.ModuleList([DualAttentionUnit(c, act)]) for c in feats)
        self.last_up = nn.ModuleDict({f"{i}": ResampleChain(feats[i], 2**i, up=True) for i in range(1, height)})
        self.down = nn.ModuleDict()
        self.up = nn.ModuleDict()
        for i, c in enumerate(feats):
            for s in scales[i:]:
                self.down[f"{c}_{s}"] = ResampleChain(c, s, up=False)
        for i, c in enumerate(feats[::-1]):
            for s in scales[i:]:
                self.up[f"{c}_{s}"] = ResampleChain(c, s, up=True)
        self.conv_out = nn.Conv2d(n_feat, n_feat, 3, padding=1, bias=False)
        self.selective_kernel = nn.ModuleList(SelectiveKernelFusion(c, height) for c in feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale_outs = []
        feat = x
        for j in range(self.height):
            if j:
                feat = self.down[f"{feat.shape[1]}_2"](feat)
            feat = self.blocks[j][0](feat)
            scale_outs.append(feat)
        scale_outs = [scale_outs[0]] + [self.last_up[f"{k}"](f) for k, f in enumerate(scale_outs) if k]
        return self.conv_out(self.selective_kernel[0](scale_outs)) + x


# --------------------------------------------------------------------------------------------------
# CNN U-Net
# --------------------------------------------------------------------------------------------------


class PPM(nn.Module):
    """Pyramid pooling (PSPNet): pooled 1x1-conv branches upsampled and concatenated to the input."""

    def __init__(self, in_dim: int, reduction_dim: int, bins: tuple[int, ...] = (1, 2, 3, 4)):
        super().__init__()
        self.features = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(b), nn.Conv2d(in_dim, reduction_dim, 1, bias=False), nn.ReLU(inplace=True)
            )
            for b in bins
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        branches = [F.interpolate(f(x), size, mode="bilinear", align_corners=True) for f in self.features]
        return torch.cat([x, *branches], dim=1)


def _conv_block(in_ch: int, out_ch: int, *tail: nn.Module) -> nn.Sequential:
    """conv3x3-ReLU-conv3x3-ReLU followed by ``tail`` (a pooling or upsampling)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1),
        nn.ReLU(inplace=True),
        *tail,
    )


def _encoder_block(in_ch: int, out_ch: int) -> nn.Sequential:
    return _conv_block(in_ch, out_ch, nn.MaxPool2d(2))


def _decoder_block(in_ch: int, out_ch: int) -> nn.Sequential:
    return _conv_block(in_ch, out_ch, nn.UpsamplingBilinear2d(scale_factor=2))


def _conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, padding=1)


class Dehamer(nn.Module):
    """Dehamer (Guo et al., CVPR 2022): the official ``UNet_emb``.

    Input: RGB normalised with mean (0.64, 0.6, 0.58), std (0.14, 0.15, 0.152), H and W multiples of
    16. Output: the dehazed RGB image in [0, 1] (not clamped).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3):
        super().__init__()
        # Transformer -> CNN modulation: conv{k} fuses, conv{k}_1 gives the scale, conv{k}_2 the shift.
        self.conv1 = _conv3x3(256 * 3, 256)
        self.conv1_1 = _conv3x3(384, 256)
        self.conv1_2 = _conv3x3(384, 256)
        self.conv2 = _conv3x3(128 * 3, 128)
        self.conv2_1 = _conv3x3(192, 128)
        self.conv2_2 = _conv3x3(192, 128)
        self.conv3 = _conv3x3(64 * 3, 64)
        self.conv3_1 = _conv3x3(96, 64)
        self.conv3_2 = _conv3x3(96, 64)
        self.conv3_3 = _conv3x3(48, 24)  # unused
        self.conv4 = _conv3x3(32, 32)
        self.conv4_1 = _conv3x3(96, 48)  # conv4_1 .. conv4_4: unused
        self.conv4_2 = _conv3x3(48, 24)
        self.conv4_3 = _conv3x3(24, 12)
        self.conv4_4 = _conv3x3(12, 12)
        self.PPM1 = PPM(32, 8)
        self.PPM2 = PPM(64, 16)
        self.PPM3 = PPM(128, 32)
        self.PPM4 = PPM(256, 64)
        # The official MIRNet code gives every dual attention unit the same default-argument PReLU:
        # one parameter shared by all MSRBs (on loading, the last ``MSRB4.blocks.2.0.body.1.weight`` wins).
        shared_act = nn.PReLU()
        self.MSRB1 = MSRB(256, shared_act)  # unused
        self.MSRB2 = MSRB(128, shared_act)
        self.MSRB3 = MSRB(64, shared_act)
        self.MSRB4 = MSRB(32, shared_act)  # unused
        self.swin_1 = SwinTransformer(patch_size=2, in_chans=3, embed_dim=96, depths=(2, 2, 2),
                                      num_heads=(3, 6, 12), window_size=7, mlp_ratio=4.0)
        self.E_block1 = _encoder_block(in_channels, 32)
        self.E_block2 = _encoder_block(64, 64)
        self.E_block3 = _encoder_block(128, 128)
        self.E_block4 = _encoder_block(256, 256)
        self.E_block5 = _encoder_block(512, 512)  # unused
        self._block1 = _decoder_block(512, 256)
        self._block2 = _decoder_block(512, 256)  # unused
        self._block3 = _decoder_block(256, 128)
        self._block4 = _decoder_block(128, 64)
        self._block5 = _decoder_block(64, 32)
        self._block6 = _decoder_block(46, 23)  # unused
        self._block7 = nn.Sequential(_conv3x3(32, 32), nn.ReLU(inplace=True), _conv3x3(32, out_channels))

    @staticmethod
    def _modulate_and_fuse(encoded, swin_feat, decoded, scale_conv, shift_conv, fuse_conv):
        """cat(encoder, IN(encoder) * scale(swin) + shift(swin), decoder) -> conv -> ReLU."""
        modulated = F.instance_norm(encoded) * scale_conv(swin_feat) + shift_conv(swin_feat)
        return F.relu(fuse_conv(torch.cat((encoded, modulated, decoded), dim=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        swin_half, swin_quarter, swin_eighth = self.swin_1(x)

        enc_half = self.PPM1(self.E_block1(x))  # 64 @ 1/2
        enc_quarter = self.PPM2(self.E_block2(enc_half))  # 128 @ 1/4
        enc_eighth = self.PPM3(self.E_block3(enc_quarter))  # 256 @ 1/8
        enc_sixteenth = self.PPM4(self.E_block4(enc_eighth))  # 512 @ 1/16

        dec = self._block1(enc_sixteenth)
        dec = self._modulate_and_fuse(enc_eighth, swin_eighth, dec, self.conv1_1, self.conv1_2, self.conv1)
        dec = self.MSRB2(self._block3(dec))
        dec = self._modulate_and_fuse(enc_quarter, swin_quarter, dec, self.conv2_1, self.conv2_2, self.conv2)
        dec = self.MSRB3(self._block4(dec))
        dec = self._modulate_and_fuse(enc_half, swin_half, dec, self.conv3_1, self.conv3_2, self.conv3)
        dec = self._block5(dec)
        return self._block7(F.relu(self.conv4(dec)))
