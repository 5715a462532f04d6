"""The surrogate that guides approximate search (:mod:`somtorch.engine.surrogate`).

* :class:`RotationNorms` gives the region norm of every base rotation, equal to the norms of the
  interpolated rotations the exact engine computes, for native and PINK geometries (asymmetric
  regions), bilinear grid sampling, PINK's exact arithmetic, nearest neighbour and two channels;
* the surrogate search finds a transformation that lies between the coarse angles (a neuron that is
  exactly that transformation of an image is found at distance 0), where a coarse pass alone
  does not;
* it agrees with exact search on random smooth sources as measured in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matching_cases import blobs, three_transformed_neurons

from somtorch.engine import (
    ApproxMapper,
    Mapper,
    RotationInvariantSOM,
    SOMGeometry,
    matching_agreement,
)
from somtorch.engine.surrogate import RotationNorms
from somtorch.errors import ConfigError
from somtorch.geometry import Lattice
from somtorch.testing import random_som


@pytest.mark.parametrize("geo,kw", [
    (SOMGeometry(20, numrot=16), {}),
    (SOMGeometry(21, numrot=12, flip=False), {}),
    (SOMGeometry(20, numrot=16, convention="pink", distance_shape="circular"), {}),
    (SOMGeometry(40, numrot=36, convention="pink"), {}),
    (SOMGeometry(16, 2, numrot=8), {}),
    (SOMGeometry(16, numrot=8), {"arithmetic": "pink"}),
    (SOMGeometry(12, numrot=8, interpolation="nearest"), {}),
    (SOMGeometry(32, numrot=360), {}),
])
def test_rotation_norms_equal_the_interpolated_rotations_norms(geo, kw):
    som = random_som(geo, **kw)
    x = torch.rand(5, geo.channels, geo.image_dim, geo.image_dim, generator=torch.Generator().manual_seed(1))
    rn = RotationNorms(som)
    norms = rn(x)  # (B, k, V)
    _, rnorm = som.engine.base_features(x)  # (B, T): norms of the interpolated transformations
    numrot, k = geo.numrot, rn.k
    t = torch.arange(rnorm.shape[1])
    f, a = t // numrot, t % numrot
    ours = norms[:, a % k, (4 * f + a // k) if rn.variants > 1 else 0]
    torch.testing.assert_close(ours, rnorm, rtol=2e-5, atol=1e-6)  # float32 products of ~5 d^2 terms
    # the PINK geometry's square region is off-centre by half a pixel: every variant sees other pixels
    assert rn.variants == (1 if som.engine._mask_symmetric() else len(som.engine.pairing()["pairs"]))


def test_dense_and_sparse_assembly_of_the_norm_form_agree(monkeypatch):
    import somtorch.engine.surrogate as sur

    som = random_som(SOMGeometry(40, numrot=36, convention="pink"))  # asymmetric region: edge forms too
    x = torch.rand(3, 1, 40, 40, generator=torch.Generator().manual_seed(5))
    dense = RotationNorms(som)
    monkeypatch.setattr(sur, "_DENSE_BYTES", 0)
    sparse = RotationNorms(som)
    assert dense.variants == sparse.variants == 8
    for (s1, q1), (s2, q2) in zip(dense._forms, sparse._forms):
        assert np.array_equal(s1, s2)
        np.testing.assert_allclose(q1, q2, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(dense(x), sparse(x), rtol=1e-6, atol=1e-5)


def test_surrogate_finds_a_transformation_between_the_coarse_angles():
    # neuron i is exactly transformation t_i of image i (base rotations 40, 23, 77: not multiples of 6)
    ts = [360 + 2 * 90 + 40, 90 + 23, 360 + 77]
    som, x = three_transformed_neurons(ts)
    res = ApproxMapper(som).map(x)  # surrogate: 15 coarse base rotations (0, 6, ..., 84), then 4 chosen
    rows = torch.arange(3)
    assert res.bmu.tolist() == [0, 1, 2]
    assert res.transform_index[rows, rows].tolist() == ts
    assert float(res.distances[rows, rows].max()) < 5e-3  # 0 up to the float32 cancellation of the GEMM path
    exact = Mapper(som).map(x)
    torch.testing.assert_close(res.distances[rows, rows], exact.distances[rows, rows], rtol=1e-5, atol=5e-3)
    coarse_only = ApproxMapper(som, refine=0).map(x)
    assert bool((coarse_only.distances[rows, rows] > 0.05).all())  # the coarse angles alone miss them


def test_surrogate_agrees_with_exact_search_on_smooth_sources():
    g = torch.Generator().manual_seed(7)
    geo = SOMGeometry(32, numrot=360)

    def sky(n):
        out = []
        for _ in range(n):
            m = int(torch.randint(1, 4, (1,), generator=g))
            c = [(float(r), float(cc), float(a), float(s)) for r, cc, a, s in
                 zip(torch.rand(m, generator=g) * 16 - 8, torch.rand(m, generator=g) * 16 - 8,
                     0.3 + torch.rand(m, generator=g), 1 + 2 * torch.rand(m, generator=g))]
            out.append(blobs(32, c))
        return torch.stack(out)[:, None]

    from somtorch.geometry.transforms import pad_or_crop

    som = RotationInvariantSOM(Lattice("cartesian", (4, 4)), geo, init=pad_or_crop(sky(16), geo.nd))
    x = sky(60) + 0.02 * torch.randn(60, 1, 32, 32, generator=g)
    ref = Mapper(som).map(x)
    sur = matching_agreement(som, x, reference=ref)
    bis = matching_agreement(som, x, reference=ref, search="bisect")
    assert sur["bmu_agreement"] >= 0.98 and sur["bmu_distance_within_1pc"] >= 0.95
    assert sur["bmu_agreement"] >= bis["bmu_agreement"]
    assert sur["distance_rel_error_max"] >= 0 and math.isfinite(sur["angle_error_deg_p95"])


def test_search_options_are_checked():
    som = random_som(SOMGeometry(12, numrot=40))
    for kw in ({"search": "fft"}, {"seeds": 1}, {"neurons": 0}, {"search": "surrogate", "refine": -1}):
        with pytest.raises(ConfigError):
            ApproxMapper(som, **kw)
    assert ApproxMapper(som).base_rotations_per_image() == 10  # k = 10: covered (15 + 4 > 10)
    assert ApproxMapper(som, coarse=3, refine=2).base_rotations_per_image() == 5
    assert ApproxMapper(som, search="bisect").options.coarse == 6
