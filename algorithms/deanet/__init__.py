"""DEA-Net (Chen et al., IEEE TIP 2024): [0,1] RGB in/out, reflect-padded to a multiple of 4."""
from __future__ import annotations

from functools import partial

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.deanet.arch import DEANet

NETWORKS: dict[str, NetworkVariant] = {
    "dea-net": NetworkVariant(
        build=partial(DEANet, base_dim=32),
        io=IOFacts(pad_multiple=4, pad_mode="reflect", batchable=True, channels_last=True),
        # released (re-parameterised) checkpoints are bare state dicts
        checkpoint=CheckpointFacts(),
        paper="DEA-Net: Single Image Dehazing Based on Detail-Enhanced Convolution and Content-Guided "
        "Attention (Chen et al., IEEE TIP 2024)",
    ),
}

factory = network_factory(NETWORKS)
