"""somtorch.pyink.binwrap: PYINK's files, headers and records sidecars (read safely by default)."""

import os
import pickle
import shutil

import numpy as np
import pytest

import somtorch.pyink as pu
from somtorch.errors import ConfigError, FileFormatError, PickleNotAllowedError
from somtorch.io import ImageReader as NativeImageReader
from somtorch.io import write_images

DATA = os.path.join(os.path.dirname(__file__), "data")


def _write_pyink_style(path, images, records=None):
    """A binary as PYINK writes it (no comment) with a pickled plain records list."""
    write_images(path, images)
    if records is not None:
        with open(str(path) + ".records.pkl", "wb") as fh:
            pickle.dump(records, fh)


def test_pyink_records_sidecar_opens_without_allow_pickle(tmp_path):
    p = tmp_path / "imgs.bin"
    recs = [f"uuid-{i}" for i in range(5)]
    _write_pyink_style(p, np.random.default_rng(0).random((5, 2, 8, 8), dtype=np.float32), recs)
    r = pu.ImageReader(p)
    assert r.records == recs and r.data.shape == (5, 2, 8, 8)
    assert r.header == (2, 0, 0, 5, 0, 3, (2, 8, 8)) and r.header[3] == 5 and r.header.img_shape == (2, 8, 8)
    with pytest.raises(PickleNotAllowedError):  # the native reader still asks for the opt-in
        NativeImageReader(p)


def test_hostile_or_rich_records_pickles_are_refused_naming_the_file(tmp_path):
    p = tmp_path / "imgs.bin"
    write_images(p, np.zeros((1, 4, 4), np.float32))

    class Evil:
        def __reduce__(self):
            return (os.remove, (str(p),))

    with open(str(p) + ".records.pkl", "wb") as fh:
        pickle.dump([Evil()], fh)
    with pytest.raises(FileFormatError, match="records.pkl"):
        pu.ImageReader(p)
    assert p.exists()  # nothing was called
    from astropy.wcs import WCS

    with open(str(p) + ".records.pkl", "wb") as fh:
        pickle.dump([("uuid", WCS(naxis=2))], fh)
    with pytest.raises(FileFormatError, match="not allowed"):
        pu.ImageReader(p)


def test_image_writer_records_round_trip_and_partial_records(tmp_path):
    p = tmp_path / "out.bin"
    imgs = np.random.default_rng(1).random((4, 6, 6)).astype(np.float32)
    recs = [3, ("a", np.int64(4)), {"k": [1.5, None]}, np.arange(3)]
    with pu.ImageWriter(p, 0, (6, 6)) as w:
        for im, rec in zip(imgs, recs):
            w.add(im, attributes=rec)
        assert w.count == 4 and w.data_header == (6, 6) and w.no_dimensions == 2
    r = pu.ImageReader(p)
    assert r.img_shape == (1, 6, 6) and r.img_rank == 2
    np.testing.assert_array_equal(r.data[:, 0], imgs)
    assert r.records[:3] == recs[:3] and np.array_equal(r.records[3], recs[3])
    assert isinstance(r.records[1], tuple)  # kept as written (PYINK pickles the objects)
    # partial attributes: written with None (PYINK silently wrote nothing)
    q = tmp_path / "partial.bin"
    with pu.ImageWriter(q, 0, (6, 6)) as w:
        w.add(imgs[0], attributes="first")
        w.add(imgs[1])
    assert pu.ImageReader(q).records == ["first", None]
    # no attributes: no sidecar, records None (PYINK: no attribute)
    z = tmp_path / "none.bin"
    with pu.ImageWriter(z, 0, (6, 6)) as w:
        w.add(imgs[0])
    assert not os.path.exists(str(z) + ".records.pkl") and pu.ImageReader(z).records is None
    # PYINK's behaviours: clobber, non-finite, layout, shape
    with pytest.raises(ValueError, match="clobber"):
        pu.ImageWriter(p, 0, (6, 6))
    with pytest.raises(NotImplementedError):
        pu.ImageWriter(tmp_path / "hex.bin", 1, (6, 6))
    with pu.ImageWriter(tmp_path / "bad.bin", 0, (6, 6)) as w:
        with pytest.raises(ValueError):
            w.add(np.full((6, 6), np.nan))
        with pytest.raises(ValueError):
            w.add(np.zeros((5, 5)))
        w.add(imgs[0])


def test_image_writer_refuses_records_it_could_not_read_back(tmp_path):
    from astropy.wcs import WCS

    with pu.ImageWriter(tmp_path / "w.bin", 0, (4, 4)) as w:
        with pytest.raises(ConfigError, match="image 0"):
            w.add(np.zeros((4, 4)), attributes=("uuid", WCS(naxis=2)))
        w.add(np.zeros((4, 4)), attributes=("uuid", WCS(naxis=2).to_header_string()))
    assert pu.ImageReader(tmp_path / "w.bin").records[0][0] == "uuid"


def test_save_records_explicit_path(tmp_path):
    w = pu.ImageWriter(tmp_path / "a.bin", 0, (2, 3, 3))
    w.add(np.ones((2, 3, 3)), attributes=7)
    w.close()
    w.save_records(tmp_path / "copy.records.pkl")
    assert pu.ImageReader(tmp_path / "a.bin", record_path=tmp_path / "copy.records.pkl").records == [7]


def test_reweight_keeps_every_record(tmp_path):
    p = tmp_path / "src.bin"
    imgs = np.random.default_rng(2).random((12, 2, 5, 5)).astype(np.float32)
    _write_pyink_style(p, imgs, [f"src-{i}" for i in range(12)])
    r = pu.ImageReader(p)
    out = r.reweight(tmp_path / "rw.bin", [0.95, 0.05], [0.5, 0.5])
    assert isinstance(out, pu.ImageReader)
    assert out.records == [f"src-{i}" for i in range(12)]
    np.testing.assert_allclose(out.data[:, 0], imgs[:, 0] * 0.5 / 0.95, rtol=1e-6)
    np.testing.assert_allclose(out.data[:, 1], imgs[:, 1] * 10, rtol=1e-5)
    with pytest.raises(ValueError):
        r.reweight(tmp_path / "rw.bin", [1, 1], [1, 1])  # exists, clobber False as PYINK
    # single channel (rank 2) and no records: PYINK failed on both
    q = tmp_path / "one.bin"
    write_images(q, imgs[:, 0])
    one = pu.ImageReader(q).reweight(tmp_path / "one_rw.bin", [2.0], [1.0])
    assert one.records is None and one.img_rank == 2
    np.testing.assert_allclose(one.data[:, 0], imgs[:, 0] / 2, rtol=1e-6)
    # the native reweight carries PYINK's pickle sidecar too (byte for byte)
    from somtorch.preprocessing import reweight

    reweight(str(p), tmp_path / "native.bin", [1, 1], [1, 2])
    with open(str(p) + ".records.pkl", "rb") as a, open(str(tmp_path / "native.bin") + ".records.pkl", "rb") as b:
        assert a.read() == b.read()


def test_image_reader_transform_is_cubic(tmp_path):
    p = tmp_path / "t.bin"
    imgs = np.random.default_rng(3).random((3, 1, 11, 11)).astype(np.float32)
    write_images(p, imgs)
    r = pu.ImageReader(p)
    rec = np.array([(1, 0.7)], dtype=[("flip", "i1"), ("angle", "<f4")])[0]
    np.testing.assert_allclose(r.transform(1, rec), pu.pink_spatial_transform(imgs[1], rec), atol=1e-6)
    many = r.transform_images([0, 2], [(0, 0.3), (1, 2.0)])
    np.testing.assert_allclose(many[1], pu.pink_spatial_transform(imgs[2], (1, 2.0)), atol=1e-6)
    with pytest.raises(TypeError):
        r.transform(1.0, rec)
    with pytest.raises(ValueError):
        r.transform_images([0, 1], [(0, 0.3)])


def test_golden_pink_files_through_pyink_classes(tmp_path):
    som = pu.SOM(os.path.join(DATA, "som_two_channel.bin"))
    assert som.header == (2, 1, 0, 0, 2, (3, 3), 0, 3, (2, 29, 29))
    assert som[1, 2].shape == (2, 29, 29) and som.neuron_size == 2 * 29 * 29
    np.testing.assert_array_equal(som[1, 2], som.data[:, 29:58, 58:87])
    assert list(som)[:2] == [(0, 0), (0, 1)] and som.som_shape == (3, 3, 1)
    one = pu.SOM(os.path.join(DATA, "somA.bin"))
    assert one[0, 0].shape == (1, 23, 23)  # PYINK keeps the channel axis
    m = pu.Mapping(os.path.join(DATA, "mapA.bin"))
    t = pu.Transform(os.path.join(DATA, "rfA.bin"))
    assert m.header == (2, 2, 0, 20, 0, 2, (3, 3)) and t.header == (2, 3, 20, 0, 2, (3, 3))
    np.testing.assert_array_equal(m.bmu_counts(), m.bmu_counts(idx=None, N=0))
    assert m.bmu_counts().sum() == 20
    assert all(set(map(tuple, m.bmu(idx=m.images_with_bmu(k)).reshape(-1, 2))) <= {k}
               for k in [tuple(b) for b in m.bmu()[:3]])
    ss = pu.SOMSet(os.path.join(DATA, "somA.bin"), os.path.join(DATA, "mapA.bin"), os.path.join(DATA, "rfA.bin"))
    assert isinstance(ss.som, pu.SOM) and isinstance(ss.mapping, pu.Mapping) and isinstance(ss.transform, pu.Transform)
    fig = som.plot(channel=1, outfile=tmp_path / "som.png")
    assert (tmp_path / "som.png").exists() and fig.axes
    assert len(som.plot_neuron((1, 1)).axes) >= 2
    big = pu.SOM(os.path.join(DATA, "som_blobs64.bin"))
    f2 = big.plot_neuron((0, 1), trim_to_img_shape=True)
    assert f2.axes[0].images[0].get_array().shape == (64, 64)  # 91 -> the 64-pixel images
    ex = som.explore(start=(1, 1), interactive=False)
    assert ex.key == (1, 1)
    ex2 = big.explore(start=(0, 0), trim_to_img_shape=True, show_ticks=True, interactive=False)
    assert ex2.images[0].get_array().shape == (64, 64)
    w = pu.SOMWriter(tmp_path / "tpl.bin", (1, 2), (4, 4))
    w.add(np.zeros((4, 4)))
    w.add(np.ones((4, 4)))
    w.close()
    assert pu.SOM(tmp_path / "tpl.bin")[0, 1].sum() == 16


def test_header_offset_and_data_types(tmp_path):
    p = tmp_path / "c.bin"
    with pu.ImageWriter(p, 0, (3, 3), comment="made by a test") as w:
        w.add(np.eye(3))
    raw = p.read_bytes()
    off = pu.header_offset(p)
    assert off > 0 and raw[off - 16:off] == b"# END OF HEADER\n" and raw[off] == 2
    np.testing.assert_array_equal(pu.ImageReader(p).data[0, 0], np.eye(3))
    assert pu.header_offset(os.path.join(DATA, "train20.bin")) == 0
    (tmp_path / "bad.bin").write_bytes(b"# only a comment\n")
    with pytest.raises(ValueError, match="Malformed"):
        pu.header_offset(tmp_path / "bad.bin")
    assert pu.resolve_data_type(0) is np.float32 and pu.resolve_data_type(9) is np.uint64
    assert pu.resolve_data_type(np.float32) == 0 and pu.resolve_data_type(np.dtype("<i2")) == 3
    with pytest.raises(ValueError):
        pu.resolve_data_type(10)
    with pytest.raises(ValueError):
        pu.resolve_data_type(np.complex64)


def test_path_helper(tmp_path):
    ph = pu.PathHelper(tmp_path / "figs")
    sub = ph.neurons
    assert os.path.isdir(tmp_path / "figs" / "neurons") and f"{sub}" == str(tmp_path / "figs" / "neurons")
    assert not os.path.exists(tmp_path / "figs" / "_ipython_canary_method_should_not_exist_")
    with pytest.raises(AttributeError):
        ph._ipython_canary_method_should_not_exist_  # noqa: B018
    (tmp_path / "figs" / "old.txt").write_text("x")
    pu.PathHelper(tmp_path / "figs", clobber=True)
    assert os.listdir(tmp_path / "figs") == []
    shutil.rmtree(tmp_path / "figs")


def test_native_annotation_filters_refuse_edits_instead_of_losing_them():
    from somtorch.annotation import Annotation as NativeAnnotation

    a = NativeAnnotation(np.ones((1, 6, 6)))
    a.add_mask(0, np.eye(6, dtype=bool), 2)
    with pytest.raises(TypeError):
        a.filters[0] = np.zeros((6, 6), int)
    with pytest.raises(ValueError):
        a.filters[0][0, 0] = 5
    assert a.filter(0)[0, 0] == 2 and a.filter(0).sum() == 12


def test_differences_measurement_runs_and_points_the_documented_way(capsys):
    from somtorch.pyink.differences import main, measure

    d = measure(8, 0)
    assert d["rms_source_median_pct"] > 0 and d["rms_noise_bias_pyink_pct"] < d["rms_noise_bias_native_pct"]
    assert d["hull_extra_px_median"] > 0 and d["hull_smoothed_t0.3_px_median"] > 0
    assert d["transform_max_rel_max_pct"] > 0 and d["trim_213"] == (150, 150)
    assert main(["3", "1"]) == 0 and "rms_source_median_pct" in capsys.readouterr().out
