"""DCPDN (Zhang & Patel, CVPR 2018): densely connected pyramid dehazing network.

He Zhang, Vishal M. Patel: "Densely Connected Pyramid Dehazing Network", CVPR 2018.
The network estimates the transmission map with a densenet121 encoder-decoder and a
multi-level pyramid pooling head, the atmospheric light with a small U-Net, inverts the
atmospheric scattering model with both, and refines the result with a second pyramid head.

The released checkpoint (PyTorch 0.3) names the U-Net layers with dots inside module names
(``layer2.conv``); here such a block is a container holding a child named after the layer, so
``atp_est.layer2.layer2.conv.weight`` keeps its released name.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import densenet121


def pyramid_pool(x: torch.Tensor, convs: Sequence[nn.Module], pools: Sequence[int]) -> list[torch.Tensor]:
    """Multi-level pyramid pooling: per level avg-pool, 1x1 conv, LeakyReLU(0.2), nearest
    upsampling back to the input size. Returns the per-level maps (one channel each)."""
    size = x.shape[-2:]
    return [
        F.interpolate(F.leaky_relu(conv(F.avg_pool2d(x, pool)), 0.2), size=size, mode="nearest")
        for conv, pool in zip(convs, pools)
    ]


class PyramidHead(nn.Module):
    """20 features -> 4-level pyramid pooling (1/32 .. 1/4) -> 3x3 conv on 24 channels -> tanh."""

    pools = (32, 16, 8, 4)

    def __init__(self, channels: int = 20, out_channels: int = 3):
        super().__init__()
        self.conv1010 = nn.Conv2d(channels, 1, 1)
        self.conv1020 = nn.Conv2d(channels, 1, 1)
        self.conv1030 = nn.Conv2d(channels, 1, 1)
        self.conv1040 = nn.Conv2d(channels, 1, 1)
        self.refine3 = nn.Conv2d(channels + 4, out_channels, 3, padding=1)

    def head(self, feat: torch.Tensor) -> torch.Tensor:
        levels = pyramid_pool(feat, (self.conv1010, self.conv1020, self.conv1030, self.conv1040), self.pools)
        return torch.tanh(self.refine3(torch.cat(levels + [feat], 1)))


def _named_block(name: str, layers: list[tuple[str, nn.Module]]) -> nn.Sequential:
    """``Sequential(name=Sequential(kind=module, ...))``: keys ``<name>.<kind>.*`` as released."""
    return nn.Sequential(OrderedDict([(name, nn.Sequential(OrderedDict(layers)))]))


def _unet_block(name: str, in_c: int, out_c: int, transposed: bool, bn: bool, relu: bool) -> nn.Sequential:
    """pix2pix U-Net block: activation, 4x4 stride-2 (transposed) conv, optional BatchNorm.

    The activation works in place, as in the official code: an encoder block overwrites its
    input, so the U-Net skip connections carry the activated encoder outputs.
    """
    layers: list[tuple[str, nn.Module]] = [
        ("relu", nn.ReLU(inplace=True)) if relu else ("leakyrelu", nn.LeakyReLU(0.2, inplace=True))
    ]
    if transposed:
        layers.append(("tconv", nn.ConvTranspose2d(in_c, out_c, 4, 2, 1, bias=False)))
    else:
        layers.append(("conv", nn.Conv2d(in_c, out_c, 4, 2, 1, bias=False)))
    if bn:
        layers.append(("bn", nn.BatchNorm2d(out_c)))
    return _named_block(name, layers)


class UNet8(nn.Module):
    """The 8-level pix2pix U-Net of DCPDN's G and G2 (a 256x256 input reaches 1x1).

    The decoder's Dropout2d layers are training-time only and left out.
    """

    def __init__(self, input_nc: int, nf: int, final_nc: int, final_act: nn.Module | None):
        super().__init__()
        widths = [nf, nf * 2, nf * 4, nf * 8, nf * 8, nf * 8, nf * 8, nf * 8]
        # the first layer is a bare conv: key layer1.layer1.weight
        self.layer1 = nn.Sequential(OrderedDict([("layer1", nn.Conv2d(input_nc, nf, 4, 2, 1, bias=False))]))
        for i in range(2, 9):
            setattr(self, f"layer{i}", _unet_block(f"layer{i}", widths[i - 2], widths[i - 1],
                                                   transposed=False, bn=True, relu=False))
        self.dlayer8 = _unet_block("dlayer8", widths[7], widths[6], transposed=True, bn=False, relu=True)
        for i in range(7, 1, -1):
            setattr(self, f"dlayer{i}", _unet_block(f"dlayer{i}", widths[i - 1] * 2, widths[i - 2],
                                                    transposed=True, bn=True, relu=True))
        final: list[tuple[str, nn.Module]] = [
            ("relu", nn.ReLU(inplace=True)),
            ("tconv", nn.ConvTranspose2d(nf * 2, final_nc, 4, 2, 1, bias=False)),
        ]
        if final_act is not None:
            final.append(("tanh", final_act))
        self.dlayer1 = _named_block("dlayer1", final)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        out = x
        for i in range(1, 8):
            out = getattr(self, f"layer{i}")(out)
            skips.append(out)
        out = self.dlayer8(self.layer8(out))
        for i in range(7, 0, -1):
            out = getattr(self, f"dlayer{i}")(torch.cat([out, skips[i - 1]], 1))
        return out


class G2(UNet8):
    """Atmospheric-light U-Net (nf=8); its last block ends in LeakyReLU(0.2)."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, nf: int = 8):
        super().__init__(input_nc, nf, output_nc, nn.LeakyReLU(0.2, inplace=True))


class G(PyramidHead):
    """Second transmission estimator of the official code (U-Net nf=64 + pyramid head).

    The official ``dehaze.forward`` never calls it; it exists so that the released checkpoint,
    which holds its 54M parameters, loads strictly. Its forward is not part of DCPDN inference.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, nf: int = 64):
        super().__init__(channels=20, out_channels=output_nc)
        unet = UNet8(input_nc, nf, 20, None)
        for name, module in unet.named_children():
            self.add_module(name, module)
        self.dlayerfinal = _named_block("dlayer1", [("conv", nn.Conv2d(24, output_nc, 3, padding=1, bias=False))])


class BottleneckBlock(nn.Module):
    """BN-ReLU-1x1 conv (4x) - BN-ReLU-3x3 conv, concatenated to the input."""

    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        inter = out_planes * 4
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, inter, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inter)
        self.conv2 = nn.Conv2d(inter, out_planes, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        return torch.cat([x, out], 1)


class TransitionBlock(nn.Module):
    """BN-ReLU-1x1 transposed conv, then nearest x2 upsampling."""

    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.ConvTranspose2d(in_planes, out_planes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.conv1(self.relu(self.bn1(x))), scale_factor=2, mode="nearest")


class Dense(PyramidHead):
    """Transmission estimator: densenet121 encoder (to 1/32), dense decoder back to full size
    with skips, then the pyramid head (tanh output, 3 channels)."""

    def __init__(self):
        features = densenet121(weights=None).features
        super().__init__(channels=20, out_channels=3)
        self.conv0, self.norm0, self.relu0, self.pool0 = (features.conv0, features.norm0,
                                                          features.relu0, features.pool0)
        self.dense_block1, self.trans_block1 = features.denseblock1, features.transition1
        self.dense_block2, self.trans_block2 = features.denseblock2, features.transition2
        self.dense_block3, self.trans_block3 = features.denseblock3, features.transition3
        self.dense_block4, self.trans_block4 = BottleneckBlock(512, 256), TransitionBlock(768, 128)
        self.dense_block5, self.trans_block5 = BottleneckBlock(384, 256), TransitionBlock(640, 128)
        self.dense_block6, self.trans_block6 = BottleneckBlock(256, 128), TransitionBlock(384, 64)
        self.dense_block7, self.trans_block7 = BottleneckBlock(64, 64), TransitionBlock(128, 32)
        self.dense_block8, self.trans_block8 = BottleneckBlock(32, 32), TransitionBlock(64, 16)
        self.conv_refin = nn.Conv2d(19, 20, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.pool0(self.relu0(self.norm0(self.conv0(x))))
        x1 = self.trans_block1(self.dense_block1(x0))
        x2 = self.trans_block2(self.dense_block2(x1))
        x3 = self.trans_block3(self.dense_block3(x2))
        x4 = self.trans_block4(self.dense_block4(x3))
        x5 = self.trans_block5(self.dense_block5(torch.cat([x4, x2], 1)))
        x6 = self.trans_block6(self.dense_block6(torch.cat([x5, x1], 1)))
        x7 = self.trans_block7(self.dense_block7(x6))
        x8 = self.trans_block8(self.dense_block8(x7))
        feat = F.leaky_relu(self.conv_refin(torch.cat([x8, x], 1)), 0.2)
        return self.head(feat)


class DCPDN(PyramidHead):
    """DCPDN (Zhang & Patel, CVPR 2018), the official ``dehaze`` module.

    ``forward(x)`` with x RGB in [0, 1], H and W multiples of 256, returns
    ``(dehazed, transmission, atmospheric_light, dehazed_physical)``: the refined image
    (tanh, shown min-max normalised by the official demo), the transmission map, the
    atmospheric light map and the scattering-model inversion before refinement.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, nf: int = 64):
        super().__init__(channels=20, out_channels=output_nc)
        self.tran_est = G(input_nc, output_nc, nf)
        self.atp_est = G2(input_nc, output_nc, nf=8)
        self.tran_dense = Dense()
        self.refine1 = nn.Conv2d(6, 20, 3, padding=1)
        self.refine2 = nn.Conv2d(20, 20, 3, padding=1)
        # present in the checkpoint, unused by the official forward
        self.batch1 = nn.BatchNorm2d(20)

    def forward(self, x: torch.Tensor):
        tran = self.tran_dense(x)
        atp = self.atp_est(x)
        # one light value per HxH block (a global value for square inputs)
        h, w = atp.shape[-2:]
        atp = F.interpolate(F.leaky_relu(F.avg_pool2d(atp, h), 0.2), size=(h, w), mode="nearest")
        dehazed_physical = (x - atp) / (tran.abs() + 1e-10) + atp
        feat = F.leaky_relu(self.refine1(torch.cat([dehazed_physical, x], 1)), 0.2)
        feat = F.leaky_relu(self.refine2(feat), 0.2)
        return self.head(feat), tran, atp, dehazed_physical
