"""C2PNet (Zheng et al., CVPR 2023): physics-aware dehazing with curricular contrastive regularization."""
from __future__ import annotations

from functools import partial

from algorithms.c2pnet.arch import C2PNet
from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory

NETWORKS: dict[str, NetworkVariant] = {
    "c2pnet": NetworkVariant(
        build=partial(C2PNet, gps=3, blocks=19),
        # input and output in [0, 1]; attention and PDU pool over the whole image
        io=IOFacts(tileable=False, channels_last=True),
        # {"step", "max_psnr", ..., "model": state dict}
        checkpoint=CheckpointFacts(unwrap=("model",), strip_prefixes=("module.",)),
        paper="Zheng et al., Curricular Contrastive Regularization for Physics-aware Single Image "
        "Dehazing, CVPR 2023",
    ),
}

factory = network_factory(NETWORKS)
