"""The compiled neuron update (engine.fused): bit-identical to the eager update, and the policy."""

from __future__ import annotations

import pytest
import torch

from somtorch.engine import Neighbourhood, RotationInvariantSOM, SOMGeometry, Trainer
from somtorch.engine import fused as fused_mod
from somtorch.errors import ConfigError
from somtorch.geometry import Lattice


@pytest.fixture(autouse=True)
def _without_native_loop(monkeypatch):
    """The compiled C update (engine._native) takes precedence where it is available; these tests
    are about the torch.compile form, the fallback when it is not."""
    monkeypatch.setenv("SOMTORCH_NATIVE", "0")


def _train(compile_mode, side, numrot, d=12, c=1, n=30, shape="quadratic", batch=None):
    geo = SOMGeometry(d, channels=c, numrot=numrot, distance_shape=shape)
    som = RotationInvariantSOM(Lattice("cartesian", (side, side)), geo, init="random", seed=4)
    imgs = torch.rand(n, c, d, d, generator=torch.Generator().manual_seed(side * numrot))
    Trainer(som, Neighbourhood("gaussian", 1.1, 0.3), metrics_sample=0, step="dense", compile=compile_mode,
            batch_size=batch).fit(imgs)
    return som.weight.detach().clone(), som.update_count.clone()


@pytest.mark.parametrize("side, numrot, c, shape, batch", [
    (5, 4, 1, "quadratic", 7),   # fewer transformations than neurons: whole transformations gathered
    (5, 8, 2, "circular", None),  # two channels, circular region
])
def test_fused_update_is_bit_identical_to_the_eager_update(side, numrot, c, shape, batch):
    """Training with the compiled update gives exactly the eager weights (every bit), also with
    a short last batch (30 images in batches of 7)."""
    if not fused_mod.use_fused("on", torch.device("cpu"), 0):
        pytest.skip("compilation unavailable on this machine")
    w_eager, n_eager = _train("off", side, numrot, c=c, shape=shape, batch=batch)
    w_fused, n_fused = _train("on", side, numrot, c=c, shape=shape, batch=batch)
    assert torch.equal(w_fused, w_eager)
    assert torch.equal(n_fused, n_eager)
    assert not torch.equal(w_eager, _train("off", side, numrot, c=c, shape=shape, n=29)[0])  # the test can fail


def test_fallback_when_compilation_fails(monkeypatch, caplog):
    """No C++ compiler: the first call fails, the eager update takes over, the result is unchanged."""
    def broken():
        raise RuntimeError("no compiler here")

    w_eager, _ = _train("off", 4, 4)
    monkeypatch.setattr(fused_mod, "_compiled", broken)
    monkeypatch.setitem(fused_mod._FAILED, "cpu", False)
    w, _ = _train("on", 4, 4)
    assert torch.equal(w, w_eager)
    assert fused_mod._FAILED["cpu"]
    assert "eager update" in caplog.text


def test_auto_policy_and_bad_mode():
    cpu = torch.device("cpu")
    if fused_mod._FAILED["cpu"]:
        pytest.skip("compilation failed earlier in this process")
    assert not fused_mod.use_fused("auto", cpu, fused_mod.AUTO_MIN_ELEMENTS - 1)
    assert fused_mod.use_fused("auto", cpu, fused_mod.AUTO_MIN_ELEMENTS)
    assert not fused_mod.use_fused("off", cpu, 1e30)
    assert not fused_mod.use_fused("on", torch.device("meta"), 1e30)
    with pytest.raises(ConfigError, match="compile"):
        Trainer(RotationInvariantSOM(Lattice("cartesian", (2, 2)), SOMGeometry(8, numrot=4)), compile="yes")


def test_fused_update_only_where_whole_transformations_are_gathered():
    """The dense step compiles its update where it gathers whole transformations (fewer of them
    than neurons); with the bank's short rows the compiled loop measured slower, so none there."""
    from somtorch.engine.online import DenseStep

    def step(side, numrot):
        som = RotationInvariantSOM(Lattice("cartesian", (side, side)), SOMGeometry(12, numrot=numrot), init="random")
        return DenseStep(som, som.factors(Neighbourhood()), fused=True)

    assert step(5, 4).fused is not None  # 8 transformations, 25 neurons
    assert step(2, 8).fused is None  # 16 transformations, 4 neurons
