"""Neuron variants: the multi-threaded CPU path (flips/quarter turns into a buffer) equals the
single-threaded column gather bit for bit, and both equal the definition V_q = T_q^{-1}(w)."""

from __future__ import annotations

import pytest
import torch

from somtorch.engine import RotationInvariantSOM, SOMGeometry
from somtorch.geometry import Lattice


@pytest.fixture
def threads():
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("numrot,flip,channels,shape,dim", [
    (8, True, 1, "circular", 20), (4, False, 2, "quadratic", 21), (1, True, 1, "quadratic", 20),
    (1, False, 3, "circular", 19), (12, True, 2, "circular", 24), (360, True, 1, "quadratic", 33),
])
def test_variants_paths_agree_and_match_definition(numrot, flip, channels, shape, dim, threads):
    som = RotationInvariantSOM(Lattice("cartesian", (3, 4)),
                               SOMGeometry(dim, channels=channels, numrot=numrot, flip=flip,
                                           distance_shape=shape), init="random", seed=5)
    eng, w = som.engine, som.weight.data
    torch.set_num_threads(1)
    v1, n1 = eng.neuron_variants(w)
    torch.set_num_threads(2)
    v2, n2 = eng.neuron_variants(w)
    assert torch.equal(v1, v2) and torch.equal(n1, n2)
    # definition: <Q(X), w> over the region == <X, V_q> over the window, for every dihedral Q
    lo, hi = eng.window
    u = hi - lo
    mask = eng.mask[lo:hi, lo:hi].to(w.dtype)
    x = torch.rand(channels, u, u, generator=torch.Generator().manual_seed(1))
    qs = [(f, j) for f in ((0, 1) if flip else (0,)) for j in (range(4) if numrot != 1 else range(1))]
    for k, (f, j) in enumerate(qs):
        qx = torch.rot90(x, -j, dims=(-2, -1))
        if f:
            qx = torch.flip(qx, dims=(-2,))
        lhs = ((qx * mask) * w[:, :, lo:hi, lo:hi]).flatten(1).sum(1).double()
        rhs = (v2[:, k].reshape(-1, channels, u, u) * x).flatten(1).sum(1).double()
        assert torch.allclose(lhs, rhs, rtol=1e-5, atol=1e-5)
