"""SOMSampler and the pixel utilities."""

import numpy as np
import pytest

from somtorch.analysis.sampler import SOMSampler, weighted_kmeans
from somtorch.analysis.valid import (
    area_ratio,
    compute_distances_between_valid_pixels,
    distances_between_valid_pixels,
    valid_pixel_coords,
    valid_region,
)
from somtorch.errors import ConfigError, ShapeError
from somtorch.geometry import Lattice
from somtorch.io import Mapping, write_mapping


@pytest.mark.parametrize("lat", [Lattice("cartesian", (12, 7)), Lattice("hexagonal", (9,)),
                                 Lattice("cartesian", (10, 10), periodic=True)])
def test_random_sampler_separation(lat):
    s = SOMSampler(lat, 6, method="random", seed=3, min_dist=2.0)
    assert s.num_points == 6 == len(set(s.indices))
    gd = lat.distances().numpy()
    for a in s.indices:
        for b in s.indices:
            if a != b:
                assert gd[a, b] > 2.0
    # reproducible
    assert SOMSampler(lat, 6, method="random", seed=3).indices == s.indices


def test_random_sampler_non_square_keys_not_transposed():
    lat = Lattice("cartesian", (2, 9))  # 2 rows of 9 (PYINK drew (y, x) and transposed)
    s = SOMSampler(lat, 3, method="random", seed=0, min_dist=1.5)
    for i, key in zip(s.indices, s.points):
        assert key == divmod(i, 9) and key[0] < 2 and key[1] < 9


def test_random_sampler_gives_up_with_warning():
    with pytest.warns(RuntimeWarning, match="only"):
        s = SOMSampler(Lattice("cartesian", (3, 3)), 5, method="random", min_dist=2.5, max_attempts=50)
    assert 1 <= s.num_points < 5


def test_kmeans_sampler_spreads_and_weights(tmp_path):
    lat = Lattice("cartesian", (10, 10))
    s = SOMSampler(lat, 4, method="kmeans", seed=0)
    # four centres of a 10x10 grid: one per quadrant
    quads = {(r // 5, c // 5) for r, c in s.points}
    assert quads == {(0, 0), (0, 1), (1, 0), (1, 1)}
    # weights from a mapping: all images map to the bottom-right 3x3 corner
    rows = np.full((50, 100), 5.0, np.float32)
    rng = np.random.default_rng(0)
    for i in range(50):
        r, c = rng.integers(7, 10, 2)
        rows[i, r * 10 + c] = 1.0
    write_mapping(tmp_path / "m.bin", rows, (10, 10))
    sw = SOMSampler(lat, 3, method="kmeans", mapping=Mapping(tmp_path / "m.bin"), seed=1)
    assert all(r >= 7 and c >= 7 for r, c in sw.points) and len(set(sw.points)) == 3
    # hexagonal
    sh = SOMSampler(Lattice("hexagonal", (7,)), 7, method="kmeans")
    assert sh.num_points == 7 and all(len(p) == 1 for p in sh.points)
    with pytest.raises(ConfigError):
        SOMSampler(lat, 3, method="nope")


def test_weighted_kmeans_two_clusters():
    x = np.array([[0, 0], [0, 1], [10, 10], [10, 11]], float)
    c = weighted_kmeans(x, 2, weights=[1, 3, 1, 1], seed=0)
    c = c[np.argsort(c[:, 0])]
    np.testing.assert_allclose(c, [[0, 0.75], [10, 10.5]])


def test_pixel_distances():
    m = np.zeros((5, 6), bool)
    m[1, 1] = m[4, 5] = m[1, 4] = True
    coords = valid_pixel_coords(m)
    assert coords.tolist() == [[1, 1], [1, 4], [4, 5]]
    d = compute_distances_between_valid_pixels(m)
    assert d.shape == (3, 3) and d[0, 1] == 3.0 and d[0, 2] == 5.0
    mx, (a, b), full = distances_between_valid_pixels(m)
    assert mx == 5.0 and (a, b) == (0, 2) and full is not None
    # empty mask: handled (PYINK raised ValueError)
    mx, pair, full = distances_between_valid_pixels(np.zeros((4, 4), bool))
    assert mx == -1.0 and pair == (-1, -1) and full.shape == (0, 0)
    assert distances_between_valid_pixels(np.eye(1, dtype=bool))[:2] == (0.0, (0, 0))
    with pytest.raises(ShapeError):
        valid_pixel_coords(np.zeros(3))


def test_valid_region_and_area_ratio():
    f = np.array([[0, 1, 2], [3, 6, 5], [0, 10, 15]])
    # includes given: zeros never included (PYINK counted them)
    assert valid_region(f, 2).tolist() == [[False, False, True], [False, True, False], [False, True, False]]
    assert valid_region(f).sum() == 7
    assert valid_region(f, [2, 3], filter_excludes=5).sum() == 3  # 2, 3, 6
    assert area_ratio(f, f, 2) == 1.0
    g = np.zeros_like(f)
    assert area_ratio(f, g, 2) == 1.0  # empty denominator with empty_check
