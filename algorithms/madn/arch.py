"""MADN, the dehazing network vendored by the legacy Dehaze system (no paper or upstream found).

The legacy pipeline has two networks: :class:`Meta` turns a 12-channel stack of enhanced
versions of the hazy image (``algorithms.madn.prestack``) into 160 channels of "haze features";
:class:`TransformNet` uses those features to weight 34 operations (a softmax over them) while it
dehazes. Re-implemented from the conformance spec's description; parameter names are the
legacy ones, so the legacy ``model.pth`` / ``dehaze_80_state_dict.pth`` load with strict=True.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Meta(nn.Module):
    """Haze-feature extractor of the legacy MADN pipeline (checkpoint dehaze_80_state_dict.pth).

    Six 3x3 convolutions 12 -> 16 -> 32 -> 64 -> 32 -> 16 -> 3 (BatchNorm on the middle four,
    LeakyReLU 0.2 after all but the last). ``forward`` returns ``(haze_features, fea6)``: the
    first five stage outputs concatenated (160 channels, the input of :class:`TransformNet`)
    and the last stage's 3-channel output, which the legacy pipeline does not use.
    """

    widths = (16, 32, 64, 32, 16)

    def __init__(self, base: int = 8, in_channels: int = 12):
        super().__init__()
        # ``base`` is the legacy constructor argument; the layer widths do not depend on it
        self.base = base
        self.conv1 = nn.Conv2d(in_channels, self.widths[0], 3, padding=1)
        for i in range(1, len(self.widths)):
            setattr(self, f"conv{i + 1}", nn.Conv2d(self.widths[i - 1], self.widths[i], 3, padding=1))
            setattr(self, f"bn{i + 1}", nn.BatchNorm2d(self.widths[i]))
        self.conv6 = nn.Conv2d(self.widths[-1], 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = [F.leaky_relu(self.conv1(x), 0.2)]
        for i in range(2, len(self.widths) + 1):
            conv, bn = getattr(self, f"conv{i}"), getattr(self, f"bn{i}")
            feats.append(F.leaky_relu(bn(conv(feats[-1])), 0.2))
        return torch.cat(feats, dim=1), self.conv6(feats[-1])


def conv_in_relu(cin: int, cout: int, kernel: int = 3) -> list[nn.Module]:
    """Conv (zero padding, size-preserving) -> InstanceNorm (no affine) -> ReLU."""
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.InstanceNorm2d(cout), nn.ReLU(inplace=True)]


def _scale(t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Multiply each sample of ``t`` (N x C x H x W) by its scalar ``weight`` (N,)."""
    return t * weight.view(-1, 1, 1, 1)


class OALayer(nn.Module):
    """Operation attention: global average of the haze features -> Linear -> ReLU -> Linear,
    one logit per operation (the softmax is taken by :class:`TransformNet`)."""

    def __init__(self, channels: int = 160, num_ops: int = 34, hidden: int = 68):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.ca_fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_ops))

    def forward(self, fea: torch.Tensor) -> torch.Tensor:
        return self.ca_fc(self.pool(fea).flatten(1))  # N x num_ops


class Dehaze(nn.Module):
    """Pyramid-pooling refinement head (operations 24-28 of the attention).

    ``a = LeakyReLU0.2(refine1(x)) * w0``; for each pool size ``k``: ``avg_pool2d(a, k)`` (floor)
    -> 1x1 conv 20 -> 1 -> LeakyReLU0.2 -> nearest upsampling back to H x W -> ``* w1..w4``;
    ``tanh(refine3(cat(b1, b2, b3, b4, a)))``. Needs H, W >= the largest pool size.
    ``refine2`` and ``batch1`` are in the legacy checkpoint but unused by its forward.
    """

    pools: tuple[int, ...] = (32, 16, 8, 4)

    def __init__(self, channels: int = 20):
        super().__init__()
        self.refine1 = nn.Conv2d(3, channels, 3, padding=1)
        self.refine2 = nn.Conv2d(channels, channels, 3, padding=1)  # unused (legacy checkpoint)
        for i in range(1, len(self.pools) + 1):
            setattr(self, f"conv10{i}0", nn.Conv2d(channels, 1, 1))
        self.refine3 = nn.Conv2d(channels + len(self.pools), 3, 3, padding=1)
        self.batch1 = nn.InstanceNorm2d(100, affine=True)  # unused (legacy checkpoint)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``weights``: N x 5, the attention weights of this head."""
        a = _scale(F.leaky_relu(self.refine1(x), 0.2), weights[:, 0])
        size = a.shape[-2:]
        branches = []
        for i, k in enumerate(self.pools, start=1):
            b = F.leaky_relu(getattr(self, f"conv10{i}0")(F.avg_pool2d(a, k)), 0.2)
            branches.append(_scale(F.interpolate(b, size=size, mode="nearest"), weights[:, i]))
        return torch.tanh(self.refine3(torch.cat(branches + [a], dim=1)))


class Dehaze1(Dehaze):
    """:class:`Dehaze` with pools 16/8/4/2 (operations 29-33)."""

    pools = (16, 8, 4, 2)


class TransformNet(nn.Module):
    """The MADN dehazer (legacy checkpoint MADN/model.pth). ``forward(X, fea, pre)``:

    - ``w = softmax(OALayer(fea))`` over 34 operations;
    - ``h0 = net(pre)``: three conv3x3-IN-ReLU layers 12 -> 32 -> 64 -> 128;
    - six mixed steps with the shared ops ``op11/op22/op33/op44`` (1/3/5/7 conv 128 -> 32, IN,
      ReLU), concatenated after scaling by ``w[4s + j]``:
      ``u1 = mix0(h0)``, ``u2 = mix1(u1) + h0``, ``u_{s+1} = mix_s(u_s) + u_{s-1}``;
    - ``yed = netd(u6) + X`` (three conv3x3-IN-ReLU layers 128 -> 64 -> 32 -> 3);
    - ``yede = Dehaze(yed, w[24:29]) + X``; output ``Dehaze1(yede, w[29:34]) + X``.

    The legacy class also holds residual blocks of MyConv2D layers whose weights are all-zero
    plain attributes, never set at inference: they compute the identity and hold no state, so
    they are left out. H, W >= 32 (the 32 x 32 average pool of :class:`Dehaze`).
    """

    steps = 6
    num_ops = 34

    def __init__(self, base: int = 32, in_channels: int = 12, fea_channels: int = 160):
        super().__init__()
        self.base = base
        width = 4 * base  # 128: the four op branches of ``base`` channels, concatenated
        self.net = nn.Sequential(
            *conv_in_relu(in_channels, base), *conv_in_relu(base, 2 * base), *conv_in_relu(2 * base, width)
        )
        for j, k in enumerate((1, 3, 5, 7), start=1):
            setattr(self, f"op{j}{j}", nn.Sequential(*conv_in_relu(width, base, k)))
        self.netd = nn.Sequential(
            *conv_in_relu(width, 2 * base), *conv_in_relu(2 * base, base), *conv_in_relu(base, 3)
        )
        self.dehaze = Dehaze()
        self.dehaze1 = Dehaze1()
        self.attention = OALayer(fea_channels, self.num_ops, 2 * self.num_ops)

    def _mix(self, u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ops = (self.op11, self.op22, self.op33, self.op44)
        return torch.cat([_scale(op(u), w[:, j]) for j, op in enumerate(ops)], dim=1)

    def forward(self, x: torch.Tensor, fea: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.attention(fea), dim=-1)  # N x 34
        prev, cur = None, self.net(pre)
        for s in range(self.steps):
            mixed = self._mix(cur, w[:, 4 * s : 4 * s + 4])
            prev, cur = cur, (mixed if prev is None else mixed + prev)
        n = 4 * self.steps
        yed = self.netd(cur) + x
        yede = self.dehaze(yed, w[:, n : n + 5]) + x
        return self.dehaze1(yede, w[:, n + 5 : n + 10]) + x


class MADN(nn.Module):
    """The whole legacy pipeline after the pre stack: ``forward(X, pre)`` runs Meta on the
    12-channel stack and TransformNet on ``(X, features, stack)``."""

    def __init__(self, meta: Meta | None = None, transform: TransformNet | None = None):
        super().__init__()
        self.meta = meta if meta is not None else Meta(8)
        self.transform = transform if transform is not None else TransformNet(32)

    def forward(self, x: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        fea, _ = self.meta(pre)
        return self.transform(x, fea, pre)
