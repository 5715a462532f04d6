"""Tests of the PYINK-style wrappers in somtorch.io.binwrap."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import somtorch.io.binwrap as bw
from somtorch.errors import (
    ConfigError,
    FileFormatError,
    GeometryMismatchError,
    NonFiniteError,
    OutputExistsError,
    PickleNotAllowedError,
    ShapeError,
    SomtorchError,
)
from somtorch.io import (
    SOM,
    ImageReader,
    ImageWriter,
    Mapping,
    SOMSet,
    SOMWriter,
    Transform,
    read_images,
    read_som,
    write_images,
    write_mapping,
    write_som,
    write_transforms,
)

DATA = Path(__file__).parent / "data"
BMU_B = [7, 7, 4, 5, 4, 4, 7, 4, 4, 5, 4, 5, 4, 4, 8, 4, 4, 3, 5, 4]  # spec §9.2


# ------------------------------------------------------------------------------------------
# ImageWriter / ImageReader
# ------------------------------------------------------------------------------------------

def test_image_writer_roundtrip_and_records(tmp_path):
    p = tmp_path / "img.bin"
    imgs = np.random.default_rng(0).random((3, 2, 4, 4), dtype=np.float32)
    with ImageWriter(p, 0, (2, 4, 4)) as w:
        for i, im in enumerate(imgs):
            w.add(im, attributes={"row": np.int64(i), "name": f"src{i}", "pos": (np.float32(0.5), 1)})
            # header count kept current in the temporary file
            assert struct.unpack_from("<i", Path(w._af.temp_path).read_bytes(), 12)[0] == i + 1
        assert not p.exists()
    r = ImageReader(p)
    assert r.data.shape == (3, 2, 4, 4) and r.img_rank == 3 and r.img_shape == (2, 4, 4) and len(r) == 3
    np.testing.assert_array_equal(r.data, imgs)
    np.testing.assert_array_equal(r[1], imgs[1])
    assert r.tensor.dtype == torch.float32 and torch.equal(r.tensor, torch.from_numpy(imgs))
    assert r.records == [{"row": i, "name": f"src{i}", "pos": [0.5, 1]} for i in range(3)]
    assert json.loads((tmp_path / "img.bin.records.json").read_text())[2]["row"] == 2
    # same bytes as the low-level writer
    write_images(tmp_path / "ref.bin", imgs)
    assert p.read_bytes() == (tmp_path / "ref.bin").read_bytes()


def test_image_writer_rank2_partial_attributes_and_inferred_header(tmp_path):
    p = tmp_path / "img.bin"
    with ImageWriter(p) as w:
        w.add(np.ones((3, 3)), attributes=5)
        w.add(np.zeros((1, 3, 3)))  # (1, H, W) accepted for an (H, W) header
        w.add([[2.0] * 3] * 3, attributes="x")
    r = ImageReader(p)
    assert r.header.img_shape == (3, 3) and r.img_rank == 2 and r.img_shape == (1, 3, 3)
    assert r.data.shape == (3, 1, 3, 3)
    assert r.records == [5, None, "x"]


def test_image_writer_no_attributes_no_sidecar_and_checks(tmp_path):
    p = tmp_path / "img.bin"
    with ImageWriter(p, 0, [2, 2]) as w:  # list header accepted (PYINK bug)
        w.add(np.zeros((2, 2)))
        with pytest.raises(ShapeError):
            w.add(np.zeros((3, 2)))
        bad = np.zeros((2, 2))
        bad[0, 0] = np.inf
        with pytest.raises(NonFiniteError, match="image 1"):
            w.add(bad)
        w.add(bad, nonfinite_check=False)
        with pytest.raises(ConfigError):
            w.add(np.zeros((2, 2)), attributes=object())
    assert ImageReader(p).records is None and len(ImageReader(p)) == 2
    assert not (tmp_path / "img.bin.records.json").exists()
    with pytest.raises(ConfigError):
        ImageWriter(tmp_path / "other.bin", data_layout=1, data_header=(2, 2))


def test_image_writer_overwrite_clobber_and_atomicity(tmp_path):
    p = tmp_path / "img.bin"
    with ImageWriter(p, 0, (2, 2)) as w:
        w.add(np.ones((2, 2)), attributes=1)
    with pytest.raises(OutputExistsError):
        ImageWriter(p, 0, (2, 2))
    with pytest.raises(RuntimeError), ImageWriter(p, 0, (2, 2), clobber=True) as w:
        w.add(np.zeros((2, 2)))
        raise RuntimeError("boom")
    assert ImageReader(p).data.sum() == 4.0  # old file untouched
    assert sorted(os.listdir(tmp_path)) == ["img.bin", "img.bin.records.json"]
    with ImageWriter(p, 0, (2, 2), overwrite=True) as w:
        w.add(np.zeros((2, 2)))
    assert sorted(os.listdir(tmp_path)) == ["img.bin"]  # stale sidecar removed
    with pytest.raises(ShapeError):
        with ImageWriter(tmp_path / "none.bin"):
            pass
    assert not (tmp_path / "none.bin").exists()


def test_image_writer_comment_is_readable(tmp_path):
    p = tmp_path / "c.bin"
    with ImageWriter(p, 0, (2, 2), comment="made by somtorch") as w:
        w.add(np.ones((2, 2)))
        w.add(np.ones((2, 2)))
    r = ImageReader(p)
    assert r.header.comments == ("made by somtorch",) and len(r) == 2


def test_image_reader_pickle_opt_in_and_record_checks(tmp_path):
    p = tmp_path / "img.bin"
    write_images(p, np.zeros((2, 2, 2)))
    with open(str(p) + ".records.pkl", "wb") as f:
        pickle.dump(["a", "b"], f)
    with pytest.raises(PickleNotAllowedError, match="allow_pickle=True"):
        ImageReader(p)
    assert ImageReader(p, allow_pickle=True).records == ["a", "b"]
    (tmp_path / "img.bin.records.json").write_text('["j1", "j2"]')
    assert ImageReader(p).records == ["j1", "j2"]  # JSON preferred
    (tmp_path / "other.json").write_text('["only one"]')
    with pytest.raises(FileFormatError):
        ImageReader(p, record_path=tmp_path / "other.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FileFormatError):
        ImageReader(p, record_path=tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        ImageReader(tmp_path / "missing.bin")


def test_image_reader_golden():
    r = ImageReader(DATA / "two_channel20.bin")
    assert r.data.shape == (12, 2, 20, 20) and r.records is None
    assert torch.equal(r.tensor, read_images(DATA / "two_channel20.bin"))


# ------------------------------------------------------------------------------------------
# SOM / SOMWriter
# ------------------------------------------------------------------------------------------

def test_som_golden_mosaic_and_keys():
    s = SOM(DATA / "somA.bin")
    w = s.weights.numpy()
    assert s.som_rank == 2 and s.som_shape == (3, 3, 1) and s.neuron_rank == 2
    assert s.neuron_shape == (1, 23, 23) and s.neuron_size == 529 and s.layout == "cartesian"
    assert s.data.shape == (1, 69, 69) and len(s) == 9
    keys = list(s)
    assert keys == [(i, j) for i in range(3) for j in range(3)]
    for i, j in keys:
        assert s[i, j].shape == (23, 23)  # one channel: a 2-D image (plt.imshow)
        np.testing.assert_array_equal(s[i, j], w[i * 3 + j, 0])
        np.testing.assert_array_equal(s.data[:, i * 23:(i + 1) * 23, j * 23:(j + 1) * 23], w[i * 3 + j])
        assert s.key_to_index((i, j)) == i * 3 + j and s.index_to_key(i * 3 + j) == (i, j)
    assert np.shares_memory(s[1, 2], s.data)


def test_som_rectangular_and_slicing(tmp_path):
    w = np.arange(6 * 2 * 3 * 3, dtype=np.float32).reshape(6, 2, 3, 3)
    write_som(tmp_path / "s.bin", w, (3, 2))  # X=3 rows, Y=2 columns
    s = SOM(tmp_path / "s.bin")
    assert s.data.shape == (2, 9, 6) and s.neuron_shape == (2, 3, 3)
    np.testing.assert_array_equal(s[2, 1], w[5])  # PYINK: SOM[i, j] is neuron i*2+j
    np.testing.assert_array_equal(s[-1, 0], w[4])
    assert s[0].shape == (2, 3, 6) and s[:, 1].shape == (2, 9, 3)
    stepped = s[::2, 0]  # step counts neurons: rows 0 and 2
    np.testing.assert_array_equal(stepped, np.concatenate([w[0], w[4]], axis=1))
    np.testing.assert_array_equal(s[None, None], s.data)
    np.testing.assert_array_equal(s[1:, ::-1][:, :3, :3], w[3])
    with pytest.raises(TypeError):
        s["a"]
    with pytest.raises(IndexError):
        s[3, 0]
    with pytest.raises(IndexError):
        s[0, 0, 0]


def test_som_neuron_is_an_image_for_imshow(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = SOM(DATA / "somA.bin")
    fig, ax = plt.subplots()
    im = ax.imshow(s[0, 0])  # PYINK's (1, H, W) raised "Invalid shape" here
    assert im.get_array().shape == (23, 23)
    plt.close(fig)
    two = SOM(DATA / "som_two_channel.bin")
    assert two[0, 0].shape == (2,) + two.neuron_shape[1:]  # channels first for several channels


def test_reader_reprs():
    assert repr(SOM(DATA / "somA.bin")) == f"SOM({str(DATA / 'somA.bin')!r}: cartesian 3x3 (9 neurons), neurons 1x23x23)"
    assert repr(SOM(DATA / "som_hex5.bin")).endswith(": hexagonal (19 neurons), neurons 1x34x34)")
    assert repr(ImageReader(DATA / "train20.bin")).endswith(": 20 images of 1x16x16 float32, no records)")
    assert repr(Mapping(DATA / "mapA.bin")).endswith(": 20 images, cartesian 3x3 (9 neurons))")
    assert repr(Transform(DATA / "rfA.bin")).startswith("Transform(")
    ss = SOMSet(DATA / "somA.bin", DATA / "mapA.bin", DATA / "rfA.bin")
    assert repr(ss).startswith("SOMSet(som=SOM(") and "mapping=Mapping(" in repr(ss)


def test_som_3d_fold(tmp_path):
    w = np.arange(12, dtype=np.float32).reshape(12, 1, 1, 1) * np.ones((1, 1, 2, 2), np.float32)
    write_som(tmp_path / "s.bin", w, (2, 3, 2))
    s = SOM(tmp_path / "s.bin")
    assert s.som_shape == (2, 3, 2) and s.data.shape == (1, 4, 12) and len(list(s)) == 12
    np.testing.assert_array_equal(s[1, 4], w[1 * 6 + 4, 0])


def test_som_hexagonal():
    s = SOM(DATA / "som_hex5.bin")
    assert s.layout == "hexagonal" and s.num_neurons == 19 and len(s) == 19
    assert list(s) == [(k,) for k in range(19)]
    with pytest.raises(SomtorchError, match="hexagonal"):
        _ = s.data
    np.testing.assert_array_equal(s[(4,)], s.weights[4, 0].numpy())
    np.testing.assert_array_equal(s[4], s.weights[4, 0].numpy())
    assert s[1:3].shape == (2, 34, 34)
    assert s.key_to_index((18,)) == 18


def test_som_writer(tmp_path):
    w = np.random.default_rng(3).random((6, 4, 4), dtype=np.float32)
    with SOMWriter(tmp_path / "s.bin", (2, 3), (4, 4), comment="hello") as sw:
        for n in w:
            sw.add(n)
        with pytest.raises(ShapeError):
            sw.add(np.zeros((5, 5)))
        with pytest.raises(ShapeError):
            sw.add(np.zeros((4, 4)))  # lattice full
    t, h = read_som(tmp_path / "s.bin")
    assert h.som_dims == (2, 3) and h.comments == ("hello",)
    np.testing.assert_array_equal(t[:, 0].numpy(), w)
    with pytest.raises(ShapeError, match="needs 6"):
        with SOMWriter(tmp_path / "short.bin", (2, 3), (4, 4)) as sw:
            sw.add(w[0])
    assert not (tmp_path / "short.bin").exists()
    with pytest.raises(OutputExistsError):
        SOMWriter(tmp_path / "s.bin", (2, 3), (4, 4))
    with SOMWriter(tmp_path / "h.bin", (3, 3), (2, 2, 2), layout="hexagonal") as sw:
        for _ in range(7):
            sw.add(np.ones((2, 2, 2)))
    assert SOM(tmp_path / "h.bin").layout == "hexagonal"
    with SOMWriter(tmp_path / "three.bin", (2, 1, 2), (1, 1)) as sw:
        for k in range(4):
            sw.add(np.full((1, 1), k))
    assert read_som(tmp_path / "three.bin")[1].som_dims == (2, 1, 2)
    assert sorted(os.listdir(tmp_path)) == ["h.bin", "s.bin", "three.bin"]


# ------------------------------------------------------------------------------------------
# Mapping
# ------------------------------------------------------------------------------------------

def test_mapping_golden_bmu():
    m = Mapping(DATA / "mapB.bin")
    assert m.data.shape == (20, 3, 3) and m.flat.shape == (20, 9) and len(m) == 20
    assert m.som_rank == 2 and m.som_shape == (3, 3, 1) and list(m) == list(range(20))
    b = m.bmu()
    assert b.shape == (20, 2)
    assert (b[:, 0] * 3 + b[:, 1]).tolist() == BMU_B
    assert m.bmu(idx=0).tolist() == [2, 1]
    assert m.bmu(idx=0, return_tuples=True) == [(2, 1)]
    assert m.bmu(idx=[3, 14], return_idx=True).tolist() == [[3, 1, 2], [14, 2, 2]]
    counts = m.bmu_counts()
    assert counts.shape == (3, 3) and counts.sum() == 20 and counts[1, 1] == BMU_B.count(4)
    np.testing.assert_allclose(m.bmu_ed(idx=0), [3.0126815], rtol=1e-7)
    second = m.bmu(N=1, squeeze=False)
    ref = np.argsort(m.flat, axis=1, kind="stable")[:, 1]
    assert (second[:, 0] * 3 + second[:, 1]).tolist() == ref.tolist()
    assert m.images_with_bmu((1, 1)).tolist() == [i for i, k in enumerate(BMU_B) if k == 4]
    # true image indices even when idx is given (PYINK returned subset positions)
    assert m.images_with_bmu((2, 1), idx=[5, 6, 7]).tolist() == [6]
    assert m.images_with_bmu(7, idx=np.arange(20) >= 1).tolist() == [1, 6]


def test_mapping_mask(tmp_path):
    m = Mapping(DATA / "mapB.bin")
    mask = np.ones((3, 3), bool)
    mask[1, 1] = False
    m.bmu_mask = mask
    assert m.bmu_mask.shape == (3, 3)
    flat = np.array(m.flat)
    flat[:, 4] = np.inf
    assert (m.bmu(squeeze=False) @ [3, 1]).tolist() == flat.argmin(1).tolist()
    assert m.bmu_counts()[1, 1] == 0
    np.save(tmp_path / "mask.npy", mask)
    m2 = Mapping(DATA / "mapB.bin", bmu_mask=str(tmp_path / "mask.npy"))
    assert np.array_equal(m2.bmu(), m.bmu())
    with pytest.raises(ShapeError):
        m.bmu_mask = np.ones((9, 1), bool)
    with pytest.raises(ConfigError):
        m.bmu_mask = np.zeros((3, 3), bool)
    one = np.zeros((3, 3), bool)
    one[0, 0] = True
    m.bmu_mask = one
    with pytest.raises(ConfigError):
        m.bmu(N=1)
    m.bmu_mask = None
    assert (m.bmu() @ [3, 1]).tolist() == BMU_B


def test_mapping_worst_matches_and_labels():
    m = Mapping(DATA / "mapB.bin")
    ed = m.flat.min(axis=1)
    order = np.argsort(-ed, kind="stable")
    assert m.worst_matches().tolist() == order.tolist()  # PYINK: TypeError
    assert m.worst_matches(N=3).tolist() == order[:3].tolist()
    assert m.worst_matches(frac=0.1).tolist() == order[:2].tolist()
    sub = [i for i, k in enumerate(BMU_B) if k == 5]  # images 3, 9, 11, 18
    idx, d = m.worst_matches(neuron=(1, 2), return_ed=True)
    assert sorted(idx.tolist()) == sub and np.all(np.diff(d) <= 0)
    assert m.worst_matches(neuron=(1, 2), frac=0.5).tolist() == idx[:2].tolist()  # frac of subset
    with pytest.raises(ConfigError):
        m.worst_matches(N=1, frac=0.5)
    labels = np.array(["a", "b"] * 10)
    lm = m.map_labels(labels)
    assert list(lm) == ["a", "b"] and all(v.shape == (3, 3) for v in lm.values())
    assert np.array_equal(lm["a"] + lm["b"], m.bmu_counts())
    assert np.array_equal(lm["a"], m.bmu_counts(idx=np.arange(0, 20, 2)))
    with pytest.raises(ShapeError):
        m.map_labels(labels[:5])


def test_mapping_chunked_matches_unchunked(tmp_path, monkeypatch):
    d = np.random.default_rng(4).random((1000, 12), dtype=np.float32)
    write_mapping(tmp_path / "m.bin", d, (4, 3))
    m = Mapping(tmp_path / "m.bin")
    ref = m.bmu(squeeze=False)
    monkeypatch.setattr(bw, "CHUNK_ELEMENTS", 12 * 7)
    assert np.array_equal(m.bmu(squeeze=False), ref)
    assert (ref @ [3, 1]).tolist() == d.argmin(1).tolist()
    sel = np.array([999, 3, 500, 3])
    assert np.array_equal(m.bmu(idx=sel, squeeze=False), ref[sel])
    np.testing.assert_array_equal(m.bmu_ed(idx=sel, N=2), np.sort(d[sel], axis=1)[:, 2])


def test_mapping_hexagonal():
    m = Mapping(DATA / "map_hex5.bin")
    assert m.layout == "hexagonal" and m.data.shape == (30, 19)
    b = m.bmu(squeeze=False)
    assert b.shape == (30, 1) and b[:, 0].tolist() == m.flat.argmin(1).tolist()
    assert m.bmu_counts().shape == (19,)
    k = int(b[0, 0])
    assert 0 in m.images_with_bmu((k,)).tolist()


# ------------------------------------------------------------------------------------------
# Transform / SOMSet
# ------------------------------------------------------------------------------------------

def test_transform_golden():
    t = Transform(DATA / "rfB.bin")
    assert t.data.shape == (20, 3, 3) and t.data.dtype.itemsize == 5 and len(t) == 20
    rows = list(t)
    assert len(rows) == 20 and rows[0].shape == (3, 3)  # PYINK iterated over the layout field
    assert t.data["flip"][0].ravel().tolist() == [1, 0, 0, 1, 1, 0, 1, 1, 0]
    assert t.flip.shape == (20, 9) and t.flip.dtype == torch.int8
    assert t.angle[0, 0].item() == np.float32(4.712389)
    assert t[0, 2, 2]["angle"] == np.float32(4.712389)


def test_somset(tmp_path):
    ss = SOMSet(DATA / "somB.bin", DATA / "mapB.bin", DATA / "rfB.bin")
    assert isinstance(ss.som, SOM) and isinstance(ss.mapping, Mapping) and isinstance(ss.transform, Transform)
    SOMSet(SOM(DATA / "som_hex5.bin"), DATA / "map_hex5.bin", DATA / "rf_hex5.bin")
    with pytest.raises(GeometryMismatchError):
        SOMSet(DATA / "somB.bin", DATA / "map_blobs64.bin", None)
    with pytest.raises(GeometryMismatchError):
        SOMSet(DATA / "som_blobs64.bin", None, DATA / "rfB.bin")
    write_transforms(tmp_path / "t.bin", np.zeros((3, 9), np.int8), np.zeros((3, 9)), (3, 3))
    with pytest.raises(ShapeError):
        SOMSet(DATA / "somB.bin", DATA / "mapB.bin", tmp_path / "t.bin")
