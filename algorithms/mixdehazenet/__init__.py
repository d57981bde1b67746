"""MixDehazeNet (IJCNN 2024): Mix Structure Block dehazing network, variants T/S/B/L."""
from __future__ import annotations

from functools import partial

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.mixdehazenet.arch import MixDehazeNet

PAPER = "Lu et al., MixDehazeNet: Mix Structure Block For Image Dehazing Network, IJCNN 2024 (arXiv:2305.17654)"

#: official test.py: input x*2-1, output clamp(-1,1)*0.5+0.5; forward() pads to a multiple of 4 itself.
#: The dilated 7x7 convolution reflect-pads by 9 at 1/4 resolution, so images are padded to >= 40 px.
IO = IOFacts(input_range=(-1.0, 1.0), output_range=(-1.0, 1.0), pad_multiple=4, min_size=40, batchable=True,
             channels_last=True)

#: released files: {"state_dict": ...} saved from nn.DataParallel ("module." prefix)
CHECKPOINT = CheckpointFacts(unwrap=("state_dict",), strip_prefixes=("module.",))

_DEPTHS = {"t": (1, 1, 2, 1, 1), "s": (2, 2, 4, 2, 2), "b": (4, 4, 8, 4, 4), "l": (8, 8, 16, 8, 8)}

NETWORKS: dict[str, NetworkVariant] = {
    f"mixdehazenet-{size}": NetworkVariant(
        build=partial(MixDehazeNet, depths=depths), io=IO, checkpoint=CHECKPOINT, paper=PAPER
    )
    for size, depths in _DEPTHS.items()
}

factory = network_factory(NETWORKS)
