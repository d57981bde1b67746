"""TSDNet (IEEE TII 2022): haze-attention + two-branch dehazing network."""
from __future__ import annotations

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.tsdnet.arch import GNet

PAPER = (
    "Liu, Guo, Lu, Chui, Gupta, Deep network-enabled haze visibility enhancement for visual "
    "IoT-driven intelligent transportation systems, IEEE TII 19(2):1581-1591, 2022"
)

NETWORKS: dict[str, NetworkVariant] = {
    "tsdnet": NetworkVariant(
        build=GNet,
        # official test: /255 only, any size, output used as [0,1]
        io=IOFacts(channels_last=True),
        # GNet.tar: {"state_dict": <nn.DataParallel keys, "module." prefix>, "optimizer": ...}
        checkpoint=CheckpointFacts(unwrap=("state_dict",), strip_prefixes=("module.",)),
        paper=PAPER,
    ),
}

factory = network_factory(NETWORKS)
