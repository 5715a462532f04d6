"""The built-in synthetic radio sky (somtorch.datasets): determinism, catalogue, FITS, noise,
sidelobes, infrared channel, and a timing-free check that generation scales linearly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy.spatial import cKDTree

import somtorch.datasets.synthetic as synthetic
from somtorch.datasets import (
    MORPH_CLASSES,
    SkyConfig,
    generate_sky,
    make_sample,
    render_cutout,
    render_cutouts,
    write_fits_cutouts,
)
from somtorch.errors import ConfigError, OutputExistsError

# the catalogue columns the module docstring documents (source finder + hidden truth)
FINDER_COLUMNS = ["Component_name", "RA", "DEC", "Peak_flux", "Total_flux", "Isl_rms", "Maj", "Min",
                  "PA", "Peak_to_ring", "S_Code", "File_name"]
TRUTH_COLUMNS = ["Component_id", "Source_id", "Parent_source_id", "Morph_class", "Role",
                 "Is_sidelobe", "True_peak_flux", "True_total_flux"]


@pytest.fixture(scope="module")
def sky():
    return generate_sky(n_sources=250, seed=7)


def test_same_seed_gives_identical_catalogue_and_images_in_any_order(sky):
    again = generate_sky(n_sources=250, seed=7)
    pd.testing.assert_frame_equal(sky.catalogue, again.catalogue)
    pd.testing.assert_frame_equal(sky.sources, again.sources)
    idx = np.arange(0, len(sky.catalogue), 17)
    a = render_cutouts(sky, indices=idx)
    b = render_cutouts(again, indices=idx[::-1])[::-1]  # other order, fresh caches
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[3, 0], render_cutout(again, int(idx[3])))
    other = generate_sky(n_sources=250, seed=8)
    assert not np.array_equal(other.catalogue.RA.to_numpy()[:10], sky.catalogue.RA.to_numpy()[:10])


@pytest.mark.slow
def test_worker_count_does_not_change_the_images(sky):
    idx = np.arange(70)
    np.testing.assert_array_equal(render_cutouts(sky, indices=idx, n_workers=1),
                                  render_cutouts(sky, indices=idx, n_workers=2))


def test_catalogue_has_the_documented_columns_and_values(sky):
    cat = sky.catalogue
    assert list(cat.columns) == FINDER_COLUMNS + TRUTH_COLUMNS
    assert cat.Component_name.is_unique and cat.File_name.is_unique
    assert (cat.File_name == cat.Component_name.str.replace(" ", "_") + ".fits").all()
    assert set(cat.S_Code) <= {"S", "M", "C"}
    assert (cat.Peak_flux >= sky.config.detection_snr * sky.config.noise_rms_mjy).all()  # detected
    assert (cat.Is_sidelobe == (cat.Morph_class == "sidelobe")).all()
    assert set(cat.Morph_class) <= set(MORPH_CLASSES) | {"sidelobe"}
    assert (cat.Maj >= cat.Min).all() and (cat.Min >= sky.config.beam_fwhm_arcsec - 1e-9).all()
    assert cat.RA.is_monotonic_increasing  # sorted by RA, as a survey catalogue
    assert (sky.components.Component_id.to_numpy() == np.arange(len(sky.components))).all()


def test_fits_cutouts_have_valid_wcs_beam_and_vlass_geometry(tmp_path):
    paths = make_sample(tmp_path / "s", n=5, seed=3)
    cat = pd.read_csv(paths.catalogue)
    assert len(cat) == 5 and len(paths.radio) == 5
    for path, ra, dec in zip(paths.radio, cat.RA, cat.DEC):
        with fits.open(path) as h:
            hdr, data = h[0].header, h[0].data
        assert data.shape == (150, 150)
        w = WCS(hdr)
        assert w.has_celestial and hdr["CTYPE1"] == "RA---TAN" and hdr["CTYPE2"] == "DEC--TAN"
        r, d = w.all_pix2world(74.5, 74.5, 0)  # geometric centre of 150 pixels
        assert float(r) == pytest.approx(ra, abs=1e-9) and float(d) == pytest.approx(dec, abs=1e-9)
        assert hdr["BMAJ"] * 3600 == pytest.approx(2.5) and hdr["BMIN"] * 3600 == pytest.approx(2.5)
        assert hdr["CDELT1"] * 3600 == pytest.approx(-0.6) and hdr["CDELT2"] * 3600 == pytest.approx(0.6)
        assert hdr["BUNIT"] == "Jy/beam"
    with pytest.raises(OutputExistsError, match="exists"):
        make_sample(tmp_path / "s", n=5, seed=3)
    # the files hold exactly what render_cutout gives
    sky = generate_sky(n_sources=20, seed=3, image_size=32)
    p = write_fits_cutouts(sky, tmp_path / "w", indices=[4, 9])
    for path, i in zip(p.radio, (4, 9)):
        with fits.open(path) as h:
            np.testing.assert_array_equal(h[0].data, render_cutout(sky, i))


def test_four_axis_files_load_with_the_fits_reader(tmp_path):
    from somtorch.data import read_fits_image

    small = SkyConfig(image_size=32, noise_field_size=256)
    paths = make_sample(tmp_path / "q", n=2, seed=1, four_axis=True, config=small)
    with fits.open(paths.radio[0]) as h:
        assert h[0].data.shape == (1, 1, 32, 32) and h[0].header["CTYPE3"] == "FREQ"
        plane = h[0].data[0, 0]
    im = read_fits_image(paths.radio[0])
    assert im.shape == (32, 32) and im.beam[:2] == pytest.approx((2.5, 2.5))
    np.testing.assert_array_equal(im.data, plane)
    ra, dec = pd.read_csv(paths.catalogue).loc[0, ["RA", "DEC"]]
    r, d = im.wcs.all_pix2world(15.5, 15.5, 0)
    assert (float(r), float(d)) == pytest.approx((ra, dec), abs=1e-9)


def test_noise_rms_of_source_free_pixels_and_beam_correlation(sky):
    rms = sky.config.noise_rms_jy
    vals = []
    for i in range(0, len(sky.catalogue), 20):
        img = render_cutout(sky, i).astype(np.float64)
        model = render_cutout(sky, i, noise=False).astype(np.float64)
        vals.append(img[np.abs(model) < 1e-3 * rms])
    v = np.concatenate(vals)
    assert v.size > 100_000
    assert v.std() == pytest.approx(rms, rel=0.03)
    assert abs(v.mean()) < 0.03 * rms
    # beam-correlated noise: white noise * Gaussian(sigma) has autocorrelation Gaussian(sigma*sqrt2),
    # so neighbouring pixels correlate with exp(-1 / (4 sigma_pix^2))
    sig = sky.config.beam_fwhm_arcsec / (2 * np.sqrt(2 * np.log(2))) / sky.config.pixel_scale_arcsec
    n = render_cutout(sky, 0).astype(np.float64) - render_cutout(sky, 0, noise=False)
    rho = (n[:, 1:] * n[:, :-1]).mean() / n.var()
    assert rho == pytest.approx(np.exp(-1 / (4 * sig ** 2)), abs=0.03)


def test_sidelobe_rows_have_a_bright_parent(sky):
    cat, src = sky.catalogue, sky.sources.set_index("Source_id")
    sl = cat[cat.Is_sidelobe]
    assert len(sl) > 0
    assert (sl.Role == "sidelobe").all()
    parents = src.loc[sl.Parent_source_id.to_numpy()]
    assert (parents.Morph_class != "sidelobe").all() and parents.Has_sidelobes.all()
    assert (parents.Total_flux >= sky.config.sidelobe_threshold_mjy).all()
    assert (sl.Source_id.to_numpy() != sl.Parent_source_id.to_numpy()).all()
    # each spurious component sits within the sidelobe pattern's reach (<= 2.5 * 50") of its parent
    ra1, dec1 = np.deg2rad(sl.RA.to_numpy()), np.deg2rad(sl.DEC.to_numpy())
    ra2, dec2 = np.deg2rad(parents.RA.to_numpy()), np.deg2rad(parents.DEC.to_numpy())
    sep = np.rad2deg(np.arccos(np.clip(np.sin(dec1) * np.sin(dec2)
                                       + np.cos(dec1) * np.cos(dec2) * np.cos(ra1 - ra2), -1, 1))) * 3600
    assert (sep < 125.0).all()
    # real components are their own parents
    real = cat[~cat.Is_sidelobe]
    assert (real.Source_id == real.Parent_source_id).all()


def test_infrared_channel_when_requested(tmp_path):
    cfg = dataclasses.replace(SkyConfig(), with_ir=True, image_size=48)
    sky = generate_sky(cfg, n_sources=80, seed=4)
    assert sky.channels == ("radio", "ir") and "IR_file_name" in sky.catalogue.columns
    cube = render_cutouts(sky, indices=np.arange(6))
    assert cube.shape == (6, 2, 48, 48) and cube.dtype == np.float32
    # hosts sit at the radio core: a compact source with a host is bright in IR at the centre
    src = sky.sources.set_index("Source_id")
    cat = sky.catalogue
    comp = cat[(cat.Morph_class == "compact") & src.loc[cat.Source_id, "Has_host"].to_numpy()]
    assert len(comp) >= 3
    for i in comp.index[:5]:
        ir = render_cutout(sky, int(i), channel="ir", noise=False)
        win = ir[19:29, 19:29]  # central 6" box; hosts are within 0.3" of the core
        r, c = np.unravel_index(np.argmax(win), win.shape)
        assert max(abs(r - 4.5), abs(c - 4.5)) <= 1.5
        assert win.max() > 3 * sky.config.ir_noise_rms
    # no host for sidelobes
    assert not src.loc[src.Morph_class == "sidelobe", "Has_host"].any()
    with pytest.raises(ConfigError, match="with_ir"):
        render_cutout(generate_sky(n_sources=20, seed=1), 0, channel="ir")
    paths = make_sample(tmp_path / "ir", n=2, with_ir=True, config=cfg)
    assert len(paths.ir) == 2
    with fits.open(paths.ir[0]) as h:
        assert h[0].data.shape == (48, 48) and "PSF_FWHM" in h[0].header


def test_generation_scales_linearly_without_timing(monkeypatch):
    """Work per component is bounded: spatial queries return a constant number of neighbours
    whatever the field size (constant source density), and their count grows linearly."""
    found: list[int] = []

    class CountingTree(cKDTree):
        def query_ball_point(self, x, r, **kw):
            res = super().query_ball_point(x, r, **kw)
            found.append(len(res))
            return res

    monkeypatch.setattr(synthetic, "cKDTree", CountingTree)
    stats = {}
    for n in (200, 800):
        found.clear()
        s = synthetic.generate_sky(n_sources=n, seed=11)
        stats[n] = (len(s.components), len(found), float(np.mean(found)))
    (c1, q1, m1), (c2, q2, m2) = stats[200], stats[800]
    assert 3.0 < c2 / c1 < 5.3  # components grow with sources
    assert q2 / q1 == pytest.approx(c2 / c1, rel=0.25)  # queries ~ one per component
    assert m2 < 1.5 * m1  # neighbours per query do not grow with the field


def test_class_mix_and_bad_config():
    sky = generate_sky(n_sources=100, seed=0, class_mix={"compact": 0.5, "double": 0.5},
                       sidelobe_fraction=0.0)
    real = sky.sources[sky.sources.Morph_class != "sidelobe"]
    assert real.Morph_class.value_counts().to_dict() == {"compact": 50, "double": 50}
    assert not sky.catalogue.Is_sidelobe.any()
    with pytest.raises(ConfigError, match="class_mix"):
        generate_sky(n_sources=10, class_mix={"blob": 1.0})
    with pytest.raises(ConfigError, match="n_sources"):
        generate_sky(n_sources=0)


def test_cookbook_noise_estimate_on_the_synthetic_cutouts(sky):
    """The cookbook's rms estimate (MAD, 2 clipping rounds) on whole cutouts, sources included,
    recovers the configured noise: median within 5% (bright sources with sidelobe ripples
    raise it in a few cutouts, as in VLASS QL)."""
    from somtorch.preprocessing import rms_estimate

    r = np.array([rms_estimate(render_cutout(sky, i).astype(np.float64), mode="mad", clip_rounds=2)
                  for i in range(0, len(sky.catalogue), 8)]) / sky.config.noise_rms_jy
    assert abs(np.median(r) - 1) < 0.05
    assert np.mean(np.abs(r - 1) < 0.1) >= 0.75
