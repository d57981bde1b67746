"""gUNet (Song et al., arXiv:2209.11448): sizes T/S/B/D."""
from __future__ import annotations

from dataclasses import replace
from functools import partial

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.gunet.arch import CONFIGS, gUNet

PAPER = "Song, Zhou, Qian, Du. Rethinking Performance Gains in Image Dehazing Networks. arXiv:2209.11448"

#: official test.py: input img01*2-1, reflect-padded bottom/right to a multiple of 8;
#: output clamp(-1, 1), cropped, *0.5+0.5
IO = IOFacts(input_range=(-1.0, 1.0), output_range=(-1.0, 1.0), pad_multiple=8, min_size=24, pad_mode="reflect", batchable=True)
#: released files: {"state_dict": {"module.<name>": tensor}}
CHECKPOINT = CheckpointFacts(unwrap=("state_dict",), strip_prefixes=("module.",))

#: sizes measured faster in channels-last on CPU (benchmarks/fastpaths.py, 2026-12-07: 0.73-0.89x
#: of NCHW at 256 and 384 px); T was slower (1.11x) and S not consistently faster
CHANNELS_LAST_SIZES = {"b", "d"}

NETWORKS: dict[str, NetworkVariant] = {
    f"gunet-{size}": NetworkVariant(
        build=partial(gUNet, **config), io=replace(IO, channels_last=size in CHANNELS_LAST_SIZES),
        checkpoint=CHECKPOINT, paper=PAPER,
    )
    for size, config in CONFIGS.items()
}

factory = network_factory(NETWORKS)
