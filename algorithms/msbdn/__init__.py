"""MSBDN-DFF (Dong et al., CVPR 2020): [0,1] RGB in/out, padded to a multiple of 16 (>= 32).

The authors released a whole pickled ``nn.Module`` (``torch.save(model)``); it is read with
the restricted unpickler of :func:`algorithms.common.checkpoint.load_pickled_module_state`,
which never imports the classes named in the file.
"""
from __future__ import annotations

from functools import partial

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.msbdn.arch import MSBDN

NETWORKS: dict[str, NetworkVariant] = {
    "msbdn": NetworkVariant(
        build=partial(MSBDN, res_blocks=18),
        # H, W multiples of 16, and at least 32: the 1/16-scale blocks reflect-pad by 1 pixel
        io=IOFacts(pad_multiple=16, min_size=32, pad_mode="reflect", channels_last=True),
        checkpoint=CheckpointFacts(pickled_module=True),
        paper="Multi-Scale Boosted Dehazing Network with Dense Feature Fusion (Dong et al., CVPR 2020)",
    ),
}

factory = network_factory(NETWORKS)
