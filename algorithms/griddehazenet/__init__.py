"""GridDehazeNet (Liu et al., ICCV 2019): [-1,1] input, [0,1] output, any size."""
from __future__ import annotations

from functools import partial

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.griddehazenet.arch import GridDehazeNet

NETWORKS: dict[str, NetworkVariant] = {
    "griddehazenet": NetworkVariant(
        build=partial(GridDehazeNet, height=3, width=6, num_dense_layer=4, growth_rate=16),
        io=IOFacts(input_range=(-1.0, 1.0), batchable=True, channels_last=True),  # odd sizes are handled inside forward
        # released files are DataParallel state dicts: every key starts with "module."
        checkpoint=CheckpointFacts(strip_prefixes=("module.",)),
        paper="GridDehazeNet: Attention-Based Multi-Scale Network for Image Dehazing (Liu et al., ICCV 2019)",
    ),
}

factory = network_factory(NETWORKS)
