"""Light-DehazeNet (Ullah et al., IEEE TIP 2021): K-estimation network on [0,1] RGB, any size."""
from __future__ import annotations

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.lightdehazenet.arch import LightDehazeNet

NETWORKS: dict[str, NetworkVariant] = {
    "light-dehazenet": NetworkVariant(
        build=LightDehazeNet,
        io=IOFacts(batchable=True, channels_last=True),  # [0,1] in, [0,1] out (clamped by the common code)
        checkpoint=CheckpointFacts(),  # plain state dict
        paper="Light-DehazeNet: A Novel Lightweight CNN Architecture for Single Image Dehazing "
        "(Ullah et al., IEEE TIP 2021)",
    ),
}

factory = network_factory(NETWORKS)
