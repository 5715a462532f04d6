"""Tests of somtorch.io.pink / atomic: golden PINK files, byte layouts, validation, writers."""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from somtorch.errors import (
    ConfigError,
    FileFormatError,
    GeometryMismatchError,
    NonFiniteError,
    OutputExistsError,
    ShapeError,
    SomtorchError,
    TruncatedFileError,
)
from somtorch.io import (
    ImageHeader,
    MappingHeader,
    MappingWriter,
    SOMHeader,
    TransformHeader,
    TransformWriter,
    atomic_output,
    hex_num_neurons,
    pink_som_dims,
    read_header,
    read_images,
    read_images_header,
    read_mapping,
    read_som,
    read_transforms,
    write_images,
    write_mapping,
    write_som,
    write_transforms,
)

DATA = Path(__file__).parent / "data"
MANIFEST = json.loads((DATA / "manifest.json").read_text())["md5"]

SUMS = {  # spec §9.2 per-neuron sums
    "somA.bin": [99.77283, 80.17915, 31.21619, 80.17915, 60.85437, 21.56118, 31.21619, 21.56118, 6.63317],
    "somB.bin": [209.77232, 193.8206, 204.33212, 188.11475, 169.21423, 180.60358, 213.19967, 179.62058,
                 190.30452],
    "somD.bin": [187.87952, 167.95164, 190.17375, 165.61306, 145.51181, 168.9242, 201.53776, 168.77514,
                 192.61354],
}
MAP0 = {  # spec §9.2, image 0 distances
    "mapA.bin": [3.0927505, 3.3820901, 4.7714276, 3.3820901, 3.8435507, 5.1076560, 4.7714276, 5.1076560,
                 5.6504455],
    "mapB.bin": [3.4566617, 3.2884872, 3.1809497, 3.3485913, 3.2587247, 3.2469978, 3.2170098, 3.0126815,
                 3.3964529],
    "mapD.bin": [2.5191090, 2.4270546, 2.4898162, 2.3131964, 2.1745441, 2.4694581, 2.6417840, 2.3955901,
                 2.6601901],
}
RF0 = {  # spec §9.2, image 0 flips and angles
    "rfA.bin": ([0] * 9, [4.712389] * 9),
    "rfB.bin": ([1, 0, 0, 1, 1, 0, 1, 1, 0],
                [4.712389, 1.5707964, 0, 0, 4.712389, 1.5707964, 1.5707964, 1.5707964, 4.712389]),
    "rfD.bin": ([0, 0, 0, 1, 0, 1, 1, 1, 0],
                [2.3561945, 3.926991, 0.7853982, 5.4977875, 2.3561945, 2.3561945, 2.3561945, 5.4977875,
                 3.926991]),
}


def md5(path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def ints(buf: bytes, offset: int, n: int) -> tuple:
    return struct.unpack_from(f"<{n}i", buf, offset)


# ------------------------------------------------------------------------------------------
# golden files
# ------------------------------------------------------------------------------------------

def test_manifest_md5_of_golden_files():
    for name, digest in MANIFEST.items():
        assert md5(DATA / name) == digest, name


@pytest.mark.parametrize("name", ["somA.bin", "somB.bin", "somD.bin"])
def test_golden_som_3x3(name):
    assert os.path.getsize(DATA / name) == 19088
    w, h = read_som(DATA / name, som_dims=(3, 3), layout="cartesian", neuron_shape=(23, 23))
    assert isinstance(h, SOMHeader)
    assert h.som_dims == (3, 3) and h.neuron_shape == (23, 23) and h.num_neurons == 9
    assert h.layout == "cartesian" and h.offset == 44 and h.comments == () and h.channels == 1
    assert w.shape == (9, 1, 23, 23) and w.dtype == torch.float32
    sums = w.double().sum(dim=(1, 2, 3)).numpy()
    np.testing.assert_allclose(sums, SUMS[name], atol=1e-4)


def test_golden_som_sample_values():
    w, _ = read_som(DATA / "somA.bin")
    assert w[0, 0, 11, 11].item() == np.float32(0.35918063)
    assert w[4, 0, 11, 11].item() == np.float32(0.23192981)
    assert w[8, 0, 0, 0].item() == 0.0
    assert w[8, 0, 11, 11].item() == np.float32(0.026270876)


def test_golden_hex_som_detected():
    w, h = read_som(DATA / "som_hex5.bin")
    assert h.layout == "hexagonal" and h.num_neurons == 19 == hex_num_neurons(5)
    assert h.som_dims == (5, 5) and w.shape[0] == 19
    with pytest.raises(GeometryMismatchError) as ei:
        read_som(DATA / "som_hex5.bin", layout="cartesian")
    assert ei.value.field == "layout"
    _, mh = read_mapping(DATA / "map_hex5.bin")
    assert mh.num_neurons == 19 and mh.layout == "hexagonal" and mh.n_images == 30
    _, _, th = read_transforms(DATA / "rf_hex5.bin")
    assert th.num_neurons == 19 and th.layout == "hexagonal"


def test_golden_two_channel_som():
    w, h = read_som(DATA / "som_two_channel.bin")
    assert h.neuron_shape[0] == 2 and len(h.neuron_shape) == 3 and h.neuron_shape[1] == h.neuron_shape[2]
    assert w.shape == (9, 2) + h.neuron_shape[1:] and h.offset == 48
    imgs = read_images(DATA / "two_channel20.bin")
    assert imgs.shape == (12, 2, 20, 20)
    assert read_images_header(DATA / "two_channel20.bin").img_shape == (2, 20, 20)


def test_golden_train20_content():
    imgs = read_images(DATA / "train20.bin")
    ref = np.random.default_rng(12345).random((20, 16, 16), dtype=np.float32)
    assert imgs.shape == (20, 1, 16, 16)
    np.testing.assert_array_equal(imgs[:, 0].numpy(), ref)
    h = read_header(DATA / "train20.bin")
    assert isinstance(h, ImageHeader) and h.n_images == 20 and h.img_shape == (16, 16) and h.offset == 32


@pytest.mark.parametrize("name", sorted(MAP0))
def test_golden_mapping_image0(name):
    d, h = read_mapping(DATA / name)
    assert isinstance(h, MappingHeader) and h.n_images == 20 and h.som_dims == (3, 3) and h.offset == 32
    assert d.shape == (20, 9)
    np.testing.assert_allclose(d[0].numpy(), MAP0[name], rtol=2e-7)


@pytest.mark.parametrize("name", sorted(RF0))
def test_golden_transforms_image0(name):
    flip, angle, h = read_transforms(DATA / name)
    assert isinstance(h, TransformHeader) and h.offset == 28 and h.n_images == 20
    assert flip.dtype == torch.int8 and angle.dtype == torch.float32 and flip.shape == (20, 9)
    assert flip[0].tolist() == RF0[name][0]
    np.testing.assert_array_equal(angle[0].numpy(), np.float32(RF0[name][1]))


def _rewrite(src: Path, dst: Path):
    h = read_header(src)
    if isinstance(h, ImageHeader):
        write_images(dst, read_images(src), comments=list(h.comments) or None)
    elif isinstance(h, SOMHeader):
        w, _ = read_som(src)
        write_som(dst, w, h.som_dims, layout=h.layout, comments=list(h.comments) or None)
    elif isinstance(h, MappingHeader):
        write_mapping(dst, read_mapping(src)[0], h.som_dims)
    else:
        f, a, _ = read_transforms(src)
        write_transforms(dst, f, a, h.som_dims)


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_golden_rewrite_is_byte_identical(name, tmp_path):
    out = tmp_path / name
    _rewrite(DATA / name, out)
    assert md5(out) == MANIFEST[name]


# ------------------------------------------------------------------------------------------
# byte layouts of written files (parsed with struct, independently of the reader)
# ------------------------------------------------------------------------------------------

def test_layout_images_rank2_and_rank3(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    write_images(tmp_path / "a.bin", a)
    buf = (tmp_path / "a.bin").read_bytes()
    assert ints(buf, 0, 8) == (2, 0, 0, 2, 0, 2, 3, 4) and len(buf) == 32 + a.size * 4
    np.testing.assert_array_equal(np.frombuffer(buf, "<f4", offset=32), a.ravel())
    b = np.arange(2 * 2 * 3 * 3, dtype=np.float32).reshape(2, 2, 3, 3)
    write_images(tmp_path / "b.bin", torch.from_numpy(b))
    buf = (tmp_path / "b.bin").read_bytes()
    assert ints(buf, 0, 9) == (2, 0, 0, 2, 0, 3, 2, 3, 3)
    np.testing.assert_array_equal(np.frombuffer(buf, "<f4", offset=36), b.ravel())  # channels slowest
    write_images(tmp_path / "c.bin", a[:, None])  # (N,1,H,W) stored rank 2
    assert ints((tmp_path / "c.bin").read_bytes(), 0, 8) == (2, 0, 0, 2, 0, 2, 3, 4)


def test_layout_som_cartesian_hex_and_channels(tmp_path):
    w = np.random.default_rng(0).random((6, 5, 5), dtype=np.float32)
    write_som(tmp_path / "s.bin", w, (3, 2))
    buf = (tmp_path / "s.bin").read_bytes()
    assert ints(buf, 0, 11) == (2, 1, 0, 0, 2, 3, 2, 0, 2, 5, 5) and len(buf) == 44 + w.size * 4
    np.testing.assert_array_equal(np.frombuffer(buf, "<f4", offset=44), w.ravel())
    write_som(tmp_path / "s1.bin", w, (6,))
    assert ints((tmp_path / "s1.bin").read_bytes(), 0, 10) == (2, 1, 0, 0, 1, 6, 0, 2, 5, 5)
    write_som(tmp_path / "s3.bin", w, (1, 2, 3))
    assert ints((tmp_path / "s3.bin").read_bytes(), 0, 12) == (2, 1, 0, 0, 3, 1, 2, 3, 0, 2, 5, 5)
    hx = np.zeros((7, 2, 4, 4), np.float32)
    write_som(tmp_path / "h.bin", hx, (3, 3), layout="hexagonal")
    buf = (tmp_path / "h.bin").read_bytes()
    assert ints(buf, 0, 12) == (2, 1, 0, 0, 2, 3, 3, 0, 3, 2, 4, 4) and len(buf) == 48 + hx.size * 4
    assert read_som(tmp_path / "h.bin")[1].layout == "hexagonal"


def test_layout_mapping_and_transform(tmp_path):
    d = np.arange(3 * 4, dtype=np.float32).reshape(3, 4)
    write_mapping(tmp_path / "m.bin", d, (2, 2))
    buf = (tmp_path / "m.bin").read_bytes()
    assert ints(buf, 0, 8) == (2, 2, 0, 3, 0, 2, 2, 2) and len(buf) == 32 + 48
    flip = np.array([[0, 1, 1, 0]] * 3, np.int8)
    ang = np.full((3, 4), 1.5707964, np.float32)
    write_transforms(tmp_path / "t.bin", flip, ang, (2, 2))
    buf = (tmp_path / "t.bin").read_bytes()
    assert ints(buf, 0, 7) == (2, 3, 3, 0, 2, 2, 2) and len(buf) == 28 + 12 * 5
    assert struct.unpack_from("<bf", buf, 28 + 5) == (1, np.float32(1.5707964))


def test_comment_header_written_and_read(tmp_path):
    write_images(tmp_path / "c.bin", np.zeros((1, 2, 2)), comments=["hello", "x y"])
    buf = (tmp_path / "c.bin").read_bytes()
    head = b"# hello\n# x y\n# END OF HEADER\n"
    assert buf.startswith(head) and ints(buf, len(head), 2) == (2, 0)
    h = read_images_header(tmp_path / "c.bin")
    assert h.comments == ("hello", "x y") and h.offset == len(head) + 32
    with pytest.raises(ConfigError):
        write_images(tmp_path / "d.bin", np.zeros((1, 2, 2)), comments=["END OF HEADER"])


def test_comment_header_pink_rules(tmp_path):
    body = struct.pack("<8i", 2, 0, 0, 1, 0, 2, 1, 1) + struct.pack("<f", 7.0)
    # without terminator: stops before the first non-'#' line
    (tmp_path / "a.bin").write_bytes(b"# one\n#two\n" + body)
    h = read_images_header(tmp_path / "a.bin")
    assert h.comments == ("one", "two") and read_images(tmp_path / "a.bin").item() == 7.0
    # '\r' is not stripped: '# END OF HEADER\r' is a comment, not the terminator
    (tmp_path / "b.bin").write_bytes(b"# END OF HEADER\r\n# END OF HEADER\n" + body)
    assert read_images_header(tmp_path / "b.bin").comments == ("END OF HEADER\r",)
    # a '#'-looking line after the terminator is binary data, not a comment
    (tmp_path / "c.bin").write_bytes(b"# END OF HEADER\n#junk\n" + body)
    with pytest.raises(FileFormatError):
        read_images(tmp_path / "c.bin")


# ------------------------------------------------------------------------------------------
# validation on read
# ------------------------------------------------------------------------------------------

def _img_bytes(*fields, payload=4):
    return struct.pack(f"<{len(fields)}i", *fields) + b"\0" * payload


@pytest.mark.parametrize("fields,field", [
    ((3, 0, 0, 1, 0, 2, 1, 1), "version"),
    ((2, 7, 0, 1, 0, 2, 1, 1), "file_type"),
    ((2, 0, 10, 1, 0, 2, 1, 1), "data_type"),
    ((2, 0, 0, -1, 0, 2, 1, 1), "n_images"),
    ((2, 0, 0, 1, 1, 2, 1, 1), "data_layout"),
    ((2, 0, 0, 1, 5, 2, 1, 1), "data_layout"),
    ((2, 0, 0, 1, 0, 0, 1, 1), "data_rank"),
    ((2, 0, 0, 1, 0, 2, 0, 1), "data_dims"),
])
def test_image_header_errors_name_the_field(tmp_path, fields, field):
    p = tmp_path / "x.bin"
    p.write_bytes(_img_bytes(*fields))
    with pytest.raises(FileFormatError) as ei:
        read_images(p)
    assert ei.value.field == field and ei.value.path == str(p)
    assert str(p) in str(ei.value)


def test_wrong_file_type_for_reader():
    with pytest.raises(FileFormatError) as ei:
        read_som(DATA / "mapA.bin")
    assert ei.value.field == "file_type" and ei.value.found == 2 and ei.value.expected == 1


def test_truncated_and_extended_payload(tmp_path):
    good = (DATA / "somA.bin").read_bytes()
    (tmp_path / "short.bin").write_bytes(good[:-1])
    with pytest.raises(TruncatedFileError) as ei:
        read_som(tmp_path / "short.bin")
    assert ei.value.field == "payload" and "truncated" in str(ei.value)
    (tmp_path / "long.bin").write_bytes(good + b"\0")
    with pytest.raises(TruncatedFileError) as ei:
        read_som(tmp_path / "long.bin")
    assert "trailing" in str(ei.value)
    (tmp_path / "head.bin").write_bytes(good[:10])
    with pytest.raises(TruncatedFileError):
        read_header(tmp_path / "head.bin")
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(TruncatedFileError):
        read_header(tmp_path / "empty.bin")


def test_absurd_dims_are_rejected(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(struct.pack("<9i", 2, 2, 0, 0, 0, 3, 2**31 - 1, 2**31 - 1, 2**31 - 1))
    with pytest.raises(FileFormatError):
        read_mapping(p)
    p.write_bytes(struct.pack("<8i", 2, 0, 0, 2**31 - 1, 0, 2, 2**31 - 1, 2**31 - 1))
    with pytest.raises(FileFormatError):
        read_images(p)
    p.write_bytes(struct.pack("<8i", 2, 0, 0, 2**31 - 1, 0, 2, 2**15, 2**15))
    with pytest.raises(TruncatedFileError):
        read_images(p)


@pytest.mark.parametrize("code,dtype", [(1, "<f8"), (2, "i1"), (6, "u1"), (7, "<u2"), (9, "<u8")])
def test_non_float32_types_are_converted(tmp_path, code, dtype):
    vals = np.arange(8).astype(dtype).reshape(2, 2, 2)
    p = tmp_path / "x.bin"
    p.write_bytes(struct.pack("<8i", 2, 0, code, 2, 0, 2, 2, 2) + vals.tobytes())
    out = read_images(p)
    assert out.dtype == torch.float32 and out.shape == (2, 1, 2, 2)
    np.testing.assert_array_equal(out[:, 0].numpy(), vals.astype(np.float32))
    assert read_images_header(p).dtype == np.dtype(dtype)


def test_hexagonal_layout_code_honoured_and_checked(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(struct.pack("<11i", 2, 1, 0, 1, 2, 3, 3, 0, 2, 1, 1) + b"\0" * 28)
    assert read_som(p)[1].layout == "hexagonal"
    p.write_bytes(struct.pack("<11i", 2, 1, 0, 1, 2, 4, 4, 0, 2, 1, 1) + b"\0" * 64)
    with pytest.raises(FileFormatError) as ei:
        read_som(p)
    assert ei.value.field == "som_dims"


def test_read_som_expected_geometry(tmp_path):
    with pytest.raises(GeometryMismatchError) as ei:
        read_som(DATA / "somA.bin", som_dims=(3, 4))
    assert ei.value.field == "som_dims" and ei.value.found == (3, 3)
    with pytest.raises(GeometryMismatchError) as ei:
        read_som(DATA / "somA.bin", neuron_shape=(2, 23, 23))
    assert ei.value.field == "neuron_shape"
    read_som(DATA / "somA.bin", som_dims=(3, 3, 1), neuron_shape=(1, 23, 23))


def test_mmap_views_are_copy_on_write(tmp_path):
    write_images(tmp_path / "a.bin", np.ones((2, 3, 3), np.float32))
    t = read_images(tmp_path / "a.bin")
    t[0] = 5.0  # no warning, no change on disk
    assert read_images(tmp_path / "a.bin").max().item() == 1.0
    assert read_images(tmp_path / "a.bin", mmap=False).sum().item() == 18.0


# ------------------------------------------------------------------------------------------
# writers: checks, overwrite, atomicity
# ------------------------------------------------------------------------------------------

def test_write_images_refuses_nonfinite(tmp_path):
    a = np.zeros((4, 2, 2), np.float32)
    a[2, 1, 1] = np.nan
    with pytest.raises(NonFiniteError, match="image 2"):
        write_images(tmp_path / "a.bin", a)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(NonFiniteError):  # float64 overflowing float32 is non-finite too
        write_images(tmp_path / "b.bin", np.full((1, 2, 2), 1e300))


def test_write_shape_checks(tmp_path):
    with pytest.raises(ShapeError):
        write_images(tmp_path / "a.bin", np.zeros((2, 2)))
    with pytest.raises(ShapeError):
        write_som(tmp_path / "s.bin", np.zeros((8, 3, 3)), (3, 3))
    with pytest.raises(ShapeError):
        write_som(tmp_path / "s.bin", np.zeros((9, 3, 3)), (3, 3), layout="hexagonal")
    with pytest.raises(ConfigError):
        write_som(tmp_path / "s.bin", np.zeros((16, 3, 3)), (4, 4), layout="hexagonal")
    with pytest.raises(ShapeError):
        write_mapping(tmp_path / "m.bin", np.zeros((2, 5)), (2, 2))
    with pytest.raises(ShapeError):
        write_transforms(tmp_path / "t.bin", np.full((1, 4), 2), np.zeros((1, 4)), (2, 2))
    assert list(tmp_path.iterdir()) == []


def test_overwrite_refusal(tmp_path):
    p = tmp_path / "a.bin"
    write_images(p, np.zeros((1, 2, 2)))
    before = p.read_bytes()
    with pytest.raises(OutputExistsError):
        write_images(p, np.ones((1, 2, 2)))
    assert p.read_bytes() == before
    write_images(p, np.ones((1, 2, 2)), overwrite=True)
    assert read_images(p).sum().item() == 4.0
    assert sorted(os.listdir(tmp_path)) == ["a.bin"]


def test_atomic_output_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "a.bin") as f:
        f.write(b"partial")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    (tmp_path / "b.bin").write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "b.bin", overwrite=True) as f:
        f.write(b"new")
        raise RuntimeError("boom")
    assert (tmp_path / "b.bin").read_bytes() == b"old" and os.listdir(tmp_path) == ["b.bin"]


def test_output_created_meanwhile_is_not_replaced(tmp_path):
    with pytest.raises(OutputExistsError), atomic_output(tmp_path / "a.bin") as f:
        f.write(b"mine")
        (tmp_path / "a.bin").write_bytes(b"theirs")
    assert (tmp_path / "a.bin").read_bytes() == b"theirs" and os.listdir(tmp_path) == ["a.bin"]


def test_single_record_transforms(tmp_path):
    write_transforms(tmp_path / "t.bin", np.ones((1, 1), np.int8), np.full((1, 1), 0.5), (1,))
    f, a, h = read_transforms(tmp_path / "t.bin")
    assert f.tolist() == [[1]] and a.tolist() == [[0.5]] and h.num_neurons == 1


def test_helpers():
    assert [hex_num_neurons(d) for d in (1, 3, 5, 7, 21)] == [1, 7, 19, 37, 331]
    assert pink_som_dims(10, 10) == (10, 10) and pink_som_dims(10) == (10,)
    assert pink_som_dims(4, 1, 3) == (4, 1)  # PINK quirk §7.3
    assert pink_som_dims(2, 3, 4) == (2, 3, 4)


# ------------------------------------------------------------------------------------------
# streaming writers
# ------------------------------------------------------------------------------------------

def test_mapping_writer_out_of_order_matches_write_mapping(tmp_path):
    d = np.random.default_rng(1).random((10, 6), dtype=np.float32)
    write_mapping(tmp_path / "ref.bin", d, (3, 2))
    with MappingWriter(tmp_path / "m.bin", 10, (3, 2)) as w:
        w.write_rows(6, d[6:])
        w.write_rows(0, torch.from_numpy(d[:3]))
        w.write_rows(3, d[3:6])
        assert not (tmp_path / "m.bin").exists()
    assert md5(tmp_path / "m.bin") == md5(tmp_path / "ref.bin")
    assert sorted(os.listdir(tmp_path)) == ["m.bin", "ref.bin"]


def test_transform_writer_and_hex(tmp_path):
    rng = np.random.default_rng(2)
    flip = rng.integers(0, 2, (5, 7)).astype(np.int8)
    ang = rng.random((5, 7), dtype=np.float32)
    write_transforms(tmp_path / "ref.bin", flip, ang, (3, 3))
    with TransformWriter(tmp_path / "t.bin", 5, (3, 3), layout="hexagonal") as w:
        w.write_rows(2, flip[2:], ang[2:])
        rec = np.empty((2, 7), [("flip", "i1"), ("angle", "<f4")])
        rec["flip"], rec["angle"] = flip[:2], ang[:2]
        w.write_rows(0, rec)
    assert md5(tmp_path / "t.bin") == md5(tmp_path / "ref.bin")
    f, a, h = read_transforms(tmp_path / "t.bin")
    assert h.layout == "hexagonal" and np.array_equal(f.numpy(), flip) and np.array_equal(a.numpy(), ang)


def test_streaming_writer_errors_and_cleanup(tmp_path):
    with pytest.raises(TruncatedFileError, match="rows never written"), \
            MappingWriter(tmp_path / "m.bin", 4, (2,)) as w:
        w.write_rows(0, np.zeros((2, 2)))
    with pytest.raises(ShapeError), MappingWriter(tmp_path / "m.bin", 4, (2,)) as w:
        w.write_rows(3, np.zeros((2, 2)))
    with pytest.raises(ShapeError), MappingWriter(tmp_path / "m.bin", 4, (2,)) as w:
        w.write_rows(0, np.zeros((2, 3)))
    assert os.listdir(tmp_path) == []
    (tmp_path / "m.bin").write_bytes(b"x")
    with pytest.raises(OutputExistsError):
        MappingWriter(tmp_path / "m.bin", 4, (2,))


def test_streaming_writer_resume(tmp_path):
    d = np.arange(12, dtype=np.float32).reshape(6, 2)
    with pytest.raises(KeyboardInterrupt), \
            MappingWriter(tmp_path / "m.bin", 6, (2,), keep_partial=True) as w:
        w.write_rows(0, d[:2])
        w.write_rows(4, d[4:])
        raise KeyboardInterrupt
    assert not (tmp_path / "m.bin").exists() and (tmp_path / ".m.bin.partial").exists()
    with pytest.raises(GeometryMismatchError):
        MappingWriter(tmp_path / "m.bin", 7, (2,), resume=True)
    w = MappingWriter(tmp_path / "m.bin", 6, (2,), resume=True)
    assert w.missing_rows().tolist() == [2, 3]
    w.write_rows(2, d[2:4])
    w.close()  # keep partial; another process commits
    with MappingWriter(tmp_path / "m.bin", 6, (2,), resume=True) as w2:
        assert w2.missing_rows().size == 0
    np.testing.assert_array_equal(read_mapping(tmp_path / "m.bin")[0].numpy(), d)
    assert os.listdir(tmp_path) == ["m.bin"]


def test_streaming_writer_shards_finish(tmp_path):
    d = np.arange(8, dtype=np.float32).reshape(4, 2)
    w1 = MappingWriter(tmp_path / "m.bin", 4, (2,))
    w1.write_rows(0, d[:2])
    assert w1.finish() is False and not (tmp_path / "m.bin").exists()
    w2 = MappingWriter(tmp_path / "m.bin", 4, (2,), resume=True)
    w2.write_rows(2, d[2:])
    assert w2.finish() is True
    np.testing.assert_array_equal(read_mapping(tmp_path / "m.bin")[0].numpy(), d)
    assert os.listdir(tmp_path) == ["m.bin"]
    w3 = MappingWriter(tmp_path / "n.bin", 4, (2,))
    with pytest.raises(TruncatedFileError):
        w3.commit()  # direct commit keeps the writer usable
    w3.write_rows(0, np.zeros((4, 2)))
    w3.commit()
    del w1, w2, w3


def test_errors_are_somtorch_errors():
    for cls in (FileFormatError, TruncatedFileError, GeometryMismatchError, ShapeError,
                NonFiniteError, OutputExistsError, ConfigError):
        assert issubclass(cls, SomtorchError)
    assert math.isclose(hex_num_neurons(5), 19)
