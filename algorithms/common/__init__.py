"""Shared pieces of the zoo: padding/tiling, checkpoint loading, network runner, guided filter,
scattering model, quality scores, neighborhood attention."""
