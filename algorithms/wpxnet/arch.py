"""WPXNet: codebook-prior branch (RIDCP-style VQGAN + pyramid dilated neighborhood attention)
fused with an RCAN channel-attention branch.

Module and parameter names are the official ones (earthy-zinc/dehaze-system ``FusionRefine``),
so the released ``{"params": state_dict}`` checkpoints load with ``strict=True``. Tensors inside
the neighborhood-attention encoder are channels-last (B, H, W, C), as in NAT/DiNAT.

The building blocks WPXNet shares with its ancestors come from their implementations here: the
VQGAN encoder/decoder blocks and the deformable feature alignment from RIDCP
(``algorithms.ridcp.arch``), and the FFA-style DehazeBlock, the pyramid-pooling Enhancer and the
RCAN branch from ITBdehaze (``algorithms.itbdehaze.arch``, the same author's earlier network).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from algorithms.common.neighborhood_attention import NeighborhoodAttention2D
from algorithms.common.padding import mirror_pad_past_multiple
from algorithms.itbdehaze.arch import RCAN, DehazeBlock, Enhancer
from algorithms.ridcp.arch import CombineQuantBlock, DecoderBlock, MultiScaleDecoder, MultiScaleEncoder
from algorithms.ridcp.arch import VectorQuantizer as CHMQuantizer

#: RIDCP's latent geometry for WPXNet: 256-pixel training crops, codebook at 1/4 resolution
GT_RESOLUTION, DEPTH = 256, 2


def vq_encoder() -> MultiScaleEncoder:
    """HQP encoder: conv4x4 then two (stride-2 conv, 2 ResBlocks) stages: 1/4 resolution, 256 ch."""
    return MultiScaleEncoder(3, DEPTH, GT_RESOLUTION, swin_resolution=None)


class VectorQuantizer(nn.Module):
    """Nearest codebook entry by L2 distance (no CHM re-weighting: use_weight=False), with the
    VQ-VAE training losses."""

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
            indices = CHMQuantizer.squared_distance(flat, codebook).argmin(dim=1)
        e = codebook[indices].view(b, h, w, c).permute(0, 3, 1, 2)
        codebook_loss = F.mse_loss(e, z.detach())
        commitment = F.mse_loss(z, e.detach())
        return z + (e - z).detach(), indices.view(b, 1, h, w), codebook_loss, commitment


def residual_decoder() -> MultiScaleDecoder:
    """RIDCP's residual decoder with an FFA-style DehazeBlock (1x1 convs) closing every stage:
    at each scale the VQGAN decoder feature is aligned (DCNv2 WarpBlock) and added after
    rescaling by the ratio of global means."""
    return MultiScaleDecoder(DEPTH, GT_RESOLUTION, stage_tail=lambda channels: DehazeBlock(channels, 1))


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


# --- the codebook-prior branch and the whole network ---------------------------------------------


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
        self.vq_encoder = vq_encoder()
        nat = {"depths": encoder_depths}
        if encoder_dilations is not None:
            nat["dilations"] = encoder_dilations
        self.ridcp_encoder = PyramidNAT(**nat)
        self.ridcp_decoder = residual_decoder()
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
        enc_feat = self.ridcp_encoder(self.vq_encoder(x.contiguous(memory_format=torch.channels_last))[-1])
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
        self.pre_trained_rcan = RCAN(n_resgroups=rcan_groups, n_resblocks=rcan_blocks)
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
        fe.vq_encoder = vq_encoder()
        fe.before_quant = nn.Conv2d(256, codebook_emb_dim, 1)
        fe.quantizer = VectorQuantizer(codebook_emb_num, codebook_emb_dim)
        fe.after_quant = CombineQuantBlock(codebook_emb_dim, 256)
        fe.vq_decoder_group = nn.ModuleList([DecoderBlock(256, 128), DecoderBlock(128, 64)])
        fe.out_conv = nn.Conv2d(64, 3, 3, 1, 1)

    def _run(self, x):
        fe = self.feature_extract
        z_q, indices, codebook_loss, commitment = fe.quantizer(fe.before_quant(fe.vq_encoder(x)[-1]))
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
