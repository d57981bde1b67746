"""ITBdehaze: a Swin-Transformer-V2 encoder with an attention decoder, fused with an RCAN branch.

Liu, Liu, Li, Wu, Chen, "A Data-Centric Solution to NonHomogeneous Dehazing via Vision
Transformer", CVPR Workshops (NTIRE) 2023. Parameter names follow the official release
(``fusion_refine`` / ``DehazeSwinT`` / Swin-V2 / RCAN) so ``best.pkl`` loads strict.

Unlike the official code, which derives the token grid as sqrt(L) and so needs square inputs,
the spatial size is passed through the encoder: any H, W that are multiples of 256 work.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# --- Swin Transformer V2 encoder (Liu et al., CVPR 2022) ---------------------------------------


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """B, H, W, C -> B*nW, ws*ws, C."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """B*nW, ws*ws, C -> B, H, W, C."""
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def shifted_window_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """(nW, ws*ws, ws*ws) additive mask (0 / -100) keeping cyclically shifted regions apart."""
    region = torch.zeros(1, h, w, 1)
    bounds = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    label = 0
    for hs in bounds:
        for wsl in bounds:
            region[:, hs, wsl, :] = label
            label += 1
    labels = window_partition(region, ws).squeeze(-1)
    diff = labels.unsqueeze(1) - labels.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


def log_spaced_coords_table(ws: int) -> torch.Tensor:
    """(1, 2ws-1, 2ws-1, 2) relative offsets scaled to [-8, 8] then log-spaced (Swin-V2)."""
    offsets = torch.arange(-(ws - 1), ws, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij")).permute(1, 2, 0).unsqueeze(0)
    table = table / (ws - 1) * 8
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)


def relative_position_index(ws: int) -> torch.Tensor:
    """(ws*ws, ws*ws) index into the flattened (2ws-1)^2 offset table."""
    ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]


class WindowAttention(nn.Module):
    """Scaled cosine attention with a continuous (MLP) relative position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones(num_heads, 1, 1)))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 512), nn.ReLU(inplace=True), nn.Linear(512, num_heads, bias=False))
        self.register_buffer("relative_coords_table", log_spaced_coords_table(window_size))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def position_bias(self) -> torch.Tensor:
        """(heads, N, N) bias, 16 * sigmoid(cpb_mlp(offset))."""
        table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)
        n = self.relative_position_index.shape[0]
        bias = table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        return 16 * torch.sigmoid(bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, qkv_bias).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        logit_scale = torch.clamp(self.logit_scale, max=math.log(1.0 / 0.01)).exp()
        attn = attn * logit_scale + self.position_bias().unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinTransformerBlock(nn.Module):
    """Post-norm Swin-V2 block. ``input_resolution`` is the token grid at the 256x256 training
    size: its shift mask is stored (``attn_mask``); other grids get theirs computed."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], num_heads: int, window_size: int,
                 shift_size: int, mlp_ratio: float):
        super().__init__()
        self.input_resolution = input_resolution
        if min(input_resolution) <= window_size:  # the window covers the grid: no shift
            window_size, shift_size = min(input_resolution), 0
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(*input_resolution, window_size, shift_size) if shift_size > 0 else None
        self.register_buffer("attn_mask", mask)

    def _mask_for(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor | None:
        if self.shift_size == 0:
            return None
        if (h, w) == tuple(self.input_resolution):
            return self.attn_mask
        return shifted_window_mask(h, w, self.window_size, self.shift_size).to(like)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        h, w = hw
        b, _, c = x.shape
        ws, s = self.window_size, self.shift_size
        grid = x.view(b, h, w, c)
        if s > 0:
            grid = torch.roll(grid, shifts=(-s, -s), dims=(1, 2))
        windows = self.attn(window_partition(grid, ws), mask=self._mask_for(h, w, x))
        grid = window_reverse(windows, ws, h, w)
        if s > 0:
            grid = torch.roll(grid, shifts=(s, s), dims=(1, 2))
        x = x + self.norm1(grid.reshape(b, h * w, c))
        return x + self.norm2(self.mlp(x))


class PatchMerging(nn.Module):
    """2x2 neighbourhood -> 4C -> linear 2C -> LayerNorm (Swin-V2 order)."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        h, w = hw
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.norm(self.reduction(x.view(b, -1, 4 * c)))


class BasicLayer(nn.Module):
    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int,
                 window_size: int, mlp_ratio: float, downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, input_resolution, num_heads, window_size,
                                 shift_size=0 if i % 2 == 0 else window_size // 2, mlp_ratio=mlp_ratio)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, hw: tuple[int, int], features: list[torch.Tensor]):
        """Runs the blocks, appends their output (as a B x C x H x W map) to ``features``, then
        merges patches. Returns the tokens for the next stage and their grid size."""
        for block in self.blocks:
            x = block(x, hw)
        features.append(x.transpose(1, 2).reshape(x.shape[0], -1, *hw))
        if self.downsample is None:
            return x, hw
        return self.downsample(x, hw), (hw[0] // 2, hw[1] // 2)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class SwinTransformerV2(nn.Module):
    """Swin-V2 backbone (ITBdehaze's modified forward): returns feature maps, not class scores.

    ``norm`` and ``head`` (the ImageNet classifier) are part of the checkpoint but unused.
    """

    def __init__(self, img_size: int = 256, patch_size: int = 4, in_chans: int = 3, num_classes: int = 1000,
                 embed_dim: int = 128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size: int = 8,
                 mlp_ratio: float = 4.0):
        super().__init__()
        self.patch_size = patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        grid = img_size // patch_size
        self.layers = nn.ModuleList(
            BasicLayer(embed_dim * 2**i, (grid // 2**i, grid // 2**i), depths[i], num_heads[i], window_size,
                       mlp_ratio, downsample=i < len(depths) - 1)
            for i in range(len(depths))
        )
        num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(num_features)
        self.head = nn.Linear(num_features, num_classes)

    def forward(self, x: torch.Tensor):
        """-> (last stage as B x C x H/32 x W/32, [stage i blocks' output before its patch merging,
        as B x C_i x H_i x W_i, for every stage])."""
        hw = (x.shape[2] // self.patch_size, x.shape[3] // self.patch_size)
        x = self.patch_embed(x)
        features: list[torch.Tensor] = []
        for layer in self.layers:
            x, hw = layer(x, hw, features)
        return features[-1], features


# --- decoder (DW-GAN style) -------------------------------------------------------------------


def default_conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class CALayer(nn.Module):
    """Channel attention (FFA-Net): x * sigmoid(MLP(avgpool(x)))."""

    def __init__(self, channel: int):
        super().__init__()
        self.ca = nn.Sequential(
            nn.Conv2d(channel, channel // 8, 1), nn.ReLU(inplace=True), nn.Conv2d(channel // 8, channel, 1), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.ca(F.adaptive_avg_pool2d(x, 1))


class PALayer(nn.Module):
    """Pixel attention (FFA-Net): x * sigmoid(conv(x)) with one map for all channels."""

    def __init__(self, channel: int):
        super().__init__()
        self.pa = nn.Sequential(
            nn.Conv2d(channel, channel // 8, 1), nn.ReLU(inplace=True), nn.Conv2d(channel // 8, 1, 1), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.pa(x)


class DehazeBlock(nn.Module):
    """conv-ReLU (+x) -> conv -> channel attention -> pixel attention, plus x."""

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        self.conv1 = default_conv(dim, dim, kernel_size)
        self.conv2 = default_conv(dim, dim, kernel_size)
        self.calayer = CALayer(dim)
        self.palayer = PALayer(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = F.relu(self.conv1(x)) + x
        res = self.palayer(self.calayer(self.conv2(res)))
        return res + x


class Enhancer(nn.Module):
    """Multi-scale refinement: average-pool pyramid (32/16/8/4) projected to one map each,
    upsampled (nearest) and concatenated with the features, then conv + tanh."""

    pool_sizes = (32, 16, 8, 4)

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.refine1 = nn.Conv2d(in_channels, 20, 3, padding=1)
        self.refine2 = nn.Conv2d(20, 20, 3, padding=1)
        self.conv1010 = nn.Conv2d(20, 1, 1)
        self.conv1020 = nn.Conv2d(20, 1, 1)
        self.conv1030 = nn.Conv2d(20, 1, 1)
        self.conv1040 = nn.Conv2d(20, 1, 1)
        self.refine3 = nn.Conv2d(20 + 4, out_channels, 3, padding=1)
        #: in the released checkpoint, never used in forward
        self.batch1 = nn.InstanceNorm2d(100, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = F.leaky_relu(self.refine1(x), 0.2)
        feat = F.leaky_relu(self.refine2(feat), 0.2)
        size = feat.shape[-2:]
        convs = (self.conv1010, self.conv1020, self.conv1030, self.conv1040)
        pyramid = [
            F.interpolate(F.leaky_relu(conv(F.avg_pool2d(feat, k)), 0.2), size=size, mode="nearest")
            for conv, k in zip(convs, self.pool_sizes)
        ]
        return torch.tanh(self.refine3(torch.cat(pyramid + [feat], 1)))


class DehazeSwinT(nn.Module):
    """Swin-V2 encoder + PixelShuffle decoder with DehazeBlocks and skip features -> 15 channels."""

    def __init__(self, encoder: SwinTransformerV2):
        super().__init__()
        self.encoder = encoder
        self.mid_conv = DehazeBlock(1024)
        self.up_block = nn.PixelShuffle(2)
        self.attention1 = DehazeBlock(256)
        self.attention2 = DehazeBlock(192)
        self.attention3 = DehazeBlock(112)
        self.enhancer = Enhancer(15, 15)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (f4, f8, f16, _) = self.encoder(x)  # 1024 @ 1/32; skips 128 @ 1/4, 256 @ 1/8, 512 @ 1/16
        x = self.attention1(self.up_block(self.mid_conv(x)))  # 256 @ 1/16
        x = self.attention2(self.up_block(torch.cat([x, f16], 1)))  # 192 @ 1/8
        x = self.attention3(self.up_block(torch.cat([x, f8], 1)))  # 112 @ 1/4
        x = self.up_block(self.up_block(torch.cat([x, f4], 1)))  # 15 @ 1/1
        return self.enhancer(x)


# --- RCAN branch (Zhang et al., ECCV 2018), kept to its 32-channel features ---------------------


class RCANChannelAttention(nn.Module):
    def __init__(self, channel: int, reduction: int):
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, 1), nn.ReLU(inplace=True),
            nn.Conv2d(channel // reduction, channel, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(F.adaptive_avg_pool2d(x, 1))


class RCAB(nn.Module):
    """Residual channel attention block."""

    def __init__(self, n_feat: int, kernel_size: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(
            default_conv(n_feat, n_feat, kernel_size), nn.ReLU(True), default_conv(n_feat, n_feat, kernel_size),
            RCANChannelAttention(n_feat, reduction),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class ResidualGroup(nn.Module):
    def __init__(self, n_feat: int, kernel_size: int, reduction: int, n_resblocks: int):
        super().__init__()
        self.body = nn.Sequential(
            *[RCAB(n_feat, kernel_size, reduction) for _ in range(n_resblocks)],
            default_conv(n_feat, n_feat, kernel_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class RCAN(nn.Module):
    """RCAN trunk without mean shift or upsampler; forward returns the ``n_feats`` features
    (``tail`` is in the checkpoint but unused)."""

    def __init__(self, n_resgroups: int = 5, n_resblocks: int = 10, n_feats: int = 32, reduction: int = 8,
                 n_colors: int = 3, kernel_size: int = 3):
        super().__init__()
        self.head = nn.Sequential(default_conv(n_colors, n_feats, kernel_size))
        self.body = nn.Sequential(
            *[ResidualGroup(n_feats, kernel_size, reduction, n_resblocks) for _ in range(n_resgroups)],
            default_conv(n_feats, n_feats, kernel_size),
        )
        self.tail = nn.Sequential(default_conv(n_feats, n_colors, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # 100+ full-resolution 3x3 convolutions: channels-last runs them ~1.7x faster on CPU
        x = self.head(x.contiguous(memory_format=torch.channels_last))
        return self.body(x) + x


class fusion_refine(nn.Module):  # noqa: N801 - official class name (checkpoint layout)
    """ITBdehaze (Liu et al., CVPRW 2023, NTIRE 2023 HR non-homogeneous dehazing).

    Input RGB in [0, 1], H and W multiples of 256. Output: tanh of a 7x7 convolution over the
    Swin branch (15 ch) and the RCAN branch (32 ch), used directly as the [0, 1] image.
    """

    size_multiple = 256

    def __init__(self):
        super().__init__()
        self.feature_extract = DehazeSwinT(SwinTransformerV2())
        self.pre_trained_rcan = RCAN()
        self.tail1 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(15 + 32, 3, kernel_size=7), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] % self.size_multiple or x.shape[3] % self.size_multiple:
            raise ValueError(f"ITBdehaze needs H and W multiples of {self.size_multiple}, got {tuple(x.shape[2:])}")
        return self.tail1(torch.cat([self.feature_extract(x), self.pre_trained_rcan(x)], 1))
