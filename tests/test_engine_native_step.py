"""The compiled online step (:mod:`somtorch.engine._native`: ``pink_update``, ``best_match_one``,
``window_norms``) against independent references, and the dense step with and without it.

* ``pink_update`` is PINK's ``c <- c - (c - x) * f`` bit for bit (checked against the three
  float32 torch operations), reads each neuron's best transformation through the row table, leaves
  factor-0 neurons and neurons outside its range untouched, and writes the window (times the
  mask) and its norm (float64 reference, float32 rounding);
* ``best_match_one`` completes the distances as ``max(d + |w|^2, 0)``, finds every neuron's first
  minimum, the first best neuron, and flags near-ties exactly as ``OnlineStep._near_ties``;
* training with the compiled step gives the eager step's weights, update counts and best matches,
  every bit, for PINK's and the native geometry, both tie rules, both gather layouts, circular
  and quadratic regions, two channels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from somtorch.engine import (
    Neighbourhood,
    RotationInvariantSOM,
    SOMGeometry,
    Trainer,
    _native,
    _native_parity,
)
from somtorch.engine.distance import TIE_RTOL
from somtorch.engine.online import DenseStep, OnlineStep
from somtorch.geometry import Lattice

pytestmark = pytest.mark.skipif(not _native.update_available(), reason="no C compiler for the compiled loops")


def _update_case(seed, n=7, c=2, nd=9, k=3, lo=2, u=5, masked=True):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, c, nd, nd, generator=g)
    base = torch.randn(k, c, nd, nd, generator=g)
    variants = torch.tensor([[i, side, rr, cr] for i in range(k) for side in (0, 1) for rr in (0, 1) for cr in (0, 1)])
    tb = torch.randint(0, len(variants), (n,), generator=g)
    tb[:4] = torch.tensor([1, 2, 4, 7])  # column reversal, row reversal, transpose, all three
    fac = torch.rand(n, generator=g) * 0.5
    fac[5] = 0.0  # PINK skips factor 0
    fac[6] = 1e-40  # subnormal factor: computed, not flushed
    mask = (torch.rand(u, u, generator=g) > 0.3).float() if masked else None
    return w, base, variants, tb, fac, mask, lo, u


def _variant(base, v):
    x = base[int(v[0])]
    if v[1]:
        x = x.transpose(-1, -2)
    if v[2]:
        x = x.flip(-2)
    if v[3]:
        x = x.flip(-1)
    return x


@pytest.mark.parametrize("masked", [True, False])
def test_pink_update_is_pinks_rule_bit_for_bit(masked):
    w, base, variants, tb, fac, mask, lo, u = _update_case(3, masked=masked)
    n, c, nd, _ = w.shape
    ref = w.clone()
    for i in range(n):  # the eager rule: three float32 operations, each rounded
        if fac[i] == 0:
            continue
        x = _variant(base, variants[tb[i]])
        ref[i] = ref[i] - (ref[i] - x) * fac[i]
    wf = torch.full((n, c, u, u), -7.0)
    wnorm = torch.full((n,), -1.0)
    got = w.clone()
    assert _native.pink_update(got, base, variants, tb, fac, wf, mask, lo, wnorm)
    assert torch.equal(got, ref)
    assert torch.equal(got[5], w[5])  # factor 0: untouched
    win = ref[:, :, lo:lo + u, lo:lo + u] * (mask if mask is not None else 1.0)
    moved = fac != 0
    assert torch.equal(wf[moved], win[moved])
    assert torch.all(wf[~moved] == -7.0) and torch.all(wnorm[~moved] == -1.0)
    exact = win.double().flatten(1).square().sum(1).float()
    assert torch.equal(wnorm[moved], exact[moved])  # double lanes, rounded once: the exact norm here
    out = torch.empty(n)
    _native.window_norms(wf.contiguous(), out)
    assert torch.equal(out[moved], wnorm[moved])


def test_pink_update_neuron_ranges_split_the_work():
    w, base, variants, tb, fac, mask, lo, u = _update_case(5)
    n = w.shape[0]
    a, b = w.clone(), w.clone()
    wfa, wfb = torch.zeros(n, 2, u, u), torch.zeros(n, 2, u, u)
    na, nb = torch.zeros(n), torch.zeros(n)
    _native.pink_update(a, base, variants, tb, fac, wfa, mask, lo, na)
    _native.pink_update(b, base, variants, tb, fac, wfb, mask, lo, nb, neurons=(0, 3))
    assert torch.equal(b[3:], w[3:])  # outside the range: untouched
    _native.pink_update(b, base, variants, tb, fac, wfb, mask, lo, nb, neurons=(3, n))
    assert torch.equal(a, b) and torch.equal(wfa, wfb) and torch.equal(na, nb)


def test_best_match_one_against_torch():
    g = torch.Generator().manual_seed(11)
    t, n = 12, 9
    part = torch.rand(t, n, generator=g) * 5.0 - 1.0  # rcol - 2 x.w: may be negative
    wnorm = torch.rand(n, generator=g) * 2.0 + 1.0
    part[5, 2] = -100.0  # clamps to 0
    part[7, 3] = part[2, 3] = -50.0  # equal minima: the first transformation wins
    d = part.clone()
    dmin, tb, near = torch.empty(n), torch.empty(n, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)
    best = _native.best_match_one(d, wnorm, 0.0, -1.0, dmin, tb, near)
    ref = (part + wnorm).clamp_min(0)
    assert torch.equal(d, ref)
    rmin, rtb = torch.min(ref, dim=0)
    assert torch.equal(dmin, rmin) and torch.equal(tb, rtb)
    assert tb[3] == 2
    assert best == int(torch.argmin(rmin)) == 2  # d[5, 2] = 0 and d[7, 3] = 0: the first neuron
    assert near[0] == 0  # rtol < 0: not tested


@pytest.mark.parametrize("seed", range(6))
def test_near_tie_flag_is_online_steps(seed):
    g = torch.Generator().manual_seed(seed)
    t, n = 16, 10
    d0 = torch.rand(t, n, generator=g) * 50 + 10
    if seed % 2:  # a planted near-tie between two transformations of one neuron
        r = int(d0[:, 4].argmin())
        d0[(r + 1) % t, 4] = d0[r, 4] * (1 + 2e-7)
    if seed % 3 == 0:  # two best neurons with the same minimum
        d0[:, 1] -= 9.5
        d0[:, 7] = d0[:, 1]
    wnorm = torch.zeros(n)
    rmax = torch.tensor(60.0)
    d = d0.clone()
    dmin, tb, near = torch.empty(n), torch.empty(n, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)
    _native.best_match_one(d, wnorm, float(rmax), float(np.float32(2.0 * TIE_RTOL)), dmin, tb, near)
    expect = OnlineStep._near_ties(d0, d0.min(dim=0).values, rmax, wnorm)
    assert bool(near[0]) == expect
    if seed % 2 or seed % 3 == 0:
        assert expect  # the planted ties are seen


def _train(native, geo, side, n=24, c=1, tie="pink", seed=2, monkeypatch=None):
    monkeypatch.setenv("SOMTORCH_NATIVE", "1" if native else "0")
    som = RotationInvariantSOM(Lattice("cartesian", (side, side)), geo, init="random", seed=seed, rng="pink",
                               tie_break=tie)
    g = torch.Generator().manual_seed(seed)
    imgs = torch.rand(n, c, geo.image_dim, geo.image_dim, generator=g)
    imgs[::5] = imgs[::5].rot90(1, (-2, -1))  # quarter-turned copies: exact ties in the search
    hist = []
    t = Trainer(som, Neighbourhood("gaussian", 1.1, 0.2), num_iter=2, shuffle=True, metrics_sample=0, step="dense",
                batch_size=7)
    t.fit(imgs)
    hist.append(som.update_count.clone())
    return som.weight.detach().clone(), hist


@pytest.mark.parametrize("case", [
    dict(d=12, numrot=4, side=5, conv="pink", shape="circular", tie="pink"),  # whole transformations, masked
    dict(d=12, numrot=8, side=2, conv="native", shape="circular", tie="none"),  # bank rows
    dict(d=10, numrot=8, side=3, conv="pink", shape="quadratic", tie="pink", c=2),  # two channels, full window
    dict(d=11, numrot=36, side=2, conv="native", shape="quadratic", tie="pink"),  # odd side
])
def test_dense_training_with_the_compiled_step_is_bit_identical(case, monkeypatch):
    geo = SOMGeometry(case["d"], channels=case.get("c", 1), numrot=case["numrot"], convention=case["conv"],
                      distance_shape=case["shape"])
    kw = dict(c=case.get("c", 1), tie=case["tie"], monkeypatch=monkeypatch)
    wa, ha = _train(True, geo, case["side"], **kw)
    wb, hb = _train(False, geo, case["side"], **kw)
    assert torch.equal(wa, wb)
    assert all(torch.equal(x, y) for x, y in zip(ha, hb))
    assert not torch.equal(wa, _train(True, geo, case["side"], seed=3, **kw)[0])  # the comparison can fail


def test_dense_step_uses_the_compiled_loop_unless_disabled(monkeypatch):
    som = RotationInvariantSOM(Lattice("cartesian", (2, 2)), SOMGeometry(8, numrot=4), init="random")
    assert DenseStep(som, som.factors(Neighbourhood())).native
    monkeypatch.setenv("SOMTORCH_NATIVE", "0")
    assert not DenseStep(som, som.factors(Neighbourhood())).native


@pytest.mark.parametrize("numrot, c, shape, tie", [(36, 1, "circular", "pink"), (12, 2, "quadratic", "none")])
def test_parity_training_with_the_compiled_update_is_bit_identical(numrot, c, shape, tie, monkeypatch):
    """The parity step (large problems) samples the needed base rotations and the compiled loop
    reads each neuron's transformation from them: the eager update's weights, every bit."""
    geo = SOMGeometry(13, channels=c, numrot=numrot, convention="pink", distance_shape=shape)
    out = []
    for native in ("1", "0"):
        monkeypatch.setenv("SOMTORCH_NATIVE", native)
        som = RotationInvariantSOM(Lattice("cartesian", (3, 3)), geo, init="random", seed=5, rng="pink", tie_break=tie)
        imgs = torch.rand(20, c, 13, 13, generator=torch.Generator().manual_seed(7))
        t = Trainer(som, Neighbourhood("gaussian", 1.1, 0.2, 1.5), num_iter=2, metrics_sample=0, step="parity")
        t.fit(imgs)
        out.append((som.weight.detach().clone(), som.update_count.clone()))
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])


def test_serial_steps_restore_the_thread_count_and_change_nothing(monkeypatch):
    """The dense step with the compiled loops trains on one thread (batches prepared on all): the
    caller's thread count is restored, also when training stops early, and the result equals a
    one-thread run's."""
    geo = SOMGeometry(12, numrot=8, convention="pink")
    imgs = torch.rand(30, 1, 12, 12, generator=torch.Generator().manual_seed(4))
    old = torch.get_num_threads()
    out = []
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            som = RotationInvariantSOM(Lattice("cartesian", (5, 5)), geo, init="random", seed=2, rng="pink")
            t = Trainer(som, Neighbourhood("gaussian", 1.1, 0.2), metrics_sample=0, step="dense", batch_size=8)
            assert DenseStep(som, som.factors(Neighbourhood())).serial_steps
            t.fit(imgs)
            assert torch.get_num_threads() == threads
            out.append(som.weight.detach().clone())
        torch.set_num_threads(2)
        som = RotationInvariantSOM(Lattice("cartesian", (5, 5)), geo, init="random", seed=2, rng="pink")
        t = Trainer(som, Neighbourhood("gaussian", 1.1, 0.2), metrics_sample=0, step="dense", batch_size=8)
        t.stop_after = 11  # stopped inside a batch, as by a signal
        with pytest.raises(KeyboardInterrupt):
            t.fit(imgs)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)
    assert torch.equal(out[0], out[1])


@pytest.mark.parametrize("numrot, flip, conv", [(8, True, "pink"), (4, False, "native"), (36, True, "native"),
                                                (1, True, "pink")])
def test_gemm_operand_gather_equals_the_strided_copies(numrot, flip, conv):
    """The compiled step's GEMM operand (one gather from the base rotations and their transposes,
    DenseStep._xf_index) is the eager step's (a strided copy per dihedral variant), value for value,
    also with the transposes read through the index instead of appended."""
    geo = SOMGeometry(image_dim=20, numrot=numrot, flip=flip, convention=conv)
    som = RotationInvariantSOM(Lattice("cartesian", (3, 3)), geo, init="random", seed=1)
    fac = som.factors(Neighbourhood("gaussian", 1.1, 0.2))
    imgs = torch.rand(5, 1, 20, 20, generator=torch.Generator().manual_seed(numrot))
    eager = DenseStep(som, fac)
    eager.native = False
    want = eager.prepare_state(imgs)["xf"]
    fast = DenseStep(som, fac)
    if not fast.native:
        pytest.skip("no working C compiler")
    assert torch.equal(fast.prepare_state(imgs)["xf"], want)
    base = fast.eng.transformer.base_rotations(imgs)  # (B, k, C, nd, nd): transposes by the index
    k, nd, u = base.shape[1], base.shape[-1], fast.hi - fast.lo
    idx = fast._xf_index(k, 1, nd, u, k)
    assert torch.equal(base.reshape(5, -1).index_select(1, idx).view_as(want), want)


@pytest.mark.parametrize("d,conv,shape,c", [(40, "pink", "quadratic", 1), (33, "native", "circular", 2),
                                            (64, "pink", "circular", 1), (21, "pink", "quadratic", 1),
                                            (16, "native", "quadratic", 3)])
def test_neuron_parity_pass_is_the_engines(d, conv, shape, c):
    """The compiled neuron pass: parity rows bit-identical to DistanceEngine.neuron_parity; norms
    its fixed-order double sum (within 2 float32 ulps of the float64 norm); with factors, only the
    neurons that move are written."""
    geo = SOMGeometry(d, numrot=8, convention=conv, distance_shape=shape, channels=c)
    som = RotationInvariantSOM(Lattice("cartesian", (3, 3)), geo, init="random", seed=4)
    eng = som.engine
    w = som.weight.detach().contiguous()
    v0, n0 = eng.neuron_parity(w)
    lo, hi = eng.window
    _, mult = eng._neuron_gather(w.device, c, w.dtype)
    omask = eng._orbit_tables(w.device)[0].contiguous()
    v, wn = torch.full_like(v0, -5.0), torch.full_like(n0, -5.0)
    assert _native_parity.neuron_parity(w, lo, hi - lo, mult.contiguous(), omask, v, wn)
    assert torch.equal(v, v0)
    win = w[..., lo:hi, lo:hi].double() * eng.mask[lo:hi, lo:hi].double()
    exact = (win * win).sum((1, 2, 3))
    assert torch.allclose(wn.double(), exact, rtol=2.5e-7, atol=0)
    fac = torch.tensor([0.0, 0.5, 0.0, 1.0, 0.25, 0.0, 0.0, 0.1, 0.0])
    v2, n2 = torch.full_like(v0, -5.0), torch.full_like(n0, -5.0)
    assert _native_parity.neuron_parity(w, lo, hi - lo, mult.contiguous(), omask, v2, n2, fac)
    moved = fac != 0
    assert torch.equal(v2[moved], v0[moved]) and torch.equal(n2[moved], wn[moved])
    assert (v2[~moved] == -5.0).all() and (n2[~moved] == -5.0).all()
    with pytest.raises(ValueError, match="v must be"):
        _native_parity.neuron_parity(w, lo, hi - lo, mult.contiguous(), omask, v[:, :-1], wn)
