"""AOD-Net (Li et al., ICCV 2017): K-estimation network on [0,1] RGB, any size."""
from __future__ import annotations

from algorithms.aodnet.arch import AODNet
from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory

NETWORKS: dict[str, NetworkVariant] = {
    "aod-net": NetworkVariant(
        build=AODNet,
        io=IOFacts(batchable=True, channels_last=True),  # [0,1] in, [0,1] out (clamped by the common code)
        checkpoint=CheckpointFacts(),  # plain state dict
        paper="AOD-Net: All-in-One Dehazing Network (Li et al., ICCV 2017)",
    ),
}

factory = network_factory(NETWORKS)
