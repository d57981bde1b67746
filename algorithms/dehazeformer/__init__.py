"""DehazeFormer (Song et al., IEEE TIP 2023): sizes T/S/B/M/L (conformance vectors) and D/W."""
from __future__ import annotations

from dataclasses import replace
from functools import partial

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.dehazeformer.arch import CONFIGS, DehazeFormer

PAPER = "Song, He, Qian, Du. Vision Transformers for Single Image Dehazing. IEEE TIP 2023, arXiv:2204.03883"

#: official test.py: input img01*2-1; the network pads itself to a multiple of 4;
#: output clamp(-1, 1)*0.5+0.5
IO = IOFacts(input_range=(-1.0, 1.0), output_range=(-1.0, 1.0), min_size=32, batchable=True)
#: released files: {"state_dict": {"module.<name>": tensor}}
CHECKPOINT = CheckpointFacts(unwrap=("state_dict",), strip_prefixes=("module.",))

#: sizes measured faster in channels-last on CPU (benchmarks/fastpaths.py, 2026-12-07: 0.58-0.86x
#: of NCHW at 256 and 384 px); L and W were not consistently faster
CHANNELS_LAST_SIZES = {"t", "s", "b", "d", "m"}

NETWORKS: dict[str, NetworkVariant] = {
    f"dehazeformer-{size}": NetworkVariant(
        build=partial(DehazeFormer, **config), io=replace(IO, channels_last=size in CHANNELS_LAST_SIZES),
        checkpoint=CHECKPOINT, paper=PAPER,
    )
    for size, config in CONFIGS.items()
}

factory = network_factory(NETWORKS)
