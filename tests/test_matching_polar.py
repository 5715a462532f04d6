"""The polar search of approximate matching (:mod:`somtorch.engine.polarsearch`, ``search="polar"``).

* the inner cross term equals the exact engine's cross term over those pixels at every
  transformation (native and PINK geometries, no flip, two channels, nearest neighbour);
* for smooth sources the outer (polar FFT) cross term and the whole surrogate follow the exact
  values (slow reference: the full ``(B, T, N)`` distances), and the surrogate's best
  transformation is the exact one within a few degrees;
* the rotation-invariant bound ranks a rotated copy of the image first; the first exact pass is
  spread over the best neurons' best base rotations;
* a neuron that is exactly a transformation of the image at any angle is found with that
  transformation at distance 0 (a broad source, whose minimum is flat: within one step);
* quarter turns and flips of an input land on the same neuron with the same distance;
* every reported distance is the exact distance of the reported transformation;
* it agrees with exact search on smooth sources and on structured sources at the measured
  levels, which a search without the exact inner disc does not reach;
* the Hydra program takes ``approx.search=polar``.
"""

from __future__ import annotations

import pytest
import torch
from matching_cases import blobs, structured_case, three_transformed_neurons

from somtorch.engine import (
    ApproxMapper,
    Mapper,
    RotationInvariantSOM,
    SOMGeometry,
    matching_agreement,
)
from somtorch.engine.polarsearch import PolarSurrogate, spread_bases
from somtorch.errors import ConfigError
from somtorch.geometry import Lattice
from somtorch.geometry.regions import region_indices
from somtorch.geometry.transforms import pad_or_crop
from somtorch.testing import random_som


def _sky(n, g, d=32, spread=8):
    out = []
    for _ in range(n):
        m = int(torch.randint(1, 4, (1,), generator=g))
        c = [(float(r), float(cc), float(a), float(s)) for r, cc, a, s in
             zip(torch.rand(m, generator=g) * 2 * spread - spread, torch.rand(m, generator=g) * 2 * spread - spread,
                 0.3 + torch.rand(m, generator=g), 1 + 2 * torch.rand(m, generator=g))]
        out.append(blobs(d, c))
    return torch.stack(out)[:, None]


def _exact_cross(som, x, pixels=None):
    """Slow reference: ``<T_t x, w>`` over the region (or over window pixels ``pixels``), ``(B, T, N)``."""
    eng = som.engine
    feats = eng.image_features(x).double()  # (B, T, C*P)
    wf = eng.neuron_features(som.weight).double()  # (N, C*P)
    if pixels is not None:
        reg = region_indices(eng.mask, eng.window)
        pos = {int(p): i for i, p in enumerate(reg)}
        p = len(reg)
        cols = torch.tensor([c * p + pos[int(q)] for c in range(som.geometry.channels) for q in pixels])
        feats, wf = feats[..., cols], wf[:, cols]
    return feats @ wf.T


def _all_neurons(g, b):
    return torch.arange(g.som.num_neurons).expand(b, -1)


def _to_bt(v):  # (B, R, S, numrot) -> (B, S * numrot, R): transformation index order
    return v.permute(0, 2, 3, 1).reshape(v.shape[0], -1, v.shape[1])


@pytest.mark.parametrize("geo,kw", [
    (SOMGeometry(20, numrot=16), {}),
    (SOMGeometry(21, numrot=12, flip=False), {}),
    (SOMGeometry(20, numrot=16, convention="pink", distance_shape="circular"), {}),
    (SOMGeometry(24, numrot=16, convention="pink"), {}),
    (SOMGeometry(16, 2, numrot=8), {}),
    (SOMGeometry(12, numrot=8, interpolation="nearest"), {}),
    (SOMGeometry(16, numrot=8), {"arithmetic": "pink"}),
])
def test_inner_cross_term_is_the_exact_cross_term_of_those_pixels(geo, kw):
    som = random_som(geo, **kw)
    x = torch.rand(3, geo.channels, geo.image_dim, geo.image_dim, generator=torch.Generator().manual_seed(1))
    g = PolarSurrogate(som, inner_radius=3.0)
    assert g.n_in >= 4
    _, inner = g.cross_terms(x, _all_neurons(g, 3))
    ref = _exact_cross(som, x, g.inner.tolist())
    torch.testing.assert_close(_to_bt(inner).double(), ref, rtol=1e-5, atol=1e-5)


def test_outer_term_and_surrogate_follow_the_exact_values_for_smooth_sources():
    geo = SOMGeometry(32, numrot=360)
    g0 = torch.Generator().manual_seed(3)
    som = RotationInvariantSOM(Lattice("cartesian", (2, 3)), geo, init=pad_or_crop(_sky(6, g0), geo.nd))
    x = _sky(4, g0)
    g = PolarSurrogate(som)
    top = _all_neurons(g, len(x))
    outer, inner = g.cross_terms(x, top)
    full = _exact_cross(som, x)
    exact_outer = full - _exact_cross(som, x, g.inner.tolist())
    err = (_to_bt(outer).double() - exact_outer).abs()
    assert float(err.max()) < 0.03 * float(exact_outer.abs().max())  # a smooth model of smooth sources
    sur = _to_bt(g.surrogate(x, top)).double()
    dsq = som.sq_distances(x).double()  # (B, T, N): the exact engine
    assert float((sur - dsq).abs().max()) < 0.03 * float(dsq.max())
    # the surrogate's best transformation of every (image, neuron) is as good as the exact one
    # within 1 %, and (same flip: symmetric sources nearly tie) within 3 degrees of it
    ta, te = sur.argmin(1), dsq.argmin(1)
    at = torch.gather(dsq, 1, ta.unsqueeze(1)).squeeze(1)
    assert bool((at <= dsq.amin(1) * 1.01 + 1e-6).all())
    same = ta // 360 == te // 360
    assert float(same.double().mean()) >= 0.9
    da = torch.remainder(ta % 360 - te % 360 + 180, 360) - 180
    assert int(da[same].abs().max()) <= 3
    # without the exact inner disc the best transformation is off by more (the smoothing of the centre)
    assert float(err.max()) < float((_to_bt(outer + inner).double() - full).abs().max()) + 1e-6


def test_rotation_invariant_bound_ranks_a_rotated_copy_first():
    geo = SOMGeometry(32, numrot=360)
    g0 = torch.Generator().manual_seed(5)
    x = _sky(3, g0)
    som0 = random_som(geo, shape=(1, 3))
    lo, hi = som0.engine.window
    feats = som0.engine.transformer(x, window=(lo, hi))  # (B, T, C, u, u)
    w = pad_or_crop(_sky(3, g0), geo.nd)  # decoys
    w = torch.cat([w, torch.zeros(3, 1, geo.nd, geo.nd)])
    for i, t in enumerate((360 + 131, 57, 250)):
        w[3 + i, :, lo:hi, lo:hi] = feats[i, t]
    som = RotationInvariantSOM(Lattice("cartesian", (2, 3)), geo, init=w)
    assert PolarSurrogate(som).rank(x, 1)[:, 0].tolist() == [3, 4, 5]


def test_polar_search_finds_a_transformation_at_any_angle():
    """Neuron i is transformation t_i of image i, at base rotations no coarse grid contains."""
    ts = [360 + 2 * 90 + 41, 90 + 23, 360 + 77]
    som, x = three_transformed_neurons(ts)
    am = ApproxMapper(som, search="polar")
    assert am.options.coarse == 0 and am.options.refine == 5 and am.base_rotations_per_image() == 5
    res = am.map(x)
    rows = torch.arange(3)
    assert res.bmu.tolist() == [0, 1, 2]
    found = res.transform_index[rows, rows]
    # the compact sources exactly; the broad one (sigma 3 px: a flat minimum) within one step
    assert found[:2].tolist() == ts[:2] and abs(int(found[2]) - ts[2]) <= 1
    assert float(res.distances[rows, rows][:2].max()) < 5e-3 and float(res.distances[2, 2]) < 0.1
    exact = Mapper(som).map(x)
    assert float(res.distances[2, 2] ** 2) < 0.01 * float((x[2] ** 2).sum())  # vs |x|^2 ~ 30
    assert exact.bmu.tolist() == [0, 1, 2]


def test_quarter_turns_and_flips_land_on_the_same_neuron_with_the_same_distance():
    geo = SOMGeometry(24, numrot=360)
    g0 = torch.Generator().manual_seed(4)
    som = RotationInvariantSOM(Lattice("cartesian", (3, 3)), geo, init=pad_or_crop(_sky(9, g0, 24, 6), geo.nd))
    x = _sky(5, g0, 24, 6) + 0.05 * torch.rand(5, 1, 24, 24, generator=g0)
    am = ApproxMapper(som, search="polar")
    base = am.map(x)
    for variant in (torch.rot90(x, 1, dims=(-2, -1)), torch.rot90(x, -1, dims=(-2, -1)),
                    torch.flip(x, dims=(-2,)), torch.flip(torch.rot90(x, 1, dims=(-2, -1)), dims=(-1,))):
        r = am.map(variant)
        assert torch.equal(r.bmu, base.bmu)
        rows = torch.arange(len(x))
        torch.testing.assert_close(r.distances[rows, r.bmu], base.distances[rows, base.bmu], rtol=1e-5, atol=1e-6)


def test_reported_distances_are_exact_distances_of_reported_transforms():
    geo = SOMGeometry(24, numrot=80)
    som = random_som(geo, shape=(4, 4))
    x = torch.rand(9, 1, 24, 24, generator=torch.Generator().manual_seed(2))
    for kw in ({}, {"coarse": 2, "refine": 2}):
        res = ApproxMapper(som, search="polar", **kw).map(x)
        dsq = som.sq_distances(x)
        at = torch.gather(dsq, 1, res.transform_index.unsqueeze(1)).squeeze(1).sqrt()
        torch.testing.assert_close(res.distances, at, rtol=2e-5, atol=1e-6)
        assert bool((res.distances >= dsq.amin(1).sqrt() * (1 - 2e-5)).all())


def test_covering_every_rotation_is_the_exact_mapper():
    geo = SOMGeometry(16, numrot=16)
    som = random_som(geo, shape=(2, 3))
    x = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(6))
    ref = Mapper(som).map(x)
    res = ApproxMapper(som, search="polar", refine=4).map(x)  # k = 4: every base rotation
    torch.testing.assert_close(res.distances, ref.distances, rtol=2e-5, atol=1e-6)
    assert torch.equal(res.transform_index, ref.transform_index)


def test_agreement_with_exact_search_on_smooth_sources():
    g = torch.Generator().manual_seed(7)
    geo = SOMGeometry(32, numrot=360)
    som = RotationInvariantSOM(Lattice("cartesian", (4, 4)), geo, init=pad_or_crop(_sky(16, g), geo.nd))
    x = _sky(60, g) + 0.02 * torch.randn(60, 1, 32, 32, generator=g)
    ref = Mapper(som).map(x)
    pol = matching_agreement(som, x, reference=ref, search="polar")
    assert pol["bmu_agreement"] >= 0.96 and pol["bmu_distance_within_1pc"] >= 0.95  # measured 0.983 / 0.983
    assert pol["distance_rel_error_max"] >= 0


@pytest.fixture(scope="module")
def structured():
    som, x, _ = structured_case()
    return som, x


def test_agreement_with_exact_search_on_structured_images(structured):
    som, x = structured
    ref = Mapper(som).map(x)
    pol = matching_agreement(som, x, reference=ref, search="polar")
    bare = matching_agreement(som, x, reference=ref, search="polar", inner_radius=0.0)
    # measured here: 1.0 of best neurons, 0.98 of best distances within 1 % (the surrogate search:
    # 1.0 / 1.0; benchmarks/RESULTS.md: polar ~0.96 on 300 such images); without the exact inner
    # disc 0.87 and 0.47
    assert pol["bmu_agreement"] >= 0.95 and pol["bmu_distance_within_1pc"] >= 0.93
    assert bare["bmu_distance_within_1pc"] < pol["bmu_distance_within_1pc"] - 0.2
    assert pol["bmu_distance_rel_error_median"] < 1e-3 and pol["distance_rel_error_max"] >= 0


def test_spread_bases_takes_each_best_neurons_best_distinct_base():
    inf = float("inf")
    scores = torch.tensor([[[5.0, 1.0, 4.0, 9.0, 8.0],  # neuron 0: best 1 (its minimum is the 2nd lowest)
                            [0.5, 1.5, 7.0, 9.0, 8.0],  # neuron 1: best 0 (lowest overall)
                            [6.0, 1.2, 7.0, 2.0, 8.0]]])  # neuron 2: best 1, then 3
    assert spread_bases(scores, 3).tolist() == [[0, 1, 3]]  # neurons in order 1, 0, 2; 2's 1 taken
    assert spread_bases(scores, 2, torch.tensor([[0]])).tolist() == [[1, 3]]  # 0 taken: neurons 0, then 2
    assert spread_bases(scores, 5).sort(dim=1).values.tolist() == [[0, 1, 2, 3, 4]]
    assert inf not in spread_bases(scores, 4).tolist()


def test_options_are_checked():
    som = random_som(SOMGeometry(12, numrot=40))
    for kw in ({"coarse": 0, "refine": 0}, {"inner_radius": -1.0}, {"seeds": 2}, {"coarse": -1}):
        with pytest.raises(ConfigError):
            ApproxMapper(som, search="polar", **kw)
    with pytest.raises(ConfigError):
        ApproxMapper(som, coarse=0)  # the surrogate search needs its exact first pass
