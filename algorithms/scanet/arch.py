"""SCANet: self-paced semi-curricular attention network for non-homogeneous dehazing.

Guo, Gao, Liu, Lu, Yin (as listed by the conformance spec), "SCANet: Self-Paced Semi-Curricular Attention Network for
Non-Homogeneous Image Dehazing", CVPR Workshops (NTIRE) 2023, arXiv:2304.08444.

Re-implemented from the paper and the conformance facts (parameter names and shapes of the
released ``Gmodel_*.tar`` checkpoints); no official code was copied. Two parts:

* an **attention generator** ``att``: 7x7 conv stem, six attention blocks (channel attention
  ``CA`` then multi-scale spatial attention ``MSSA``, residual), a 7x7 conv and a sigmoid give the
  haze attention map ``m_g`` (B x 1 x H x W);
* a **scene reconstruction** network: a four-layer full-resolution stem ``conv1`` whose features
  are re-weighted by the map through a learnable scalar ``alpha``
  (``(1 - alpha) * f + alpha * f * m``), then ``model``: two stride-2 convs, six residual blocks,
  two deformable convs (DCNv1), two transposed convs and a 7x7 conv with Tanh.

Both parts start from ``deconv``, a network-deconvolution layer (Ye et al., ICLR 2020) whose
learned whitening is folded into a 3x3 convolution at test time.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class FastDeconv(nn.Module):
    """Network deconvolution input layer, test-time form (single block, groups = 1).

    The whitening matrix ``running_deconv`` and mean ``running_mean`` over the im2col patches
    (``k*k*in_channels`` features) fold into the convolution: ``w' = W @ running_deconv``,
    ``b' = b - w' @ running_mean``. The training-time statistics update is not implemented.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.stride = stride
        self.padding = padding
        num_features = kernel_size * kernel_size * in_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_deconv", torch.eye(num_features))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.weight.reshape(self.weight.shape[0], -1) @ self.running_deconv
        b = self.bias - (w @ self.running_mean.unsqueeze(1)).reshape(-1)
        return w.reshape(self.weight.shape), b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.folded()
        return F.conv2d(x, w, b, self.stride, self.padding)


class DeformConv2d(nn.Module):
    """Deformable convolution v1 in plain PyTorch (no compiled op).

    ``p_conv`` predicts 2*k*k offsets per pixel laid out as ``[k*k row offsets | k*k column
    offsets]`` (kernel taps in row-major order). Every tap is sampled bilinearly from the
    zero-padded input at ``pixel + tap + offset``, the sampling position being clamped into the
    padded input; the k x k samples of each pixel are tiled into a (k*H) x (k*W) image and
    ``conv`` (kernel k, stride k, no bias) turns them into the output.
    """

    def __init__(self, inc: int, outc: int, kernel_size: int = 3, padding: int = 1, stride: int = 1, bias: bool = False):
        super().__init__()
        self.kernel_size = kernel_size
        self.padding = padding
        self.stride = stride
        self.conv = nn.Conv2d(inc, outc, kernel_size, stride=kernel_size, bias=bias)
        self.p_conv = nn.Conv2d(inc, 2 * kernel_size * kernel_size, 3, padding=1, stride=stride)

    def _grid(self, r0: int, r1: int, w: int, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Regular sampling positions ``p_0 + p_n`` (padded coordinates) of output rows [r0, r1):
        row and column tensors of shape (1, k*k, r1-r0, w)."""
        k, s = self.kernel_size, self.stride
        h = r1 - r0
        taps = torch.arange(-((k - 1) // 2), (k - 1) // 2 + 1, device=ref.device, dtype=ref.dtype)
        tap_r, tap_c = torch.meshgrid(taps, taps, indexing="ij")
        rows = torch.arange(1 + r0 * s, r1 * s + 1, s, device=ref.device, dtype=ref.dtype)
        cols = torch.arange(1, w * s + 1, s, device=ref.device, dtype=ref.dtype)
        p0_r = rows.view(1, 1, h, 1).expand(1, k * k, h, w)
        p0_c = cols.view(1, 1, 1, w).expand(1, k * k, h, w)
        return p0_r + tap_r.reshape(1, k * k, 1, 1), p0_c + tap_c.reshape(1, k * k, 1, 1)

    #: upper bound on the elements of one gathered (B, C, k*k, rows, W) tensor; larger maps are
    #: sampled in bands of output rows (same arithmetic, bounded memory)
    max_elements: int = 1 << 24

    def _sample_rows(self, flat: torch.Tensor, offset: torch.Tensor, r0: int, r1: int,
                     hp: int, wp: int) -> torch.Tensor:
        """Deformed samples of output rows [r0, r1), tiled: (B, C, k*(r1-r0), k*W)."""
        k = self.kernel_size
        n_taps = k * k
        b, c = flat.shape[0], flat.shape[1]
        w = offset.shape[3]
        h = r1 - r0
        off = offset[:, :, r0:r1]
        base_r, base_c = self._grid(r0, r1, w, offset)
        p_r = base_r + off[:, :n_taps]
        p_c = base_c + off[:, n_taps:]
        # corner indices from the unclamped floor, then everything clamped into the padded input
        lo_r = p_r.floor()
        lo_c = p_c.floor()
        hi_r = (lo_r + 1).clamp(0, hp - 1)
        hi_c = (lo_c + 1).clamp(0, wp - 1)
        lo_r = lo_r.clamp(0, hp - 1)
        lo_c = lo_c.clamp(0, wp - 1)
        p_r = p_r.clamp(0, hp - 1)
        p_c = p_c.clamp(0, wp - 1)
        # bilinear weights of the four corners (from the clamped positions and corners)
        w_lo_r = 1 + (lo_r - p_r)
        w_hi_r = 1 - (hi_r - p_r)
        w_lo_c = 1 + (lo_c - p_c)
        w_hi_c = 1 - (hi_c - p_c)
        lo_r, hi_r, lo_c, hi_c = lo_r.long(), hi_r.long(), lo_c.long(), hi_c.long()

        def gather(r: torch.Tensor, cc: torch.Tensor) -> torch.Tensor:
            index = (r * wp + cc).reshape(b, 1, -1).expand(b, c, -1)
            return flat.gather(2, index).view(b, c, n_taps, h, w)

        out = (w_lo_r * w_lo_c).unsqueeze(1) * gather(lo_r, lo_c)
        out = out + (w_hi_r * w_hi_c).unsqueeze(1) * gather(hi_r, hi_c)
        out = out + (w_lo_r * w_hi_c).unsqueeze(1) * gather(lo_r, hi_c)
        out = out + (w_hi_r * w_lo_c).unsqueeze(1) * gather(hi_r, lo_c)
        # (b, c, k*k, h, w) -> tiles: pixel (i, j), tap (u, v) at (i*k + u, j*k + v)
        out = out.view(b, c, k, k, h, w).permute(0, 1, 4, 2, 5, 3)
        return out.reshape(b, c, h * k, w * k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset = self.p_conv(x)
        if self.padding:
            x = F.pad(x, (self.padding,) * 4)
        b, c, hp, wp = x.shape
        flat = x.reshape(b, c, hp * wp)
        h, w = offset.shape[2], offset.shape[3]
        rows = max(1, self.max_elements // max(1, b * c * self.kernel_size**2 * w))
        if rows >= h:
            return self.conv(self._sample_rows(flat, offset, 0, h, hp, wp))
        return torch.cat(
            [self.conv(self._sample_rows(flat, offset, r, min(r + rows, h), hp, wp)) for r in range(0, h, rows)],
            dim=2,
        )


class ResidualBlock(nn.Module):
    def __init__(self, in_features: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_features, in_features, 3),
            nn.BatchNorm2d(in_features),
            nn.PReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_features, in_features, 3),
            nn.BatchNorm2d(in_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class CA(nn.Module):
    """Channel attention: weights from the average-pooled features of a conv-BN-PReLU-conv-BN
    body through a bias-free bottleneck (ratio 4, ReLU) and a sigmoid; returns ``x * weights``."""

    def __init__(self, channels: int, ratio: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.prelu = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.fc1 = nn.Conv2d(channels, channels // ratio, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // ratio, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))
        y = F.adaptive_avg_pool2d(y, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(y))))


class MSSA(nn.Module):
    """Multi-scale spatial attention: a conv-BN-PReLU-conv-BN body reduces to ``channels/4``
    features, three parallel dilated 3x3 convs (dilation 3, 5, 7) add context at three scales,
    the four groups are concatenated and a 3x3 conv, ReLU, 1x1 conv and sigmoid give one
    spatial map; returns ``x * map``."""

    def __init__(self, channels: int, dilations: tuple[int, int, int] = (3, 5, 7)):
        super().__init__()
        q = channels // 4
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.prelu = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, q, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(q)
        d3, d4, d5 = dilations
        self.conv3 = nn.Conv2d(q, q, 3, padding=d3, dilation=d3, bias=False)
        self.conv4 = nn.Conv2d(q, q, 3, padding=d4, dilation=d4, bias=False)
        self.conv5 = nn.Conv2d(q, q, 3, padding=d5, dilation=d5, bias=False)
        self.fc1 = nn.Conv2d(4 * q, 1, 3, padding=1, bias=False)
        self.fc2 = nn.Conv2d(1, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))
        y = torch.cat([y, self.conv3(y), self.conv4(y), self.conv5(y)], dim=1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(y))))


class Attention(nn.Module):
    """``x + MSSA(CA(x))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.CA = CA(channels)
        self.MSSA = MSSA(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.MSSA(self.CA(x))


class Generator(nn.Module):
    """SCANet generator. ``forward(x, m_gt=None, l_mask=1e-5) -> (x_out, m_g)``.

    ``x`` is RGB in [-1, 1]; ``x_out`` (Tanh, [-1, 1]) is 4*ceil(H/4) x 4*ceil(W/4) (the trunk
    does not crop); ``m_g`` is the attention map at the input size. The reconstruction features
    are re-weighted by ``m = m_g`` at test time. For training the official signature takes a
    ground-truth map ``m_gt`` and a curriculum weight ``l_mask``; here a given ``m_gt`` is blended
    as ``l_mask * m_g + (1 - l_mask) * m_gt`` -- that training-time path is not verified against
    the official code (no vector exercises it); ``m_gt=None`` is.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, in_features: int = 32,
                 n_residual_att: int = 6, n_residual_blocks: int = 6):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(1))
        self.deconv = FastDeconv(input_nc, input_nc, kernel_size=3, stride=1, padding=1)

        att: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(input_nc, 16, 7), nn.BatchNorm2d(16), nn.PReLU(),
        ]
        att += [Attention(16) for _ in range(n_residual_att)]
        att += [nn.ReflectionPad2d(3), nn.Conv2d(16, 1, 7), nn.Sigmoid()]
        self.att = nn.Sequential(*att)

        conv1: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(input_nc, in_features, 7), nn.BatchNorm2d(in_features), nn.PReLU(),
        ]
        for _ in range(3):
            conv1 += [nn.Conv2d(in_features, in_features, 3, padding=1), nn.BatchNorm2d(in_features), nn.PReLU()]
        self.conv1 = nn.Sequential(*conv1)

        model: list[nn.Module] = []
        feats = in_features
        for _ in range(2):  # downsampling
            model += [nn.Conv2d(feats, feats * 2, 3, stride=2, padding=1), nn.BatchNorm2d(feats * 2), nn.PReLU()]
            feats *= 2
        model += [ResidualBlock(feats) for _ in range(n_residual_blocks)]
        for _ in range(2):  # deformable convolutions
            model += [DeformConv2d(feats, feats, 3, padding=1, stride=1), nn.BatchNorm2d(feats), nn.PReLU()]
        for _ in range(2):  # upsampling
            model += [
                nn.ConvTranspose2d(feats, feats // 2, 3, stride=2, padding=1, output_padding=1),
                nn.BatchNorm2d(feats // 2),
                nn.PReLU(),
            ]
            feats //= 2
        model += [nn.ReflectionPad2d(3), nn.Conv2d(feats, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor, m_gt: torch.Tensor | None = None, l_mask: float = 1e-5):
        x = self.deconv(x)
        m_g = self.att(x)
        m = m_g if m_gt is None else l_mask * m_g + (1 - l_mask) * m_gt
        f = self.conv1(x)
        f = (1 - self.alpha) * f + self.alpha * f * m
        return self.model(f), m_g
