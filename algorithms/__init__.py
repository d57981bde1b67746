"""Dehaze Serve model zoo: classical priors and deep networks behind one Dehazer contract.

Nothing in this package knows about Ray or HTTP.
"""
from __future__ import annotations

from functools import lru_cache

__all__ = ["build_network"]


@lru_cache(maxsize=None)
def _network_spec(variant_id: str):
    from algorithms.common.network import find_network

    return find_network(variant_id)


def build_network(variant_id: str):
    """The bare network of a conformance variant (folder name in shared/conformance), built
    with the official constructor arguments and no weights loaded."""
    return _network_spec(variant_id).build()
