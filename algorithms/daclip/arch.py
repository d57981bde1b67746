"""DA-CLIP: a CLIP ViT image encoder with a degradation-aware controller, and the IR-SDE U-Net
conditioned on its two embeddings.

Luo, Gustafsson, Zhao, Sjolund, Schon. "Controlling Vision-Language Models for Multi-Task Image
Restoration", ICLR 2024, arXiv:2310.01018. Written from the paper and the layer layout of the
authors' released checkpoints as documented in README.md; parameter names follow them.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from algorithms.common.layers import GroupNorm
from algorithms.irsde.arch import (
    ChannelLayerNorm,
    LinearAttention,
    ResBlock,
    SinusoidalTimeEmbedding,
    conv,
    downsample,
    upsample,
)

# --- CLIP ViT image encoder (open_clip layout) -----------------------------------------------


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)) with GELU."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, hidden)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(hidden, width)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of blocks; ``control`` (one tensor per block, consumed from the end) is added
    after each block, as DA-CLIP's controlled encoder does."""

    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor, control: list[torch.Tensor] | None = None) -> torch.Tensor:
        control = list(control) if control is not None else None
        for block in self.resblocks:
            x = block(x)
            if control is not None:
                x = x + control.pop()
        return x


class ControlTransformer(nn.Module):
    """DA-CLIP's controller: a copy of the encoder's transformer whose every block output also
    goes through a zero-initialised linear layer; those outputs control the frozen encoder."""

    def __init__(self, transformer: Transformer):
        super().__init__()
        self.transformer = transformer
        self.zero_modules = nn.ModuleList([nn.Linear(transformer.width, transformer.width) for _ in range(transformer.layers)])
        for layer in self.zero_modules:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        hiddens = []
        for zero, block in zip(self.zero_modules, self.transformer.resblocks):
            x = block(x)
            hiddens.append(zero(x))
        return x, hiddens


class VisionTransformer(nn.Module):
    """CLIP's ViT image tower (Radford et al., ICML 2021; open_clip parameter names): patch conv,
    class token, learned positions, pre/post LayerNorm, projection of the class token."""

    def __init__(self, image_size: int = 224, patch_size: int = 32, width: int = 768, layers: int = 12,
                 heads: int = 12, output_dim: int = 512):
        super().__init__()
        self.image_size = image_size
        grid = image_size // patch_size
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, patch_size, patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer: nn.Module = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def _tokens(self, image: torch.Tensor) -> torch.Tensor:
        x = self.conv1(image).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        return self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype))

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_post(x[:, 0]) @ self.proj

    def forward(self, image: torch.Tensor, control: list[torch.Tensor] | None = None) -> torch.Tensor:
        return self._pool(self.transformer(self._tokens(image), control=control))

    def forward_control(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """For the controller copy (``transformer`` is a ControlTransformer): embedding + hiddens."""
        x, hiddens = self.transformer(self._tokens(image))
        return self._pool(x), hiddens


class DaCLIPImageEncoder(nn.Module):
    """DA-CLIP's image side (Luo et al., ICLR 2024): the frozen CLIP image encoder ``visual``,
    controlled by ``visual_control`` (its copy with a ControlTransformer). Returns the content
    embedding and the degradation embedding of a CLIP-preprocessed image."""

    def __init__(self, image_size: int = 224, patch_size: int = 32, width: int = 768, layers: int = 12,
                 heads: int = 12, output_dim: int = 512):
        super().__init__()
        args = (image_size, patch_size, width, layers, heads, output_dim)
        self.visual = VisionTransformer(*args)
        self.visual_control = VisionTransformer(*args)
        self.visual_control.transformer = ControlTransformer(self.visual_control.transformer)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        degradation, hiddens = self.visual_control.forward_control(image)
        content = self.visual(image, control=hiddens)
        return content, degradation


# --- the conditioned U-Net (IR-SDE's, with DA-CLIP contexts) ----------------------------------


class CrossAttention(nn.Module):
    """Multi-head attention of the image tokens over a context (itself when none is given)."""

    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 8, dim_head: int = 64):
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.to_q(x)), heads(self.to_k(context)), heads(self.to_v(context)))
        return self.to_out(out.transpose(1, 2).flatten(2))


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class BasicTransformerBlock(nn.Module):
    """Self-attention, cross-attention to the context, gated feed-forward; pre-LN residuals."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int):
        super().__init__()
        self.attn1 = CrossAttention(dim, heads=heads, dim_head=dim_head)
        self.ff = nn.Sequential(GEGLU(dim, dim * 4), nn.Dropout(0.0), nn.Linear(dim * 4, dim))
        self.attn2 = CrossAttention(dim, context_dim, heads=heads, dim_head=dim_head)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """Latent-diffusion style transformer over an image's positions, cross-attending a context."""

    def __init__(self, channels: int, heads: int, dim_head: int, context_dim: int, depth: int = 1):
        super().__init__()
        inner = heads * dim_head
        self.norm = GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, dim_head, context_dim) for _ in range(depth)]
        )
        self.proj_out = nn.Conv2d(inner, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        n, _, h, w = x.shape
        y = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        for block in self.transformer_blocks:
            y = block(y, context)
        return self.proj_out(y.transpose(1, 2).reshape(n, -1, h, w)) + x


class ContextLinearAttention(LinearAttention):
    """IR-SDE's linear attention, ignoring the context."""

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.fn = fn
        self.norm = ChannelLayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.fn(self.norm(x), context)


class Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.fn(x, context) + x


class DaclipConditionalUNet(nn.Module):
    """DA-CLIP's restoration network (Luo et al., ICLR 2024): IR-SDE's conditional U-Net with
    widths ``nf * ch_mult``, whose time embedding is shifted by a prompt built from the
    degradation embedding and whose innermost level and bottleneck cross-attend the content
    embedding (levels 0-2 keep linear attention)."""

    HEAD_CHANNELS = 32
    #: levels from this index on use a SpatialTransformer instead of linear attention
    FIRST_CROSS_ATTENTION_LEVEL = 3

    def __init__(self, in_nc: int = 3, out_nc: int = 3, nf: int = 64, ch_mult: tuple[int, ...] = (1, 2, 4, 8),
                 context_dim: int = 512, use_degra_context: bool = True, use_image_context: bool = True):
        super().__init__()
        self.depth = len(ch_mult)
        self.use_degra_context = use_degra_context
        self.use_image_context = use_image_context
        time_dim = nf * 4
        self.init_conv = conv(in_nc * 2, nf, 7)
        self.time_mlp = nn.Sequential(
            SinusoidalTimeEmbedding(nf), nn.Linear(nf, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim)
        )
        if use_degra_context:
            self.prompt = nn.Parameter(torch.rand(1, time_dim))
            self.text_mlp = nn.Sequential(nn.Linear(context_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
            self.prompt_mlp = nn.Linear(time_dim, time_dim)

        def attention(dim: int, level: int) -> nn.Module:
            if use_image_context and level >= self.FIRST_CROSS_ATTENTION_LEVEL:
                block = SpatialTransformer(dim, dim // self.HEAD_CHANNELS, self.HEAD_CHANNELS, context_dim)
            else:
                block = ContextLinearAttention(dim)
            return Residual(PreNorm(dim, block))

        widths = [nf * m for m in (1, *ch_mult)]
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i in range(self.depth):
            dim_in, dim_out = widths[i], widths[i + 1]
            last = i == self.depth - 1
            self.downs.append(nn.ModuleList([
                ResBlock(dim_in, dim_in, time_dim),
                ResBlock(dim_in, dim_in, time_dim),
                attention(dim_in, i),
                conv(dim_in, dim_out) if last else downsample(dim_in, dim_out),
            ]))
            self.ups.insert(0, nn.ModuleList([
                ResBlock(dim_out + dim_in, dim_out, time_dim),
                ResBlock(dim_out + dim_in, dim_out, time_dim),
                attention(dim_out, i),
                conv(dim_out, dim_in) if i == 0 else upsample(dim_out, dim_in),
            ]))
        mid = widths[-1]
        self.mid_block1 = ResBlock(mid, mid, time_dim)
        mid_attn = (
            SpatialTransformer(mid, mid // self.HEAD_CHANNELS, self.HEAD_CHANNELS, context_dim)
            if use_image_context else ContextLinearAttention(mid)
        )
        self.mid_attn = Residual(PreNorm(mid, mid_attn))
        self.mid_block2 = ResBlock(mid, mid, time_dim)
        self.final_res_block = ResBlock(nf * 2, nf, time_dim)
        self.final_conv = nn.Conv2d(nf, out_nc, 3, 1, 1)

    def forward(self, xt: torch.Tensor, cond: torch.Tensor, time: torch.Tensor | int,
                text_context: torch.Tensor | None = None, image_context: torch.Tensor | None = None) -> torch.Tensor:
        if not torch.is_tensor(time):
            time = torch.tensor([time], device=xt.device)
        h, w = xt.shape[-2:]
        x = torch.cat([xt - cond, cond], dim=1)
        multiple = 2**self.depth
        x = F.pad(x, (0, (multiple - w % multiple) % multiple, 0, (multiple - h % multiple) % multiple), mode="reflect")
        x = self.init_conv(x)
        x_init = x.clone()
        t = self.time_mlp(time.expand(x.shape[0]) if time.numel() == 1 else time)
        if self.use_degra_context and text_context is not None:
            prompt = torch.softmax(self.text_mlp(text_context), dim=1) * self.prompt
            t = t + self.prompt_mlp(prompt)
        context = image_context.unsqueeze(1) if self.use_image_context and image_context is not None else None
        skips = []
        for block1, block2, attn, down in self.downs:
            x = block1(x, t)
            skips.append(x)
            x = attn(block2(x, t), context)
            skips.append(x)
            x = down(x)
        x = self.mid_block2(self.mid_attn(self.mid_block1(x, t), context), t)
        for block1, block2, attn, up in self.ups:
            x = block1(torch.cat([x, skips.pop()], dim=1), t)
            x = block2(torch.cat([x, skips.pop()], dim=1), t)
            x = up(attn(x, context))
        x = self.final_res_block(torch.cat([x, x_init], dim=1), t)
        return self.final_conv(x)[..., :h, :w]
