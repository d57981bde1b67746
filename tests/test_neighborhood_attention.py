"""Our pure-PyTorch neighborhood attention equals natten's (window clamping at the borders,
dilation groups), supports natten<=0.17's relative positional bias, and is differentiable."""
from __future__ import annotations

import pytest
import torch

from algorithms.common.neighborhood_attention import NeighborhoodAttention2D, neighborhood_attention_2d


def _qkv(h, w, heads=2, dim=8, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, h, w, heads, dim, generator=g, dtype=dtype) for _ in range(3)]


def _reference(q, k, v, kernel_size, dilation, rpb=None):
    """Per-query loops straight from the definition: clamped windows within dilation groups,
    rpb indexed by (key - query) / dilation + kernel_size - 1."""
    _, h, w, heads, dim = q.shape

    def window(i, length):
        group, index = i % dilation, i // dilation
        group_len = len(range(group, length, dilation))
        start = min(max(index - kernel_size // 2, 0), group_len - kernel_size)
        return [group + (start + a) * dilation for a in range(kernel_size)]

    out = torch.empty_like(q)
    for i in range(h):
        for j in range(w):
            rows, cols = window(i, h), window(j, w)
            keys = k[0, rows][:, cols]  # [k, k, heads, dim]
            logits = torch.einsum("hd,abhd->hab", q[0, i, j] * dim**-0.5, keys)
            if rpb is not None:
                ry = [(r - i) // dilation + kernel_size - 1 for r in rows]
                rx = [(c - j) // dilation + kernel_size - 1 for c in cols]
                logits = logits + rpb[:, ry][:, :, rx]
            attn = logits.flatten(1).softmax(-1).view_as(logits)
            out[0, i, j] = torch.einsum("hab,abhd->hd", attn, v[0, rows][:, cols])
    return out


@pytest.mark.parametrize("kernel_size", [3, 5, 7])
@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_equals_natten(kernel_size, dilation):
    import natten.functional as natten_functional  # a dependency: its CPU path runs here
    torch.set_num_threads(1)
    # odd, non-square sizes with remainders in every dilation group, plus the minimum size
    for h, w in [(kernel_size * dilation + 5, kernel_size * dilation + 8), (kernel_size * dilation,) * 2]:
        q, k, v = _qkv(h, w)
        expected = natten_functional.na2d(q, k, v, kernel_size=kernel_size, dilation=dilation)
        for tile in (3, 8):
            got = neighborhood_attention_2d(q, k, v, kernel_size, dilation, backend="torch", tile=tile)
            torch.testing.assert_close(got, expected, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("kernel_size,dilation", [(3, 1), (5, 2), (3, 3)])
def test_relative_position_bias_matches_definition(kernel_size, dilation):
    h, w = kernel_size * dilation + 4, kernel_size * dilation + 2
    q, k, v = _qkv(h, w, dtype=torch.float64)
    rpb = torch.randn(2, 2 * kernel_size - 1, 2 * kernel_size - 1, dtype=torch.float64)
    got = neighborhood_attention_2d(q, k, v, kernel_size, dilation, rpb=rpb, backend="torch", tile=4)
    torch.testing.assert_close(got, _reference(q, k, v, kernel_size, dilation, rpb), atol=1e-12, rtol=0)
    no_bias = neighborhood_attention_2d(q, k, v, kernel_size, dilation, backend="torch", tile=4)
    torch.testing.assert_close(no_bias, _reference(q, k, v, kernel_size, dilation), atol=1e-12, rtol=0)


def test_gradcheck():
    q, k, v = (t.requires_grad_() for t in _qkv(7, 8, heads=2, dim=3, dtype=torch.float64))
    rpb = torch.randn(2, 5, 5, dtype=torch.float64, requires_grad=True)

    def fn(q, k, v, rpb):
        return neighborhood_attention_2d(q, k, v, 3, 2, rpb=rpb, backend="torch", tile=2)

    assert torch.autograd.gradcheck(fn, (q, k, v, rpb))


def test_large_input_is_memory_bounded():
    """natten's CPU path (flex attention) materialises all H*W x H*W scores at 256x256."""
    q, k, v = _qkv(256, 256, heads=1, dim=8)
    out = neighborhood_attention_2d(q, k, v, 7, 4, backend="torch")
    assert out.shape == q.shape and torch.isfinite(out).all()


def test_too_small_input_is_refused():
    q, k, v = _qkv(13, 20)
    with pytest.raises(ValueError, match="kernel_size\\*dilation"):
        neighborhood_attention_2d(q, k, v, 7, 2)


def test_module_names_match_natten():
    m = NeighborhoodAttention2D(16, 2, 7, dilation=2, rel_pos_bias=True)
    assert sorted(m.state_dict()) == ["proj.bias", "proj.weight", "qkv.bias", "qkv.weight", "rpb"]
    assert m(torch.randn(1, 14, 15, 16)).shape == (1, 14, 15, 16)
