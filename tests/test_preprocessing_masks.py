"""Masks, island segmentation and convex hulls, including the PYINK bugs fixed."""

import numpy as np
import pytest
import torch
from scipy.spatial import Delaunay

from somtorch.errors import ConfigError, ShapeError
from somtorch.preprocessing import (
    apply_mask,
    circular_mask,
    convex_hull,
    convex_hull_smoothed,
    island_segmentation,
    label_islands,
    square_mask,
)
from somtorch.testing import available_devices

# ---------------------------------------------------------------------------------------- square


@pytest.mark.parametrize("shape,size", [((150, 150), 105), ((150, 150), 10), ((151, 151), 11),
                                        ((20, 30), 7), ((21, 21), 4)])
def test_square_mask_side_equals_size(shape, size):
    m = square_mask(shape, size=size)
    rows, cols = np.nonzero(m)
    assert m.sum() == size * size
    assert rows.max() - rows.min() + 1 == size and cols.max() - cols.min() + 1 == size
    # start at centre - size // 2
    assert rows.min() == shape[0] // 2 - size // 2 and cols.min() == shape[1] // 2 - size // 2


def test_square_mask_centring_conventions():
    # odd side on an odd axis: centred on the centre pixel
    r, c = np.nonzero(square_mask((21, 21), size=5))
    assert r.mean() == 10 and c.mean() == 10
    # even side on an even axis: centred on the geometric centre (n-1)/2
    r, c = np.nonzero(square_mask((20, 20), size=6))
    assert r.mean() == 9.5 and c.mean() == 9.5


def test_pyink_bug_square_mask_strict_bounds():
    assert square_mask((150, 150), size=105).sum() == 105 * 105
    assert square_mask((150, 150), size=10).sum() == 100
    # PYINK's quirk is reproducible on request: side 2 * (size // 2) - 1
    assert square_mask((150, 150), size=105, pyink_compat=True).sum() == 10609  # 103 x 103
    assert square_mask((150, 150), size=10, pyink_compat=True).sum() == 81


def test_square_mask_scale_and_pair_and_clipping():
    assert square_mask((100, 60), scale=2).sum() == 50 * 30
    assert square_mask((100, 60), size=(10, 4)).sum() == 40
    assert square_mask((10, 10), size=30).sum() == 100  # clipped to the image
    with pytest.raises(ConfigError):
        square_mask((10, 10))
    with pytest.raises(ConfigError):
        square_mask((10, 10), size=3, scale=2)


# ---------------------------------------------------------------------------------------- circle


def test_circular_mask_counts_match_pyink_notebook():
    assert circular_mask((150, 150), radius=74).sum() == 17193
    assert circular_mask((213, 213), radius=74).sum() == 17193
    assert circular_mask(np.zeros((3, 150, 150)), radius=74).shape == (150, 150)


def test_circular_mask_small_radii_exact():
    assert circular_mask((11, 11), radius=0).sum() == 1
    assert circular_mask((11, 11), radius=1).sum() == 5  # inclusive: the 4-neighbours
    assert circular_mask((11, 11), radius=np.sqrt(2)).sum() == 9


def test_pyink_bug_circular_mask_centre_swapped():
    m = circular_mask((100, 60), radius=5)
    r, c = np.nonzero(m)
    assert r.mean() == 50 and c.mean() == 30
    assert m.sum() == circular_mask((11, 11), radius=5).sum()


def test_circular_mask_scale_divides_width():
    assert np.array_equal(circular_mask((80, 80), scale=4), circular_mask((80, 80), radius=20))


@pytest.mark.parametrize("device", available_devices())
def test_masks_return_kind_and_device(device):
    t = torch.zeros(2, 32, 32, device=device)
    for m in (circular_mask(t, radius=5), square_mask(t, size=5)):
        assert isinstance(m, torch.Tensor) and m.dtype == torch.bool and m.device == t.device
    out = apply_mask(torch.ones(2, 3, 32, 32, device=device), circular_mask(t, radius=5), fill=-1)
    assert out.device == t.device
    assert (out == 1).sum() == 6 * circular_mask((32, 32), radius=5).sum()
    assert (out == -1).sum() == 6 * (1024 - circular_mask((32, 32), radius=5).sum())


def test_apply_mask_numpy_and_shape_error():
    img = np.arange(16.0).reshape(4, 4)
    m = np.zeros((4, 4), bool)
    m[1, 2] = True
    out = apply_mask(img, m)
    assert isinstance(out, np.ndarray) and out.sum() == 6.0 and img.sum() == 120.0
    with pytest.raises(ShapeError):
        apply_mask(img, np.ones((3, 3), bool))


# --------------------------------------------------------------------------------------- islands


def _planted():
    """A 100x120 image with 5 disjoint islands (rectangles and discs), gaps >= 3 px."""
    img = np.random.default_rng(0).normal(0.0, 0.1, (100, 120))  # all well below threshold 1
    islands = []
    for r0, r1, c0, c1 in [(5, 25, 5, 40), (40, 44, 10, 13), (0, 8, 110, 120)]:  # one at the edge
        m = np.zeros(img.shape, bool)
        m[r0:r1, c0:c1] = True
        islands.append(m)
    yy, xx = np.mgrid[:100, :120]
    for cy, cx, rad in [(70, 60, 12), (30, 80, 6)]:
        islands.append((yy - cy) ** 2 + (xx - cx) ** 2 <= rad * rad)
    for k, m in enumerate(islands):
        img[m] = 5.0 + k + np.random.default_rng(k).uniform(0, 3, m.sum())
    return img, sorted(islands, key=lambda m: -m.sum())


def test_island_segmentation_returns_exactly_the_planted_islands():
    img, planted = _planted()
    got = island_segmentation(img, threshold=1.0)
    assert len(got) == len(planted)
    for g, p in zip(got, planted):  # ordered by size, largest first
        assert g.dtype == bool and np.array_equal(g, p)


def test_pyink_bug_island_segmentation_drops_last_island():
    img = np.zeros((20, 20))
    img[5:10, 5:10] = 1.0
    got = island_segmentation(img, 0.5)
    assert len(got) == 1 and got[0].sum() == 25  # PYINK yielded nothing here
    img[14:18, 14:18] = 1.0
    assert len(island_segmentation(img, 0.5)) == 2  # PYINK: 1


def test_pyink_bug_island_segmentation_minimum_size_is_inclusive():
    img = np.zeros((20, 20))
    img[2, 2:7] = 1.0  # 5 pixels
    img[10:12, 10:13] = 1.0  # 6 pixels
    assert [m.sum() for m in island_segmentation(img, 0.5, minimum_island_size=5)] == [6, 5]
    assert [m.sum() for m in island_segmentation(img, 0.5, minimum_island_size=6)] == [6]
    assert island_segmentation(img, 0.5, minimum_island_size=7) == []


def test_island_closing_fills_one_pixel_gaps_and_uses_8_connectivity():
    img = np.zeros((20, 20))
    img[4:7, 2:12] = 1.0
    img[4:7, 6] = 0.0  # a one-pixel gap through a 3-px bar: the cross closing fills its middle
    img[10, 2] = img[11, 3] = img[12, 4] = img[13, 5] = img[14, 6] = 1.0  # diagonal: 8-connected
    got = island_segmentation(img, 0.5, minimum_island_size=1)
    assert [m.sum() for m in got] == [28, 5]
    assert got[0][5, 6] and not got[0][4, 6] and not got[0][6, 6]


def test_island_segmentation_background_first_and_threshold_strict():
    img, planted = _planted()
    got = island_segmentation(img, 1.0, return_background=True)
    assert len(got) == len(planted) + 1
    assert np.array_equal(got[0], ~np.any(planted, axis=0))
    flat = np.zeros((5, 5))
    flat[1:4, 1:4] = 2.0
    assert island_segmentation(flat, 2.0) == []  # data > threshold is strict


def test_island_segmentation_nan_and_torch():
    img, planted = _planted()
    img[50, 0] = np.nan
    got = island_segmentation(torch.from_numpy(img), 1.0)
    assert all(isinstance(g, torch.Tensor) and g.dtype == torch.bool for g in got)
    assert np.array_equal(got[0].numpy(), planted[0])
    with pytest.raises(ShapeError):
        island_segmentation(np.zeros((2, 5, 5)), 0.0)


def test_label_islands_single_and_stack():
    img, planted = _planted()
    labels, n = label_islands(img, 1.0)
    assert n == 5 and labels.dtype == np.int32
    for i, p in enumerate(planted, start=1):
        assert np.array_equal(labels == i, p)
    stack = np.stack([img, np.zeros_like(img), img[::-1]])
    labels, counts = label_islands(torch.from_numpy(stack), 1.0)
    assert isinstance(labels, torch.Tensor) and labels.shape == stack.shape
    assert counts.tolist() == [5, 0, 5]
    assert np.array_equal(labels[2].numpy(), label_islands(img[::-1], 1.0)[0])


# ------------------------------------------------------------------------------------ convex hull


def test_convex_hull_of_square_is_itself():
    img = np.zeros((20, 20))
    img[4:12, 6:15] = 1.0
    assert np.array_equal(convex_hull(img), img > 0)


def test_convex_hull_of_l_shape_fills_the_corner_triangle():
    img = np.zeros((14, 14))
    img[2:12, 2] = 1.0  # vertical bar, rows 2..11
    img[11, 2:12] = 1.0  # bottom bar, cols 2..11
    hull = convex_hull(img)
    rr, cc = np.mgrid[:14, :14]
    expected = (rr >= 2) & (rr <= 11) & (cc >= 2) & (cc - 2 <= rr - 2)
    assert np.array_equal(hull, expected)


def test_convex_hull_degenerate_inputs():
    z = np.zeros((9, 9))
    assert not convex_hull(z).any()  # empty
    one = z.copy()
    one[3, 4] = 1
    assert np.array_equal(convex_hull(one), one > 0)  # single pixel
    two = z.copy()
    two[1, 1] = two[5, 5] = 1
    expected = np.zeros((9, 9), bool)
    expected[[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]] = True
    assert np.array_equal(convex_hull(two), expected)  # diagonal segment
    row = z.copy()
    row[4, 1] = row[4, 7] = 1
    assert convex_hull(row).sum() == 7 and convex_hull(row)[4, 1:8].all()
    knight = z.copy()
    knight[0, 0] = knight[1, 2] = 1  # segment through no other pixel centre
    assert np.array_equal(convex_hull(knight), knight > 0)


def test_convex_hull_matches_delaunay_on_random_blobs():
    rng = np.random.default_rng(1)
    for _ in range(5):
        img = np.zeros((40, 50))
        pts = rng.integers(5, 35, (12, 2))
        img[pts[:, 0], pts[:, 1]] = 1.0
        hull = convex_hull(img)
        tri = Delaunay(pts.astype(float))
        rr, cc = np.mgrid[:40, :50]
        q = np.stack([rr.ravel(), cc.ravel()], 1).astype(float)
        inside = (tri.find_simplex(q, tol=1e-9) >= 0).reshape(40, 50)
        assert np.array_equal(hull, inside)
        assert hull[img > 0].all()


def test_convex_hull_threshold_nan_stack_and_torch():
    img = np.zeros((2, 10, 10))
    img[0, 2, 2] = img[0, 7, 7] = 0.5
    img[0, 2, 7] = 0.005  # below the default threshold 0.01
    img[1, 5, 5] = np.nan
    hull = convex_hull(torch.from_numpy(img))
    assert isinstance(hull, torch.Tensor) and hull.shape == (2, 10, 10)
    assert hull[0].sum() == 6 and not hull[1].any()
    assert convex_hull(img[0], threshold=0.001).sum() == 21  # the triangle with the third corner


def test_convex_hull_smoothed_grows_the_hull():
    img = np.zeros((60, 60))
    img[25:35, 25:35] = 1.0
    hull = convex_hull(img)
    sm = convex_hull_smoothed(img, sigma=2.0)
    assert sm[hull].all() and sm.sum() > hull.sum()
    # grows by roughly 2-2.5 sigma along the axes (rows 25..34 -> about 20..39)
    grown = np.nonzero(sm[:, 30])[0]
    assert 3 <= 25 - grown.min() <= 6 and 3 <= grown.max() - 34 <= 6
    with pytest.raises(ConfigError):
        convex_hull_smoothed(img, sigma=0)


def test_pyink_bug_convex_hull_smoothed_ignores_threshold():
    img = np.zeros((40, 40))
    img[10:30, 10:30] = 0.05
    img[18:22, 18:22] = 1.0
    # PYINK built the hull at 0.01 whatever threshold was passed; here threshold=0.5 keeps only
    # the bright core (smoothing threshold defaults to the same value)
    small = convex_hull_smoothed(img, sigma=1.0, threshold=0.5)
    assert 4 <= small.sum() <= 36  # the smoothed 4x4 core only
    assert not small[10, 10] and small[19, 19]
    # PYINK's result for any threshold: the hull at 0.01 (the 20x20 block) grown by smoothing
    assert convex_hull_smoothed(img, sigma=1.0, threshold=0.01).sum() > 400
    grown_core = convex_hull_smoothed(img, sigma=1.0, threshold=0.5, smooth_threshold=0.01)
    assert small.sum() < grown_core.sum() < 100
