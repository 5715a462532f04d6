"""Exact rotation/flip invariance of the native geometry (issue: engine, exact invariance).

The independent expectation is the symmetry itself: every quarter turn and flip of an input is
one of the transformations searched (numrot a multiple of 4), so in the native geometry the best
neuron and its distance must not change, and the best transformation must compose with the
applied one. PINK's geometry (odd neuron side for an even image side) breaks this; that defect is
asserted too, so the native default cannot silently fall back to it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from somtorch.engine import RotationInvariantSOM, SOMGeometry
from somtorch.errors import GeometryWarning
from somtorch.geometry import (
    Lattice,
    default_euclidean_dim,
    default_neuron_dim,
    parity_problem,
    region_mask,
)

#: (k quarter turns clockwise, flipud afterwards) for the 8 dihedral copies of an image
DIHEDRAL = [(k, f) for f in (0, 1) for k in range(4)]


def dihedral(x: np.ndarray, k: int, f: int) -> np.ndarray:
    """``flipud**f(rot90_cw**k(x))`` on the last two axes (row 0 at the top)."""
    y = np.rot90(x, -k, axes=(-2, -1))
    if f:
        y = y[..., ::-1, :]
    return np.ascontiguousarray(y)


def structured_images(d: int, c: int, rng) -> np.ndarray:
    """A lopsided galaxy, an asymmetric double with a core, and a tailed source: (3, c, d, d)."""
    yy, xx = np.mgrid[0:d, 0:d].astype(np.float64)
    ctr = (d - 1) / 2

    def blob(r, col, sy, sx, amp=1.0, rot=0.0):
        dy, dx = yy - r, xx - col
        a, b = np.cos(rot) * dx + np.sin(rot) * dy, -np.sin(rot) * dx + np.cos(rot) * dy
        return amp * np.exp(-0.5 * ((a / sx) ** 2 + (b / sy) ** 2))

    galaxy = blob(ctr, ctr, d / 10, d / 5, rot=0.6) + blob(ctr - d / 6, ctr + d / 8, d / 14, d / 14, 0.4)
    double = blob(ctr - d / 5, ctr - d / 7, d / 16, d / 12, 1.0) + blob(ctr + d / 4, ctr + d / 9, d / 12, d / 16, 0.6) \
        + blob(ctr, ctr, d / 25, d / 25, 0.3)
    tail = sum(blob(ctr + s * d / 30, ctr - s * s * d / 400, d / 20, d / 20, 1.0 - s / 14) for s in range(10))
    imgs = np.stack([galaxy, double, tail]).astype(np.float32)
    imgs = np.repeat(imgs[:, None], c, axis=1)
    imgs *= (1.0 + 0.3 * np.arange(c, dtype=np.float32))[None, :, None, None]  # channels differ
    return imgs + 0.02 * rng.random(imgs.shape, dtype=np.float32)


def _som(d, c, numrot, shape, arithmetic="gemm", convention="native", seed=3):
    geo = SOMGeometry(d, channels=c, numrot=numrot, distance_shape=shape, convention=convention)
    return RotationInvariantSOM(Lattice("cartesian", (3, 3)), geo, init="random", seed=seed, arithmetic=arithmetic)


def _map_variants(som, imgs):
    """Distances (8, B, N), best transforms (8, B, N) and BMUs (8, B) of every dihedral copy."""
    out_d, out_t = [], []
    for k, f in DIHEDRAL:
        d, t = som(torch.from_numpy(dihedral(imgs, k, f)))
        out_d.append(d.double().numpy())
        out_t.append(t.numpy())
    dist, t = np.stack(out_d), np.stack(out_t)
    return dist, t, dist.argmin(axis=2)


def expected_transform(t0: np.ndarray, k: int, f: int, numrot: int) -> np.ndarray:
    """Best transformation of ``flipud**f(rot90_cw**k(x))`` from that of ``x``.

    A neuron ``w ~ F**g R_a x`` (R_a: clockwise by a, F: flipud). For ``x' = R_90k x``:
    ``w ~ F**g R_(a - 90k) x'``; for ``x' = F x``, with ``R_b F = F R_-b``: ``w ~ F**(1-g) R_-a x'``.
    """
    g, i = np.divmod(t0, numrot)
    q = numrot // 4
    i = (i - k * q) % numrot  # undo the quarter turns first ...
    if f:  # ... then the flip
        g, i = 1 - g, (-i) % numrot
    return g * numrot + i


@pytest.mark.parametrize("numrot", [4, 8, 36, 360])
@pytest.mark.parametrize("d", [15, 16])
@pytest.mark.parametrize("shape", ["quadratic", "circular"])
def test_quarter_turns_and_flips_land_on_the_same_neuron(d, numrot, shape):
    rng = np.random.default_rng(100 * d + numrot)
    c = 2 if numrot == 8 else 1  # multi-channel in one rotation count of each size and shape
    imgs = np.concatenate([rng.random((3, c, d, d), dtype=np.float32), structured_images(d, c, rng)])
    som = _som(d, c, numrot, shape)
    assert som.geometry.exactly_invariant
    dist, t, bmu = _map_variants(som, imgs)
    assert (bmu == bmu[0]).all(), "a quarter turn or flip changed the best-matching neuron"
    rel = np.abs(dist - dist[0]) / np.maximum(dist[0], 1e-12)
    assert rel.max() <= 1e-5, f"relative distance difference {rel.max():.2e}"
    # the best transformation composes with the applied one (random images: no symmetric ties)
    for v, (k, f) in enumerate(DIHEDRAL):
        assert np.array_equal(t[v, :3], expected_transform(t[0, :3], k, f, numrot)), (k, f)


def test_invariance_with_pinks_exact_arithmetic():
    rng = np.random.default_rng(5)
    imgs = rng.random((2, 1, 10, 10), dtype=np.float32)
    som = _som(10, 1, 8, "circular", arithmetic="pink")
    dist, t, bmu = _map_variants(som, imgs)
    assert (bmu == bmu[0]).all()
    assert (np.abs(dist - dist[0]) / dist[0]).max() <= 1e-5
    for v, (k, f) in enumerate(DIHEDRAL):
        assert np.array_equal(t[v], expected_transform(t[0], k, f, 8))


@pytest.mark.parametrize("ed", [6, 8, 12])
def test_any_window_of_the_right_parity_is_invariant(ed):
    rng = np.random.default_rng(ed)
    imgs = rng.random((3, 1, 12, 12), dtype=np.float32)
    for shape in ("quadratic", "circular"):
        geo = SOMGeometry(12, numrot=36, euclidean_dim=ed, distance_shape=shape)
        som = RotationInvariantSOM(Lattice("cartesian", (2, 2)), geo, init="random", seed=ed)
        dist, _, bmu = _map_variants(som, imgs)
        assert (bmu == bmu[0]).all()
        assert (np.abs(dist - dist[0]) / dist[0]).max() <= 1e-5


def test_pink_geometry_is_not_invariant():
    """The defect the native default exists for: PINK's nd = 23 for d = 16 (odd vs even)."""
    rng = np.random.default_rng(0)
    imgs = rng.random((8, 1, 16, 16), dtype=np.float32)
    som = _som(16, 1, 4, "quadratic", convention="pink")
    assert som.geometry.nd == 23 and not som.geometry.exactly_invariant
    dist, _, _ = _map_variants(som, imgs)
    assert (np.abs(dist - dist[0]) / dist[0]).max() > 1e-2


# ------------------------------------------------------------------------ defaults and warnings

@pytest.mark.parametrize("d", [16, 32, 40, 64, 100, 150, 15, 63])
def test_native_defaults_keep_the_image_parity(d):
    for numrot in (4, 8, 36, 360):
        nd = default_neuron_dim(d, numrot)
        pink = default_neuron_dim(d, numrot, "pink")
        assert (nd - d) % 2 == 0 and pink - 1 <= nd <= pink
        assert nd >= np.sqrt(2) * d - 1  # covers the rotated image up to its extreme corners
        for shape in ("quadratic", "circular"):
            ed = default_euclidean_dim(d, numrot, shape)
            assert parity_problem(d, nd, ed) is None
            geo = SOMGeometry(d, numrot=numrot, distance_shape=shape)
            assert (geo.nd, geo.ed) == (nd, ed) and geo.exactly_invariant
    assert (default_neuron_dim(40, 36), default_neuron_dim(64, 360), default_euclidean_dim(64, 360)) == (56, 90, 44)


def test_native_circular_region_is_symmetric_and_equals_pinks_for_even_sizes():
    for nd in range(5, 40):
        for ed in range(1, nd + 1):
            m = region_mask(nd, ed, "circular", "native").numpy()
            for k in range(4):
                assert np.array_equal(np.rot90(m, k), m)
            assert np.array_equal(m[::-1], m)
            if nd % 2 == 0 and ed % 2 == 0:
                assert np.array_equal(m, region_mask(nd, ed, "circular").numpy())
    # PINK's circular mask is off-centre for an odd neuron side
    m = region_mask(23, 16, "circular").numpy()
    assert not np.array_equal(m[:, ::-1], m)


def test_parity_breaking_sizes_warn_in_native_mode_only():
    with pytest.warns(GeometryWarning, match="neuron_dim 91 and image_dim 64"):
        SOMGeometry(64, numrot=8, neuron_dim=91)
    with pytest.warns(GeometryWarning, match="euclidean_dim 45"):
        SOMGeometry(64, numrot=8, euclidean_dim=45)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SOMGeometry(64, numrot=8, neuron_dim=91, euclidean_dim=45, convention="pink")
        SOMGeometry(64, numrot=8, neuron_dim=92, euclidean_dim=46)
        SOMGeometry(64, numrot=8)


def test_configs_written_before_the_convention_load_as_pink():
    som = _som(16, 1, 4, "quadratic", convention="pink")
    cfg = som.config_dict()
    assert cfg["geometry"]["convention"] == "pink"
    old = dict(cfg, geometry={k: v for k, v in cfg["geometry"].items() if k != "convention"})
    again = RotationInvariantSOM.from_config_dict(old, init=som.weight.detach())
    g, h = again.geometry, som.geometry
    assert (g.nd, g.ed, g.convention) == (h.nd, h.ed, h.convention) == (23, 11, "pink")
    native = _som(16, 1, 4, "quadratic").config_dict()
    assert RotationInvariantSOM.from_config_dict(native).geometry.convention == "native"


def test_hydra_geometry_is_native_and_the_pink_preset_is_pink():
    from somtorch.cli.common import build_som

    som_cfg = {"layout": "cartesian", "shape": [2, 2], "numrot": 8}
    assert build_som(som_cfg, {"device": "cpu"}, 64).geometry.nd == 90
    pink_rt = {"device": "cpu", "arithmetic": "pink", "rng": "pink", "convention": "pink"}
    assert build_som(som_cfg, pink_rt, 64).geometry.nd == 91
    # the som group's own setting wins over the runtime preset's
    assert build_som(dict(som_cfg, convention="native"), pink_rt, 64).geometry.nd == 90
