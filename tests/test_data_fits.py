"""somtorch.data.fits: loading (WCS, degenerate axes, blanks), Cutout2D cutouts, resampling.

Expectations are independent of the code under test: pixel slices of the parent array, counts
of padded pixels, and analytic images evaluated with the TAN projection's affine pixel <->
intermediate-world relation (same tangent point for both grids), computed by hand here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from somtorch.data import (
    MissingFileError,
    NoOverlapError,
    cutout,
    read_fits_image,
    reproject_bilinear,
    same_grid,
    stack_channels,
)
from somtorch.errors import FileFormatError, ShapeError

RA0, DEC0 = 150.0, 2.0


def tan_wcs(shape, crpix=None, cdelt_arcsec=0.6, rot_deg=0.0, crval=(RA0, DEC0)) -> WCS:
    """A celestial TAN WCS; ``crpix`` is 1-based FITS (default: the centre)."""
    h, w = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(crval)
    wcs.wcs.crpix = list(crpix) if crpix is not None else [(w + 1) / 2, (h + 1) / 2]
    d = cdelt_arcsec / 3600.0
    wcs.wcs.cdelt = [-d, d]
    t = np.deg2rad(rot_deg)
    wcs.wcs.pc = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    wcs.wcs.radesys = "ICRS"
    return wcs


def intermediate(wcs: WCS, col, row):
    """Hand-computed intermediate world coordinates (arcsec): CDELT * PC @ (p + 1 - CRPIX)."""
    p = np.stack([np.asarray(col, float) + 1 - wcs.wcs.crpix[0],
                  np.asarray(row, float) + 1 - wcs.wcs.crpix[1]])
    m = np.diag(wcs.wcs.cdelt) @ np.asarray(wcs.wcs.pc)
    xi = np.tensordot(m, p, axes=1) * 3600.0
    return xi[0], xi[1]


def write(path, data, header=None):
    fits.PrimaryHDU(data=data, header=header).writeto(path)
    return str(path)


# ------------------------------------------------------------------------------ loading
def test_degenerate_freq_stokes_axes_are_squeezed(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.normal(size=(20, 24)).astype(np.float32)
    h = tan_wcs(img.shape).to_header()
    for k, (ct, cv) in enumerate([("FREQ", 3e9), ("STOKES", 1.0)], start=3):
        h[f"CTYPE{k}"], h[f"CRVAL{k}"], h[f"CDELT{k}"], h[f"CRPIX{k}"] = ct, cv, 1.0, 1.0
    h["BMAJ"], h["BMIN"], h["BPA"] = 2.5 / 3600, 2.0 / 3600, 30.0
    p = write(tmp_path / "q.fits", img[None, None], h)
    im = read_fits_image(p)
    assert im.data.shape == (20, 24) and im.data.dtype == np.float32
    np.testing.assert_array_equal(im.data, img)
    assert im.wcs.naxis == 2 and im.wcs.has_celestial
    ra, dec = im.wcs.all_pix2world((24 - 1) / 2, (20 - 1) / 2, 0)  # geometric centre = CRPIX
    assert ra == pytest.approx(RA0, abs=1e-10) and dec == pytest.approx(DEC0, abs=1e-10)
    assert im.beam == pytest.approx((2.5, 2.0, 30.0))
    assert im.pixel_scale_arcsec == pytest.approx((0.6, 0.6))


def test_dec_first_axis_order_is_transposed(tmp_path):
    img = np.arange(12 * 15, dtype=np.float32).reshape(12, 15)  # numpy (axis2=RA, axis1=Dec)
    w = WCS(naxis=2)
    w.wcs.ctype = ["DEC--TAN", "RA---TAN"]
    w.wcs.crval, w.wcs.crpix = [DEC0, RA0], [3.0, 5.0]
    w.wcs.cdelt = [1 / 3600, -1 / 3600]
    p = write(tmp_path / "swap.fits", img, w.to_header())
    im = read_fits_image(p)
    np.testing.assert_array_equal(im.data, img.T)  # rows = Dec, cols = RA
    for row, col in [(0, 0), (7, 3), (14, 11)]:
        dec_o, ra_o = w.all_pix2world(row, col, 0)  # original: axis1 index = Dec pixel
        ra_n, dec_n = im.wcs.all_pix2world(col, row, 0)
        assert ra_n == pytest.approx(float(ra_o), abs=1e-12)
        assert dec_n == pytest.approx(float(dec_o), abs=1e-12)


def test_blank_bscale_nan_and_inf(tmp_path):
    raw = np.array([[1, 2, 3], [-32768, 4, 5]], dtype=np.int16)
    hdu = fits.PrimaryHDU(raw, header=tan_wcs((2, 3)).to_header())
    hdu.header["BSCALE"], hdu.header["BZERO"], hdu.header["BLANK"] = 2.0, 10.0, -32768
    hdu.writeto(tmp_path / "b.fits")
    im = read_fits_image(tmp_path / "b.fits", dtype=np.float64)
    np.testing.assert_array_equal(im.data, [[12, 14, 16], [np.nan, 18, 20]])
    f = np.array([[1.0, np.nan], [np.inf, -np.inf]], np.float32)
    im = read_fits_image(write(tmp_path / "f.fits", f, tan_wcs((2, 2)).to_header()))
    assert np.isnan(im.data).sum() == 3 and im.data[0, 0] == 1.0


def test_image_in_extension_and_explicit_hdu(tmp_path):
    img = np.ones((6, 7), np.float32)
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(img, header=tan_wcs((6, 7)).to_header(),
                                                          name="SCI")])
    hdul.writeto(tmp_path / "e.fits")
    assert read_fits_image(tmp_path / "e.fits").shape == (6, 7)
    assert read_fits_image(tmp_path / "e.fits", hdu="SCI").shape == (6, 7)
    with pytest.raises(FileFormatError, match="hdu"):
        read_fits_image(tmp_path / "e.fits", hdu=0)


def test_typed_errors_name_the_file(tmp_path):
    with pytest.raises(MissingFileError, match="nope.fits"):
        read_fits_image(tmp_path / "nope.fits")
    assert issubclass(MissingFileError, FileNotFoundError)
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"this is not FITS" * 300)
    with pytest.raises(FileFormatError, match="bad.fits"):
        read_fits_image(bad)
    good = write(tmp_path / "trunc.fits", np.ones((32, 32), np.float32), tan_wcs((32, 32)).to_header())
    data = Path(good).read_bytes()
    (tmp_path / "trunc.fits").write_bytes(data[:2880 + 1000])
    with pytest.raises(FileFormatError, match="trunc.fits"):
        read_fits_image(tmp_path / "trunc.fits")
    nowcs = write(tmp_path / "nowcs.fits", np.ones((4, 4), np.float32))
    with pytest.raises(FileFormatError, match="nowcs.fits.*celestial"):
        read_fits_image(nowcs)
    assert read_fits_image(nowcs, require_wcs=False).wcs is None
    h = tan_wcs((4, 4)).to_header()
    h["CTYPE3"], h["CRVAL3"], h["CDELT3"], h["CRPIX3"] = "FREQ", 3e9, 1e9, 1.0
    cube = write(tmp_path / "cube.fits", np.ones((3, 4, 4), np.float32), h)
    with pytest.raises(ShapeError, match="cube.fits.*FREQ.*length 3"):
        read_fits_image(cube)


# ------------------------------------------------------------------------------ cutouts
def _mosaic(tmp_path):
    """200x160 mosaic with point sources (single bright pixels) at known pixel positions."""
    h, w = 160, 200
    data = np.random.default_rng(1).normal(0, 0.01, (h, w)).astype(np.float32)
    wcs = tan_wcs((h, w), crpix=(101.0, 81.0))  # pixel (x=100, y=80) 0-based is the tangent point
    sources = {"centre": (100, 80), "a": (30, 40), "edge": (3, 150)}  # (x, y)
    for k, (x, y) in enumerate(sources.values()):
        data[y, x] = 10.0 + k
    im = read_fits_image(write(tmp_path / "mosaic.fits", data, wcs.to_header()))
    return im, data, sources


def test_cutout_at_catalogue_positions_takes_the_right_pixels(tmp_path):
    im, data, src = _mosaic(tmp_path)
    # the tangent point: RA/Dec = CRVAL exactly, no WCS library needed for the expectation
    c = cutout(im, RA0, DEC0, 21)
    np.testing.assert_array_equal(c.data, data[70:91, 90:111])
    assert c.data[10, 10] == 10.0 and c.n_padded == 0 and not c.partial
    assert c.position == pytest.approx((10.0, 10.0)) and c.position_original == pytest.approx((100, 80))
    x, y = src["a"]
    ra, dec = im.wcs.all_pix2world(x, y, 0)
    c = cutout(im, ra, dec, 15)
    np.testing.assert_array_equal(c.data, data[y - 7:y + 8, x - 7:x + 8])
    assert np.unravel_index(np.argmax(c.data), c.data.shape) == (7, 7)
    # even size: the source lands on pixel size/2 (documented)
    c = cutout(im, ra, dec, 16)
    assert np.unravel_index(np.argmax(c.data), c.data.shape) == (8, 8)
    # cutout WCS maps its centre pixel back to the source
    c = cutout(im, ra, dec, 15)
    r2, d2 = c.wcs.all_pix2world(7, 7, 0)
    assert (float(r2), float(d2)) == pytest.approx((float(ra), float(dec)), abs=1e-9)


def test_partial_overlap_is_padded_with_nan_and_reported(tmp_path):
    im, data, src = _mosaic(tmp_path)
    x, y = src["edge"]  # 3 px from the left edge, 9 px from the top
    ra, dec = im.wcs.all_pix2world(x, y, 0)
    c = cutout(im, ra, dec, 21)  # rows y-10..y+10 = 140..160 (160 outside), cols -7..13
    assert c.data.shape == (21, 21) and c.partial
    assert c.n_padded == 21 * 21 - 20 * 14
    assert np.isnan(c.data[:, :7]).all() and np.isnan(c.data[20, :]).all()
    np.testing.assert_array_equal(c.data[:20, 7:], data[140:160, 0:14])
    assert c.data[10, 10] == 12.0
    far_ra, far_dec = im.wcs.all_pix2world(-200, -200, 0)
    with pytest.raises(NoOverlapError, match="mosaic.fits"):
        cutout(im, far_ra, far_dec, 21)


# ------------------------------------------------------------------------------ resampling
def test_bilinear_resampling_is_exact_for_a_linear_image():
    a_shape, b_shape = (60, 60), (80, 80)
    wa = tan_wcs(a_shape, cdelt_arcsec=1.0)
    wb = tan_wcs(b_shape, crpix=(30.0, 50.0), cdelt_arcsec=0.7, rot_deg=30.0)
    ra_, ca_ = np.mgrid[0:60, 0:60]
    xa, ya = intermediate(wa, ca_, ra_)
    f = lambda xi, eta: 3.0 + 0.5 * xi - 0.25 * eta  # noqa: E731  (linear on the tangent plane)
    out = reproject_bilinear(f(xa, ya), wa, wb, b_shape)
    rb, cb = np.mgrid[0:80, 0:80]
    xb, yb = intermediate(wb, cb, rb)
    # A's 0-based pixel of each B pixel, by inverting A's affine map by hand
    m = np.diag(wa.wcs.cdelt) @ np.asarray(wa.wcs.pc) * 3600.0
    pa = np.linalg.solve(m, np.stack([xb.ravel(), yb.ravel()])) + (np.asarray(wa.wcs.crpix) - 1)[:, None]
    inside = ((pa[0] >= 0) & (pa[0] <= 59) & (pa[1] >= 0) & (pa[1] <= 59)).reshape(b_shape)
    assert inside.any() and (~inside).any()
    np.testing.assert_allclose(out[inside], f(xb, yb)[inside], rtol=0, atol=1e-6)
    edge = np.abs(np.stack([pa[0], pa[1]]) - 29.5).max(0).reshape(b_shape)
    assert np.isnan(out[edge > 29.5 + 1e-3]).all()


def test_bilinear_resampling_of_a_gaussian_between_rotated_grids():
    wa = tan_wcs((64, 64), cdelt_arcsec=1.0)
    wb = tan_wcs((50, 50), crpix=(27.0, 23.5), cdelt_arcsec=0.5, rot_deg=-40.0)
    g = lambda xi, eta: np.exp(-((xi - 2.0) ** 2 + (eta + 3.0) ** 2) / (2 * 4.0 ** 2))  # noqa: E731
    r, c = np.mgrid[0:64, 0:64]
    src = g(*intermediate(wa, c, r))
    out = reproject_bilinear(src, wa, wb, (50, 50))
    r, c = np.mgrid[0:50, 0:50]
    want = g(*intermediate(wb, c, r))
    assert np.isfinite(out).all()
    # bilinear error bound h^2/8 (|g_xx| + |g_yy|) <= 1/8 * 2/sigma^2 = 0.0156 of the peak
    err = np.abs(out - want).max()
    assert 1e-3 < err < 1.0 / 8 * 2 / 16.0
    # second order: halving the source pixel size divides the error by ~4
    wf = tan_wcs((128, 128), cdelt_arcsec=0.5)
    r2, c2 = np.mgrid[0:128, 0:128]
    fine = reproject_bilinear(g(*intermediate(wf, c2, r2)), wf, wb, (50, 50))
    assert np.abs(fine - want).max() == pytest.approx(err / 4, rel=0.3)
    # NaN in the input propagates to the output pixels that use it, and only to those
    src[32, 32] = np.nan
    out2 = reproject_bilinear(src, wa, wb, (50, 50))
    bad = np.isnan(out2)
    assert 1 <= bad.sum() <= 16
    np.testing.assert_array_equal(out2[~bad], out[~bad])


def test_stack_channels_copies_same_grid_and_resamples_others():
    wa = tan_wcs((30, 30))
    a = np.random.default_rng(2).normal(size=(30, 30))
    from somtorch.data import FitsImage

    same = FitsImage(a * 2, tan_wcs((30, 30)))
    assert same_grid(wa, (30, 30), same.wcs, (30, 30))
    st = stack_channels([FitsImage(a, wa), same], dtype=np.float64)
    np.testing.assert_array_equal(st, np.stack([a, 2 * a]))
    # an IR image on a coarser grid (2x pixels), linear in the sky -> exact on the radio grid
    wi = tan_wcs((20, 20), cdelt_arcsec=1.2)
    r, c = np.mgrid[0:20, 0:20]
    xi, eta = intermediate(wi, c, r)
    ir = FitsImage(1.0 + 0.1 * xi + 0.2 * eta, wi)
    assert not same_grid(wa, (30, 30), wi, (20, 20))
    st = stack_channels([FitsImage(a, wa), ir], dtype=np.float64)
    r, c = np.mgrid[0:30, 0:30]
    xa, ya = intermediate(wa, c, r)
    np.testing.assert_allclose(st[1], 1.0 + 0.1 * xa + 0.2 * ya, atol=1e-6)
    with pytest.raises(ShapeError, match="resample=False"):
        stack_channels([FitsImage(a, wa), ir], resample=False)


# ------------------------------------------------------------------------------ crop/resize steps
def test_crop_and_resize_steps():
    from somtorch.preprocessing import preprocess_image

    img = np.arange(100, dtype=np.float32).reshape(10, 10)
    out = preprocess_image(img, [{"name": "crop", "size": 4}])
    np.testing.assert_array_equal(out, img[3:7, 3:7])
    out = preprocess_image(img, [{"name": "crop", "size": [3, 5]}])
    np.testing.assert_array_equal(out, img[3:6, 2:7])
    out = preprocess_image(img, [{"name": "resize", "size": 5}])  # 2x2 block means
    np.testing.assert_allclose(out, img.reshape(5, 2, 5, 2).mean(axis=(1, 3)))
    # dropped pixels count as 0 in the block mean; a block with no kept pixel stays dropped
    out = preprocess_image(img, [{"name": "threshold", "value": 50}, {"name": "resize", "size": 5},
                                 "minmax"], fill=-1.0)
    assert (out[:2] == -1).all() and (out[2:] >= 0).all()
    from somtorch.errors import ConfigError

    with pytest.raises(ConfigError, match="crop.size"):
        preprocess_image(img, [{"name": "crop", "size": 11}])
