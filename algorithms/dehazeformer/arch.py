"""DehazeFormer: a Swin-style U-Net with rescale-aware layer norm and a physical output layer.

Song, He, Qian, Du, "Vision Transformers for Single Image Dehazing", IEEE TIP 2023
(arXiv:2204.03883). Parameter names follow the official release so its checkpoints load strict.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class RLN(nn.Module):
    """Rescale-aware layer norm: normalises over C, H, W and also returns the affine pair
    (``meta1(std)``, ``meta2(mean)``) that restores the statistics after the attention."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.meta1 = nn.Conv2d(1, dim, 1)
        self.meta2 = nn.Conv2d(1, dim, 1)

    def forward(self, x: torch.Tensor):
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = torch.sqrt((x - mean).pow(2).mean(dim=(1, 2, 3), keepdim=True) + self.eps)
        normalized = (x - mean) / std * self.weight + self.bias
        return normalized, self.meta1(std), self.meta2(mean)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden_dim, 1), nn.ReLU(True), nn.Conv2d(hidden_dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


def log_relative_positions(window_size: int) -> torch.Tensor:
    """(ws*ws, ws*ws, 2) signed-log offsets between the positions of one window."""
    ys, xs = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # 2, N
    offsets = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).float()
    return torch.sign(offsets) * torch.log1p(offsets.abs())


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


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window with an MLP-generated relative position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.register_buffer("relative_positions", log_relative_positions(window_size))
        self.meta = nn.Sequential(nn.Linear(2, 256), nn.ReLU(True), nn.Linear(256, num_heads))
        self._cached_bias: tuple[tuple, torch.Tensor] | None = None
        self._register_load_state_dict_pre_hook(lambda *args, **kwargs: self._forget_bias())

    def _forget_bias(self) -> None:
        self._cached_bias = None

    def train(self, mode: bool = True):
        self._forget_bias()
        return super().train(mode)

    def position_bias(self) -> torch.Tensor:
        """heads x n x n bias from the meta MLP. It depends on weights only, so without autograd
        it is computed once and reused until a weight changes (storage, dtype, device or in-place
        version; load_state_dict and train()/eval() also drop it): at DehazeFormer-T's 64x64
        vector the MLP was ~25% of the forward, its narrow 256 -> heads GEMM being slow on CPU."""
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return self.meta(self.relative_positions).permute(2, 0, 1)
        tensors = (self.relative_positions, *self.meta.parameters())
        key = tuple((t.data_ptr(), t.dtype, t.device, -1 if t.is_inference() else t._version) for t in tensors)
        if self._cached_bias is None or self._cached_bias[0] != key:
            self._cached_bias = (key, self.meta(self.relative_positions).permute(2, 0, 1))
        return self._cached_bias[1]

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        b, n, _ = qkv.shape
        qkv = qkv.reshape(b, n, 3, self.num_heads, self.dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        bias = self.position_bias()
        # softmax(q k^T + bias) v in one fused call (q is pre-scaled as in the official code, so
        # scale=1): the windows x heads x n x n logits are never materialised, which bounds the
        # memory of large tiles (about 1 GB less at a 1024 x 1024 tile of DehazeFormer-B)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0).to(q.dtype), scale=1.0)
        return out.transpose(1, 2).reshape(b, n, self.dim)


class Attention(nn.Module):
    """Token mixer of one block: (shifted) window attention and/or a convolution on V."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int, use_attn: bool, conv_type: str):
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.use_attn = use_attn
        self.conv_type = conv_type
        if conv_type == "Conv":
            self.conv = nn.Sequential(
                nn.Conv2d(dim, dim, 3, padding=1, padding_mode="reflect"),
                nn.ReLU(True),
                nn.Conv2d(dim, dim, 3, padding=1, padding_mode="reflect"),
            )
        elif conv_type == "DWConv":
            self.conv = nn.Conv2d(dim, dim, 5, padding=2, groups=dim, padding_mode="reflect")
        else:
            raise ValueError(f"unknown conv_type {conv_type!r}")
        if conv_type == "DWConv" or use_attn:
            self.V = nn.Conv2d(dim, dim, 1)
            self.proj = nn.Conv2d(dim, dim, 1)
        if use_attn:
            self.QK = nn.Conv2d(dim, dim * 2, 1)
            self.attn = WindowAttention(dim, window_size, num_heads)

    def _pad_to_windows(self, x: torch.Tensor) -> torch.Tensor:
        """Reflect-pad to whole windows; a shifted block puts ``shift_size`` rows/cols on top/left."""
        ws, s = self.window_size, self.shift_size
        h, w = x.shape[-2:]
        pad_h, pad_w = (ws - h % ws) % ws, (ws - w % ws) % ws
        if s > 0:
            return F.pad(x, (s, (ws - s + pad_w) % ws, s, (ws - s + pad_h) % ws), mode="reflect")
        return F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")

    def _window_attention(self, qkv: torch.Tensor) -> torch.Tensor:
        h, w = qkv.shape[-2:]
        padded = self._pad_to_windows(qkv)
        hp, wp = padded.shape[-2:]
        windows = window_partition(padded.permute(0, 2, 3, 1), self.window_size)
        out = window_reverse(self.attn(windows), self.window_size, hp, wp)
        s = self.shift_size
        return out[:, s : s + h, s : s + w, :].permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_attn:
            v = self.V(x)
            attn_out = self._window_attention(torch.cat([self.QK(x), v], dim=1))
            return self.proj(self.conv(v) + attn_out)
        if self.conv_type == "Conv":
            return self.conv(x)
        return self.proj(self.conv(self.V(x)))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, window_size: int, shift_size: int,
                 use_attn: bool, conv_type: str):
        super().__init__()
        self.use_attn = use_attn
        self.norm1 = RLN(dim) if use_attn else nn.Identity()
        self.attn = Attention(dim, num_heads, window_size, shift_size, use_attn, conv_type)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_attn:
            normed, rescale, rebias = self.norm1(x)
            x = x + (self.attn(normed) * rescale + rebias)
        else:
            x = x + self.attn(x)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """``depth`` blocks; the last ``attn_ratio * depth`` use attention, every odd block is shifted."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float, window_size: int,
                 attn_ratio: float, conv_type: str):
        super().__init__()
        attn_depth = attn_ratio * depth
        self.blocks = nn.ModuleList(
            TransformerBlock(
                dim, num_heads, mlp_ratio, window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2,
                use_attn=i >= depth - attn_depth,
                conv_type=conv_type,
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class PatchEmbed(nn.Module):
    """Strided convolution (reflect padding): ``patch_size`` x downsampling."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, kernel_size: int | None = None):
        super().__init__()
        kernel_size = kernel_size or patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size, stride=patch_size,
                              padding=(kernel_size - patch_size + 1) // 2, padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class PatchUnEmbed(nn.Module):
    """Convolution + pixel shuffle: ``patch_size`` x upsampling."""

    def __init__(self, patch_size: int, out_chans: int, embed_dim: int, kernel_size: int = 1):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans * patch_size**2, kernel_size, padding=kernel_size // 2,
                      padding_mode="reflect"),
            nn.PixelShuffle(patch_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class SKFusion(nn.Module):
    """Selective-kernel fusion: per-channel softmax weights over the summed branches."""

    def __init__(self, dim: int, height: int = 2, reduction: int = 8):
        super().__init__()
        self.height = height
        hidden = max(int(dim / reduction), 4)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1, bias=False), nn.ReLU(True),
                                 nn.Conv2d(hidden, dim * height, 1, bias=False))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        b, c, h, w = feats[0].shape
        stacked = torch.cat(feats, dim=1).view(b, self.height, c, h, w)
        weights = self.mlp(self.avg_pool(stacked.sum(dim=1))).view(b, self.height, c, 1, 1).softmax(dim=1)
        return (stacked * weights).sum(dim=1)


class DehazeFormer(nn.Module):
    """DehazeFormer (Song et al., IEEE TIP 2023, arXiv:2204.03883).

    Input RGB in [-1, 1], any size (reflect-padded inside to a multiple of 4); output
    ``K * x - B + x`` in about [-1, 1], same size.
    """

    patch_size = 4

    def __init__(
        self,
        in_chans: int = 3,
        out_chans: int = 4,
        window_size: int = 8,
        embed_dims=(24, 48, 96, 48, 24),
        mlp_ratios=(2.0, 4.0, 4.0, 2.0, 2.0),
        depths=(16, 16, 16, 8, 8),
        num_heads=(2, 4, 6, 1, 1),
        attn_ratio=(1 / 4, 1 / 2, 3 / 4, 0, 0),
        conv_type=("DWConv",) * 5,
    ):
        super().__init__()
        if embed_dims[1] != embed_dims[3] or embed_dims[0] != embed_dims[4]:
            raise ValueError("decoder widths must mirror the encoder widths")

        def layer(i: int) -> BasicLayer:
            return BasicLayer(embed_dims[i], depths[i], num_heads[i], mlp_ratios[i], window_size,
                              attn_ratio[i], conv_type[i])

        self.patch_embed = PatchEmbed(1, in_chans, embed_dims[0], kernel_size=3)
        self.layer1 = layer(0)
        self.patch_merge1 = PatchEmbed(2, embed_dims[0], embed_dims[1])
        self.skip1 = nn.Conv2d(embed_dims[0], embed_dims[0], 1)
        self.layer2 = layer(1)
        self.patch_merge2 = PatchEmbed(2, embed_dims[1], embed_dims[2])
        self.skip2 = nn.Conv2d(embed_dims[1], embed_dims[1], 1)
        self.layer3 = layer(2)
        self.patch_split1 = PatchUnEmbed(2, embed_dims[3], embed_dims[2])
        self.fusion1 = SKFusion(embed_dims[3])
        self.layer4 = layer(3)
        self.patch_split2 = PatchUnEmbed(2, embed_dims[4], embed_dims[3])
        self.fusion2 = SKFusion(embed_dims[4])
        self.layer5 = layer(4)
        self.patch_unembed = PatchUnEmbed(1, out_chans, embed_dims[4], kernel_size=3)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(self.patch_embed(x))
        skip1 = x
        x = self.layer2(self.patch_merge1(x))
        skip2 = x
        x = self.patch_split1(self.layer3(self.patch_merge2(x)))
        x = self.fusion1([x, self.skip2(skip2)]) + x
        x = self.patch_split2(self.layer4(x))
        x = self.fusion2([x, self.skip1(skip1)]) + x
        return self.patch_unembed(self.layer5(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        p = self.patch_size
        x = F.pad(x, (0, (p - w % p) % p, 0, (p - h % p) % p), mode="reflect")
        k, b = torch.split(self.forward_features(x), (1, 3), dim=1)
        return (k * x - b + x)[:, :, :h, :w]


#: official constructor arguments of the released sizes (t/s/b/m/l have conformance vectors;
#: d and w are the deeper/wider sizes the legacy system shipped)
CONFIGS: dict[str, dict] = {
    "t": dict(embed_dims=[24, 48, 96, 48, 24], mlp_ratios=[2.0, 4.0, 4.0, 2.0, 2.0], depths=[4, 4, 4, 2, 2],
              num_heads=[2, 4, 6, 1, 1], attn_ratio=[0, 1 / 2, 1, 0, 0], conv_type=["DWConv"] * 5),
    "s": dict(embed_dims=[24, 48, 96, 48, 24], mlp_ratios=[2.0, 4.0, 4.0, 2.0, 2.0], depths=[8, 8, 8, 4, 4],
              num_heads=[2, 4, 6, 1, 1], attn_ratio=[1 / 4, 1 / 2, 3 / 4, 0, 0], conv_type=["DWConv"] * 5),
    "b": dict(embed_dims=[24, 48, 96, 48, 24], mlp_ratios=[2.0, 4.0, 4.0, 2.0, 2.0], depths=[16, 16, 16, 8, 8],
              num_heads=[2, 4, 6, 1, 1], attn_ratio=[1 / 4, 1 / 2, 3 / 4, 0, 0], conv_type=["DWConv"] * 5),
    "d": dict(embed_dims=[24, 48, 96, 48, 24], mlp_ratios=[2.0, 4.0, 4.0, 2.0, 2.0], depths=[32, 32, 32, 16, 16],
              num_heads=[2, 4, 6, 1, 1], attn_ratio=[1 / 4, 1 / 2, 3 / 4, 0, 0], conv_type=["DWConv"] * 5),
    "w": dict(embed_dims=[48, 96, 192, 96, 48], mlp_ratios=[2.0, 4.0, 4.0, 2.0, 2.0], depths=[16, 16, 16, 8, 8],
              num_heads=[2, 4, 6, 1, 1], attn_ratio=[1 / 4, 1 / 2, 3 / 4, 0, 0], conv_type=["DWConv"] * 5),
    "m": dict(embed_dims=[24, 48, 96, 48, 24], mlp_ratios=[2.0, 4.0, 4.0, 2.0, 2.0], depths=[12, 12, 12, 6, 6],
              num_heads=[2, 4, 6, 1, 1], attn_ratio=[1 / 4, 1 / 2, 3 / 4, 0, 0], conv_type=["Conv"] * 5),
    "l": dict(embed_dims=[48, 96, 192, 96, 48], mlp_ratios=[2.0, 4.0, 4.0, 2.0, 2.0], depths=[16, 16, 16, 12, 12],
              num_heads=[2, 4, 6, 1, 1], attn_ratio=[1 / 4, 1 / 2, 3 / 4, 0, 0], conv_type=["Conv"] * 5),
}
