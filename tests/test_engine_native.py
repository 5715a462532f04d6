"""The compiled form of PINK's exact accumulation (:mod:`somtorch.engine._native`).

* bit-identical to the numpy loop on data whose float32 running sums round (wide dynamic range,
  many pixels, negative values, zeros);
* disabled (``SOMTORCH_NATIVE=0``) or without a compiler it returns None and the tie rule uses
  numpy, with the same training result.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from somtorch.engine import _native
from somtorch.engine.distance import _exact_sq, _exact_sq_numpy


@pytest.fixture()
def fresh(monkeypatch, tmp_path):
    monkeypatch.setenv("SOMTORCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_native, "_state", {})
    return tmp_path


def _pairs(seed, m, f):
    g = np.random.default_rng(seed)
    scale = 10.0 ** g.uniform(-4, 3, size=(m, f))
    xa = (g.standard_normal((m, f)) * scale).astype(np.float32)
    wa = (g.standard_normal((m, f)) * scale).astype(np.float32)
    wa[:, ::7] = xa[:, ::7]  # exact zeros among the differences
    return xa, wa


def test_compiled_loop_is_bit_identical_to_numpy(fresh):
    got_any = False
    for seed, (m, f) in enumerate([(1, 1), (3, 5), (257, 1600), (40, 3249)]):
        xa, wa = _pairs(seed, m, f)
        ref = _exact_sq_numpy(xa, wa)
        out = _native.pink_sq(xa, wa)
        if out is None:
            pytest.skip("no working C compiler on this machine (the numpy loop is used)")
        got_any = True
        assert out.dtype == np.float32 and out.shape == (m,)
        assert np.array_equal(out.view(np.int32), ref.view(np.int32))
        # a float64 sum differs from the float32 sequential one: the test can tell them apart
        if f > 100:
            assert not np.array_equal(out, np.square((wa - xa).astype(np.float64)).sum(1).astype(np.float32))
    assert got_any
    assert list(fresh.glob("native/pinksq-*.so"))  # cached in the cache folder


def test_disabled_or_without_compiler_the_numpy_loop_is_used(fresh, monkeypatch):
    xa, wa = _pairs(9, 20, 300)
    ref = _exact_sq_numpy(xa, wa)
    monkeypatch.setenv("SOMTORCH_NATIVE", "0")
    assert _native.pink_sq(xa, wa) is None
    assert np.array_equal(_exact_sq(xa, wa), ref)
    monkeypatch.delenv("SOMTORCH_NATIVE")
    monkeypatch.setenv("CC", str(fresh / "no-such-compiler"))
    assert _native.pink_sq(xa, wa) is None
    assert np.array_equal(_exact_sq(xa, wa), ref)


def test_training_with_ties_is_the_same_with_and_without_the_compiled_loop(fresh, monkeypatch):
    from somtorch.engine import Neighbourhood, RotationInvariantSOM, SOMGeometry, Trainer
    from somtorch.geometry import Lattice

    # PINK geometry and tie rules; a zero SOM and rot90-symmetric images: every step has exact ties
    geo = SOMGeometry(16, numrot=8, convention="pink")
    yy, xx = torch.meshgrid(torch.arange(16) - 7.5, torch.arange(16) - 7.5, indexing="ij")
    blob = torch.exp(-(yy ** 2 + xx ** 2) / 8.0)
    x = torch.stack([blob * (1 + 0.1 * i) for i in range(6)])[:, None]

    def train():
        som = RotationInvariantSOM(Lattice("cartesian", (2, 2)), geo, init="zero", rng="pink", seed=1)
        Trainer(som, Neighbourhood("gaussian", 1.1, 0.2), num_iter=1, shuffle=False).fit(x)
        return som.weight.detach().clone()

    calls = []
    real = _native.pink_sq
    monkeypatch.setattr(_native, "pink_sq", lambda a, b: calls.append(len(a)) or real(a, b))
    a = train()
    assert calls  # the tie rule ran
    monkeypatch.setenv("SOMTORCH_NATIVE", "0")
    b = train()
    assert torch.equal(a, b)
