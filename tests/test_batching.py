"""Dynamic batching: a network marked ``batchable`` gives every image of a same-shape batch the
result it gets alone, and the check would catch an operation that mixes the samples."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from algorithms.common.network import IOFacts, NetworkDehazer, NetworkVariant, declared_networks, find_network
from algorithms.common.runtime import RuntimeOptions


def _batchable_variants() -> tuple[list[str], list[str]]:
    """(every batchable variant, one per network class: variants of one class differ only in
    widths and depths, so batching behaves the same in all of them)."""
    found, per_class = [], {}
    for v, spec in sorted(declared_networks().items()):
        if spec.io.batchable:
            found.append(v)
            per_class.setdefault(getattr(spec.build, "func", spec.build), v)
    return sorted(found), sorted(per_class.values())


BATCHABLE, ONE_PER_CLASS = _batchable_variants()


def _images(seed: int, shape=(40, 44)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    # two different images: the second is darker and flipped, so any mixing shows
    return [base, (np.flip(base, 1) * 0.6).astype(np.uint8)]


def batch_mismatch(dehazer: NetworkDehazer, images: list[np.ndarray]) -> float:
    """Largest difference between batched and one-by-one raw outputs, relative to their scale."""
    from algorithms.common.network import to_tensor01

    with torch.inference_mode():
        xs = [to_tensor01(im, dehazer.device) for im in images]
        alone = torch.cat([dehazer.forward_raw(x) for x in xs])
        together = dehazer.forward_raw(torch.cat(xs))
    return ((alone - together).abs().max() / alone.abs().max().clamp_min(1)).item()


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_batchable_networks_are_declared():
    assert len(BATCHABLE) >= 10, BATCHABLE


@pytest.mark.parametrize("variant", ONE_PER_CLASS)
def test_batch_equals_one_by_one(variant, one_thread):
    torch.manual_seed(0)
    spec = find_network(variant)
    dehazer = NetworkDehazer(spec.build(), spec.io, RuntimeOptions(device="cpu"))
    images = _images(1)
    assert batch_mismatch(dehazer, images) < 1e-4
    batched = dehazer.dehaze_batch(images)
    for alone, together in zip((dehazer(im) for im in images), batched):
        assert together.shape == alone.shape and together.dtype == np.uint8
        assert np.abs(alone.astype(int) - together.astype(int)).max() <= 1


class _MixesSamples(torch.nn.Module):
    """A global mean over the whole tensor, as RIDCP's decoder does: not batchable."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y - y.mean()


def test_mismatch_check_detects_sample_mixing():
    dehazer = NetworkDehazer(_MixesSamples(), IOFacts(batchable=True), RuntimeOptions(device="cpu"))
    assert batch_mismatch(dehazer, _images(2)) > 1e-3  # 10x the tolerance above


def test_batch_key_groups_only_equal_untiled_shapes():
    spec = NetworkVariant(build=_MixesSamples, io=IOFacts(batchable=True))
    dehazer = NetworkDehazer(spec.build(), spec.io, RuntimeOptions(device="cpu", tile_size=64))
    a, b = _images(3, (40, 48)), _images(3, (48, 40))
    assert dehazer.batch_key(a[0]) == dehazer.batch_key(a[1]) == (40, 48)
    assert dehazer.batch_key(b[0]) != dehazer.batch_key(a[0])
    assert dehazer.batch_key(np.zeros((80, 40, 3), np.uint8)) is None  # tiled: runs alone
    plain = NetworkDehazer(spec.build(), IOFacts(), RuntimeOptions(device="cpu"))
    assert plain.batch_key(a[0]) is None  # not marked batchable
    # mixed shapes fall back to one by one, with the same results
    out = dehazer.dehaze_batch([a[0], b[0]])
    np.testing.assert_array_equal(out[1], dehazer(b[0]))
