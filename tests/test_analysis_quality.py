"""Quality metrics on hand-built mappings with known answers."""

import math

import numpy as np
import pytest
import torch

from somtorch.analysis.quality import (
    best_two,
    coherence,
    convergence_curve,
    intermediate_soms,
    neuron_distance_stats,
    quality_report,
    quantization_error,
    topographic_error,
    u_matrix,
)
from somtorch.engine import SOMGeometry
from somtorch.errors import ShapeError
from somtorch.geometry import Lattice
from somtorch.io import Mapping, write_mapping, write_som

torch.set_num_threads(1)


def _rows(n_neurons, picks):
    """Distance rows where neuron picks[i][0] is best (d0), picks[i][1] second, others 10."""
    out = np.full((len(picks), n_neurons), 10.0, np.float32)
    for i, (a, b, d0) in enumerate(picks):
        out[i, a] = d0
        out[i, b] = d0 + 0.5
    return out


# 3x3 cartesian: i -> (i // 3, i % 3)
CART = _rows(9, [(4, 5, 1.0),   # right neighbour: no TE, coherent
                 (0, 4, 2.0),   # diagonal: TE error, coherent (Chebyshev 1)
                 (0, 8, 3.0),   # opposite corners: error, incoherent (periodic: Chebyshev 1, still TE)
                 (0, 2, 6.0)])  # same row, two apart: error; periodic neighbours


@pytest.fixture
def cart_map(tmp_path):
    p = tmp_path / "cart.map"
    write_mapping(p, CART, (3, 3))
    return Mapping(p)


def test_cartesian_metrics_hand_built(cart_map):
    lat = Lattice("cartesian", (3, 3))
    assert quantization_error(cart_map) == pytest.approx(3.0)
    assert topographic_error(cart_map) == pytest.approx(3 / 4)
    assert topographic_error(cart_map, periodic=True) == pytest.approx(2 / 4)
    assert coherence(cart_map) == pytest.approx(2 / 4)
    assert coherence(cart_map, periodic=True, fraction=False) == 4
    # the same answers from a plain array + lattice and from a tensor
    assert topographic_error(CART, lat) == pytest.approx(3 / 4)
    assert coherence(torch.from_numpy(CART), lat, fraction=False) == 2
    # Mapping.coherence (PYINK: a count) agrees, cyclic included
    assert cart_map.coherence() == 2 and cart_map.coherence(cyclic=True) == 4
    assert cart_map.coherence(fraction=True) == pytest.approx(0.5)
    # idx selects images
    assert quantization_error(cart_map, idx=[0, 1]) == pytest.approx(1.5)
    assert coherence(cart_map, idx=[2, 3], fraction=False) == 0
    rep = quality_report(cart_map)
    assert rep["n_images"] == 4 and rep["te"] == pytest.approx(0.75) and rep["coherence"] == pytest.approx(0.5)
    assert rep["qe_median"] == pytest.approx(2.5) and rep["empty_neurons"] == 7


def test_bmu_mask_applies_to_every_metric(cart_map):
    mask = np.ones((3, 3), bool)
    mask[1, 1] = False  # neuron 4 excluded: image 0 now best 5 (d 1.5), second 0/1/.. (10, lowest index)
    cart_map.bmu_mask = mask
    k0, k1, d = best_two(cart_map)
    assert k0.tolist() == [5, 0, 0, 0] and k1.tolist() == [0, 1, 8, 2]
    assert d.tolist() == [1.5, 2.0, 3.0, 6.0]
    assert quantization_error(cart_map) == pytest.approx((1.5 + 2 + 3 + 6) / 4)
    # image 0: 5=(1,2) vs 0=(0,0) far; image 1: 0 vs 1 adjacent
    assert topographic_error(cart_map) == pytest.approx(3 / 4)
    assert coherence(cart_map, fraction=False) == cart_map.coherence() == 1
    st = neuron_distance_stats(cart_map)
    assert st.loc[4, "count"] == 0 and math.isnan(st.loc[4, "median"])


def test_hexagonal_metrics(tmp_path):
    # d=3 hexagon: axial (1,0),(2,0),(0,1),(1,1),(2,1),(0,2),(1,2); neuron 3 is the centre
    rows = _rows(7, [(0, 6, 1.0),   # (1,0)-(1,2): hex distance 2 -> error, incoherent
                     (0, 3, 1.0),   # neighbour of the centre
                     (1, 2, 1.0),   # (2,0)-(0,1): distance 2
                     (5, 4, 1.0)])  # (0,2)-(2,1): distance 2
    p = tmp_path / "hex.map"
    write_mapping(p, rows, (3, 3))
    m = Mapping(p)
    assert m.layout == "hexagonal"
    assert topographic_error(m) == pytest.approx(3 / 4)
    assert coherence(m, fraction=False) == m.coherence() == 1
    # periodic hexagon: every neuron neighbours all six others in a 7-neuron torus
    assert topographic_error(m, periodic=True) == 0.0
    assert coherence(m, periodic=True) == 1.0 == m.coherence(cyclic=True, fraction=True)


def test_neuron_distance_stats():
    d = np.full((6, 4), 20.0, np.float32)
    for i, (k, v) in enumerate([(2, 1.0), (2, 2.0), (2, 3.0), (0, 5.0), (2, 10.0), (0, 7.0)]):
        d[i, k] = v
    st = neuron_distance_stats(d, Lattice("cartesian", (2, 2)))
    assert st["count"].tolist() == [2, 0, 4, 0]
    assert st.loc[2, "median"] == pytest.approx(2.5)
    assert st.loc[2, "mean"] == pytest.approx(4.0)
    assert st.loc[0, "mad"] == pytest.approx(1.0)
    assert st.loc[2, "q84"] >= st.loc[2, "median"] >= st.loc[2, "q16"]


def test_u_matrix_cartesian_and_hex_neighbours():
    v = np.arange(9, dtype=np.float64)
    w = np.repeat(v[:, None, None, None], 4, axis=1).repeat(2, axis=2).repeat(2, axis=3)  # (9,4,2,2)
    u = u_matrix(w, Lattice("cartesian", (3, 3)))
    # pixel-count factor: 16 pixels -> distance 4 |vi - vj|; centre 4 has neighbours 1,3,5,7
    assert u[4] == pytest.approx(4 * np.mean([3, 1, 1, 3]))
    assert u[0] == pytest.approx(4 * np.mean([3, 1]))
    up = u_matrix(w, Lattice("cartesian", (3, 3), periodic=True))
    assert up[0] == pytest.approx(4 * np.mean([3, 1, 6, 2]))  # 0's periodic neighbours: 3, 1, 6, 2
    # hexagon d=5: neighbours from axial rules, computed independently
    lat = Lattice("hexagonal", (5,))
    ax = lat.coords.numpy()
    vals = np.random.default_rng(0).random(lat.num_neurons)
    wh = vals[:, None, None, None] * np.ones((1, 1, 1, 1))
    uh = u_matrix(wh, lat, reduce="max")
    steps = {(1, 0), (-1, 0), (0, 1), (0, -1), (1, -1), (-1, 1)}
    for i, (q, r) in enumerate(ax):
        nb = [j for j, (q2, r2) in enumerate(ax) if (q2 - q, r2 - r) in steps]
        assert len(nb) in (3, 4, 6)
        assert uh[i] == pytest.approx(max(abs(vals[i] - vals[j]) for j in nb))
    with pytest.raises(ShapeError):
        u_matrix(w[:5], Lattice("cartesian", (3, 3)))


def test_convergence_curve_and_intermediate_soms(tmp_path):
    rng = np.random.default_rng(0)
    g = SOMGeometry(8, numrot=4)
    lat = Lattice("cartesian", (2, 2))
    templ = np.zeros((4, 1, g.nd, g.nd), np.float32)
    m = (g.nd - 8) // 2
    imgs = rng.random((4, 1, 8, 8)).astype(np.float32)
    templ[:, :, m:m + 8, m:m + 8] = imgs
    noise = rng.random(templ.shape).astype(np.float32)
    paths = []
    for k in range(4):
        p = tmp_path / f"res.som_{k}.bin"
        write_som(p, noise * (1 - k / 3) + templ * (k / 3), (2, 2))
        paths.append(p)
    write_som(tmp_path / "res.som.bin", templ, (2, 2))
    (tmp_path / "res.som_x.bin").write_bytes(b"")  # not an inter-store name
    found = intermediate_soms(tmp_path / "res.som.bin")
    assert [p.rsplit("_", 1)[1] for p in found] == ["0.bin", "1.bin", "2.bin", "3.bin"]
    # images: the templates rotated by quarter turns (exact matches at the end)
    x = np.stack([np.rot90(imgs[i], -i % 4, axes=(1, 2)) for i in range(4)]).copy()
    df = convergence_curve(found, torch.from_numpy(x), g)
    assert df["qe"].is_monotonic_decreasing and df["qe"].iloc[-1] < 1e-2
    assert df["te"].between(0, 1).all() and math.isnan(df["change"].iloc[0]) and (df["change"].iloc[1:] > 0).all()
    df2 = convergence_curve([torch.from_numpy(templ)], torch.from_numpy(x), g, lat)
    assert df2["qe"].iloc[0] < 1e-2


@pytest.mark.parametrize("name", ["mapA", "mapB", "mapD", "map_blobs64"])
def test_golden_pink_mappings_pyink_coherence(name):
    """PYINK's documented coherence on PINK-written files: argsort rows, unravel over (X, Y),
    count Chebyshev distance <= 1 -- computed here independently."""
    from pathlib import Path

    m = Mapping(Path(__file__).parent / "data" / f"{name}.bin")
    x, y = m.header.som_dims
    order = np.argsort(m.flat, axis=1, kind="stable")
    b0 = np.stack(np.unravel_index(order[:, 0], (x, y)), 1)
    b1 = np.stack(np.unravel_index(order[:, 1], (x, y)), 1)
    expect = int((np.abs(b0 - b1).max(axis=1) <= 1).sum())
    assert m.coherence() == coherence(m, fraction=False) == expect
    assert quantization_error(m) == pytest.approx(float(m.flat.min(axis=1).astype(np.float64).mean()), rel=1e-6)


def test_neuron_purity_hand_built():
    from somtorch.analysis import neuron_purity

    # neuron 0: a, a, b -> 2 of 3; neuron 5: c, c -> 2 of 2; neuron 2: d -> 1 of 1
    assert neuron_purity([0, 0, 0, 5, 5, 2], ["a", "a", "b", "c", "c", "d"]) == pytest.approx(5 / 6)
    assert neuron_purity([1, 1], [True, False]) == pytest.approx(0.5)
    assert np.isnan(neuron_purity([], []))
