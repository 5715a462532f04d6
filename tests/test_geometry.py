"""Geometry tests written from the PINK 2.5 specification (spec §1.6, §2, §3, §4.2, §5.4-§5.6, §7.3, §9.1).

Every expectation comes from the spec text or from an independent slow implementation written
here with plain Python loops; nothing is derived from somtorch itself.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
import torch

from somtorch.engine import Mapper, Neighbourhood, RotationInvariantSOM, SOMGeometry
from somtorch.engine.neighbourhood import neighbourhood_function
from somtorch.errors import ConfigError, SomtorchError
from somtorch.geometry import (
    Lattice,
    PinkTransformer,
    default_euclidean_dim,
    default_neuron_dim,
    index_to_flip_angle,
    pad_or_crop,
    region_mask,
    rotation_step,
)

F32 = np.float32


# ----------------------------------------------------------------------------- lattices (§1.6)

def test_cartesian_1d_order():
    lat = Lattice("cartesian", (5,))
    assert lat.num_neurons == 5
    assert lat.coords.tolist() == [[0], [1], [2], [3], [4]]
    assert lat.som_dims == (5,)


def test_cartesian_2d_order_height_fastest():
    # spec §1.6: i <-> (i div H, i mod H), height index varies fastest
    lat = Lattice("cartesian", (4, 2))
    assert lat.num_neurons == 8
    assert lat.coords.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [2, 1], [3, 0], [3, 1]]
    assert lat.som_dims == (4, 2)


def test_cartesian_3d_order():
    # spec §1.6: i <-> ((i mod WH) div H, i mod H, i div WH), a [D][W][H] array
    w, h, d = 3, 2, 4
    lat = Lattice("cartesian", (w, h, d))
    expected = []
    for z in range(d):
        for x in range(w):
            for y in range(h):
                expected.append([x, y, z])
    assert lat.coords.tolist() == expected
    assert lat.num_neurons == w * h * d
    assert lat.som_dims == (3, 2, 4)


def test_hexagonal_d3_positions():
    lat = Lattice("hexagonal", (3,))
    assert lat.num_neurons == 7
    assert [tuple(c) for c in lat.coords.tolist()] == [(1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2), (1, 2)]
    assert lat.som_dims == (3, 3)


@pytest.mark.parametrize("d, n", [(1, 1), (3, 7), (5, 19), (7, 37), (21, 331)])
def test_hexagonal_counts_and_rows(d, n):
    lat = Lattice("hexagonal", (d,))
    assert lat.num_neurons == n
    big_r = (d - 1) // 2
    coords = lat.coords.tolist()
    # rows r = 0..d-1 have d - |r - R| cells, starting at q0 = max(0, R - r), numbered left to right
    pos = 0
    for r in range(d):
        width = d - abs(r - big_r)
        row = coords[pos:pos + width]
        assert row == [[max(0, big_r - r) + j, r] for j in range(width)]
        pos += width
    assert pos == n


# ----------------------------------------------------------------------------- from_pink (§7.3)

def test_from_pink_dimensionality_rules():
    assert Lattice.from_pink(10, 10).shape == (10, 10)
    assert Lattice.from_pink(10, 10).num_neurons == 100
    assert Lattice.from_pink(7, 1).shape == (7,)
    assert Lattice.from_pink(3, 4, 2).shape == (3, 4, 2)
    # quirk: height 1 with depth > 1 gives the 2-D layout (W, 1) with only W neurons
    q = Lattice.from_pink(5, 1, 3)
    assert q.shape == (5, 1)
    assert q.num_neurons == 5
    hexa = Lattice.from_pink(5, 5, 1, layout="hexagonal")
    assert hexa.layout == "hexagonal"
    assert hexa.num_neurons == 19
    assert hexa.som_dims == (5, 5)


@pytest.mark.parametrize("kwargs, field", [
    (dict(width=1, height=3), "som-width"),
    (dict(width=0, height=3), "som-width"),
    (dict(width=3, height=0), "som-height"),
    (dict(width=3, height=3, depth=0), "som-depth"),
    (dict(width=4, height=4, layout="hexagonal"), "som-width"),  # only odd dimension supported
    (dict(width=5, height=3, layout="hexagonal"), "som-height"),  # width must equal height
    (dict(width=5, height=5, depth=2, layout="hexagonal"), "som-depth"),  # depth must be 1
])
def test_from_pink_errors(kwargs, field):
    with pytest.raises(ConfigError) as exc:
        Lattice.from_pink(**kwargs)
    assert isinstance(exc.value, SomtorchError)
    assert field in str(exc.value)


def test_config_error_is_described_like_other_errors():
    with pytest.raises(ConfigError) as exc:
        Lattice.from_pink(1, 3)
    err = exc.value
    assert err.field == "som-width"
    assert err.found == 1
    assert not str(err).startswith("(")
    assert "found 1" in str(err)


def test_invalid_lattices_rejected():
    with pytest.raises(ConfigError):
        Lattice("hexagonal", (4,))
    with pytest.raises(ConfigError):
        Lattice("cartesian", (2, 2, 2, 2))
    with pytest.raises(ConfigError):
        Lattice("triangular", (3, 3))


# ----------------------------------------------------------------------------- grid distances (§5.6)

def _hex_dist_spec(a, b):
    dq, dr = a[0] - b[0], a[1] - b[1]
    if (dq >= 0 and dr >= 0) or (dq < 0 and dr < 0):
        return abs(dq + dr)
    return max(abs(dq), abs(dr))


@pytest.mark.parametrize("shape", [(6,), (3, 4), (2, 3, 4)])
def test_cartesian_grid_distances(shape):
    lat = Lattice("cartesian", shape)
    c = lat.coords.tolist()
    got = lat.distances()
    assert got.dtype == torch.float32
    for i in range(len(c)):
        for j in range(len(c)):
            sq = F32(0)
            for a, b in zip(c[i], c[j]):
                sq = F32(sq + F32((a - b) ** 2))
            assert got[i, j].item() == F32(math.sqrt(sq))


@pytest.mark.parametrize("d", [3, 5, 7])
def test_hexagonal_grid_distances(d):
    lat = Lattice("hexagonal", (d,))
    c = lat.coords.tolist()
    got = lat.distances()
    for i in range(len(c)):
        for j in range(len(c)):
            assert got[i, j].item() == _hex_dist_spec(c[i], c[j])
    # the spec formula equals the usual hex distance (|dq|+|dr|+|dq+dr|)/2
    for i in range(len(c)):
        dq, dr = c[0][0] - c[i][0], c[0][1] - c[i][1]
        assert got[0, i].item() == (abs(dq) + abs(dr) + abs(dq + dr)) / 2


@pytest.mark.parametrize("layout, shape", [
    ("cartesian", (7,)), ("cartesian", (4, 5)), ("cartesian", (3, 4, 2)),
    ("hexagonal", (3,)), ("hexagonal", (5,)), ("hexagonal", (7,)),
])
def test_periodic_lattices_vertex_transitive(layout, shape):
    per = Lattice(layout, shape, periodic=True).distances().numpy()
    flat = Lattice(layout, shape, periodic=False).distances().numpy()
    rows = np.sort(per, axis=1)
    assert (rows == rows[0]).all(), "every neuron must see the same sorted distance row"
    assert np.array_equal(per, per.T)
    assert (np.diag(per) == 0).all()
    assert (per <= flat).all()
    assert (per < flat).any()


def test_periodic_cartesian_minimum_image():
    lat = Lattice("cartesian", (5, 4), periodic=True)
    c = lat.coords.tolist()
    d = lat.distances()
    for i in range(len(c)):
        for j in range(len(c)):
            dx = min(abs(c[i][0] - c[j][0]), 5 - abs(c[i][0] - c[j][0]))
            dy = min(abs(c[i][1] - c[j][1]), 4 - abs(c[i][1] - c[j][1]))
            assert d[i, j].item() == pytest.approx(math.hypot(dx, dy), rel=1e-6)


def _hex_torus_bfs(d):
    """Periodic hex distances by breadth-first search on the hex torus (independent of formulas).

    The hexagon of radius R tiles the plane with the translations T1 = (2R+1, -R-1) (axial) and its
    60-degree rotation T2 = (R+1, R); a cell outside the hexagon is folded back by these. (The mirror
    tiling T1 = (2R+1, -R) is equally valid; somtorch documents and uses this chirality.)"""
    big_r = (d - 1) // 2
    cells = [tuple(x) for x in Lattice("hexagonal", (d,)).coords.tolist()]
    index = {c: i for i, c in enumerate(cells)}
    t1, t2 = (2 * big_r + 1, -big_r - 1), (big_r + 1, big_r)

    def fold(q, r):
        for a in range(-2, 3):
            for b in range(-2, 3):
                cand = (q + a * t1[0] + b * t2[0], r + a * t1[1] + b * t2[1])
                if cand in index:
                    return index[cand]
        raise AssertionError("fold failed")

    steps = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, -1), (-1, 1)]
    out = np.zeros((len(cells), len(cells)), dtype=np.float32)
    for s in range(len(cells)):
        dist = {s: 0}
        queue = deque([s])
        while queue:
            u = queue.popleft()
            for dq, dr in steps:
                v = fold(cells[u][0] + dq, cells[u][1] + dr)
                if v not in dist:
                    dist[v] = dist[u] + 1
                    queue.append(v)
        for v, k in dist.items():
            out[s, v] = k
    return out


@pytest.mark.parametrize("d", [3, 5, 7])
def test_periodic_hexagonal_equals_torus_bfs(d):
    assert np.array_equal(Lattice("hexagonal", (d,), periodic=True).distances().numpy(), _hex_torus_bfs(d))


# ----------------------------------------------------------------------------- default sizes (§2.2)

@pytest.mark.parametrize("d, nd, ed_q", [
    (150, 213, 106), (128, 182, 90), (124, 176, 87), (64, 91, 45), (44, 63, 31), (32, 46, 22), (16, 23, 11),
])
def test_default_sizes_table(d, nd, ed_q):
    for numrot in (4, 8, 360):
        assert default_neuron_dim(d, numrot, "pink") == nd
        assert default_euclidean_dim(d, numrot, "quadratic", "pink") == ed_q
        assert default_euclidean_dim(d, numrot, "circular", "pink") == d
    assert default_neuron_dim(d, 1, "pink") == d
    assert default_euclidean_dim(d, 1, "quadratic", "pink") == d
    assert default_euclidean_dim(d, 1, "circular", "pink") == d
    g = SOMGeometry(d, numrot=360, convention="pink")
    assert (g.nd, g.ed) == (nd, ed_q)
    assert (SOMGeometry(d, numrot=1, convention="pink").nd, SOMGeometry(d, numrot=1, convention="pink").ed) == (d, d)
    # ed depends on d, not on nd, even when nd is given
    assert SOMGeometry(d, numrot=8, neuron_dim=nd + 5, convention="pink").ed == ed_q


def test_ed_larger_than_nd_rejected():
    with pytest.raises(ConfigError):
        SOMGeometry(16, numrot=4, neuron_dim=10, euclidean_dim=12)


@pytest.mark.parametrize("numrot", [0, 3, 6, -4])
def test_invalid_numrot(numrot):
    with pytest.raises(ConfigError):
        SOMGeometry(16, numrot=numrot)


# ----------------------------------------------------------------------------- regions (§2.5, §4.2)

@pytest.mark.parametrize("nd, ed, count", [(29, 20, 316), (23, 16, 208), (91, 64, 3228)])
def test_circular_pixel_counts(nd, ed, count):
    assert int(region_mask(nd, ed, "circular").sum()) == count


def test_circular_8x8_row_widths():
    m = region_mask(8, 8, "circular")
    assert m.sum(dim=1).tolist() == [4, 6, 8, 8, 8, 8, 6, 4]
    # rows are contiguous and centred on c = 4: [round(4 - delta), round(4 + delta))
    assert m[0].nonzero().flatten().tolist() == [2, 3, 4, 5]


@pytest.mark.parametrize("ed", [14, 16, 20])
def test_circular_odd_ed_same_count_as_even(ed):
    nd = 29
    assert int(region_mask(nd, ed + 1, "circular").sum()) == int(region_mask(nd, ed, "circular").sum())


def test_quadratic_window_position():
    m = region_mask(91, 45, "quadratic")
    b = (91 - 45) // 2
    assert b == 23
    expected = torch.zeros(91, 91, dtype=torch.bool)
    expected[b:b + 45, b:b + 45] = True
    assert torch.equal(m, expected)


# ----------------------------------------------------------------------------- pad / crop (§2.3)

def test_pad_margin_top_left():
    img = torch.arange(1, 17, dtype=torch.float32).reshape(4, 4)
    out = pad_or_crop(img, 7)  # nd - d = 3 is odd: margin 1 top/left, 2 bottom/right
    assert out.shape == (7, 7)
    assert torch.equal(out[1:5, 1:5], img)
    assert out.sum() == img.sum()
    assert (out[0] == 0).all() and (out[:, 0] == 0).all()
    assert (out[5:] == 0).all() and (out[:, 5:] == 0).all()


def test_crop_margin():
    img = torch.arange(400, dtype=torch.float32).reshape(20, 20)
    assert torch.equal(pad_or_crop(img, 16), img[2:18, 2:18])
    assert torch.equal(pad_or_crop(img, 15), img[2:17, 2:17])  # extra row/col at the bottom/right


def test_transform_zero_is_pad_not_rotation_centre():
    # d = 16, nd = 23: t = 0 is the padded image with margin 3 (half-pixel inconsistency kept)
    img = torch.rand(1, 1, 16, 16)
    out = PinkTransformer(16, numrot=8, flip=False)(img)
    assert out.shape == (1, 8, 1, 23, 23)
    assert torch.equal(out[0, 0, 0, 3:19, 3:19], img[0, 0])
    assert out[0, 0, 0].sum() == pytest.approx(img.sum().item(), rel=1e-6)


# ----------------------------------------------------------------------------- transform order (§3)

def test_unit_test_2x2_quarter_turns():
    img = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    out = PinkTransformer(2, neuron_dim=2, numrot=4, flip=True)(img)[0, :, 0]
    assert out[0].tolist() == [[1, 2], [3, 4]]
    assert out[1].tolist() == [[3, 1], [4, 2]]
    assert out[2].tolist() == [[4, 3], [2, 1]]
    assert out[3].tolist() == [[2, 4], [1, 3]]
    # flips reverse the rows of the rotated images
    for k in range(4):
        assert out[4 + k].tolist() == out[k].tolist()[::-1]


@pytest.mark.parametrize("d, nd", [(6, 6), (5, 9), (8, 11)])
def test_numrot4_exact_quarter_turns_and_flips(d, nd):
    rng = np.random.default_rng(d * 100 + nd)
    img = rng.random((d, d), dtype=np.float32)
    out = PinkTransformer(d, neuron_dim=nd, numrot=4, flip=True)(torch.from_numpy(img)[None, None])[0, :, 0].numpy()
    m = (nd - d) // 2
    padded = np.zeros((nd, nd), np.float32)
    padded[m:m + d, m:m + d] = img
    for k in range(4):
        assert np.array_equal(out[k], np.rot90(padded, -k))
        assert np.array_equal(out[4 + k], np.flipud(np.rot90(padded, -k)))


def test_numrot1_flip_only():
    img = torch.rand(2, 3, 7, 7)
    out = PinkTransformer(7, numrot=1, flip=True)(img)
    assert out.shape == (2, 2, 3, 7, 7)
    assert torch.equal(out[:, 0], img)
    assert torch.equal(out[:, 1], img.flip(-2))
    out_nf = PinkTransformer(7, numrot=1, flip=False)(img)
    assert out_nf.shape == (2, 1, 3, 7, 7)


def test_angles_and_flips_of_indices():
    flip, angle = index_to_flip_angle(torch.arange(8), 4)
    assert flip.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert angle.dtype == torch.float32
    expected = [0.0, F32(1.5707964), F32(3.1415927), F32(4.712389)] * 2
    assert [F32(a) for a in angle.tolist()] == [F32(e) for e in expected]
    step = F32(F32(2 * math.pi) / F32(360))
    assert rotation_step(360) == step
    _, a360 = index_to_flip_angle(torch.tensor([1, 45, 359, 360 + 7]), 360)
    assert [F32(a) for a in a360.tolist()] == [F32(F32(k) * step) for k in (1, 45, 359, 7)]


def test_experiment_9_1_a():
    img = np.zeros((32, 32), np.float32)
    img[4:10, 20:26] = 1
    img[20:22, 6:9] = 0.5
    neurons = [np.rot90(img, -k) for k in range(4)] + [np.flipud(np.rot90(img, -k)) for k in range(4)]
    w = torch.from_numpy(np.stack(neurons).copy())[:, None]
    som = RotationInvariantSOM(Lattice("cartesian", (4, 2)),
                               SOMGeometry(32, numrot=4, neuron_dim=32, euclidean_dim=32), init=w)
    res = Mapper(som).map(torch.from_numpy(img)[None, None])
    assert res.distances.tolist() == [[0.0] * 8]
    assert res.flip.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1]]
    assert [F32(a) for a in res.angle[0].tolist()] == [F32(a) for a in [0, 1.5707964, 3.1415927, 4.712389] * 2]


# ----------------------------------------------------------------------------- interpolated rotation (§3.3)

def _slow_bilinear(img, nd, alpha):
    """Spec §3.3 with plain Python loops and float32 scalars."""
    d = img.shape[0]
    ca = F32(math.cos(float(alpha)))
    sa = F32(math.sin(float(alpha)))
    cs = F32((d - 1) * 0.5)
    cn = F32((nd - 1) * 0.5)
    one = F32(1)
    out = np.zeros((nd, nd), np.float32)

    def px(r, c):
        return img[r, c] if r < d and c < d else F32(0)

    for y in range(nd):
        for x in range(nd):
            pr = F32(F32(y) - cn)
            pc = F32(F32(x) - cn)
            sr = F32(F32(F32(pr * ca) - F32(pc * sa)) + cs)
            sc = F32(F32(F32(pr * sa) + F32(pc * ca)) + cs)
            if sr < 0 or sr > d - 1 or sc < 0 or sc > d - 1:
                continue
            r0, c0 = int(sr), int(sc)
            fr = F32(sr - F32(r0))
            fc = F32(sc - F32(c0))
            v = F32(F32((one - fr) * (one - fc)) * px(r0, c0))
            v = F32(v + F32(F32((one - fr) * fc) * px(r0, c0 + 1)))
            v = F32(v + F32(F32(fr * (one - fc)) * px(r0 + 1, c0)))
            v = F32(v + F32(F32(fr * fc) * px(r0 + 1, c0 + 1)))
            out[y, x] = v
    return out


def _slow_all_transforms(img, nd, numrot, flip, rotate):
    d = img.shape[0]
    k = max(numrot // 4, 1)
    m = abs(nd - d) // 2
    base0 = np.zeros((nd, nd), np.float32)
    if nd >= d:
        base0[m:m + d, m:m + d] = img
    else:
        base0[:] = img[m:m + nd, m:m + nd]
    step = F32(F32(2 * math.pi) / F32(numrot))
    bases = [base0] + [rotate(img, nd, F32(F32(i) * step)) for i in range(1, k)]
    allrot = list(bases)
    if numrot != 1:
        prev = bases
        for _ in range(3):
            # rot90cw: dst[r][c] = src[n-1-c][r]
            prev = [np.array([[b[nd - 1 - c, r] for c in range(nd)] for r in range(nd)], np.float32) for b in prev]
            allrot += prev
    if flip:
        allrot += [b[::-1].copy() for b in allrot]
    return np.stack(allrot)


@pytest.mark.parametrize("d", [9, 10])
@pytest.mark.parametrize("numrot", [8, 12])
def test_interpolated_rotation_matches_slow_formula(d, numrot):
    rng = np.random.default_rng(1000 * d + numrot)
    img = rng.random((d, d), dtype=np.float32)
    nd = default_neuron_dim(d, numrot, "pink")
    ref = _slow_all_transforms(img, nd, numrot, True, _slow_bilinear)
    x = torch.from_numpy(img)[None, None]
    exact = PinkTransformer(d, numrot=numrot, flip=True, exact=True)(x)[0, :, 0].numpy()
    assert exact.shape == ref.shape == (2 * numrot, nd, nd)
    assert np.array_equal(exact, ref)
    fast = PinkTransformer(d, numrot=numrot, flip=True)(x)[0, :, 0].numpy()
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-5)
    # select() gives the same full-size transforms for arbitrary indices
    t = torch.tensor([2 * numrot - 1, 1, numrot + 1, 0, numrot // 4 + 1])
    sel = PinkTransformer(d, numrot=numrot, flip=True, exact=True).select(x[0], t)[:, 0].numpy()
    assert np.array_equal(sel, ref[t.numpy()])


def test_rotation_is_clockwise_about_centre():
    # a 90-degree rotation moves the top-centre pixel to the right-centre (spec §3.3)
    d = 9
    img = np.zeros((d, d), np.float32)
    img[0, 4] = 1
    out = PinkTransformer(d, neuron_dim=d, numrot=4)(torch.from_numpy(img)[None, None])[0, 1, 0]
    assert out[4, 8] == 1 and out.sum() == 1


def test_multichannel_same_transform_every_channel():
    x = torch.rand(1, 3, 10, 10)
    tr = PinkTransformer(10, numrot=8, exact=True)
    out = tr(x)
    for c in range(3):
        assert torch.equal(out[:, :, c], tr(x[:, c:c + 1])[:, :, 0])


# ----------------------------------------------------------------------------- nearest interpolation

def _slow_nearest(img, nd, alpha):
    d = img.shape[0]
    ca = F32(math.cos(float(alpha)))
    sa = F32(math.sin(float(alpha)))
    cs = F32((d - 1) * 0.5)
    cn = F32((nd - 1) * 0.5)
    out = np.zeros((nd, nd), np.float32)
    for y in range(nd):
        for x in range(nd):
            pr, pc = F32(F32(y) - cn), F32(F32(x) - cn)
            sr = F32(F32(F32(pr * ca) - F32(pc * sa)) + cs)
            sc = F32(F32(F32(pr * sa) + F32(pc * ca)) + cs)
            r, c = math.floor(sr + 0.5), math.floor(sc + 0.5)
            if 0 <= r < d and 0 <= c < d:
                out[y, x] = img[r, c]
    return out


def test_nearest_has_no_effect_for_numrot_4_and_1():
    img = torch.rand(2, 1, 11, 11)
    for numrot in (1, 4):
        a = PinkTransformer(11, numrot=numrot, interpolation="nearest")(img)
        b = PinkTransformer(11, numrot=numrot, interpolation="bilinear")(img)
        assert torch.equal(a, b)


@pytest.mark.parametrize("d, numrot", [(9, 8), (10, 12)])
def test_nearest_matches_slow_rounding(d, numrot):
    rng = np.random.default_rng(d + numrot)
    img = rng.random((d, d), dtype=np.float32)
    nd = default_neuron_dim(d, numrot, "pink")
    ref = _slow_all_transforms(img, nd, numrot, True, _slow_nearest)
    out = PinkTransformer(d, numrot=numrot, interpolation="nearest")(torch.from_numpy(img)[None, None])[0, :, 0].numpy()
    # nearest sampling copies pixels: every output value is an input value or 0
    assert np.isin(out, np.append(img.ravel(), 0)).all()
    # identical except where a source coordinate sits on a rounding boundary (none expected here)
    assert (out != ref).sum() == 0


def test_nearest_delta_moves_to_rounded_position():
    d, numrot = 15, 8
    nd = default_neuron_dim(d, numrot, "pink")
    r, c = 2, 9
    # a 3x3 block: inverse-mapped nearest sampling may leave a single rotated pixel in a hole, but the
    # destination pixel nearest to the forward-mapped centre samples within 1/sqrt(2) of (r, c)
    img = np.zeros((d, d), np.float32)
    img[r - 1:r + 2, c - 1:c + 2] = 1
    out = PinkTransformer(d, numrot=numrot, interpolation="nearest", flip=False)(torch.from_numpy(img)[None, None])[0, 1, 0].numpy()
    alpha = float(rotation_step(numrot))
    cs, cn = (d - 1) / 2, (nd - 1) / 2
    # inverse of the clockwise mapping dest -> source
    pr = (r - cs) * math.cos(alpha) + (c - cs) * math.sin(alpha)
    pc = -(r - cs) * math.sin(alpha) + (c - cs) * math.cos(alpha)
    y, x = round(pr + cn), round(pc + cn)
    assert out[y, x] == 1
    assert out.max() == 1
    ys, xs = np.nonzero(out)
    assert 5 <= len(ys) <= 13  # about nine pixels of area survive the rotation
    assert (np.abs(ys - (pr + cn)) <= 2.2).all() and (np.abs(xs - (pc + cn)) <= 2.2).all()


# ----------------------------------------------------------------------------- neighbourhood (§5.4, §5.5)

_TABLE = {
    "gaussian": [0.072534963, 0.047982946, 0.031741425, 0.013890098],
    "unitygaussian": [0.2, 0.13230294, 0.087520346, 0.038299043],
    "mexicanhat": [0.16539238, 0.018988429, -0.047253732, -0.073028475],
}
_X = np.array([0, 1, np.sqrt(F32(2)), 2], dtype=np.float32)


def _ulps(a, b):
    a = np.asarray(a, np.float32).view(np.int32).astype(np.int64)
    b = np.asarray(b, np.float32).view(np.int32).astype(np.int64)
    return np.abs(a - b)


@pytest.mark.parametrize("name", ["gaussian", "unitygaussian", "mexicanhat"])
def test_neighbourhood_table_within_one_ulp(name):
    got = neighbourhood_function(_X, name, 1.1, 0.2)
    assert got.dtype == np.float32
    assert (_ulps(got, _TABLE[name]) <= 1).all(), (got, _TABLE[name])
    # case-insensitive names, as PINK
    assert np.array_equal(neighbourhood_function(_X, name.upper(), 1.1, 0.2), got)


@pytest.mark.parametrize("name", ["gaussian", "unitygaussian"])
def test_neighbourhood_table_exact(name):
    assert (_ulps(neighbourhood_function(_X, name, 1.1, 0.2), _TABLE[name]) == 0).all()


def test_mexican_hat_negative_beyond_sigma_and_sigma_check():
    v = neighbourhood_function([0.5, 1.1, 1.5], "mexicanhat", 1.1, 0.2)
    assert v[0] > 0 and abs(v[1]) < 1e-7 and v[2] < 0
    with pytest.raises(ConfigError):
        neighbourhood_function([0.0], "mexicanhat", 0.0, 0.2)
    with pytest.raises(ConfigError):
        Neighbourhood("mexicanhat", -1.0, 0.2)
    with pytest.raises(ConfigError):
        Neighbourhood("triangle", 1.0, 0.2)


def test_max_update_distance_is_strict():
    dist = Lattice("cartesian", (3, 3)).distances()
    centre = 4
    f1 = Neighbourhood("gaussian", 1.1, 0.2, max_update_distance=1.0).factors(dist)[centre]
    assert f1[centre] == F32(_TABLE["gaussian"][0]) or _ulps(f1[centre].item(), _TABLE["gaussian"][0]) <= 1
    assert torch.count_nonzero(f1) == 1  # neighbours at distance exactly 1 are excluded
    f2 = Neighbourhood("gaussian", 1.1, 0.2, max_update_distance=1.0001).factors(dist)[centre]
    assert torch.count_nonzero(f2) == 5
    f3 = Neighbourhood("gaussian", 1.1, 0.2).factors(dist)[centre]
    assert torch.count_nonzero(f3) == 9
    assert torch.equal(f2[f2 != 0], f3[f2 != 0])
    with pytest.raises(ConfigError):
        Neighbourhood(max_update_distance=0.0)


@pytest.mark.parametrize("exact,interp,numrot,flip,channels,d,nd", [
    (False, "bilinear", 8, True, 1, 11, None), (True, "bilinear", 12, True, 2, 10, None),
    (False, "nearest", 8, False, 1, 9, None), (False, "bilinear", 4, True, 1, 8, 10),
    (False, "bilinear", 1, True, 2, 7, None), (True, "bilinear", 16, False, 1, 12, 15),
    (False, "bilinear", 360, True, 1, 16, None),
])
def test_select_bit_identical_to_forward(exact, interp, numrot, flip, channels, d, nd):
    """select() (flips of base rotations or of their transposes) == the full expansion, bit for bit,
    for index sets that need a base only plain, only transposed, both, and repeated."""
    tr = PinkTransformer(d, neuron_dim=nd, numrot=numrot, flip=flip, interpolation=interp, exact=exact)
    x = torch.rand(1, channels, d, d, generator=torch.Generator().manual_seed(d))
    full = tr(x)[0]  # (T, C, nd, nd)
    T = tr.num_transforms
    g = torch.Generator().manual_seed(numrot + d)
    k = max(numrot // 4, 1)
    sets = [torch.randint(0, T, (n,), generator=g) for n in (1, 7, 40, 100)]
    sets.append(torch.arange(T))
    if numrot > 1:
        sets.append(torch.tensor([k + 1, 3 * k + 1]))  # base 1 only transposed (quarter turns)
        sets.append(torch.tensor([1, k + 1, 2 * k + 1, 1, 0, k]))  # base 1 plain and transposed
    for t in sets:
        assert torch.equal(tr.select(x[0], t), full[t]), t
        bases, v = tr.select_sources(x[0], t)  # the same, unassembled (the compiled update's input)
        # each needed base rotation once, sampled transposed where only its transpose is needed,
        # plus a transposed copy where both are: rows only (the compiled update reads rows)
        from somtorch.geometry.transforms import dihedral_split

        split = dihedral_split()
        sides = {}
        for tt in t.tolist():
            f, s_ = divmod(tt, numrot)
            sides.setdefault(s_ % k, set()).add(split[s_ // k + 4 * f][0])
        assert len(bases) == sum(len(v_) for v_ in sides.values())
        assert not v[:, 1].any()
        got = []
        for e, side, rr, cr in v.tolist():
            z = bases[e].transpose(-1, -2) if side else bases[e]
            got.append(z.flip([dim for dim, on in ((-2, rr), (-1, cr)) if on]))
        assert torch.equal(torch.stack(got), full[t]), t


def test_dihedral_split_definition():
    from somtorch.geometry.transforms import dihedral_split

    a = torch.rand(5, 5)
    fl = {0: lambda z: z, 1: lambda z: z.flip(0), 2: lambda z: z.flip(1), 3: lambda z: z.flip(0, 1)}
    for q, (side, g) in enumerate(dihedral_split()):
        f, j = divmod(q, 4)
        want = torch.rot90(a, -j)
        if f:
            want = want.flip(0)
        assert torch.equal(fl[g](a.T if side else a), want)


@pytest.mark.parametrize("exact,interp,channels,numrot", [(False, "bilinear", 1, 12), (True, "bilinear", 2, 8),
                                                          (False, "nearest", 1, 8), (False, "bilinear", 3, 1)])
def test_base_rotations_ordered_equals_gathered(exact, interp, channels, numrot):
    """Sampling the window pixels in a given order == sampling row-major, then gathering."""
    tr = PinkTransformer(16, numrot=numrot, exact=exact, interpolation=interp)
    x = torch.rand(3, channels, 16, 16, generator=torch.Generator().manual_seed(3))
    lo = 4 if numrot > 1 else 2
    hi = tr.neuron_dim - lo
    u = hi - lo
    order = np.random.default_rng(0).permutation(u * u)[: u * u - 5]
    want = tr.base_rotations(x, window=(lo, hi)).flatten(-2)[..., torch.from_numpy(order)]
    got = tr.base_rotations_ordered(x, order, window=(lo, hi))
    assert got.shape == want.shape and torch.equal(got, want)
