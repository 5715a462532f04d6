"""somtorch.data.run_preprocessing: bad entries reported, resume, parallel workers, mosaics, channels.

Expected images are computed here by hand (min-max of the raw pixels) or from the input files'
own pixels, not by the preprocessing code under test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from somtorch.data import output_paths, run_preprocessing
from somtorch.errors import ConfigError, OutputExistsError
from somtorch.io import read_images, read_records
from somtorch.preprocessing import register_step

N = 24  # cutout side


def tan_wcs(shape, cdelt_arcsec=0.6, crval=(150.0, 2.0), crpix=None):
    h, w = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(crval)
    wcs.wcs.crpix = list(crpix) if crpix is not None else [(w + 1) / 2, (h + 1) / 2]
    wcs.wcs.cdelt = [-cdelt_arcsec / 3600, cdelt_arcsec / 3600]
    return wcs


def blob(k: int, n: int = N) -> np.ndarray:
    rng = np.random.default_rng(k)
    y, x = np.mgrid[0:n, 0:n] - (n - 1) / 2
    return (np.exp(-(x * x + y * y) / (2 * (1.5 + k % 3) ** 2)) + rng.normal(0, 0.05, (n, n))).astype(np.float32)


def make_dir(tmp_path, n_rows: int = 10, bad: bool = True):
    """A cutout folder and catalogue; with ``bad``: rows 2 corrupt, 5 all-NaN, 7 wrong-sized, 8 missing."""
    d = tmp_path / "cutouts"
    d.mkdir()
    rows = []
    for k in range(n_rows):
        name = f"src{k:02d}"
        fname = f"{name}.fits"
        data = blob(k)
        if bad and k == 5:
            data = np.full((N, N), np.nan, np.float32)
        if bad and k == 7:
            data = blob(k, 20)
        if not (bad and k == 8):
            fits.PrimaryHDU(data[None, None], header=_4axis(tan_wcs(data.shape))).writeto(d / fname)
        if bad and k == 2:
            (d / fname).write_bytes(b"SIMPLE  =                    T" + b"\x00" * 500)
        rows.append({"Component_name": name, "File_name": fname, "Flux": float(k), "RA": 150.0, "DEC": 2.0})
    cat = pd.DataFrame(rows)
    cat.to_csv(tmp_path / "cat.csv", index=False)
    return tmp_path / "cat.csv", d


def _4axis(w):
    h = w.to_header()
    h["CTYPE3"], h["CRVAL3"], h["CDELT3"], h["CRPIX3"] = "FREQ", 3e9, 1e9, 1.0
    h["CTYPE4"], h["CRVAL4"], h["CDELT4"], h["CRPIX4"] = "STOKES", 1.0, 1.0, 1.0
    return h


def hand_minmax(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return ((a - a.min()) / (a.max() - a.min())).astype(np.float32)


def test_bad_entries_are_skipped_and_reported_by_name_and_reason(tmp_path):
    cat, d = make_dir(tmp_path)
    out = tmp_path / "out" / "images.bin"
    out.parent.mkdir()
    s = run_preprocessing(catalogue=cat, image_dir=d, output=str(out), recipe=["minmax"],
                          record_columns=["Flux"], chunk_size=3, progress=False)
    good = [0, 1, 3, 4, 6, 9]
    assert s["status"] == "done" and s["written"] == 6 and s["skipped"] == 4 and s["n_rows"] == 10
    assert s["skipped_by_reason"] == {"corrupt FITS": 1, "all NaN": 1, "wrong shape": 1, "missing file": 1}
    imgs = read_images(out).numpy()[:, 0]
    assert imgs.shape == (6, N, N)
    for i, k in enumerate(good):
        np.testing.assert_allclose(imgs[i], hand_minmax(blob(k)), atol=2e-7)
    recs = read_records(out)
    assert [r["row"] for r in recs] == good and [r["index"] for r in recs] == list(range(6))
    assert [r["Component_name"] for r in recs] == [f"src{k:02d}" for k in good]
    assert [r["Flux"] for r in recs] == [float(k) for k in good]
    sk = pd.read_csv(f"{out}.skipped.csv").set_index("id")
    assert sk.loc["src02", "reason"] == "corrupt FITS" and "src02.fits" in sk.loc["src02", "detail"]
    assert sk.loc["src05", "reason"] == "all NaN" and "src05.fits" in sk.loc["src05", "detail"]
    assert sk.loc["src07", "reason"] == "wrong shape" and "(20, 20)" in sk.loc["src07", "detail"]
    assert sk.loc["src08", "reason"] == "missing file" and sk.loc["src08", "file"].endswith("src08.fits")
    assert list(sk["row"]) == [2, 5, 7, 8]
    summ = json.loads(Path(f"{out}.summary.json").read_text())
    assert summ["written"] == 6 and summ["skipped"] == 4
    assert {e["id"] for e in summ["skipped_entries"]} == {"src02", "src05", "src07", "src08"}
    assert not os.path.exists(output_paths(out)["work"])


def test_recipe_failure_is_skipped_with_its_message(tmp_path):
    @register_step("_test_fail_if_bright")
    def _fail(state, limit=1.05):
        if float(state.image.max()) > limit:
            raise ValueError("too bright for this test")
        return state

    cat, d = make_dir(tmp_path, n_rows=6, bad=False)
    maxima = [float(np.nanmax(blob(k))) for k in range(6)]
    s = run_preprocessing(catalogue=cat, image_dir=d, output=str(tmp_path / "o.bin"),
                          recipe=["_test_fail_if_bright", "minmax"], progress=False)
    failing = [k for k, m in enumerate(maxima) if m > 1.05]
    assert 0 < len(failing) < 6
    sk = pd.read_csv(tmp_path / "o.bin.skipped.csv")
    assert list(sk["row"]) == failing and set(sk["reason"]) == {"recipe failed"}
    assert sk["detail"].str.contains("ValueError: too bright").all()
    assert s["written"] == 6 - len(failing)


def _files(out):
    p = output_paths(out)
    return {k: Path(p[k]).read_bytes() for k in ("binary", "records", "skipped")}


def test_resume_after_interruption_equals_one_full_run(tmp_path):
    cat, d = make_dir(tmp_path)
    kw = dict(catalogue=cat, image_dir=d, recipe=["minmax"], chunk_size=2, progress=False)
    full = tmp_path / "full" / "img.bin"
    full.parent.mkdir()
    run_preprocessing(output=str(full), **kw)
    part = tmp_path / "part" / "img.bin"
    part.parent.mkdir()
    s = run_preprocessing(output=str(part), stop_after_chunks=2, **kw)
    assert s["status"] == "interrupted" and s["done_rows"] == 4
    assert not part.exists()  # nothing published before the run is complete
    state = json.loads(Path(os.path.join(output_paths(part)["work"], "state.json")).read_text())
    assert state["done_chunks"] == [0, 1]
    # a crash while chunk 2 was being saved: its files exist, but the state does not list it
    s = run_preprocessing(output=str(part), stop_after_chunks=1, **kw)
    assert s["done_rows"] == 6
    state["done_chunks"] = [0, 1]
    with open(os.path.join(output_paths(part)["work"], "state.json"), "w") as f:
        json.dump(state, f)
    s = run_preprocessing(output=str(part), **kw)
    assert s["status"] == "done" and s["written"] == 6
    assert _files(part) == _files(full)


def test_changed_settings_refuse_to_resume_and_outputs_are_not_overwritten(tmp_path):
    cat, d = make_dir(tmp_path, n_rows=6, bad=False)
    out = str(tmp_path / "img.bin")
    kw = dict(catalogue=cat, image_dir=d, chunk_size=2, progress=False)
    run_preprocessing(output=out, recipe=["minmax"], stop_after_chunks=1, **kw)
    with pytest.raises(ConfigError, match="fingerprint"):
        run_preprocessing(output=out, recipe=["log", "minmax"], **kw)
    with pytest.raises(OutputExistsError, match="unfinished run"):
        run_preprocessing(output=out, recipe=["log", "minmax"], resume=False, **kw)
    s = run_preprocessing(output=out, recipe=["log", "minmax"], overwrite=True, **kw)
    assert s["written"] == 6
    before = _files(out)
    with pytest.raises(OutputExistsError, match="img.bin"):
        run_preprocessing(output=out, recipe=["minmax"], **kw)
    assert _files(out) == before
    s = run_preprocessing(output=out, recipe=["minmax"], overwrite=True, **kw)
    np.testing.assert_allclose(read_images(out).numpy()[0, 0], hand_minmax(blob(0)), atol=2e-7)


@pytest.mark.slow
def test_two_workers_give_the_same_output_as_one(tmp_path):
    cat, d = make_dir(tmp_path)
    kw = dict(catalogue=cat, image_dir=d, recipe=["minmax"], chunk_size=2, progress=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    run_preprocessing(output=str(tmp_path / "a" / "i.bin"), workers=1, **kw)
    s = run_preprocessing(output=str(tmp_path / "b" / "i.bin"), workers=2, **kw)
    assert s["written"] == 6
    assert _files(tmp_path / "a" / "i.bin") == _files(tmp_path / "b" / "i.bin")


def test_cutouts_from_a_mosaic_at_catalogue_positions(tmp_path):
    h, w = 80, 100
    data = np.zeros((h, w), np.float32)
    wcs = tan_wcs((h, w), cdelt_arcsec=1.0, crpix=(51.0, 41.0))
    rng = np.random.default_rng(5)
    data += rng.normal(0, 1, data.shape).astype(np.float32)
    fits.PrimaryHDU(data, header=wcs.to_header()).writeto(tmp_path / "mosaic.fits")
    pix = {"in": (30, 40), "edge": (2, 40), "corner": (1, 1), "outside": (-100, 40)}  # (x, y)
    rows = []
    for name, (x, y) in pix.items():
        ra, dec = wcs.all_pix2world(x, y, 0)
        rows.append({"Component_name": name, "Mosaic": "mosaic.fits", "RA": float(ra), "DEC": float(dec)})
    pd.DataFrame(rows).to_csv(tmp_path / "cat.csv", index=False)
    s = run_preprocessing(catalogue=tmp_path / "cat.csv", output=str(tmp_path / "c.bin"),
                          channels=[{"name": "radio", "file_column": "Mosaic"}], cutout_size=11,
                          recipe=[], progress=False)
    assert s["written"] == 2 and s["partial_cutouts"] == 1
    assert s["skipped_by_reason"] == {"partial overlap": 1, "no overlap": 1}
    imgs = read_images(tmp_path / "c.bin").numpy()[:, 0]
    np.testing.assert_array_equal(imgs[0], data[35:46, 25:36])
    # 'edge' (x=2): columns -3..7, the 3 outside are NaN -> dropped by the recipe -> fill 0
    np.testing.assert_array_equal(imgs[1][:, 3:], data[35:46, 0:8])
    assert (imgs[1][:, :3] == 0).all()
    recs = read_records(tmp_path / "c.bin")
    assert [(r["Component_name"], r["n_padded"]) for r in recs] == [("in", 0), ("edge", 33)]


def test_two_channels_second_survey_resampled_onto_the_first(tmp_path):
    d = tmp_path / "img"
    d.mkdir()
    rows = []
    for k in range(3):
        crval = (150.0 + 0.01 * k, 2.0)
        wr = tan_wcs((N, N), crval=crval)
        fits.PrimaryHDU(blob(k), header=wr.to_header()).writeto(d / f"r{k}.fits")
        # IR: 2.4" pixels, 12x12, centred 1.5" off; a plane in pixel coordinates of the IR grid
        wi = tan_wcs((12, 12), cdelt_arcsec=2.4, crval=crval, crpix=(6.0, 7.2))
        yy, xx = np.mgrid[0:12, 0:12]
        fits.PrimaryHDU((5.0 + xx - 0.5 * yy).astype(np.float32), header=wi.to_header()).writeto(d / f"i{k}.fits")
        rows.append({"Component_name": f"s{k}", "File_name": f"r{k}.fits", "IR_file_name": f"i{k}.fits"})
    pd.DataFrame(rows).to_csv(d / "cat.csv", index=False)
    s = run_preprocessing(catalogue=d / "cat.csv", output=str(tmp_path / "two.bin"), recipe=[],
                          channels=[{"name": "radio", "file_column": "File_name"},
                                    {"name": "ir", "file_column": "IR_file_name"}], progress=False)
    assert s["written"] == 3 and s["image_shape"] == [2, N, N]
    imgs = read_images(tmp_path / "two.bin").numpy()
    np.testing.assert_array_equal(imgs[:, 0], np.stack([blob(k) for k in range(3)]))
    # radio pixel (c, r) -> IR pixel: same tangent point, scale 0.6/2.4 = 1/4, offsets from CRPIX
    r, c = np.mgrid[0:N, 0:N]
    xi = (c + 1 - (N + 1) / 2) * 0.25 + 6.0 - 1
    yi = (r + 1 - (N + 1) / 2) * 0.25 + 7.2 - 1
    np.testing.assert_allclose(imgs[0, 1], 5.0 + xi - 0.5 * yi, atol=1e-4)


def test_all_entries_skipped_writes_the_report_but_no_binary(tmp_path):
    cat, d = make_dir(tmp_path, n_rows=3, bad=False)
    for f in d.iterdir():
        f.unlink()
    out = tmp_path / "none.bin"
    with pytest.warns(RuntimeWarning, match="every one of the 3 entries was skipped"):
        s = run_preprocessing(catalogue=cat, output=str(out), recipe=["minmax"], image_shape=(N, N),
                              progress=False)
    assert s["status"] == "empty" and s["written"] == 0 and s["skipped_by_reason"] == {"missing file": 3}
    assert not out.exists()
    assert list(pd.read_csv(f"{out}.skipped.csv")["id"]) == ["src00", "src01", "src02"]


def test_two_mosaics_cut_and_resampled_at_catalogue_positions(tmp_path):
    # radio mosaic 0.6" pixels; IR mosaic 1.5" pixels, same tangent point, a plane in IR pixels
    wr = tan_wcs((120, 120), crpix=(60.5, 60.5))
    wi = tan_wcs((60, 60), cdelt_arcsec=1.5, crpix=(30.0, 31.0))
    radio = np.random.default_rng(3).normal(size=(120, 120)).astype(np.float32)
    yy, xx = np.mgrid[0:60, 0:60]
    fits.PrimaryHDU(radio, header=wr.to_header()).writeto(tmp_path / "r.fits")
    fits.PrimaryHDU((2.0 + 0.3 * xx + 0.1 * yy).astype(np.float32), header=wi.to_header()).writeto(
        tmp_path / "i.fits")
    pos = [(40, 50), (70, 64)]  # radio (x, y)
    rows = []
    for k, (x, y) in enumerate(pos):
        ra, dec = wr.all_pix2world(x, y, 0)
        rows.append({"Component_name": f"m{k}", "R": "r.fits", "I": "i.fits", "RA": float(ra), "DEC": float(dec)})
    pd.DataFrame(rows).to_csv(tmp_path / "cat.csv", index=False)
    s = run_preprocessing(catalogue=tmp_path / "cat.csv", output=str(tmp_path / "m.bin"), cutout_size=9,
                          channels=[{"name": "radio", "file_column": "R"}, {"name": "ir", "file_column": "I"}],
                          recipe=[], progress=False)
    assert s["written"] == 2 and s["image_shape"] == [2, 9, 9]
    imgs = read_images(tmp_path / "m.bin").numpy()
    r, c = np.mgrid[0:9, 0:9]
    for k, (x, y) in enumerate(pos):
        np.testing.assert_array_equal(imgs[k, 0], radio[y - 4:y + 5, x - 4:x + 5])
        # radio pixel -> IR pixel: offsets from CRPIX scaled by 0.6 / 1.5 (same tangent point)
        xi = (x - 4 + c + 1 - 60.5) * 0.4 + 30.0 - 1
        yi = (y - 4 + r + 1 - 60.5) * 0.4 + 31.0 - 1
        np.testing.assert_allclose(imgs[k, 1], 2.0 + 0.3 * xi + 0.1 * yi, atol=1e-4)


def test_a_full_disk_is_refused_before_the_binary_is_written_then_the_run_completes(tmp_path, monkeypatch):
    """The image binary's size is known once the chunks are done: too little free space gives one
    OutOfSpaceError naming the binary before anything is written; with space back the same run
    completes from its finished chunks."""
    import shutil as sh

    from somtorch.errors import OutOfSpaceError

    cat, d = make_dir(tmp_path)
    out = tmp_path / "out" / "images.bin"
    out.parent.mkdir()
    kw = dict(catalogue=cat, image_dir=d, output=str(out), recipe=["minmax"], chunk_size=3, progress=False)
    real = sh.disk_usage
    monkeypatch.setattr(sh, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(OutOfSpaceError, match=r"images.bin: no space left on device; needs .*image binary"):
        run_preprocessing(**kw)
    assert not out.exists()
    monkeypatch.setattr(sh, "disk_usage", real)
    s = run_preprocessing(**kw)
    assert s["status"] == "done" and s["written"] == 6
    assert read_images(out).shape[0] == 6
