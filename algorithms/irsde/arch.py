"""IR-SDE: the conditional noise network and the mean-reverting SDE that samples with it.

Luo, Gustafsson, Zhao, Sjolund, Schon. "Image Restoration with Mean-Reverting Stochastic
Differential Equations", ICML 2023, arXiv:2301.11699. Written from the paper and the layer layout
of the authors' released checkpoints (see README.md); parameter names follow those checkpoints.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def conv(dim_in: int, dim_out: int, kernel_size: int = 3) -> nn.Conv2d:
    """'Same' convolution without bias, the network's default convolution."""
    return nn.Conv2d(dim_in, dim_out, kernel_size, padding=kernel_size // 2, bias=False)


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style sin/cos embedding of the (integer) time step."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
        angles = t.float()[:, None] * freqs[None, :]
        return torch.cat((angles.sin(), angles.cos()), dim=-1)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an N x C x H x W tensor, gain only (``g``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = 1e-5 if x.dtype == torch.float32 else 1e-3
        var = x.var(dim=1, unbiased=False, keepdim=True)
        mean = x.mean(dim=1, keepdim=True)
        return (x - mean) * (var + eps).rsqrt() * self.g


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.fn = fn
        self.norm = ChannelLayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) + x


class ConvAct(nn.Module):
    """Convolution, optional FiLM-style ``x * (scale + 1) + shift``, SiLU."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = conv(dim_in, dim_out)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, scale_shift: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = self.proj(x)
        if scale_shift is not None:
            scale, shift = scale_shift
            x = x * (scale + 1) + shift
        return self.act(x)


class ResBlock(nn.Module):
    """Two conv blocks modulated by the time embedding, with a (1x1) residual path."""

    def __init__(self, dim_in: int, dim_out: int, time_emb_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_emb_dim, dim_out * 2))
        self.block1 = ConvAct(dim_in, dim_out)
        self.block2 = ConvAct(dim_out, dim_out)
        self.res_conv = conv(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        scale_shift = self.mlp(t_emb)[:, :, None, None].chunk(2, dim=1)
        h = self.block2(self.block1(x, scale_shift))
        return h + self.res_conv(x)


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """N x (heads*d) x H x W -> N x heads x d x (H*W)."""
    n, c, h, w = t.shape
    return t.reshape(n, heads, c // heads, h * w)


class LinearAttention(nn.Module):
    """Linear (efficient) attention: softmax over features for q, over positions for k."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        self.scale = dim_head**-0.5
        self.heads = heads
        hidden = dim_head * heads
        self.to_qkv = nn.Conv2d(dim, hidden * 3, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(hidden, dim, 1), ChannelLayerNorm(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        q, k, v = (_split_heads(t, self.heads) for t in self.to_qkv(x).chunk(3, dim=1))
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        v = v / (h * w)
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q)
        return self.to_out(out.reshape(n, -1, h, w))


class Attention(nn.Module):
    """Full multi-head self-attention over all positions (the bottleneck's)."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        self.heads = heads
        hidden = dim_head * heads
        self.to_qkv = nn.Conv2d(dim, hidden * 3, 1, bias=False)
        self.to_out = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        # N x heads x (H*W) x d; softmax(q k^T / sqrt(d)) v, computed without the full matrix
        q, k, v = (_split_heads(t, self.heads).transpose(-1, -2) for t in self.to_qkv(x).chunk(3, dim=1))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(-1, -2).reshape(n, -1, h, w))


def upsample(dim_in: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(dim_in, dim_out, 3, 1, 1))


def downsample(dim_in: int, dim_out: int) -> nn.Conv2d:
    return nn.Conv2d(dim_in, dim_out, 4, 2, 1)


class ConditionalUNet(nn.Module):
    """IR-SDE's noise network (Luo et al., ICML 2023): predicts the noise in the state ``xt``
    given the degraded image ``cond`` (the SDE's mean) and the time step.

    A U-Net of ``depth`` levels with widths ``nf * 2**i``; each level has two time-modulated
    ResBlocks and a linear-attention block, the bottleneck full attention. The input
    ``[xt - cond, cond]`` is reflect-padded to a multiple of ``2**depth`` and the output cropped.
    """

    def __init__(self, in_nc: int = 3, out_nc: int = 3, nf: int = 64, depth: int = 4):
        super().__init__()
        self.depth = depth
        time_dim = nf * 4
        self.init_conv = conv(in_nc * 2, nf, 7)
        self.time_mlp = nn.Sequential(
            SinusoidalTimeEmbedding(nf), nn.Linear(nf, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim)
        )
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i in range(depth):
            dim_in, dim_out = nf * 2**i, nf * 2 ** (i + 1)
            last = i == depth - 1
            self.downs.append(nn.ModuleList([
                ResBlock(dim_in, dim_in, time_dim),
                ResBlock(dim_in, dim_in, time_dim),
                Residual(PreNorm(dim_in, LinearAttention(dim_in))),
                conv(dim_in, dim_out) if last else downsample(dim_in, dim_out),
            ]))
            self.ups.insert(0, nn.ModuleList([
                ResBlock(dim_out + dim_in, dim_out, time_dim),
                ResBlock(dim_out + dim_in, dim_out, time_dim),
                Residual(PreNorm(dim_out, LinearAttention(dim_out))),
                conv(dim_out, dim_in) if i == 0 else upsample(dim_out, dim_in),
            ]))
        mid = nf * 2**depth
        self.mid_block1 = ResBlock(mid, mid, time_dim)
        self.mid_attn = Residual(PreNorm(mid, Attention(mid)))
        self.mid_block2 = ResBlock(mid, mid, time_dim)
        self.final_res_block = ResBlock(nf * 2, nf, time_dim)
        self.final_conv = nn.Conv2d(nf, out_nc, 3, 1, 1)

    def forward(self, xt: torch.Tensor, cond: torch.Tensor, time: torch.Tensor | int) -> torch.Tensor:
        if not torch.is_tensor(time):
            time = torch.tensor([time], device=xt.device)
        h, w = xt.shape[-2:]
        x = torch.cat([xt - cond, cond], dim=1)
        multiple = 2**self.depth
        x = F.pad(x, (0, (multiple - w % multiple) % multiple, 0, (multiple - h % multiple) % multiple), mode="reflect")
        x = self.init_conv(x)
        x_init = x.clone()
        t = self.time_mlp(time.expand(x.shape[0]) if time.numel() == 1 else time)
        skips = []
        for block1, block2, attn, down in self.downs:
            x = block1(x, t)
            skips.append(x)
            x = attn(block2(x, t))
            skips.append(x)
            x = down(x)
        x = self.mid_block2(self.mid_attn(self.mid_block1(x, t)), t)
        for block1, block2, attn, up in self.ups:
            x = block1(torch.cat([x, skips.pop()], dim=1), t)
            x = block2(torch.cat([x, skips.pop()], dim=1), t)
            x = up(attn(x))
        x = self.final_res_block(torch.cat([x, x_init], dim=1), t)
        return self.final_conv(x)[..., :h, :w]


class MeanRevertingSDE:
    """IR-SDE's forward SDE ``dx = theta_t (mu - x) dt + sigma_t dw`` and its reverse-time
    sampler (Luo et al., ICML 2023), with ``sigma_t**2 / theta_t = 2 * max_sigma**2``.

    ``T`` is the number of training time steps (the network's time embedding is trained on
    1..T). Sampling with ``steps == T`` is the official Euler-Maruyama reverse SDE; with fewer
    steps it jumps between evenly spaced time steps with the exact posterior of the
    Ornstein-Uhlenbeck process given the network's estimate of the clean image.
    """

    def __init__(self, max_sigma: float, T: int = 100, schedule: str = "cosine", eps: float = 0.005):
        self.T = T
        self.max_sigma = max_sigma / 255 if max_sigma >= 1 else max_sigma
        thetas = self._thetas(schedule, T)
        self.thetas = thetas
        self.sigmas = torch.sqrt(self.max_sigma**2 * 2 * thetas)
        self.thetas_cumsum = torch.cumsum(thetas, dim=0) - thetas[0]
        self.dt = -math.log(eps) / float(self.thetas_cumsum[-1])
        self.sigma_bars = torch.sqrt(self.max_sigma**2 * (1 - torch.exp(-2 * self.thetas_cumsum * self.dt)))

    @staticmethod
    def _thetas(schedule: str, T: int) -> torch.Tensor:
        if schedule == "cosine":
            n = T + 2  # two extra steps, truncated at both ends
            x = torch.linspace(0, n, n + 1, dtype=torch.float32)
            alphas_cumprod = torch.cos(((x / n) + 0.008) / 1.008 * math.pi * 0.5) ** 2
            alphas_cumprod = alphas_cumprod / alphas_cumprod[0]
            return 1 - alphas_cumprod[1:-1]
        if schedule == "linear":
            scale = 1000 / (T + 1)
            return torch.linspace(scale * 0.0001, scale * 0.02, T + 1, dtype=torch.float32)
        if schedule == "constant":
            return torch.ones(T + 1, dtype=torch.float32)
        raise ValueError(f"unknown theta schedule {schedule!r} (cosine, linear, constant)")

    def timesteps(self, steps: int) -> list[int]:
        """``steps`` evenly spaced time steps from T down to 1."""
        if not 1 <= steps <= self.T:
            raise ValueError(f"steps must be in 1..{self.T}, got {steps}")
        return sorted({round(self.T - i * self.T / steps) for i in range(steps)}, reverse=True)

    def _decay(self, t: int) -> float:
        """exp(-theta_bar_t dt): how much of x0 - mu is left at time t."""
        return math.exp(-float(self.thetas_cumsum[t]) * self.dt)

    @torch.no_grad()
    def sample(self, model: nn.Module, mu: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Restore ``mu`` (the degraded image in [0,1]): start from ``mu + max_sigma * noise``
        and integrate the reverse SDE from T to 0 in ``steps`` network evaluations."""

        def noise() -> torch.Tensor:
            return torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)

        x = mu + noise() * self.max_sigma
        ts = self.timesteps(steps)
        for i, t in enumerate(ts):
            eps_hat = model(x, mu, t)
            if steps == self.T:  # the official reverse step, one dt at a time
                score = -eps_hat / float(self.sigma_bars[t])
                theta, sigma = float(self.thetas[t]), float(self.sigmas[t])
                drift = (theta * (mu - x) - sigma**2 * score) * self.dt
                x = x - drift - sigma * math.sqrt(self.dt) * noise()
                continue
            s = ts[i + 1] if i + 1 < len(ts) else 0
            decay_t, decay_s = self._decay(t), self._decay(s)
            x0_hat = mu + (x - mu - float(self.sigma_bars[t]) * eps_hat) / decay_t
            # x_s | x_t, x0 for the OU process: a = decay over (s, t], b = decay_t, c = decay_s
            a = decay_t / decay_s
            denom = 1 - decay_t**2
            mean = mu + a * (1 - decay_s**2) / denom * (x - mu) + decay_s * (1 - a**2) / denom * (x0_hat - mu)
            x = mean if s == 0 else mean + self.max_sigma * math.sqrt((1 - decay_s**2) * (1 - a**2) / denom) * noise()
        return x
