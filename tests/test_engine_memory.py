"""Memory estimates (analogue of cookbook Eq. 5), budgets and automatic chunking."""

from __future__ import annotations

import pytest
import torch

from somtorch.engine import Mapper, RotationInvariantSOM, SOMGeometry
from somtorch.engine.memory import (
    estimate_memory,
    fit_batch_size,
    format_bytes,
    memory_budget,
    parse_bytes,
    pink_eq5_bytes,
)
from somtorch.errors import ConfigError
from somtorch.geometry import Lattice


def _som(d=64, numrot=360, side=10, flip=True):
    return RotationInvariantSOM(Lattice("cartesian", (side, side)), SOMGeometry(d, numrot=numrot, flip=flip))


def test_parse_and_format_bytes():
    assert parse_bytes("2GiB") == 2 << 30
    assert parse_bytes("1.5 MiB") == 3 << 19
    assert parse_bytes("512MB") == 512_000_000
    assert parse_bytes(4096) == 4096
    assert parse_bytes(None) is None and parse_bytes("auto") is None
    with pytest.raises(ConfigError):
        parse_bytes("12 parsecs")
    with pytest.raises(ConfigError):
        parse_bytes(0)
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(12) == "12 B"


def test_eq5_matches_cookbook_numbers():
    # cookbook Eq. 5 at its reference point: 54.5 + 7.6 MB
    assert pink_eq5_bytes(360, 1, 100, 100) == 62_100_000
    assert pink_eq5_bytes(180, 2, 200, 400) == int((54.5 * 0.5 * 2 * 4 + 7.6 * 4 * 2 * 4) * 1e6)


def test_estimate_components_are_the_arrays_we_allocate():
    som = _som(64)
    g, eng = som.geometry, som.engine
    lo, hi = eng.window
    u = hi - lo
    est = estimate_memory(som, "map")
    # independent arithmetic: the tensors the fast path really holds
    assert est.fixed["weights"] == som.weight.numel() * 4
    v, wn = eng.neuron_parity(som.weight)
    assert est.fixed["neuron parity features"] == v.numel() * 4
    r, rnorm = eng.base_features(torch.zeros(1, 1, 64, 64))
    assert est.per_image["base rotations"] == 3 * r.numel() * 4
    assert est.per_image["distances"] == 3 * 4 * g.num_transforms * som.num_neurons
    assert u == 44 and est.total(10) == est.fixed_bytes + 10 * est.per_image_bytes
    batch = estimate_memory(som, "batch")
    assert batch.fixed_bytes > est.fixed_bytes and batch.per_image_bytes == est.per_image_bytes
    assert "cookbook Eq. 5" in est.describe(8)
    # fewer rotations -> less per image; more neurons -> more fixed memory
    assert estimate_memory(_som(64, 8), "map").per_image_bytes < est.per_image_bytes
    assert estimate_memory(_som(64, side=20), "map").fixed_bytes > est.fixed_bytes


def test_fit_batch_size_respects_budget():
    est = estimate_memory(_som(64), "map")
    for budget in (est.total(1), est.total(7) + 1, est.total(300)):
        b = fit_batch_size(est, budget)
        assert est.total(b) <= budget < est.total(b + 1) or b == 1024
    with pytest.raises(ConfigError, match="memory budget"):
        fit_batch_size(est, est.fixed_bytes)


def test_memory_budget_limit_and_env(monkeypatch):
    assert memory_budget("cpu", "1GiB") == 1 << 30
    monkeypatch.setenv("SOMTORCH_MEMORY_LIMIT", "64MiB")
    assert memory_budget("cpu") == 64 << 20
    monkeypatch.delenv("SOMTORCH_MEMORY_LIMIT")
    assert 0 < memory_budget("cpu")


def test_out_of_memory_batch_is_retried_in_halves(monkeypatch):
    som = _som(16, 4, side=3)
    x = torch.rand(20, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    ref = Mapper(som, batch_size=4).map(x)
    eng = som.engine
    orig = eng.base_features

    def base_features(images, **kw):
        if len(images) > 4:
            raise torch.OutOfMemoryError("simulated: batch too large for the device")
        return orig(images, **kw)

    monkeypatch.setattr(eng, "base_features", base_features)
    m = Mapper(som, batch_size=16)
    res = m.map(x)
    assert m.batch_size == 4
    assert torch.equal(res.distances, ref.distances) and torch.equal(res.transform_index, ref.transform_index)


def test_cli_budget_smaller_than_the_som_fails_clearly(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from somtorch.io import write_images

    write_images(tmp_path / "img.bin", torch.rand(6, 1, 16, 16).numpy())
    _som(16, 4, side=3).save_pink(tmp_path / "som.bin")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root), HYDRA_FULL_ERROR="0")
    r = subprocess.run([sys.executable, "-m", "somtorch.map", f"som={tmp_path / 'som.bin'}", "som_config=null",
                        "numrot=4", "data=file", f"data.path={tmp_path / 'img.bin'}", "plots=false", "runtime=cpu",
                        "runtime.memory_limit=10KiB", f"hydra.run.dir={tmp_path / 'out'}"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.returncode != 0
    assert "field 'memory budget': found '10.0 KiB', expected >= " in r.stderr
    assert "memory estimate (map)" in r.stderr


def _table_bytes(tr) -> int:
    from somtorch.geometry._sampler import GridSampler

    smp = [v for v in tr._grid_cache.values() if isinstance(v, GridSampler) and v.ok]
    return sum(s.tab.numel() * s.tab.element_size() + s.wt.numel() * s.wt.element_size() for s in smp)


@pytest.mark.parametrize("numrot", [8, 36])
def test_sampler_tables_are_in_the_estimate(numrot):
    """The compiled sampler's neighbour tables (CPU) are counted in the fixed part, exactly as built
    by mapping and by the dense online step."""
    som = _som(24, numrot=numrot, side=3)
    imgs = torch.rand(5, 1, 24, 24)
    som.engine.distances_for(imgs, som.weight.data)  # mapping's path
    built = _table_bytes(som.engine.transformer)
    if built == 0:
        pytest.skip("the compiled sampler is not used on this machine")
    assert estimate_memory(som, "map").fixed["sampler tables"] == built
    from somtorch.engine import Neighbourhood
    from somtorch.engine.online import DenseStep

    som2 = _som(24, numrot=numrot, side=3)
    DenseStep(som2, som2.factors(Neighbourhood("gaussian", 1.0, 0.1))).prepare(imgs)
    som2.engine.distances_for(imgs, som2.weight.data)
    assert estimate_memory(som2, "online").fixed["sampler tables"] == _table_bytes(som2.engine.transformer)
