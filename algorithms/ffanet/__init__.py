"""FFA-Net (Qin et al., AAAI 2020): feature fusion attention network."""
from __future__ import annotations

from functools import partial

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.ffanet.arch import FFA

NETWORKS: dict[str, NetworkVariant] = {
    "ffa-net": NetworkVariant(
        build=partial(FFA, gps=3, blocks=19),
        io=IOFacts(
            mean=(0.64, 0.6, 0.58),
            std=(0.14, 0.15, 0.152),
            # channel attention pools over the whole image (per sample: batches are fine)
            tileable=False,
            batchable=True,
            channels_last=True,
        ),
        # {"step", "max_psnr", ..., "model": DataParallel state dict}
        checkpoint=CheckpointFacts(unwrap=("model",), strip_prefixes=("module.",)),
        paper="Qin et al., FFA-Net: Feature Fusion Attention Network for Single Image Dehazing, AAAI 2020",
    ),
}

factory = network_factory(NETWORKS)
