"""The compiled bilinear sampler (:mod:`somtorch.geometry._sampler`) against torch's ``grid_sample``.

* bit for bit on random and adversarial points (pixel centres and edges, far outside, the
  transformer's sentinel), several channels, batch sizes around the kernel's tile sizes;
* the transformer's base rotations (square and ordered) identical with and without it;
* it checks itself against ``grid_sample`` and stands aside when they differ, or when disabled.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

from somtorch.geometry import PinkTransformer, _sampler
from somtorch.geometry._sampler import GridSampler


def _grid_sample(images, grid):
    """Reference: ``grid_sample`` of every image at grids ``(G, P, 2)`` -> ``(B, G, C, P)``."""
    b = images.shape[0]
    out = [torch.nn.functional.grid_sample(images, g.view(1, 1, -1, 2).expand(b, 1, -1, 2), mode="bilinear",
                                           padding_mode="zeros", align_corners=True)[:, :, 0] for g in grid]
    return torch.stack(out, dim=1)


def _points(d, n, seed):
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(n, 2, generator=g) * 2.6 - 1.3  # inside and around the image
    step = 2.0 / (d - 1)
    centres = torch.arange(d, dtype=torch.float32) * step - 1.0
    pts[: d, 0], pts[: d, 1] = centres, centres.flip(0)  # exactly on pixel centres
    pts[d: 2 * d, 0] = centres + step / 2  # exactly half-way
    pts[2 * d: 2 * d + 4] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-10.0, -10.0], [1.0 + step, 0.0]])
    return pts


def _sampler_or_skip(grid, d):
    smp = GridSampler(grid, d)
    if smp.fn is None:
        pytest.skip("no working C compiler (grid_sample is used)")
    if not smp.ok:
        pytest.skip("this torch build's grid_sample does not fuse its sum (grid_sample is used)")
    return smp


@pytest.mark.parametrize("d", [7, 40, 64])
@pytest.mark.parametrize("batch, channels", [(1, 1), (3, 2), (70, 1), (17, 4)])
def test_bit_identical_to_grid_sample(d, batch, channels):
    grid = torch.stack([_points(d, 333, seed) for seed in range(3)])  # 333 points: not a multiple of 16
    smp = _sampler_or_skip(grid, d)
    x = torch.randn(batch, channels, d, d, generator=torch.Generator().manual_seed(d + batch)) * 100
    x[:, :, ::5] = 0.0
    got = smp.sample(x)
    assert got.shape == (batch, 3, channels, 333)
    assert torch.equal(got, _grid_sample(x, grid))
    # a subset of the grids, into a strided slice of a larger buffer
    buf = torch.full((batch, 4, channels, 333), float("nan"))
    smp.sample(x, which=[2, 0], out=buf[:, 1:3])
    assert torch.equal(buf[:, 1:3], _grid_sample(x, grid[[2, 0]]))
    assert torch.isnan(buf[:, 0]).all() and torch.isnan(buf[:, 3]).all()


@pytest.mark.parametrize("d, nd, numrot, window", [(40, 57, 36, None), (40, 57, 8, (14, 43)), (64, 91, 360, (23, 68)),
                                                   (33, 33, 12, (4, 29))])
def test_base_rotations_identical_with_and_without(d, nd, numrot, window, monkeypatch):
    x = torch.rand(9, 2, d, d, generator=torch.Generator().manual_seed(nd))
    order = torch.randperm((window[1] - window[0] if window else nd) ** 2,
                           generator=torch.Generator().manual_seed(1))[:100]
    fast = PinkTransformer(d, neuron_dim=nd, numrot=numrot)
    a = fast.base_rotations(x, window)
    b = fast.base_rotations_ordered(x, order, window)
    used = [v for k, v in fast._grid_cache.items() if isinstance(k, tuple) and k[0] == "sampler"]
    if not used or not all(s.ok for s in used):
        pytest.skip("the compiled sampler is not used on this machine")
    monkeypatch.setenv("SOMTORCH_NATIVE", "0")
    slow = PinkTransformer(d, neuron_dim=nd, numrot=numrot)
    assert torch.equal(a, slow.base_rotations(x, window))
    assert torch.equal(b, slow.base_rotations_ordered(x, order, window))
    assert not any(k[0] == "sampler" and v.ok for k, v in slow._grid_cache.items() if isinstance(k, tuple))
    # and the full expansion (the drop-in's transformations) is unchanged
    assert torch.equal(fast(x[:2], window), slow(x[:2], window))


def test_stands_aside_when_it_disagrees_or_is_disabled(monkeypatch):
    d = 20
    grid = _points(d, 50, 0)[None]
    real = _sampler._function()
    if real is None:
        pytest.skip("no working C compiler")

    def wrong(src, m, tab, wt, np_, grids, ng, out, ch, sb, sg, sc, j0, j1):  # a little off everywhere
        real(src, m, tab, wt, np_, grids, ng, out, ch, sb, sg, sc, j0, j1)
        buf = (ctypes.c_float * (sb * (m // ch))).from_address(out)  # the output tensor's memory
        t = torch.from_numpy(np.ctypeslib.as_array(buf))
        t.add_(t.abs() * 1e-6 + 1e-30)

    monkeypatch.setattr(_sampler, "_state", {"fn": wrong})
    smp = GridSampler(grid, d)
    assert not smp.ok and smp.sample(torch.rand(2, 1, d, d)) is None
    monkeypatch.setattr(_sampler, "_state", {"fn": real})
    assert GridSampler(grid, d).ok
    monkeypatch.setenv("SOMTORCH_NATIVE", "0")
    smp = GridSampler(grid, d)
    assert smp.fn is None and not smp.ok and smp.sample(torch.rand(2, 1, d, d)) is None


def test_split_over_threads_changes_nothing(monkeypatch):
    d = 24
    grid = torch.stack([_points(d, 200, seed) for seed in range(5)])
    smp = _sampler_or_skip(grid, d)
    monkeypatch.setattr(_sampler, "PARALLEL_MIN", 1)
    threads = torch.get_num_threads()
    x = torch.randn(70, 3, d, d, generator=torch.Generator().manual_seed(6))  # 210 planes: 4 chunks of 64
    try:
        torch.set_num_threads(1)
        one = smp.sample(x)
        for n in (2, 3, 8):  # more threads than chunks too
            torch.set_num_threads(n)
            assert torch.equal(smp.sample(x), one)
            assert torch.equal(smp.sample(x, which=[4, 1]), one[:, [4, 1]])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, _grid_sample(x, grid))


def test_concurrent_callers_share_the_pool(monkeypatch):
    """Two threads sampling at once (the trainer prepares the next batch on a second thread) with
    different batch sizes get their own, correct results."""
    from concurrent.futures import ThreadPoolExecutor

    d = 16
    grid = torch.stack([_points(d, 150, seed) for seed in range(4)])
    smp = _sampler_or_skip(grid, d)
    monkeypatch.setattr(_sampler, "PARALLEL_MIN", 1)
    xs = [torch.rand(n, 1, d, d, generator=torch.Generator().manual_seed(n)) for n in (65, 130, 3, 200)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        with ThreadPoolExecutor(2) as ex:
            got = list(ex.map(smp.sample, xs * 3))
    finally:
        torch.set_num_threads(threads)
    for x, g in zip(xs * 3, got):
        assert torch.equal(g, _grid_sample(x, grid))


def test_wrong_image_size_or_grid_is_refused():
    grid = _points(12, 40, 0)[None]
    smp = _sampler_or_skip(grid, 12)
    with pytest.raises(ValueError, match="12 x 12"):
        smp.sample(torch.rand(2, 1, 13, 13))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        smp.sample(torch.rand(2, 1, 12, 12), which=[1])


@pytest.mark.parametrize("d,nd,numrot,channels", [(64, 91, 360, 1), (13, 19, 36, 2), (40, 57, 8, 1), (21, 21, 12, 1)])
def test_one_image_loop_is_grid_sample(d, nd, numrot, channels):
    """sample_one: the selected full-size grids of one image, straight into their places, equal to
    grid_sample bit for bit (points outside the image included), also split over two threads."""
    tr = PinkTransformer(d, nd, numrot, True)
    bank = tr._grid_bank(torch.device("cpu"), torch.float32)
    g = torch.Generator().manual_seed(d)
    img = torch.rand(channels, d, d, generator=g) * 2 - 0.5
    img[:, ::4] = 0.0
    m = min(9, bank.shape[0])
    sel = torch.randperm(bank.shape[0], generator=g)[:m]
    slots = torch.randperm(12, generator=g)[:m]  # where each goes, in any order
    ref = torch.nn.functional.grid_sample(img.expand(m, channels, d, d), bank.index_select(0, sel), mode="bilinear",
                                          padding_mode="zeros", align_corners=True)
    for threads in (1, 2):
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            out = torch.full((12, channels, nd, nd), -9.0)
            assert _sampler.sample_one(img, bank, sel, out, slots * channels * nd * nd)
        finally:
            torch.set_num_threads(old)
        assert torch.equal(out[slots], ref)
        rest = torch.ones(12, dtype=torch.bool)
        rest[slots] = False
        assert (out[rest] == -9.0).all()
    with pytest.raises(ValueError, match="grid indices"):
        _sampler.sample_one(img, bank, [bank.shape[0]], out, [0])
    with pytest.raises(ValueError, match="inside out"):
        _sampler.sample_one(img, bank, [0], out, [out.numel() - 1])


def test_per_image_selection_uses_the_one_image_loop_and_agrees(monkeypatch):
    """PinkTransformer.select (the online steps' updates) samples through sample_one and gives the
    same transforms as with it unavailable (grid_sample) and as the full expansion."""
    tr = PinkTransformer(24, 35, 36, True)
    img = torch.rand(1, 24, 24, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0, 5, 9 + 36, 17, 40, 71, 44, 3])
    calls = []
    real = _sampler.sample_one
    monkeypatch.setattr(_sampler, "sample_one", lambda *a: calls.append(1) or real(*a))
    fast = tr.select(img, t)
    assert calls
    monkeypatch.setattr(_sampler, "sample_one", lambda *a: False)
    assert torch.equal(fast, tr.select(img, t))
    assert torch.equal(fast, tr(img.unsqueeze(0))[0, t])
