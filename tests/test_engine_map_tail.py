"""The compiled parity passes (engine._native_parity): the mapper's tail and block-major parity features.

Every test compares with the eager torch code the compiled pass replaces (DistanceEngine's
sq_distances_fast, TieResolver._maybe_rows, first_min), bit for bit, including tie-heavy data
and a pass split over two threads.
"""

from __future__ import annotations

import pytest
import torch

from somtorch.engine import RotationInvariantSOM, SOMGeometry
from somtorch.engine import _native as _native_loops
from somtorch.engine import _native_parity as _native
from somtorch.engine.distance import DistanceEngine, TieResolver, best_match, first_min
from somtorch.engine.mapping import Mapper
from somtorch.engine.parity import parity_from_orbits
from somtorch.geometry import Lattice

pytestmark = pytest.mark.skipif(_native._enabled("tail") is None, reason="needs a C compiler (compiled loops)")


def _eager_tail(prods, k, sides, pairs, rnorm, wnorm, rtol):
    """The torch code of sq_distances_fast after its GEMMs, then first_min and _maybe_rows."""
    ee, oe, eo, oo = prods
    n = ee.shape[1]
    m = rnorm.shape[0]
    s1, d1, s2, d2 = (x.view(m, k, sides, n) for x in (ee + oe, ee - oe, eo + oo, eo - oo))
    combine = ((torch.add, s1, s2), (torch.add, d1, d2), (torch.sub, s1, s2), (torch.sub, d1, d2))
    d = ee.new_empty((m, len(pairs), k, n))
    for q, (side, g) in enumerate(pairs):
        op, x, y = combine[g]
        op(x[:, :, side], y[:, :, side], out=d[:, q])
    d = d.view(m, -1, n).add_(rnorm.unsqueeze(-1)).add_(wnorm).clamp_min_(0)
    dmin, tb = first_min(d, dim=1)
    rows = None
    if rtol >= 0:
        res = TieResolver.__new__(TieResolver)
        res.rtol = rtol
        rows = res._maybe_rows(d, rnorm, wnorm)
    return d, dmin, tb, rows


PAIRS = [(0, 0), (1, 0), (0, 3), (1, 3), (0, 1), (1, 2), (0, 2), (1, 1)]


@pytest.mark.parametrize("m,k,n,ties,threads", [(5, 3, 7, False, 1), (40, 9, 36, True, 1), (300, 2, 100, True, 2),
                                                (64, 1, 4, True, 2)])
def test_tail_equals_eager_code(m, k, n, ties, threads):
    g = torch.Generator().manual_seed(m * 7 + n)
    sides = 2
    rows = m * k * sides

    tied = torch.arange(m) % 2 == 0 if ties else torch.zeros(m, dtype=torch.bool)

    def draw(*shape, per_image=1):
        x = torch.randn(*shape, generator=g) * 30
        # even images: integers on a coarse grid, exact ties between transformations and neurons
        t = tied.repeat_interleave(per_image)
        x[t] = torch.round(x[t] / 15)
        return x

    prods = [draw(rows, n, per_image=k * sides).contiguous() for _ in range(4)]
    rnorm = (draw(m, len(PAIRS) * k).abs() + 400).contiguous()
    wnorm = (torch.round(torch.rand(n, generator=g) * 4) + 400).contiguous()
    side = torch.tensor([p[0] for p in PAIRS])
    flip = torch.tensor([p[1] for p in PAIRS])
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for rtol in (1e-6, 0.02, -1.0):
            d, dmin, tb, flagged = _eager_tail(prods, k, sides, PAIRS, rnorm, wnorm, rtol)
            dsq = torch.full((m, len(PAIRS) * k, n), -7.0)
            cm, ct = torch.empty(m, n), torch.empty(m, n, dtype=torch.int64)
            flag = torch.empty(m, dtype=torch.int64)
            assert _native.map_tail(prods, k, sides, side, flip, rnorm, wnorm, rtol, dsq, cm, ct, flag)
            assert torch.equal(cm, dmin) and torch.equal(ct, tb)
            if rtol < 0:
                assert not flag.any()
                continue
            assert torch.equal(torch.nonzero(flag).flatten(), flagged)
            if ties and rtol == 1e-6:
                assert 0 < len(flagged) < m  # the test exercises both kinds of image
            # the flagged images' distances are written, the others' left alone
            assert torch.equal(dsq[flagged], d[flagged])
            others = torch.ones(m, dtype=torch.bool)
            others[flagged] = False
            assert (dsq[others] == -7.0).all()
    finally:
        torch.set_num_threads(old)


def _som(d, side, numrot, convention, init, channels=1, seed=1):
    geo = SOMGeometry(image_dim=d, numrot=numrot, convention=convention, channels=channels)
    som = RotationInvariantSOM(Lattice("cartesian", (side, side)), geo, init="random", seed=seed, rng="pink",
                               tie_break="pink")
    with torch.no_grad():
        if init == "zeros":  # every neuron and many transformations tie exactly
            som.weight.zero_()
        elif init == "pairs":  # neurons in equal pairs: ties between neurons
            som.weight[1::2] = som.weight[0::2][:len(som.weight[1::2])]
    return som


def _images(d, n, channels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, d, d, generator=g) ** 3
    # a third of them fourfold symmetric: exact ties between quarter turns
    x[::3] = x[::3] + x[::3].rot90(1, (-2, -1)) + x[::3].rot90(2, (-2, -1)) + x[::3].rot90(3, (-2, -1))
    return x


@pytest.mark.parametrize("d,side,numrot,convention,init,channels", [
    (40, 3, 36, "pink", "zeros", 1), (32, 4, 8, "native", "pairs", 1), (21, 3, 8, "pink", "random", 2),
    (20, 2, 4, "native", "zeros", 1), (17, 3, 1, "pink", "pairs", 1), (24, 2, 360, "native", "random", 1)])
@pytest.mark.parametrize("chunk_bytes", [None, 20000])
def test_match_fast_equals_eager_path(d, side, numrot, convention, init, channels, chunk_bytes, monkeypatch):
    """DistanceEngine.match_fast (block-major features, compiled tail, tie resolver on the flagged
    images only) == best_match(resolve_ties(sq_distances_fast(...))) bit for bit, also when the
    batch is cut into chunks (of 16 images: each chunk's operands start 64-byte aligned)."""
    from somtorch.engine import distance

    if chunk_bytes:
        monkeypatch.setattr(distance, "_CHUNK_BYTES", chunk_bytes)
    som = _som(d, side, numrot, convention, init, channels)
    eng: DistanceEngine = som.engine
    x = _images(d, 50, channels)
    v, wnorm = eng.neuron_parity(som.weight)
    r, rnorm = eng.base_features(x)
    ref = best_match(eng.resolve_ties(x, eng.sq_distances_fast(r, rnorm, v, wnorm), som.weight, rnorm, wnorm))
    calls = []
    real = _native.map_tail
    try:
        _native.map_tail = lambda *a: calls.append(1) or real(*a)
        dmin, tb = eng.match_fast(x, v, wnorm, som.weight)
    finally:
        _native.map_tail = real
    assert calls, "the compiled tail did not run"
    assert torch.equal(dmin, ref[0]) and torch.equal(tb, ref[1])


def test_mapper_same_with_and_without_compiled_tail(monkeypatch):
    """The Mapper's results do not depend on the compiled tail (nor on the batch size)."""
    som = _som(40, 3, 36, "pink", "zeros")
    x = _images(40, 70)
    fast = Mapper(som, batch_size=32).map(x)
    monkeypatch.setattr(_native, "_enabled", lambda name: None)
    slow = Mapper(som, batch_size=70).map(x)
    assert torch.equal(fast.distances, slow.distances)
    assert torch.equal(fast.transform_index, slow.transform_index)


@pytest.mark.parametrize("u,channels,transposed", [(29, 1, True), (28, 2, True), (9, 1, False)])
def test_split_layout_same_numbers(u, channels, transposed):
    """parity_from_orbits(split=True): the four blocks are the same numbers as the rows layout, each
    a contiguous batch-major matrix; also when the compiled pass is split over two threads."""
    g = torch.Generator().manual_seed(u)
    parts = [torch.randn(300, 3, channels, u * u, generator=g), torch.randn(300, 2, channels, u * u, generator=g)]
    rows, layout = parity_from_orbits(parts, u, transposed=transposed, blocked=True)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        blocks, layout2 = parity_from_orbits(parts, u, transposed=transposed, blocked=True, split=True)
    finally:
        torch.set_num_threads(old)
    assert layout2 == layout
    for blk, (off, r, n) in zip(blocks, layout):
        assert blk.is_contiguous() and blk.shape == (300, r * n)
        assert torch.equal(blk, rows[:, off:off + r * n])


@pytest.mark.parametrize("numrot, conv, init", [(8, "pink", "zeros"), (36, "native", "pairs"), (4, "pink", "random")])
def test_parity_step_with_the_compiled_tail_trains_bit_identically(numrot, conv, init, monkeypatch):
    """ParityStep's compiled tail (one image: its near-tie test is the step's own, twice the
    resolver's band) trains the same weights as the eager step, also where near-ties are common
    (zero-initialised SOM, neurons in equal pairs, fourfold-symmetric images)."""
    from somtorch.engine import Neighbourhood, Trainer

    flagged = []
    real = _native.map_tail

    def spy(*a):
        ok = real(*a)
        flagged.append(int(a[-1][0]))
        return ok

    out = []
    for native in (True, False):
        som = _som(16, 3, numrot, conv, init)
        x = _images(16, 30)
        if native:
            monkeypatch.setattr(_native, "map_tail", spy)
        else:  # every compiled loop off: the eager step
            monkeypatch.setattr(_native, "_enabled", lambda name: None)
            monkeypatch.setattr(_native_loops, "_enabled", lambda name: None)
        Trainer(som, Neighbourhood("gaussian", 1.1, 0.2), num_iter=2, metrics_sample=0, step="parity").fit(x)
        out.append((som.weight.detach().clone(), som.update_count.clone()))
        monkeypatch.undo()
    assert len(flagged) == 60, "the compiled tail did not run for every step"
    if init != "random":
        assert 0 < sum(flagged)  # near-ties went through the resolver
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])


def test_tail_refuses_outputs_it_cannot_write():
    prods = [torch.zeros(2, 3) for _ in range(4)]
    side, flip = torch.tensor([0, 1]), torch.tensor([0, 2])
    args = (prods, 1, 2, side, flip, torch.zeros(1, 2), torch.zeros(3), 1e-6)
    good = (torch.empty(1, 2, 3), torch.empty(1, 3), torch.empty(1, 3, dtype=torch.int64),
            torch.empty(1, dtype=torch.int64))
    assert _native.map_tail(*args, *good)
    with pytest.raises(ValueError, match="dmin must be a contiguous"):
        _native.map_tail(*args, good[0], torch.empty(1, 6)[:, ::2], *good[2:])
    with pytest.raises(ValueError, match="tbest must be"):
        _native.map_tail(*args, good[0], good[1], torch.empty(1, 3, dtype=torch.int32), good[3])
    with pytest.raises(ValueError, match="products must be"):
        _native.map_tail([torch.zeros(3, 3)] * 4, *args[1:], *good)


@pytest.mark.parametrize("case", ["random", "pairs", "all-equal", "coarse"])
def test_one_image_near_pairs_and_column_minima_are_torchs(case):
    """The resolver's candidates for one image (near_pairs) and the column minima after it
    (col_first_min) equal TieResolver._near + torch.nonzero and first_min, ties included."""
    g = torch.Generator().manual_seed(len(case))
    t, n = 90, 13
    d = torch.rand(t, n, generator=g) * 10 + 1000
    if case == "pairs":  # two transformations share some neurons' minimum; two neurons share the best
        d[5, 3] = d[7, 3] = d[:, 3].min() - 1
        d[2, 8] = d[:, 8].min() - 1
        d[40, 9] = d[2, 8]
    elif case == "all-equal":  # more candidates than the first guess of their number
        d[:] = 1000.0
    elif case == "coarse":
        d = torch.round(d / 3)
    rnorm = torch.rand(t, generator=g) * 10 + 500
    wnorm = torch.rand(n, generator=g) * 10 + 500
    res = TieResolver.__new__(TieResolver)
    res.rtol = 1e-6
    near_t, involved = res._near(d.unsqueeze(0), rnorm.unsqueeze(0), wnorm)
    ref = torch.nonzero(near_t[0] & involved[0].unsqueeze(0), as_tuple=True)
    got = _native.near_pairs(d.contiguous(), rnorm, wnorm, 1e-6)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    if case != "random":
        assert len(ref[0]) > 0
    dm, tb = _native.col_first_min(d.contiguous())
    rdm, rtb = first_min(d, dim=0)
    assert torch.equal(dm, rdm) and torch.equal(tb, rtb)
