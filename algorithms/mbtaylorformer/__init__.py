"""MB-TaylorFormer (Qiu et al., ICCV 2023): sizes B and L."""
from __future__ import annotations

from functools import partial

from algorithms.common.checkpoint import CheckpointFacts
from algorithms.common.network import IOFacts, NetworkVariant, network_factory
from algorithms.mbtaylorformer.arch import MB_TaylorFormer

PAPER = (
    "Qiu, Zhang, Wang, Lu, Zhao, Song. MB-TaylorFormer: Multi-branch Efficient Transformer "
    "Expanded by Taylor Formula for Image Dehazing. ICCV 2023, arXiv:2308.14036"
)

#: Dehazing/Options/MB-TaylorFormer-{B,L}.yml network_g, as Dehazing/test.py builds it
CONFIGS: dict[str, dict] = {
    "b": dict(num_blocks=[2, 3, 3, 4], num_refinement_blocks=2, num_path=[2, 2, 2, 2]),
    "l": dict(num_blocks=[4, 6, 6, 8], num_refinement_blocks=4, num_path=[2, 3, 3, 3]),
}
COMMON = dict(
    model_name=16, inp_channels=3, out_channels=3, dim=[24, 48, 72, 96], heads=[1, 2, 4, 8],
    ffn_expansion_factor=2.66, bias=False, LayerNorm_type="WithBias", dual_pixel_task=False,
    qk_norm=0.5, offset_clamp=[-3, 3],
)

#: test.py: [0,1] input, reflect pad bottom/right to a multiple of 8, crop, clamp(0,1).
#: Attention sums over all tokens and SKFF pools globally: tiles are not independent.
IO = IOFacts(pad_multiple=8, pad_mode="reflect", tileable=False, channels_last=True)
#: released files: basicsr {"params": state_dict}
CHECKPOINT = CheckpointFacts(unwrap=("params", "params_ema", "state_dict"))

NETWORKS: dict[str, NetworkVariant] = {
    f"mb-taylorformer-{size}": NetworkVariant(
        build=partial(MB_TaylorFormer, **COMMON, **config), io=IO, checkpoint=CHECKPOINT, paper=PAPER
    )
    for size, config in CONFIGS.items()
}

factory = network_factory(NETWORKS)
