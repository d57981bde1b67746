"""WPXNet: codebook-prior branch (RIDCP-style VQGAN + pyramid dilated neighborhood attention)
fused with an RCAN channel-attention branch.

Module and parameter names are the official ones (earthy-zinc/dehaze-system ``FusionRefine``),
so the released ``{"params": state_dict}`` checkpoints load with ``strict=True``. Tensors inside
the neighborhood-attention encoder are channels-last (B, H, W, C), as in NAT/DiNAT.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from algorithms.common.layers import GroupNorm
from algorithms.common.neighborhood_attention import NeighborhoodAttention2D

# --- VQGAN building blocks (FeMaSR / RIDCP) ----------------------------------------------------


class NormLayer(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = GroupNorm(32, channels, eps=1e-6, affine=True)

    def forward(self, x):
        return self.norm(x)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv3x3 twice, plus identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Sequential(
            NormLayer(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, 1, 1),
            NormLayer(channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, 1, 1),
        )

    def forward(self, x):
        return self.conv(x) + x


class VQEncoder(nn.Module):
    """HQP encoder: conv4x4 then two (stride-2 conv, 2 ResBlocks) stages: 1/4 resolution, 256 ch."""

    def __init__(self, in_channels: int = 3, channels: tuple[int, ...] = (64, 128, 256)):
        super().__init__()
        self.in_conv = nn.Conv2d(in_channels, channels[0], 4, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), ResBlock(cout), ResBlock(cout))
            for cin, cout in zip(channels[:-1], channels[1:])
        )

    def forward(self, x):
        x = self.in_conv(x)
        for block in self.blocks:
            x = block(x)
        return x


class DecoderBlock(nn.Module):
    """Nearest x2 upsampling, conv3x3, 2 ResBlocks (the frozen VQGAN decoder)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Upsample(scale_factor=2), nn.Conv2d(in_channels, out_channels, 3, 1, 1),
            ResBlock(out_channels), ResBlock(out_channels),
        )

    def forward(self, x):
        return self.block(x)


class VectorQuantizer(nn.Module):
    """Nearest codebook entry by L2 distance (no CHM re-weighting: use_weight=False)."""

    def __init__(self, num_embeddings: int = 1024, dim: int = 512):
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / num_embeddings, 1.0 / num_embeddings)  # VQ-VAE init

    def forward(self, z: torch.Tensor):
        """-> (straight-through codes, indices [B,1,H,W], codebook loss, commitment loss).

        The codes are ``z + (e - z).detach()`` as in VQ-VAE (van den Oord et al., 2017): the
        value is the codebook row, the gradient flows to ``z``. The two losses are the VQ-VAE
        terms ``||sg[z] - e||^2`` (moves the codebook) and ``||z - sg[e]||^2`` (commitment)."""
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        codebook = self.embedding.weight
        with torch.no_grad():
            dist = (flat**2).sum(1, keepdim=True) + (codebook**2).sum(1) - 2 * flat @ codebook.t()
            indices = dist.argmin(dim=1)
        e = codebook[indices].view(b, h, w, c).permute(0, 3, 1, 2)
        codebook_loss = F.mse_loss(e, z.detach())
        commitment = F.mse_loss(z, e.detach())
        return z + (e - z).detach(), indices.view(b, 1, h, w), codebook_loss, commitment


class CombineQuantBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, 1, 1)

    def forward(self, x):
        return self.conv(x)


# --- FFA-Net / DCPDN blocks ---------------------------------------------------------------------


class CALayer(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.ca = nn.Sequential(
            nn.Conv2d(channels, channels // 8, 1), nn.ReLU(inplace=True),
            nn.Conv2d(channels // 8, channels, 1), nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.ca(F.adaptive_avg_pool2d(x, 1))


class PALayer(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.pa = nn.Sequential(
            nn.Conv2d(channels, channels // 8, 1), nn.ReLU(inplace=True), nn.Conv2d(channels // 8, 1, 1), nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.pa(x)


class DehazeBlock(nn.Module):
    """FFA-Net block (1x1 convs here) with channel and pixel attention."""

    def __init__(self, channels: int, kernel_size: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.calayer = CALayer(channels)
        self.palayer = PALayer(channels)

    def forward(self, x):
        res = F.relu(self.conv1(x)) + x
        res = self.palayer(self.calayer(self.conv2(res)))
        return res + x


class Enhancer(nn.Module):
    """DCPDN-style pyramid-pooling refinement (pools 32/16/8/4, nearest upsampling, tanh)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3):
        super().__init__()
        self.refine1 = nn.Conv2d(in_channels, 20, 3, 1, 1)
        self.refine2 = nn.Conv2d(20, 20, 3, 1, 1)
        self.conv1010 = nn.Conv2d(20, 1, 1)
        self.conv1020 = nn.Conv2d(20, 1, 1)
        self.conv1030 = nn.Conv2d(20, 1, 1)
        self.conv1040 = nn.Conv2d(20, 1, 1)
        self.refine3 = nn.Conv2d(20 + 4, out_channels, 3, 1, 1)
        self.batch1 = nn.InstanceNorm2d(100, affine=True)  # declared, unused (as upstream)

    def forward(self, x):
        x = F.leaky_relu(self.refine1(x), 0.2)
        x = F.leaky_relu(self.refine2(x), 0.2)
        size = x.shape[2:]
        pooled = [
            F.interpolate(F.leaky_relu(conv(F.avg_pool2d(x, k)), 0.2), size=size, mode="nearest")
            for conv, k in ((self.conv1010, 32), (self.conv1020, 16), (self.conv1030, 8), (self.conv1040, 4))
        ]
        return torch.tanh(self.refine3(torch.cat([*pooled, x], 1)))


# --- deformable alignment (RIDCP's normalized feature alignment) --------------------------------


def modulated_deform_conv3x3(x, offset, mask, weight, bias, groups: int, rows: int = 64):
    """BasicSR/torchvision modulated deformable 3x3 conv (stride 1, padding 1), as bilinear
    ``grid_sample`` (zeros outside, per-corner, like DCNv2's im2col) + one GEMM per row chunk.

    torchvision's CPU ``deform_conv2d`` builds its columns on one thread; this runs 2-3x faster
    on CPU. Sampling positions go through grid_sample's normalised coordinates, so they are
    rounded differently (float32 ulp of the pixel coordinate): results differ from torchvision by
    about as much as torchvision differs from float64."""
    b, c, h, w = x.shape
    cout, _, kh, kw = weight.shape
    taps, cg = kh * kw, c // groups
    xg = x.reshape(b * groups, cg, h, w)
    # offset channels per group: [tap][(dy, dx)]; mask channels per group: [tap]
    off = offset.view(b, groups, taps, 2, h, w)
    msk = mask.view(b, groups, 1, taps, h, w)
    ky = (torch.arange(kh, dtype=x.dtype, device=x.device) - kh // 2).repeat_interleave(kw).view(taps, 1, 1)
    kx = (torch.arange(kw, dtype=x.dtype, device=x.device) - kw // 2).repeat(kh).view(taps, 1, 1)
    wmat = weight.reshape(cout, c * taps)  # columns ordered (c_in, tap), c_in = group * cg + c
    sy, sx = 2.0 / max(h - 1, 1), 2.0 / max(w - 1, 1)
    xs = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, -1) + kx
    out = x.new_empty(b, cout, h, w)
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        ys = torch.arange(r0, r1, dtype=x.dtype, device=x.device).view(1, -1, 1) + ky
        grid = torch.stack(((xs + off[:, :, :, 1, r0:r1]) * sx - 1, (ys + off[:, :, :, 0, r0:r1]) * sy - 1), -1)
        cols = F.grid_sample(xg, grid.view(b * groups, taps * (r1 - r0), w, 2), mode="bilinear",
                             padding_mode="zeros", align_corners=True)
        cols = cols.view(b, groups, cg, taps, r1 - r0, w) * msk[:, :, :, :, r0:r1]
        out[:, :, r0:r1] = (wmat @ cols.reshape(b, c * taps, (r1 - r0) * w)).view(b, cout, r1 - r0, w)
    return out + bias.view(1, -1, 1, 1)


class DCNv2Pack(nn.Module):
    """Modulated deformable conv whose offsets/masks come from a separate feature (BasicSR)."""

    def __init__(self, channels: int, kernel_size: int = 3, padding: int = 1, deformable_groups: int = 4):
        super().__init__()
        self.padding = padding
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.conv_offset = nn.Conv2d(channels, deformable_groups * 3 * kernel_size**2, kernel_size, 1, padding)
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x, feat):
        o1, o2, mask = torch.chunk(self.conv_offset(feat), 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        if x.device.type == "cpu" and self.weight.shape[2:] == (3, 3) and self.padding == 1:
            return modulated_deform_conv3x3(x, offset, torch.sigmoid(mask), self.weight, self.bias, self.deformable_groups)
        return deform_conv2d(x, offset, self.weight, self.bias, padding=self.padding, mask=torch.sigmoid(mask))


class WarpBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.offset = nn.Conv2d(channels * 2, channels, 3, 1, 1)
        self.dcn = DCNv2Pack(channels, 3, padding=1, deformable_groups=4)

    def forward(self, x_vq, x_residual):
        return self.dcn(x_vq, self.offset(torch.cat([x_vq, x_residual], dim=1)))


class ResidualDecoder(nn.Module):
    """Decoder of the hazy-image features; at each scale the VQGAN decoder feature is aligned to
    it (WarpBlock) and added after rescaling by the ratio of global means."""

    def __init__(self, channels: tuple[int, ...] = (256, 128, 64)):
        super().__init__()
        self.upsampler = nn.ModuleList(
            nn.Sequential(
                nn.Upsample(scale_factor=2), nn.Conv2d(cin, cout, 3, 1, 1),
                ResBlock(cout), ResBlock(cout), DehazeBlock(cout, 1),
            )
            for cin, cout in zip(channels[:-1], channels[1:])
        )
        self.warp = nn.ModuleList(WarpBlock(c) for c in channels[1:])

    def forward(self, x, vq_features):
        for up, warp, x_code in zip(self.upsampler, self.warp, vq_features):
            x = up(x)
            x_vq = warp(x_code, x)
            x = x + x_vq * (x.mean() / x_vq.mean())
        return x


# --- pyramid dilated neighborhood attention encoder (NAT/DiNAT) ---------------------------------


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class NATLayer(nn.Module):
    """Pre-norm transformer layer with (dilated) neighborhood attention and layer scale."""

    def __init__(self, dim, num_heads, kernel_size, dilation, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = NeighborhoodAttention2D(dim, num_heads, kernel_size, dilation)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.gamma1 = nn.Parameter(torch.ones(dim))
        self.gamma2 = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x = x + self.gamma1 * self.attn(self.norm1(x))
        return x + self.gamma2 * self.mlp(self.norm2(x))


class ConvDownsampler(nn.Module):
    """Stride-2 conv3x3 doubling the channels, then LayerNorm (channels-last in and out)."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Conv2d(dim, 2 * dim, 3, stride=2, padding=1, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x):
        return self.norm(self.reduction(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class NATLevel(nn.Module):
    def __init__(self, dim, depth, num_heads, kernel_size, dilations, mlp_ratio, downsample):
        super().__init__()
        self.blocks = nn.ModuleList(
            NATLayer(dim, num_heads, kernel_size, dilations[i], mlp_ratio) for i in range(depth)
        )
        self.downsample = ConvDownsampler(dim) if downsample else None

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class ConvBN(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return self.bn(self.conv(x))


class PyramidNAT(nn.Module):
    """DiNAT (Hassani & Shi, arXiv:2209.15001) levels on the 1/4-resolution VQ feature, without
    patch embedding; levels 2 and 3 end in a stride-2 downsampler, so the four LayerNorm'ed level
    outputs are 256@R, 256@R, 512@R/2 and 1024@R/4. A pyramid fusion brings them back to 256@R
    with 1x1 conv + BN (no activation) and bilinear upsampling (``align_corners=True``)::

        top_down = conv_512_256(x2 + up(conv_1024_512(x3)))        256 @ R/2
        out = conv_1024_256(cat[x0, x1 + up(top_down), up(conv_512_256(x2)), up(conv_1024_256(x3))])

    ``conv_512_256`` and ``conv_1024_256`` are each applied twice (shared weights). No source of
    this module was available: the fusion was identified from the key/shape list and the
    conformance vector (every codebook index equal, float64 output within 4e-7 of the official
    float32 one; see README, "Conformance").
    """

    def __init__(
        self,
        embed_dim=(256, 256, 256, 512),
        output_dim=(256, 256, 512, 1024),
        depths=(3, 4, 18, 5),
        num_heads=(4, 8, 16, 32),
        kernel_size=7,
        dilations=((1, 16, 1), (1, 4, 1, 8), (1, 2, 1, 3, 1, 4) * 3, (1, 2, 1, 2, 1)),
        mlp_ratio=2.0,
    ):
        super().__init__()
        self.levels = nn.ModuleList(
            NATLevel(embed_dim[i], depths[i], num_heads[i], kernel_size, dilations[i], mlp_ratio,
                     downsample=output_dim[i] != embed_dim[i])
            for i in range(len(depths))
        )
        for i, dim in enumerate(output_dim):
            self.add_module(f"norm{i}", nn.LayerNorm(dim))
        self.conv_512_256 = ConvBN(512, 256)
        self.conv_1024_512 = ConvBN(1024, 512)
        self.conv_1024_256 = ConvBN(1024, 256)

    def level_outputs(self, x):
        """[B, C, H, W] -> the LayerNorm'ed output of each level, [B, C_i, H_i, W_i]."""
        x = x.permute(0, 2, 3, 1).contiguous()
        outs = []
        for i, level in enumerate(self.levels):
            x = level(x)
            outs.append(getattr(self, f"norm{i}")(x).permute(0, 3, 1, 2))
        return outs

    def fuse(self, outs):
        x0, x1, x2, x3 = outs

        def up(t, like):
            return F.interpolate(t, size=like.shape[2:], mode="bilinear", align_corners=True)

        top_down = self.conv_512_256(x2 + up(self.conv_1024_512(x3), x2))  # 256 @ R/2
        lateral2 = self.conv_512_256(x2)  # 256 @ R/2
        lateral3 = self.conv_1024_256(x3)  # 256 @ R/4
        return self.conv_1024_256(torch.cat([x0, x1 + up(top_down, x1), up(lateral2, x0), up(lateral3, x0)], 1))

    def forward(self, x):
        return self.fuse(self.level_outputs(x))


# --- RCAN branch ---------------------------------------------------------------------------------


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1), nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1), nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.conv_du(F.adaptive_avg_pool2d(x, 1))


class RCAB(nn.Module):
    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1), ChannelAttention(channels, reduction),
        )

    def forward(self, x):
        return self.body(x) + x


class ResidualGroup(nn.Module):
    def __init__(self, channels: int, reduction: int, n_blocks: int):
        super().__init__()
        self.body = nn.Sequential(
            *(RCAB(channels, reduction) for _ in range(n_blocks)), nn.Conv2d(channels, channels, 3, 1, 1)
        )

    def forward(self, x):
        return self.body(x) + x


class RCAN(nn.Module):
    """Residual channel attention network (Zhang et al., ECCV 2018), reduced and without the
    upsampler: returns the 32-channel body feature (``tail`` exists in the checkpoint, unused)."""

    def __init__(self, channels: int = 32, n_groups: int = 4, n_blocks: int = 10, reduction: int = 8):
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(3, channels, 3, 1, 1))
        self.body = nn.Sequential(
            *(ResidualGroup(channels, reduction, n_blocks) for _ in range(n_groups)),
            nn.Conv2d(channels, channels, 3, 1, 1),
        )
        self.tail = nn.Sequential(nn.Conv2d(channels, 3, 3, 1, 1))

    def forward(self, x):
        # 80+ full-resolution 3x3 convolutions: channels-last runs them ~1.4x faster on CPU
        x = self.head(x.contiguous(memory_format=torch.channels_last))
        return self.body(x) + x


# --- the codebook-prior branch and the whole network ---------------------------------------------


def mirror_pad_past_multiple(x: torch.Tensor, multiple: int = 32) -> torch.Tensor:
    """RIDCP's test-time padding: to the next multiple of ``multiple`` strictly above each side,
    filled by concatenating the flipped image (symmetric padding, edge pixel repeated)."""
    h, w = x.shape[2:]
    ph, pw = (h // multiple + 1) * multiple, (w // multiple + 1) * multiple
    while x.shape[2] < ph:
        x = torch.cat([x, torch.flip(x, [2])], 2)
    while x.shape[3] < pw:
        x = torch.cat([x, torch.flip(x, [3])], 3)
    return x[:, :, :ph, :pw]


#: the parts of ``feature_extract`` that form the high-quality codebook prior: pre-trained on
#: clear images (:class:`CodebookPrior`), frozen while the dehazing network trains (RIDCP stage 2)
PRIOR_MODULES = ("quantizer", "after_quant", "vq_decoder_group", "out_conv")


class RIDCPNew(nn.Module):
    """RIDCP (Wu et al., "RIDCP: Revitalizing Real Image Dehazing via High-Quality Codebook
    Priors", CVPR 2023) with a PyramidNAT encoder and DehazeBlocks in the residual decoder;
    codebook matched at 1/4 resolution. ``out_conv`` (the pure-VQ image, discarded by
    ``test()``) and ``enhancer`` are in the checkpoint but on no path of the official
    ``test()``: the conformance vector reproduces without them."""

    def __init__(self, codebook_emb_num: int = 1024, codebook_emb_dim: int = 512, encoder_depths=(3, 4, 18, 5),
                 encoder_dilations=None):
        super().__init__()
        self.vq_encoder = VQEncoder(3, (64, 128, 256))
        nat = {"depths": encoder_depths}
        if encoder_dilations is not None:
            nat["dilations"] = encoder_dilations
        self.ridcp_encoder = PyramidNAT(**nat)
        self.ridcp_decoder = ResidualDecoder((256, 128, 64))
        self.vq_decoder_group = nn.ModuleList([DecoderBlock(256, 128), DecoderBlock(128, 64)])
        self.out_conv = nn.Conv2d(64, 3, 3, 1, 1)
        self.enhancer = Enhancer(3, 3)
        self.residual_conv = nn.Conv2d(64, 3, 3, 1, 1)
        self.quantizer = VectorQuantizer(codebook_emb_num, codebook_emb_dim)
        self.before_quant = nn.Conv2d(256, codebook_emb_dim, 1)
        self.after_quant = CombineQuantBlock(codebook_emb_dim, 256)

    def encode_and_decode(self, x):
        """Padded input -> (residual-branch image, codebook indices, commitment loss)."""
        # channels-last: faster convolutions, and the NAT tokens (B, H, W, C) become free views
        enc_feat = self.ridcp_encoder(self.vq_encoder(x.contiguous(memory_format=torch.channels_last)))
        z_q, indices, _, commitment = self.quantizer(self.before_quant(enc_feat))
        code = self.after_quant(z_q)
        vq_features = []
        for block in self.vq_decoder_group:
            code = block(code)
            vq_features.append(code)
        residual = self.residual_conv(self.ridcp_decoder(enc_feat, vq_features))
        return residual, indices, commitment

    def forward(self, x):
        """RIDCP's ``test()``: mirror-pad past a multiple of 32, run, crop.
        -> (residual image, codebook indices, commitment loss)."""
        h, w = x.shape[2:]
        residual, indices, commitment = self.encode_and_decode(mirror_pad_past_multiple(x, 32))
        return residual[:, :, :h, :w], indices, commitment


class FusionRefine(nn.Module):
    """WPXNet (earthy-zinc/dehaze-system ``FusionRefine``): codebook-prior branch + RCAN branch,
    fused by a 7x7 conv and Tanh. Returns (image, codebook indices) like the official ``test()``.

    The defaults are the official configuration; ``encoder_depths``, ``encoder_dilations``,
    ``rcan_groups`` and ``rcan_blocks`` make smaller networks of the same structure (CPU tests,
    quick experiments). Training (:meth:`training_forward`) keeps the codebook prior frozen
    (``PRIOR_MODULES``: pre-train it with :class:`CodebookPrior`, then ``--init-part``)."""

    def __init__(self, encoder_depths=(3, 4, 18, 5), encoder_dilations=None, rcan_groups: int = 4,
                 rcan_blocks: int = 10):
        super().__init__()
        self.feature_extract = RIDCPNew(encoder_depths=encoder_depths, encoder_dilations=encoder_dilations)
        self.pre_trained_rcan = RCAN(n_groups=rcan_groups, n_blocks=rcan_blocks)
        self.tail = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(35, 3, 7), nn.Tanh())
        for name in PRIOR_MODULES:
            getattr(self.feature_extract, name).requires_grad_(False)

    def forward_intermediates(self, x):
        """Everything the conformance vector records (image, indices, RIDCP residual, tail
        logits), plus the commitment loss of the codebook matching."""
        residual, indices, commitment = self.feature_extract(x)
        fused = torch.cat([residual, self.pre_trained_rcan(x)], 1)
        logits = self.tail[1](self.tail[0](fused))
        return {"output": torch.tanh(logits), "output_1": indices, "output_ridcp_residual": residual,
                "output_tail_logits": logits, "commitment": commitment}

    def forward(self, x):
        out = self.forward_intermediates(x)
        return out["output"], out["output_1"]

    def training_forward(self, x):
        """Training path (algorithms/training): the image plus the commitment term that keeps
        the encoder's features close to the frozen codebook (straight-through gradients)."""
        out = self.forward_intermediates(x)
        return {"image": out["output"], "commitment": out["commitment"]}

    def training_losses(self, outputs, target, commitment_weight: float = 0.25):
        return {"commitment": commitment_weight * outputs["commitment"]}


class CodebookPrior(nn.Module):
    """Stage 1 of RIDCP/FeMaSR training: the high-quality prior as a VQ autoencoder of clear
    images (VQ encoder -> 1x1 -> nearest of 1024 codes -> after_quant -> VQGAN decoder ->
    out_conv), trained by reconstruction (``dehaze train --arch wpxnet-hqp --reconstruct``).

    Its parameters carry WPXNet's names (under ``feature_extract``), so the saved weights are a
    subset of WPXNet's and go into stage 2 with ``--init-part``; the VQ encoder then becomes
    the initialisation of the hazy-image encoder, as in RIDCP."""

    def __init__(self, codebook_emb_num: int = 1024, codebook_emb_dim: int = 512):
        super().__init__()
        self.feature_extract = nn.Module()
        fe = self.feature_extract
        fe.vq_encoder = VQEncoder(3, (64, 128, 256))
        fe.before_quant = nn.Conv2d(256, codebook_emb_dim, 1)
        fe.quantizer = VectorQuantizer(codebook_emb_num, codebook_emb_dim)
        fe.after_quant = CombineQuantBlock(codebook_emb_dim, 256)
        fe.vq_decoder_group = nn.ModuleList([DecoderBlock(256, 128), DecoderBlock(128, 64)])
        fe.out_conv = nn.Conv2d(64, 3, 3, 1, 1)

    def _run(self, x):
        fe = self.feature_extract
        z_q, indices, codebook_loss, commitment = fe.quantizer(fe.before_quant(fe.vq_encoder(x)))
        code = fe.after_quant(z_q)
        for block in fe.vq_decoder_group:
            code = block(code)
        return {"image": fe.out_conv(code), "indices": indices, "codebook": codebook_loss, "commitment": commitment}

    def forward(self, x):
        """[0,1] clear image (H, W multiples of 4) -> its reconstruction through the codebook."""
        return self._run(x)["image"]

    def training_forward(self, x):
        return self._run(x)

    def training_losses(self, outputs, target, beta: float = 0.25):
        return {"codebook": outputs["codebook"], "commitment": beta * outputs["commitment"]}
