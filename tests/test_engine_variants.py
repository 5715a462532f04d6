"""Fast-path layout: base rotations (and their transposes) in flip-parity coordinates against the
neurons' give exactly the products ``<Q(X), w>`` over the region for every dihedral variant ``Q``,
in PINK's order."""

from __future__ import annotations

import pytest
import torch

from somtorch.engine import RotationInvariantSOM, SOMGeometry
from somtorch.engine.parity import SIGNS, parity_features, parity_sizes
from somtorch.geometry import Lattice


@pytest.mark.parametrize("u", [1, 2, 5, 6, 7])
@pytest.mark.parametrize("channels", [1, 3])
def test_parity_features_give_every_flipped_product(u, channels):
    """<R, G_g(w)> == sum_ab SIGNS[g][ab] <P(R)_ab, P_scaled(w)_ab>, also for the transpose of R."""
    g = torch.Generator().manual_seed(10 * u + channels)
    r = torch.rand(5, channels, u, u, generator=g, dtype=torch.float64)
    w = torch.rand(3, channels, u, u, generator=g, dtype=torch.float64)
    pr = parity_features(r, transposed=True)  # (5, 2, F)
    pw = parity_features(w, scaled=True)  # (3, F)
    sizes = parity_sizes(u, channels)
    assert sum(sizes) == channels * u * u == pr.shape[-1] == pw.shape[-1]
    bounds = [0, *torch.cumsum(torch.tensor(sizes), 0).tolist()]
    flips = {0: (), 1: (-2,), 2: (-1,), 3: (-2, -1)}
    for side, x in ((0, r), (1, r.transpose(-2, -1))):
        # the transposed side equals the coordinates of the transposed images
        assert torch.allclose(pr[:, side], parity_features(x.contiguous()))
        blocks = [pr[:, side, a:b] @ pw[:, a:b].T for a, b in zip(bounds[:-1], bounds[1:])]
        for flip, signs in enumerate(SIGNS):
            want = torch.einsum("icuv,ncuv->in", x, torch.flip(w, dims=flips[flip]))
            got = sum(s * blk for s, blk in zip(signs, blocks))
            assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("numrot,flip,dim", [(8, True, 20), (4, False, 21), (1, True, 20), (1, False, 19),
                                              (12, True, 24), (8, False, 18)])
def test_pairing_definition(numrot, flip, dim):
    """<Q_q(X), w> == <X_side, G_g(w)> for the (side, g) the engine pairs with every dihedral q."""
    som = RotationInvariantSOM(Lattice("cartesian", (2, 2)), SOMGeometry(dim, numrot=numrot, flip=flip),
                               init="random", seed=5)
    eng = som.engine
    pr = eng.pairing()
    u = eng.window[1] - eng.window[0]
    x = torch.rand(u, u, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w = torch.rand(u, u, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    qs = [(f, j) for f in ((0, 1) if flip else (0,)) for j in (range(4) if numrot != 1 else range(1))]
    assert len(pr["pairs"]) == len(qs) and pr["sides"] == (2 if numrot != 1 else 1)
    flips = {0: (), 1: (0,), 2: (1,), 3: (0, 1)}
    for (f, j), (side, g) in zip(qs, pr["pairs"]):
        qx = torch.rot90(x, -j)
        if f:
            qx = torch.flip(qx, dims=(0,))
        xs = x.T if side else x
        assert torch.allclose((qx * w).sum(), (xs * torch.flip(w, dims=flips[g])).sum())


def test_distances_match_expanded_transforms():
    """sq_distances_fast equals the plain distances over all T expanded transformations."""
    som = RotationInvariantSOM(Lattice("hexagonal", (3, 3)),
                               SOMGeometry(21, channels=2, numrot=8, flip=True, distance_shape="circular"),
                               init="random", seed=2)
    eng, w = som.engine, som.weight.data
    x = torch.rand(3, 2, 21, 21, generator=torch.Generator().manual_seed(4))
    r, rnorm = eng.base_features(x)
    v, wn = eng.neuron_parity(w)
    fast = eng.sq_distances_fast(r, rnorm, v, wn)
    xt = eng.transformer(x).double()  # (B, T, C, nd, nd)
    mask = eng.mask.double()
    ref = (((xt[:, :, None] - w.double()[None, None]) ** 2) * mask).flatten(3).sum(-1)
    assert fast.shape == ref.shape
    assert torch.allclose(fast.double(), ref, rtol=1e-4, atol=1e-3)


def test_subset_update_of_neuron_parity():
    som = RotationInvariantSOM(Lattice("cartesian", (2, 3)), SOMGeometry(16, numrot=8), init="random", seed=1)
    eng, w = som.engine, som.weight.data.clone()
    v, wn = eng.neuron_parity(w)
    sel = torch.tensor([1, 4])
    w[sel] = torch.rand(2, 1, w.shape[-1], w.shape[-1], generator=torch.Generator().manual_seed(0))
    eng.update_neuron_parity(v, wn, sel, w[sel])
    v2, wn2 = eng.neuron_parity(w)
    assert torch.equal(v, v2) and torch.equal(wn, wn2)


@pytest.mark.parametrize("numrot,flip", [(8, True), (4, False), (1, True)])
def test_asymmetric_region_mask(numrot, flip):
    """A region that is not dihedral-symmetric: norms per variant, products over the masked window."""
    from somtorch.engine.distance import DistanceEngine
    from somtorch.geometry.transforms import PinkTransformer

    tr = PinkTransformer(13, numrot=numrot, flip=flip)
    nd = tr.neuron_dim
    mask = torch.zeros(nd, nd, dtype=torch.bool)
    lo = 2 if numrot > 1 else 0
    mask[lo:nd - lo, lo:nd - lo] = torch.rand(nd - 2 * lo, nd - 2 * lo, generator=torch.Generator().manual_seed(0)) > 0.3
    eng = DistanceEngine(tr, mask, tie_break="none")
    assert not eng._mask_symmetric()
    w = torch.rand(5, 1, nd, nd, generator=torch.Generator().manual_seed(1))
    x = torch.rand(3, 1, 13, 13, generator=torch.Generator().manual_seed(2))
    r, rnorm = eng.base_features(x)
    v, wn = eng.neuron_parity(w)
    fast = eng.sq_distances_fast(r, rnorm, v, wn)
    xt = tr(x).double()  # (B, T, 1, nd, nd)
    ref = (((xt[:, :, None] - w.double()[None, None]) ** 2) * mask.double()).flatten(3).sum(-1)
    assert torch.allclose(fast.double(), ref, rtol=1e-4, atol=1e-4)


def test_cpu_batches_are_cache_sized():
    from somtorch.engine import Mapper, Trainer

    som = RotationInvariantSOM(Lattice("cartesian", (10, 10)), SOMGeometry(64, numrot=360), init="random", seed=1)
    eng = som.engine
    per = eng.feature_bytes()
    assert per == 2 * 90 * 44 * 44 * 4  # base rotations and their transposes over the 44-px (native) window
    assert Mapper(som).auto_batch_size() == eng.cache_batch() == (12 << 20) // per
    assert Trainer(som)._auto_batch() == eng.cache_batch()
    assert Mapper(som, batch_size=100).auto_batch_size() == 100


def test_distances_do_not_depend_on_the_batch_size():
    """Every GEMM operand is contiguous (and short ones padded): BLAS rounds each image's rows the
    same whether it comes alone or in a batch, at a realistic rotation count."""
    som = RotationInvariantSOM(Lattice("cartesian", (4, 4)), SOMGeometry(24, numrot=360), init="random", seed=3)
    eng = som.engine
    x = torch.rand(11, 1, 24, 24, generator=torch.Generator().manual_seed(6))
    v, wn = eng.neuron_parity(som.weight.data)
    r, rnorm = eng.base_features(x)
    whole = eng.sq_distances_fast(r, rnorm, v, wn)
    for bs in (1, 2, 3, 7):
        parts = []
        for s in range(0, len(x), bs):
            rb, nb = eng.base_features(x[s:s + bs])
            parts.append(eng.sq_distances_fast(rb, nb, v, wn))
        assert torch.equal(torch.cat(parts), whole), bs


@pytest.mark.parametrize("geo", [SOMGeometry(24, numrot=360), SOMGeometry(20, 2, numrot=16, flip=False),
                                 SOMGeometry(20, numrot=16, convention="pink", distance_shape="circular")])
def test_cache_sized_chunks_give_the_whole_batch_result(geo, monkeypatch):
    """On CPU the products and sums run over chunks of images that stay in cache; any chunk size
    (one image, a few, all of them) gives the same distances, bit for bit."""
    import somtorch.engine.distance as dist

    som = RotationInvariantSOM(Lattice("cartesian", (4, 3)), geo, init="random", seed=4)
    eng = som.engine
    x = torch.rand(9, geo.channels, geo.image_dim, geo.image_dim, generator=torch.Generator().manual_seed(7))
    v, wn = eng.neuron_parity(som.weight.data)
    r, rnorm = eng.base_features(x)
    monkeypatch.setattr(dist, "_CHUNK_BYTES", 1 << 40)
    whole = eng.sq_distances_fast(r, rnorm, v, wn)
    per_image = len(eng.pairing()["pairs"]) * (r.shape[1] // v.shape[1] // eng.pairing()["sides"]) * 12 * 4
    for images in (1, 2, 4):
        monkeypatch.setattr(dist, "_CHUNK_BYTES", images * per_image)
        assert torch.equal(eng.sq_distances_fast(r, rnorm, v, wn), whole), images


@pytest.mark.parametrize("u, channels, k, transposed", [(29, 1, 9, True), (28, 2, 3, True), (1, 1, 2, True),
                                                        (5, 3, 1, False), (45, 1, 90, True), (6, 1, 4, False)])
def test_blocked_coordinates_compiled_equal_torch(u, channels, k, transposed, monkeypatch):
    """parity_from_orbits(blocked=True) through the compiled loop (engine._native) is the torch code's
    result bit for bit (odd and even sides, several channels, with and without transposes, the
    pieces of base rotation 0 and of the others), and the compiled loop is really used."""
    import somtorch.engine.parity as par
    from somtorch.engine import _native
    from somtorch.engine.parity import parity_from_orbits

    g = torch.Generator().manual_seed(u * 10 + k)
    parts = [torch.randn(4, 1, channels, u * u, generator=g) * 1e3]
    if k > 1:
        parts.append(torch.randn(4, k - 1, channels, u * u, generator=g))
    calls = []
    real = par._compiled_blocked
    monkeypatch.setattr(par, "_compiled_blocked", lambda *a: calls.append(1) or real(*a))
    fast, layout = parity_from_orbits(parts, u, transposed=transposed, blocked=True)
    if not _native.update_available():
        pytest.skip("no working C compiler (the torch code is used)")
    assert len(calls) == len(parts)
    monkeypatch.setattr(par, "_compiled_blocked", lambda *a: False)
    slow, layout2 = parity_from_orbits(parts, u, transposed=transposed, blocked=True)
    assert layout == layout2 and torch.equal(fast, slow)
    # a non-contiguous piece takes the torch path, with the same result
    monkeypatch.setattr(par, "_compiled_blocked", real)
    strided = [p.transpose(0, 1).contiguous().transpose(0, 1) for p in parts]
    assert torch.equal(parity_from_orbits(strided, u, transposed=transposed, blocked=True)[0], slow)


@pytest.mark.parametrize("u, channels", [(29, 1), (28, 2), (1, 1), (45, 3)])
def test_row_coordinates_compiled_equal_torch(u, channels, monkeypatch):
    """parity_from_orbits (rows, the neurons' side) through the compiled loop equals the torch code."""
    import somtorch.engine.parity as par
    from somtorch.engine import _native
    from somtorch.engine.parity import parity_from_orbits

    if not _native.update_available():
        pytest.skip("no working C compiler (the torch code is used)")
    o = torch.randn(6, channels, u * u, generator=torch.Generator().manual_seed(u)) * 0.25
    fast = parity_from_orbits(o, u)
    monkeypatch.setattr(par, "_compiled_blocked", lambda *a: False)
    slow = parity_from_orbits(o, u)
    assert fast.shape == slow.shape == (6, channels * u * u) and torch.equal(fast, slow)
    assert torch.equal(parity_from_orbits(o, u, transposed=True)[:, 0], slow)
