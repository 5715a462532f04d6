"""The fast engine against a slow, obviously-correct reference written here with plain loops.

The reference follows ``pink-semantics.md`` literally and shares no code with somtorch:

* transformations (§2.3, §3.2-§3.4): ``t = 0`` is the centre crop/pad; ``t = 1 .. k-1`` are
  clockwise bilinear rotations of the *original* image into the ``nd x nd`` grid, one destination
  pixel at a time with PINK's float32 formula; the rest are explicit quarter-turn loops
  ``dst[r][c] = src[n-1-c][r]`` and, with flip, row reversal ``dst[r][c] = src[n-1-r][c]``;
* regions (§2.5, §4.2): quadratic window ``[b, b+ed)`` and PINK's CPU circular mask, built row by
  row from the formula;
* distances (§4): squared L2 over the region and all channels (float64);
* best matches (§5.3): lowest transformation index per neuron, lowest neuron index overall;
* lattices (§1.6, §5.6): neuron coordinates from the index formulas, Euclidean / hex distances,
  minimum-image wrap for periodic lattices (hexagonal: the translations of the hexagon tiling);
* neighbourhood functions (§5.4) with ``math.exp`` and the update rule of §5.1, neuron by neuron.

Images are tiny (6-11 px) so every case runs in well under a second.
"""

from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pytest
import torch

from somtorch.engine import (
    Mapper,
    Neighbourhood,
    RotationInvariantSOM,
    SOMGeometry,
    Trainer,
)
from somtorch.geometry import Lattice

F32 = np.float32


# ============================================================================================
# the reference
# ============================================================================================

def ref_neuron_dim(d: int, numrot: int) -> int:
    return d if numrot == 1 else int(2.0 * d / math.sqrt(2.0) + 1.0)


def ref_euclid_dim(d: int, numrot: int, shape: str) -> int:
    return int(d * math.sqrt(2.0) / 2.0) if (numrot != 1 and shape == "quadratic") else d


def ref_crop_pad(img: np.ndarray, nd: int) -> np.ndarray:
    """§2.3: centre crop or zero pad, margin floor(|nd - d| / 2) on the top/left."""
    d = img.shape[0]
    out = np.zeros((nd, nd), dtype=F32)
    m = abs(nd - d) // 2
    for r in range(nd):
        for c in range(nd):
            if nd >= d:
                sr, sc = r - m, c - m
            else:
                sr, sc = r + m, c + m
            if 0 <= sr < d and 0 <= sc < d:
                out[r, c] = img[sr, sc]
    return out


def ref_rotate_bilinear(img: np.ndarray, alpha: np.float32, nd: int) -> np.ndarray:
    """§3.3, one destination pixel at a time, float32 arithmetic."""
    d = img.shape[0]
    ca, sa = F32(math.cos(float(alpha))), F32(math.sin(float(alpha)))
    cs, cn = F32((d - 1) * 0.5), F32((nd - 1) * 0.5)
    out = np.zeros((nd, nd), dtype=F32)

    def px(r, c):
        return img[r, c] if (r < d and c < d) else F32(0)

    for y in range(nd):
        for x in range(nd):
            pr, pc = F32(y) - cn, F32(x) - cn
            sr = (pr * ca - pc * sa) + cs
            sc = (pr * sa + pc * ca) + cs
            if sr < 0 or sr > d - 1 or sc < 0 or sc > d - 1:
                continue
            r0, c0 = int(sr), int(sc)
            fr, fc = sr - F32(r0), sc - F32(c0)
            one = F32(1)
            out[y, x] = (((one - fr) * (one - fc) * px(r0, c0) + (one - fr) * fc * px(r0, c0 + 1))
                         + fr * (one - fc) * px(r0 + 1, c0)) + fr * fc * px(r0 + 1, c0 + 1)
    return out


def ref_rotate_nearest(img: np.ndarray, alpha: np.float32, nd: int) -> np.ndarray:
    """somtorch's nearest neighbour: source pixel (round(sr), round(sc)), 0 outside [-0.5, d-0.5)."""
    d = img.shape[0]
    ca, sa = F32(math.cos(float(alpha))), F32(math.sin(float(alpha)))
    cs, cn = F32((d - 1) * 0.5), F32((nd - 1) * 0.5)
    out = np.zeros((nd, nd), dtype=F32)
    for y in range(nd):
        for x in range(nd):
            pr, pc = F32(y) - cn, F32(x) - cn
            sr = (pr * ca - pc * sa) + cs
            sc = (pr * sa + pc * ca) + cs
            if -0.5 <= sr < d - 0.5 and -0.5 <= sc < d - 0.5:
                out[y, x] = img[int(math.floor(sr + 0.5)), int(math.floor(sc + 0.5))]
    return out


def ref_rot90cw(a: np.ndarray) -> np.ndarray:
    n = a.shape[0]
    out = np.empty_like(a)
    for r in range(n):
        for c in range(n):
            out[r, c] = a[n - 1 - c, r]
    return out


def ref_flipud(a: np.ndarray) -> np.ndarray:
    n = a.shape[0]
    out = np.empty_like(a)
    for r in range(n):
        for c in range(n):
            out[r, c] = a[n - 1 - r, c]
    return out


def ref_transforms(img: np.ndarray, numrot: int, flip: bool, nd: int, interpolation="bilinear") -> np.ndarray:
    """All T transformations of one image ``(C, d, d)`` in PINK's order: ``(T, C, nd, nd)``."""
    chans = []
    for ch in img:
        k = max(numrot // 4, 1)
        step = F32(F32(2.0 * math.pi) / F32(numrot))
        rot = [None] * numrot
        rot[0] = ref_crop_pad(ch, nd)
        for i in range(1, k):
            alpha = F32(F32(i) * step)
            rot[i] = (ref_rotate_bilinear(ch, alpha, nd) if interpolation == "bilinear"
                      else ref_rotate_nearest(ch, alpha, nd))
        if numrot > 1:
            for q in (1, 2, 3):
                for i in range(k):
                    rot[i + q * k] = ref_rot90cw(rot[i + (q - 1) * k])
        allt = rot + ([ref_flipud(r) for r in rot] if flip else [])
        chans.append(np.stack(allt))
    return np.stack(chans, axis=1)


def ref_round(x: float) -> int:
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def ref_region(nd: int, ed: int, shape: str) -> np.ndarray:
    mask = np.zeros((nd, nd), dtype=bool)
    b = (nd - ed) // 2
    if shape == "quadratic":
        for r in range(b, b + ed):
            for c in range(b, b + ed):
                mask[r, c] = True
        return mask
    c0, rho = nd // 2, ed // 2
    for i in range(ed):
        rad = 2.0 * rho * (i + 0.5) - (i + 0.5) ** 2
        if rad < 0:
            continue
        delta = math.sqrt(rad)
        for col in range(ref_round(c0 - delta), ref_round(c0 + delta)):
            mask[b + i, col] = True
    return mask


def ref_sq_distances(x: np.ndarray, w: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``x (T, C, nd, nd)``, ``w (N, C, nd, nd)`` -> ``(T, N)`` float64 sums over region and channels."""
    out = np.zeros((x.shape[0], w.shape[0]))
    for t in range(x.shape[0]):
        for n in range(w.shape[0]):
            diff = (w[n].astype(np.float64) - x[t].astype(np.float64))[:, mask]
            out[t, n] = float((diff * diff).sum())
    return out


def ref_best(dsq: np.ndarray) -> tuple[np.ndarray, int]:
    """Lowest best transformation per neuron; lowest best neuron (strict '<' scans)."""
    t_n, n_t = dsq.shape
    bt = np.zeros(n_t, dtype=np.int64)
    for n in range(n_t):
        for t in range(1, t_n):
            if dsq[t, n] < dsq[bt[n], n]:
                bt[n] = t
    best = 0
    for n in range(1, n_t):
        if dsq[bt[n], n] < dsq[bt[best], best]:
            best = n
    return bt, best


def ref_coords(layout: str, shape: tuple) -> list[tuple]:
    if layout == "hexagonal":
        d = shape[0]
        big_r = (d - 1) // 2
        return [(max(0, big_r - r) + j, r) for r in range(d) for j in range(d - abs(r - big_r))]
    if len(shape) == 1:
        return [(i,) for i in range(shape[0])]
    if len(shape) == 2:
        w, h = shape
        return [(i // h, i % h) for i in range(w * h)]
    w, h, dd = shape
    return [((i % (w * h)) // h, i % h, i // (w * h)) for i in range(w * h * dd)]


def _hexdist(dq: int, dr: int) -> int:
    return (abs(dq) + abs(dr) + abs(dq + dr)) // 2


def ref_grid_distance(layout: str, shape: tuple, periodic: bool, a: tuple, b: tuple) -> float:
    if layout == "cartesian":
        s = 0.0
        for ai, bi, size in zip(a, b, shape):
            dlt = abs(ai - bi)
            if periodic:
                dlt = min(dlt, size - dlt)
            s += dlt * dlt
        return math.sqrt(s)
    dq, dr = a[0] - b[0], a[1] - b[1]
    if not periodic:
        return float(_hexdist(dq, dr))
    # the hexagon of radius R tiles the plane with translations u = (2R+1, -R-1) and v = u turned
    # by 60 degrees; the torus distance is the minimum over translated copies
    big_r = (shape[0] - 1) // 2
    u = (2 * big_r + 1, -big_r - 1)
    v = (big_r + 1, big_r)  # u rotated by 60 degrees: (q, r) -> (-r, q + r)
    best = _hexdist(dq, dr)
    for m, k in itertools.product(range(-2, 3), repeat=2):
        best = min(best, _hexdist(dq + m * u[0] + k * v[0], dr + m * u[1] + k * v[1]))
    return float(best)


def ref_distribution(name: str, sigma: float, damping: float, x: float) -> float:
    if name == "gaussian":
        return damping / (sigma * math.sqrt(2 * math.pi)) * math.exp(-0.5 * (x / sigma) ** 2)
    if name == "unitygaussian":
        return damping * math.exp(-0.5 * (x / sigma) ** 2)
    return (2 * damping / (math.sqrt(3 * sigma) * math.pi ** 0.25) * (1 - x * x / sigma ** 2)
            * math.exp(-x * x / (2 * sigma ** 2)))


def ref_train(images: np.ndarray, w0: np.ndarray, numrot: int, flip: bool, nd: int, mask: np.ndarray,
              layout: str, shape: tuple, periodic: bool, nb: tuple, max_dist=None,
              interpolation="bilinear") -> tuple[np.ndarray, list]:
    """PINK §5.1 online training over ``images`` in order; returns the SOM and the chosen (best, bt)."""
    w = w0.astype(F32).copy()
    coords = ref_coords(layout, shape)
    choices = []
    for img in images:
        x = ref_transforms(img, numrot, flip, nd, interpolation)
        bt, best = ref_best(ref_sq_distances(x, w, mask))
        choices.append((best, bt.copy()))
        for i in range(len(w)):
            gd = ref_grid_distance(layout, shape, periodic, coords[best], coords[i])
            f = ref_distribution(nb[0], nb[1], nb[2], gd)
            if max_dist is not None and not gd < max_dist:
                f = 0.0
            if f == 0.0:
                continue
            w[i] = w[i] - (w[i] - x[bt[i]]) * F32(f)
    return w, choices


# ============================================================================================
# the reference against itself (sanity: the loops really do what §3 says)
# ============================================================================================

def test_reference_transforms_follow_spec_examples():
    # §3.4 unit test: [[1,2],[3,4]] -> [[3,1],[4,2]] -> [[4,3],[2,1]] -> [[2,4],[1,3]]
    a = np.array([[1, 2], [3, 4]], dtype=F32)
    assert ref_rot90cw(a).tolist() == [[3, 1], [4, 2]]
    assert ref_rot90cw(ref_rot90cw(a)).tolist() == [[4, 3], [2, 1]]
    assert ref_flipud(a).tolist() == [[3, 4], [1, 2]]
    # a bilinear rotation by exactly 90 degrees moves the top-centre pixel to the right-centre
    img = np.zeros((5, 5), F32)
    img[0, 2] = 1
    r = ref_rotate_bilinear(img, F32(math.pi / 2), 5)
    assert r[2, 4] == pytest.approx(1.0, abs=1e-6) and r.sum() == pytest.approx(1.0, abs=1e-5)
    # §4.2: PINK's circular mask counts
    assert ref_region(29, 20, "circular").sum() == 316
    assert ref_region(23, 16, "circular").sum() == 208
    assert [int(r.sum()) for r in ref_region(8, 8, "circular")] == [4, 6, 8, 8, 8, 8, 6, 4]
    # §5.4 table
    assert ref_distribution("gaussian", 1.1, 0.2, 1.0) == pytest.approx(0.047982946, rel=1e-6)
    assert ref_distribution("mexicanhat", 1.1, 0.2, 2.0) == pytest.approx(-0.073028475, rel=1e-6)
    # §1.6: hexagonal d=3 positions
    assert ref_coords("hexagonal", (3,)) == [(1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2), (1, 2)]


# ============================================================================================
# random cases
# ============================================================================================

# (layout, shape, periodic, d, channels, numrot, flip, shape, interpolation, neuron_dim, euclid_dim)
CASES = [
    ("cartesian", (4,), False, 8, 1, 4, True, "quadratic", "bilinear", None, None),
    ("cartesian", (3, 2), False, 9, 1, 8, True, "quadratic", "bilinear", None, None),
    ("cartesian", (2, 2, 2), False, 7, 2, 12, False, "quadratic", "bilinear", None, None),
    ("hexagonal", (3,), False, 8, 1, 8, True, "circular", "bilinear", None, None),
    ("cartesian", (3, 3), True, 10, 1, 16, True, "circular", "bilinear", None, None),
    ("hexagonal", (5,), True, 6, 1, 4, False, "quadratic", "bilinear", None, None),
    ("cartesian", (3, 2), False, 9, 2, 1, True, "quadratic", "bilinear", None, None),
    ("cartesian", (5,), True, 8, 1, 1, False, "circular", "bilinear", None, None),
    ("cartesian", (2, 3), False, 11, 1, 20, True, "quadratic", "bilinear", 13, 9),  # crop-ish, odd nd-d
    ("cartesian", (2, 2), False, 10, 1, 8, True, "quadratic", "bilinear", 8, 6),  # neuron smaller than image
    ("cartesian", (3, 2), False, 9, 1, 12, True, "quadratic", "nearest", None, None),
    ("hexagonal", (3,), False, 7, 2, 8, False, "circular", "bilinear", None, 8),
]
IDS = [f"{c[0][:3]}{'x'.join(map(str, c[1]))}{'-pbc' if c[2] else ''}-d{c[3]}-C{c[4]}-r{c[5]}"
       f"{'f' if c[6] else ''}-{c[7][:4]}-{c[8][:4]}" + (f"-nd{c[9]}" if c[9] else "") for c in CASES]


def _setup(case, seed):
    layout, shape, periodic, d, ch, numrot, flip, dshape, interp, ndim, edim = case
    rng = np.random.default_rng(seed)
    lat = Lattice(layout, shape, periodic)
    geo = SOMGeometry(d, ch, numrot, flip, neuron_dim=ndim, euclidean_dim=edim, distance_shape=dshape,
                      interpolation=interp, convention="pink")
    nd = ndim or ref_neuron_dim(d, numrot)
    ed = edim or ref_euclid_dim(d, numrot, dshape)
    assert (geo.nd, geo.ed) == (nd, ed)  # PINK's default geometry (§2.2)
    # smooth-ish random images (random pixels plus a blob), random neurons
    yy, xx = np.mgrid[0:d, 0:d]
    imgs = rng.random((3, ch, d, d)).astype(F32) * F32(0.5)
    for i in range(3):
        cy, cx = rng.uniform(1, d - 2, 2)
        imgs[i] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0).astype(F32)
    w0 = rng.random((lat.num_neurons, ch, nd, nd)).astype(F32)
    mask = ref_region(nd, ed, dshape)
    return lat, geo, imgs, w0, mask, nd


def _assert_best_consistent(ref_d: np.ndarray, t_fast: np.ndarray, d_fast: np.ndarray, rtol=2e-5):
    """Fast best transforms must be the reference ones, or within rounding of the reference minimum."""
    bt_ref, _ = ref_best(ref_d)
    scale = ref_d.max() + 1e-12
    for n in range(ref_d.shape[1]):
        if t_fast[n] != bt_ref[n]:
            assert ref_d[t_fast[n], n] - ref_d[bt_ref[n], n] <= rtol * scale, (n, t_fast[n], bt_ref[n])
        assert d_fast[n] ** 2 == pytest.approx(ref_d[bt_ref[n], n], rel=rtol, abs=rtol * scale)


# PINK-exact arithmetic exists for bilinear rotations only (PINK's nearest neighbour is broken)
DIST_CASES = [pytest.param(c, a, id=f"{a}-{i}") for c, i in zip(CASES, IDS) for a in ("gemm", "pink")
              if not (a == "pink" and c[8] == "nearest")]


@pytest.mark.parametrize("case,arithmetic", DIST_CASES)
def test_distances_and_mapping_match_reference(case, arithmetic):
    lat, geo, imgs, w0, mask, nd = _setup(case, seed=zlib.crc32(IDS[CASES.index(case)].encode()))
    interp, numrot, flip = case[8], case[5], case[6]
    som = RotationInvariantSOM(lat, geo, init=torch.from_numpy(w0), arithmetic=arithmetic)
    dsq = som.sq_distances(torch.from_numpy(imgs)).numpy()  # (B, T, N)
    assert dsq.shape == (3, geo.num_transforms, lat.num_neurons)
    res = Mapper(som, batch_size=2).map(torch.from_numpy(imgs))
    for b in range(3):
        x = ref_transforms(imgs[b], numrot, flip, nd, interp)
        ref_d = ref_sq_distances(x, w0, mask)
        # every transformation, in PINK's index order
        np.testing.assert_allclose(dsq[b], ref_d, rtol=2e-5, atol=2e-5 * ref_d.max())
        _assert_best_consistent(ref_d, res.transform_index[b].numpy(), res.distances[b].numpy())
        bt_ref, best_ref = ref_best(ref_d)
        assert int(res.bmu[b]) == best_ref
    # the flip/angle the mapping reports for a transformation index
    step = F32(F32(2 * math.pi) / F32(numrot))
    t = res.transform_index
    np.testing.assert_array_equal(res.flip.numpy(), (t // numrot).numpy())
    np.testing.assert_array_equal(res.angle.numpy(), ((t % numrot).numpy().astype(F32) * step).astype(F32))


@pytest.mark.parametrize("step", ["dense", "parity"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_training_steps_match_reference_update_rule(case, step):
    lat, geo, imgs, w0, mask, nd = _setup(case, seed=1 + zlib.crc32(IDS[CASES.index(case)].encode()))
    layout, shape, periodic = case[0], lat.shape, case[2]
    names = ["gaussian", "unitygaussian", "mexicanhat"]
    k = CASES.index(case)
    nb = (names[k % 3], 1.2 + 0.1 * (k % 4), 0.3)
    max_dist = 1.5 if k % 4 == 1 else None
    som = RotationInvariantSOM(lat, geo, init=torch.from_numpy(w0), arithmetic="gemm")
    tr = Trainer(som, Neighbourhood(nb[0], nb[1], nb[2], max_dist), num_iter=1, shuffle=False,
                 metrics_sample=0, step=step)
    tr.fit(torch.from_numpy(imgs))
    w_ref, choices = ref_train(imgs, w0, case[5], case[6], nd, mask, layout, shape, periodic, nb,
                               max_dist, case[8])
    got = som.weight.numpy()
    np.testing.assert_allclose(got, w_ref, rtol=0, atol=2e-5)
    counts = np.bincount([c[0] for c in choices], minlength=lat.num_neurons)
    np.testing.assert_array_equal(som.update_count.numpy(), counts)


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[4]], ids=[IDS[1], IDS[3], IDS[4]])
def test_pink_arithmetic_training_matches_reference(case):
    lat, geo, imgs, w0, mask, nd = _setup(case, seed=7)
    nb = ("gaussian", 1.1, 0.2)
    som = RotationInvariantSOM(lat, geo, init=torch.from_numpy(w0), arithmetic="pink")
    Trainer(som, Neighbourhood(*nb), shuffle=False, metrics_sample=0).fit(torch.from_numpy(imgs))
    w_ref, _ = ref_train(imgs, w0, case[5], case[6], nd, mask, case[0], lat.shape, case[2], nb)
    np.testing.assert_allclose(som.weight.numpy(), w_ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("layout,shape,periodic", [
    ("cartesian", (5,), False), ("cartesian", (4, 3), False), ("cartesian", (3, 2, 2), False),
    ("cartesian", (4, 3), True), ("cartesian", (3, 3, 2), True), ("hexagonal", (5,), False),
    ("hexagonal", (5,), True), ("hexagonal", (7,), True),
])
def test_lattice_distances_and_factors_match_reference(layout, shape, periodic):
    lat = Lattice(layout, shape, periodic)
    coords = ref_coords(layout, shape)
    assert [tuple(c) for c in lat.coords.tolist()] == coords
    ref = np.array([[ref_grid_distance(layout, shape, periodic, a, b) for b in coords] for a in coords])
    np.testing.assert_allclose(lat.distances().numpy(), ref, rtol=1e-6)
    for name in ("gaussian", "unitygaussian", "mexicanhat"):
        nb = Neighbourhood(name, 1.3, 0.25, max_update_distance=2.0)
        f = nb.factors(lat.distances()).numpy()
        fref = np.vectorize(lambda x, n=name: ref_distribution(n, 1.3, 0.25, x) if x < 2.0 else 0.0)(ref)
        np.testing.assert_allclose(f, fref, rtol=2e-6, atol=1e-9)
