"""D4 (Yang et al., CVPR 2022): unpaired dehazing by density and depth decomposition."""
from __future__ import annotations

from functools import partial

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.d4.arch import HazeRemovalNet

PAPER = ("Yang, Wang, Liu, Zhang, Guo, Tao: Self-augmented Unpaired Image Dehazing via Density "
         "and Depth Decomposition, CVPR 2022")

NETWORKS: dict[str, NetworkVariant] = {
    "d4": NetworkVariant(
        # released config.yml (checkpoints/quick_test): BASE_CHANNEL_NUM 32, beta 0.6..1.8,
        # depth 0.2..5, SOTS-indoor -> atmospheric light = per-channel image maximum
        build=partial(HazeRemovalNet, base_channel_nums=32, min_beta=0.6, max_beta=1.8,
                      min_d=0.2, max_d=5.0, use_dc_A=False),
        # D4.test(): RGB [0, 1], reflect-pad bottom/right to a multiple of 32; J is clamped in
        # forward. The atmospheric light is a whole-image maximum, so tiles would not match.
        io=IOFacts(pad_multiple=32, min_size=32, output_index=0, tileable=False, channels_last=True),
        # {'net_h2c', 'net_c2h', 'net_depth'} (legacy torch.save format): the dehazer is net_h2c
        checkpoint=CheckpointFacts(unwrap=("net_h2c",)),
        paper=PAPER,
    ),
}

factory = network_factory(NETWORKS)
