"""Image <-> neuron frames: exact agreement with the engine, mapped distances, coordinate round trips."""

import math

import numpy as np
import pytest
import torch

from somtorch.analysis import frames as fr
from somtorch.analysis.frames import (
    CoordinateTransformer,
    image_to_neuron_coords,
    neuron_to_image_coords,
    pink_spatial_transform,
    pixel_to_sky,
    sky_to_neuron,
    sky_to_pixel,
    transform_images,
    trim_neuron,
)
from somtorch.engine import Mapper, RotationInvariantSOM, SOMGeometry
from somtorch.errors import ConfigError, ShapeError
from somtorch.geometry import Lattice, PinkTransformer, index_to_flip_angle
from somtorch.geometry.regions import region_mask

torch.set_num_threads(1)


def _blob(d, r0, c0, sigma=1.5, shape=None):
    y, x = np.mgrid[0:d, 0:d].astype(np.float64)
    return np.exp(-((y - r0) ** 2 + (x - c0) ** 2) / (2 * sigma ** 2)).astype(np.float32)


@pytest.mark.parametrize("d,nd,numrot", [(16, 23, 8), (16, 23, 360), (15, 22, 12), (16, 16, 4), (20, 14, 8),
                                         (9, 9, 1)])
def test_forward_equals_engine_bit_for_bit(d, nd, numrot):
    rng = np.random.default_rng(d + nd + numrot)
    img = rng.random((2, d, d)).astype(np.float32)
    tr = PinkTransformer(d, nd, numrot, flip=True, exact=True)
    ts = torch.arange(2 * numrot)
    ref = tr.select(torch.from_numpy(img), ts).numpy()
    flips, angles = index_to_flip_angle(ts, numrot)
    for t in range(0, 2 * numrot, max(1, numrot // 8)):
        out = pink_spatial_transform(img, (int(flips[t]), angles[t].item()), numrot=numrot, neuron_dim=nd)
        assert out.shape == (2, nd, nd)
        np.testing.assert_array_equal(out, ref[t])
    # batch form with the packed records a Transform file holds
    rec = np.zeros(2 * numrot, dtype=[("flip", "i1"), ("angle", "<f4")])
    rec["flip"], rec["angle"] = flips.numpy(), angles.numpy()
    imgs = np.repeat(img[None], len(rec), axis=0)
    np.testing.assert_array_equal(transform_images(imgs, rec, numrot=numrot, neuron_dim=nd), ref)


def test_direction_and_flip_axis_analytic():
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    q = np.float32(np.pi / 2)
    np.testing.assert_array_equal(pink_spatial_transform(x, (0, q), numrot=4), np.rot90(x, -1))
    np.testing.assert_array_equal(pink_spatial_transform(x, (1, 0.0), numrot=4), np.flipud(x))
    # rotate first, then flip
    np.testing.assert_array_equal(pink_spatial_transform(x, (1, q), numrot=4), np.flipud(np.rot90(x, -1)))
    # the inverse undoes it exactly for quarter turns
    for f in (0, 1):
        for k in range(4):
            tf = (f, k * np.pi / 2)
            y = pink_spatial_transform(x, tf, numrot=4)
            np.testing.assert_array_equal(pink_spatial_transform(y, tf, reverse=True, numrot=4), x)
    # a point right of centre goes below the centre under a clockwise quarter turn
    img = np.zeros((5, 5), np.float32)
    img[2, 4] = 1
    out = pink_spatial_transform(img, (0, q), numrot=4)
    assert out[4, 2] == 1
    # torch in, torch out; 2-D shape kept
    t = pink_spatial_transform(torch.from_numpy(x), (0, q), numrot=4)
    assert isinstance(t, torch.Tensor) and t.shape == (4, 4)


def test_mapped_distance_reproduced_from_stored_transform():
    rng = np.random.default_rng(3)
    d, numrot = 16, 8
    geom = SOMGeometry(d, channels=2, numrot=numrot, convention="pink")
    som = RotationInvariantSOM(Lattice("cartesian", (2, 3)), geom, init="random", seed=5)
    images = torch.from_numpy(rng.random((5, 2, d, d)).astype(np.float32))
    res = Mapper(som).map(images)
    mask = region_mask(geom.nd, geom.ed, geom.distance_shape).numpy()
    w = som.weight.detach().numpy()
    for b in range(len(images)):
        for n in range(som.num_neurons):
            tf = (int(res.flip[b, n]), float(res.angle[b, n]))
            x = pink_spatial_transform(images[b].numpy(), tf, numrot=numrot, neuron_dim=geom.nd)
            dist = math.sqrt(float(((w[n] - x)[:, mask].astype(np.float64) ** 2).sum()))
            assert dist == pytest.approx(float(res.distances[b, n]), rel=2e-5)
    # any other transform gives a larger (or equal) distance: the stored one is the best
    b, n = 0, int(res.bmu[0])
    best = float(res.distances[b, n])
    for t in range(2 * numrot):
        f, a = index_to_flip_angle(torch.tensor(t), numrot)
        x = pink_spatial_transform(images[b].numpy(), (int(f), float(a)), numrot=numrot, neuron_dim=geom.nd)
        assert math.sqrt(float(((w[n] - x)[:, mask] ** 2).sum())) >= best * (1 - 1e-5)


@pytest.mark.parametrize("numrot", [8, 360, None])
def test_forward_then_inverse_recovers_smooth_image(numrot):
    d, nd = 24, 35
    img = _blob(d, 9.3, 14.1, sigma=3.0)
    rr, cc = np.mgrid[0:d, 0:d]
    for f, ang in [(0, 0.7853982), (1, 2.0 * 0.7853982), (1, 5.497787), (0, 3.926991)]:
        y = pink_spatial_transform(img, (f, ang), numrot=numrot, neuron_dim=nd)
        back = pink_spatial_transform(y, (f, ang), reverse=True, numrot=numrot, image_dim=d)
        assert back.shape == (d, d)
        assert np.abs(back - img).max() < 0.05  # two bilinear resamplings smooth a little
        # ... but shift nothing: the centroid comes back
        cen = np.array([(back * rr).sum(), (back * cc).sum()]) / back.sum()
        np.testing.assert_allclose(cen, [9.3, 14.1], atol=0.02)


def test_arbitrary_angle_path_agrees_with_grid_path():
    d, nd = 20, 29
    img = _blob(d, 6.0, 12.5)
    a = np.float32(37 * 2 * np.pi / 360)
    g = pink_spatial_transform(img, (1, a), numrot=360, neuron_dim=nd)
    c = pink_spatial_transform(img, (1, a), numrot=None, neuron_dim=nd)
    assert np.abs(g - c).max() < 1e-5
    with pytest.raises(ConfigError):
        pink_spatial_transform(img, (0, 0.3), numrot=4)


@pytest.mark.parametrize("d,nd", [(24, 35), (24, 24), (24, 17), (16, 23)])
@pytest.mark.parametrize("numrot", [8, 360])
def test_coordinates_follow_the_pixels_and_round_trip(d, nd, numrot):
    r0, c0 = 0.35 * d, 0.57 * d  # well inside the image (a clipped blob has a biased centroid)
    img = _blob(d, r0, c0, sigma=1.3)
    step = 2 * np.pi / numrot
    for f, s in [(0, 0), (1, 0), (0, numrot // 4), (1, 3 * numrot // 4), (0, 1), (1, numrot // 8 + 1)]:
        ang = float(np.float32(s * np.float32(step)))
        y = pink_spatial_transform(img, (f, ang), numrot=numrot, neuron_dim=nd)
        rr, cc = np.mgrid[0:nd, 0:nd]
        cen = np.array([(y * rr).sum(), (y * cc).sum()]) / y.sum()
        pred = image_to_neuron_coords([r0, c0], (f, ang), d, nd, numrot)
        assert np.abs(cen - pred).max() < 0.08, (f, s, cen, pred)
        back = neuron_to_image_coords(pred, (f, ang), d, nd, numrot)
        np.testing.assert_allclose(back, [r0, c0], atol=1e-12)
    # per-point transforms and many points at once
    pts = np.random.default_rng(0).uniform(0, d - 1, (7, 2))
    tfs = (np.array([0, 1, 0, 1, 0, 1, 1]), np.float32(step) * np.arange(7, dtype=np.float32) * 3)
    q = image_to_neuron_coords(pts, tfs, d, nd, numrot)
    np.testing.assert_allclose(neuron_to_image_coords(q, tfs, d, nd, numrot), pts, atol=1e-12)


def test_quarter_turn_integer_coordinates_exact():
    d, nd = 6, 9
    img = np.zeros((d, d), np.float32)
    img[1, 4] = 1
    for f in (0, 1):
        for k in range(4):
            tf = (f, k * np.pi / 2)
            y = pink_spatial_transform(img, tf, numrot=4, neuron_dim=nd)
            r, c = np.argwhere(y == 1)[0]
            np.testing.assert_array_equal(image_to_neuron_coords([1, 4], tf, d, nd, 4), [r, c])


def test_sky_coordinates_round_trip_wcs_and_pixel_scale():
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.wcs import WCS

    d, nd, scale = 32, 46, 0.6
    centre = SkyCoord(150.1 * u.deg, 2.2 * u.deg)
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [centre.ra.deg, centre.dec.deg]
    w.wcs.crpix = [(d + 1) / 2.0, (d + 1) / 2.0]
    w.wcs.cdelt = [-scale / 3600.0, scale / 3600.0]
    src = centre.spherical_offsets_by([3.0, -4.2, 0.0] * u.arcsec, [1.5, 2.5, -6.0] * u.arcsec)
    p_wcs = sky_to_pixel(src, wcs=w)
    p_sc = sky_to_pixel(src, center=centre, pixel_scale=scale * u.arcsec, image_shape=d)
    # east (positive RA offset) is to the left (smaller column), north is a larger row
    assert p_sc[0, 1] < (d - 1) / 2 and p_sc[0, 0] > (d - 1) / 2
    np.testing.assert_allclose(p_wcs, p_sc, atol=2e-3)  # TAN projection vs spherical offsets
    for kw in (dict(wcs=w), dict(center=centre, pixel_scale=scale * u.arcsec)):
        back = pixel_to_sky(sky_to_pixel(src, image_shape=d, **kw), image_shape=d, **kw)
        assert np.all(back.separation(src).to_value(u.arcsec) < 1e-6)
        tf = (1, float(np.float32(33 * np.float32(2 * np.pi / 360))))
        q = sky_to_neuron(src, tf, d, nd, **kw)
        ct = CoordinateTransformer(centre, src, tf, pixel_scale=kw.get("pixel_scale"), wcs=kw.get("wcs"),
                                   image_dim=d, neuron_dim=nd)
        np.testing.assert_allclose(ct.coords["neuron"], q, atol=1e-9)
        assert np.all(ct.inverse(q).separation(src).to_value(u.arcsec) < 1e-6)
        # offsets-neuron = PYINK's R(+theta) of offsets-pixel, then y -> -y (no interpolation involved)
        th = tf[1]
        x, y = ct.coords["offsets-pixel"][:, 0], ct.coords["offsets-pixel"][:, 1]
        if kw.get("wcs") is None:
            xr, yr = x * np.cos(th) - y * np.sin(th), x * np.sin(th) + y * np.cos(th)
            np.testing.assert_allclose(ct.coords["offsets-neuron"], np.stack([xr, -yr], 1), atol=1e-5)


def test_trim_neuron_and_errors():
    n = np.arange(213 * 213, dtype=np.float32).reshape(213, 213)
    assert trim_neuron(n).shape == (151, 151) or trim_neuron(n).shape == (150, 150)
    assert trim_neuron(np.zeros((212, 212))).shape == (150, 150)  # PYINK's floor gives 149
    t = trim_neuron(n, 150)
    np.testing.assert_array_equal(t, n[31:181, 31:181])
    with pytest.raises(ShapeError):
        pink_spatial_transform(np.zeros((3, 4)), (0, 0.0))
    with pytest.raises(ShapeError):
        transform_images(np.zeros((3, 4, 4)), [(0, 0.0)])
    with pytest.raises(ShapeError):
        pink_spatial_transform(np.zeros((4, 4)), [(0, 0.0), (1, 0.0)])
    assert fr._decompose(np.array([0]), np.array([5 * np.pi / 4]), None)[1][0] == 2


def test_image_reader_transform_matches_frames(tmp_path):
    from somtorch.io import ImageReader, ImageWriter

    rng = np.random.default_rng(1)
    imgs = rng.random((4, 2, 12, 12)).astype(np.float32)
    p = tmp_path / "imgs.bin"
    with ImageWriter(p, 0, (2, 12, 12)) as w:
        for im in imgs:
            w.add(im)
    rd = ImageReader(p)
    step = np.float32(2 * np.pi / 8)
    rec = np.zeros(4, dtype=[("flip", "i1"), ("angle", "<f4")])
    rec["flip"] = [0, 1, 1, 0]
    rec["angle"] = np.float32([0, 1, 5, 3]) * step
    out = rd.transform_images([0, 1, 2, 3], rec, numrot=8, neuron_dim=17)
    assert out.shape == (4, 2, 17, 17)
    ref = transform_images(imgs, rec, numrot=8, neuron_dim=17)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(rd.transform(2, rec[2], numrot=8, neuron_dim=17), ref[2])
    np.testing.assert_array_equal(rd.transform(np.int64(1), (1, rec["angle"][1]), numrot=8),
                                  pink_spatial_transform(imgs[1], (1, rec["angle"][1]), numrot=8))
    with pytest.raises(TypeError):
        rd.transform([1], rec[1])
    with pytest.raises(ShapeError):
        rd.transform_images([0, 1], rec[:1])


@pytest.mark.parametrize("case,shape,numrot,d", [("blobs64", "quadratic", 360, 64),
                                                 ("blobs64_circ", "circular", 360, 64),
                                                 ("hex5", "quadratic", 8, 24)])
def test_pink_golden_distances_reproduced(case, shape, numrot, d):
    """PINK's own mapping: image transformed by PINK's stored (flip, angle) vs the neuron gives
    PINK's stored distance (over PINK's distance region)."""
    from pathlib import Path

    from somtorch.geometry import default_euclidean_dim, default_neuron_dim
    from somtorch.io import SOM, ImageReader, Mapping, Transform

    data = Path(__file__).parent / "data"
    imgs = ImageReader(data / ("blobs24.bin" if case == "hex5" else "blobs64.bin"))
    som = SOM(data / ("som_hex5.bin" if case == "hex5" else "som_blobs64.bin"))
    m, t = Mapping(data / f"map_{case}.bin"), Transform(data / f"rf_{case}.bin")
    nd = default_neuron_dim(d, numrot, "pink")
    mask = region_mask(nd, default_euclidean_dim(d, numrot, shape, "pink"), shape).numpy()
    w = som.weights.numpy()
    flat = t.flat.reshape(len(t), -1)
    for i in range(len(m)):
        for n in {int(np.argmin(m.flat[i])), i % som.num_neurons}:
            x = pink_spatial_transform(imgs.data[i], flat[i, n], numrot=numrot, neuron_dim=nd)
            dist = math.sqrt(float(((w[n] - x)[:, mask].astype(np.float64) ** 2).sum()))
            assert dist == pytest.approx(float(m.flat[i, n]), rel=1e-5, abs=1e-6)
