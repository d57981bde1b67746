"""CMFNet (Fan, Liu, Liu 2022): compound multi-branch feature fusion for image restoration.

Fan, Liu, Liu: "Compound Multi-branch Feature Fusion for Real Image Restoration",
arXiv:2206.02748 (2022). Three U-Nets run in parallel on the same input, one built from
channel-attention blocks (CAB), one from pixel-attention blocks (PAB) and one from
spatial-attention blocks (SAB); supervised attention modules turn each into an image
estimate, and the three are fused by a learned mix plus a feature-concatenation tail.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = False, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias, stride=stride)


class CALayer(nn.Module):
    """Channel attention: global average pool -> 1x1 squeeze/excite -> sigmoid scale."""

    def __init__(self, channel: int, reduction: int = 16, bias: bool = False):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, 1, bias=bias),
            nn.ReLU(inplace=True),
            nn.Conv2d(channel // reduction, channel, 1, bias=bias),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


class PALayer(nn.Module):
    """Pixel attention: per-pixel 1x1 squeeze/excite -> sigmoid scale."""

    def __init__(self, channel: int, reduction: int = 16, bias: bool = False):
        super().__init__()
        self.pa = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, 1, bias=bias),
            nn.ReLU(inplace=True),
            nn.Conv2d(channel // reduction, channel, 1, bias=bias),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.pa(x)


class SALayer(nn.Module):
    """Spatial attention: channel mean and max -> 7x7 conv -> sigmoid scale."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv1(pooled))


class AttentionBlock(nn.Module):
    """conv -> act -> conv -> attention, plus the input (CAB / PAB / SAB of the paper)."""

    def __init__(self, n_feat: int, kernel_size: int, reduction: int, bias: bool, act: nn.Module, kind: str):
        super().__init__()
        self.body = nn.Sequential(conv(n_feat, n_feat, kernel_size, bias=bias), act,
                                  conv(n_feat, n_feat, kernel_size, bias=bias))
        self.kind = kind
        if kind == "CAB":
            self.CA = CALayer(n_feat, reduction, bias=bias)
        elif kind == "PAB":
            self.PA = PALayer(n_feat, reduction, bias=bias)
        elif kind == "SAB":
            self.SA = SALayer()
        else:
            raise ValueError(f"unknown attention block {kind!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = getattr(self, {"CAB": "CA", "PAB": "PA", "SAB": "SA"}[self.kind])
        return attention(self.body(x)) + x


class DownSample(nn.Module):
    def __init__(self, in_channels: int, s_factor: int):
        super().__init__()
        self.down = nn.Sequential(
            nn.Upsample(scale_factor=0.5, mode="bilinear", align_corners=False),
            nn.Conv2d(in_channels, in_channels + s_factor, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(x)


class SkipUpSample(nn.Module):
    def __init__(self, in_channels: int, s_factor: int):
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(in_channels + s_factor, in_channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.up(x) + skip


def _blocks(n: int, *args) -> nn.Sequential:
    return nn.Sequential(*[AttentionBlock(*args) for _ in range(n)])


class Encoder(nn.Module):
    def __init__(self, n_feat, kernel_size, reduction, act, bias, scale_unetfeats, kind):
        super().__init__()
        widths = [n_feat + i * scale_unetfeats for i in range(3)]
        self.encoder_level1 = _blocks(2, widths[0], kernel_size, reduction, bias, act, kind)
        self.encoder_level2 = _blocks(2, widths[1], kernel_size, reduction, bias, act, kind)
        self.encoder_level3 = _blocks(2, widths[2], kernel_size, reduction, bias, act, kind)
        self.down12 = DownSample(widths[0], scale_unetfeats)
        self.down23 = DownSample(widths[1], scale_unetfeats)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        enc1 = self.encoder_level1(x)
        enc2 = self.encoder_level2(self.down12(enc1))
        enc3 = self.encoder_level3(self.down23(enc2))
        return [enc1, enc2, enc3]


class Decoder(nn.Module):
    def __init__(self, n_feat, kernel_size, reduction, act, bias, scale_unetfeats, kind):
        super().__init__()
        widths = [n_feat + i * scale_unetfeats for i in range(3)]
        self.decoder_level1 = _blocks(2, widths[0], kernel_size, reduction, bias, act, kind)
        self.decoder_level2 = _blocks(2, widths[1], kernel_size, reduction, bias, act, kind)
        self.decoder_level3 = _blocks(2, widths[2], kernel_size, reduction, bias, act, kind)
        self.skip_attn1 = AttentionBlock(widths[0], kernel_size, reduction, bias, act, kind)
        self.skip_attn2 = AttentionBlock(widths[1], kernel_size, reduction, bias, act, kind)
        self.up21 = SkipUpSample(widths[0], scale_unetfeats)
        self.up32 = SkipUpSample(widths[1], scale_unetfeats)

    def forward(self, encoded: list[torch.Tensor]) -> list[torch.Tensor]:
        enc1, enc2, enc3 = encoded
        dec3 = self.decoder_level3(enc3)
        dec2 = self.decoder_level2(self.up32(dec3, self.skip_attn2(enc2)))
        dec1 = self.decoder_level1(self.up21(dec2, self.skip_attn1(enc1)))
        return [dec1, dec2, dec3]


class SAM(nn.Module):
    """Supervised attention module: features -> image estimate, and image-gated features."""

    def __init__(self, n_feat: int, kernel_size: int, bias: bool):
        super().__init__()
        self.conv1 = conv(n_feat, n_feat, kernel_size, bias=bias)
        self.conv2 = conv(n_feat, 3, kernel_size, bias=bias)
        self.conv3 = conv(3, n_feat, kernel_size, bias=bias)

    def forward(self, x: torch.Tensor, x_img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.conv2(x) + x_img
        gated = self.conv1(x) * torch.sigmoid(self.conv3(img)) + x
        return gated, img


class Mix(nn.Module):
    """Learned convex mix of three images: the middle gets sigmoid(w), the others split the rest."""

    def __init__(self, m: float = 1.0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([float(m)]))

    def forward(self, img1, img2, img3) -> tuple[torch.Tensor, torch.Tensor]:
        factor = torch.sigmoid(self.w)
        other = (1 - factor) / 2
        return img1 * other + img2 * factor + img3 * other, factor


class CMFNet(nn.Module):
    """CMFNet (Fan et al., arXiv:2206.02748, 2022).

    ``forward(x)`` with x RGB in [0, 1] (H, W multiples of 4) returns the official list
    ``[restored, mixed_img, factor, img_cab, img_pab, img_sab, x_final]``; element 0 is the
    restored image (unclamped).

    One PReLU is shared by every block, as in the official code; its value appears under 45
    state-dict keys and the last one loaded (``stage3_decoder.skip_attn2.body.1.weight``) wins.
    """

    def __init__(self, in_c: int = 3, out_c: int = 3, n_feat: int = 96, scale_unetfeats: int = 48,
                 kernel_size: int = 3, reduction: int = 4, bias: bool = False):
        super().__init__()
        act = nn.PReLU()

        def shallow():
            return nn.Sequential(conv(in_c, n_feat // 2, kernel_size, bias=bias), act,
                                 conv(n_feat // 2, n_feat, kernel_size, bias=bias))

        self.shallow_feat1 = shallow()
        self.shallow_feat2 = shallow()
        self.shallow_feat3 = shallow()
        args = (n_feat, kernel_size, reduction, act, bias, scale_unetfeats)
        self.stage1_encoder = Encoder(*args, "CAB")
        self.stage1_decoder = Decoder(*args, "CAB")
        self.stage2_encoder = Encoder(*args, "PAB")
        self.stage2_decoder = Decoder(*args, "PAB")
        self.stage3_encoder = Encoder(*args, "SAB")
        self.stage3_decoder = Decoder(*args, "SAB")
        self.sam1o = SAM(n_feat, kernel_size=3, bias=bias)
        self.sam2o = SAM(n_feat, kernel_size=3, bias=bias)
        self.sam3o = SAM(n_feat, kernel_size=3, bias=bias)
        self.mix = Mix(1)
        self.add123 = conv(out_c, out_c, kernel_size, bias=bias)
        self.concat123 = conv(n_feat * 3, n_feat, kernel_size, bias=bias)
        self.tail = conv(n_feat, out_c, kernel_size, bias=bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, imgs = [], []
        for i in (1, 2, 3):
            shallow = getattr(self, f"shallow_feat{i}")(x)
            decoded = getattr(self, f"stage{i}_decoder")(getattr(self, f"stage{i}_encoder")(shallow))
            feat, img = getattr(self, f"sam{i}o")(decoded[0], x)
            feats.append(feat)
            imgs.append(img)
        mixed, factor = self.mix(*imgs)
        mixed_img = self.add123(mixed)
        x_final = self.tail(self.concat123(torch.cat(feats, 1)))
        return [x_final + mixed_img, mixed_img, factor, *imgs, x_final]
