"""Hypothesis property tests of somtorch.io: round trips and robustness against garbage."""

from __future__ import annotations

import math
import struct
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from somtorch.errors import SomtorchError
from somtorch.io import (
    SOM,
    ImageReader,
    Mapping,
    Transform,
    hex_num_neurons,
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

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DATA = Path(__file__).parent / "data"

comment_text = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)),
                       max_size=20).filter(lambda s: s != "END OF HEADER")
comments = st.one_of(st.none(), st.lists(comment_text, min_size=1, max_size=3))


def _arr(seed, shape, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@st.composite
def lattices(draw):
    """(som_dims, layout, num_neurons): cartesian 1-3-D or hexagonal."""
    if draw(st.booleans()):
        d = draw(st.sampled_from([1, 3, 5, 7]))
        return (d, d), "hexagonal", hex_num_neurons(d)
    dims = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    return dims, "cartesian", math.prod(dims)


@SETTINGS
@given(n=st.integers(0, 4), c=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6),
       rank3=st.booleans(), com=comments, seed=st.integers(0, 2**31))
def test_images_roundtrip(n, c, h, w, rank3, com, seed):
    shape = (n, c, h, w) if rank3 or c > 1 else (n, h, w)
    a = _arr(seed, shape)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.bin"
        write_images(p, a, comments=com)
        hd = read_images_header(p)
        assert hd.n_images == n and hd.comments == tuple(com or ())
        assert hd.img_shape == ((c, h, w) if c > 1 else (h, w))
        out = read_images(p).numpy()
        np.testing.assert_array_equal(out, a.reshape(n, c, h, w))
        r = ImageReader(p)
        assert r.img_shape == (c, h, w) and len(r) == n
        # rewriting what was read reproduces the bytes
        write_images(Path(d) / "y.bin", out, comments=list(hd.comments) or None)
        assert (Path(d) / "y.bin").read_bytes() == p.read_bytes()


@SETTINGS
@given(lat=lattices(), c=st.integers(1, 3), nd=st.integers(1, 5), com=comments, seed=st.integers(0, 2**31))
def test_som_roundtrip(lat, c, nd, com, seed):
    dims, layout, n = lat
    wts = _arr(seed, (n, c, nd, nd))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "s.bin"
        write_som(p, wts, dims, layout=layout, comments=com)
        t, h = read_som(p, som_dims=dims, layout=layout if n > 1 else None)
        assert h.som_dims == dims and h.num_neurons == n and h.comments == tuple(com or ())
        # d=1 hexagonal is indistinguishable from cartesian (1 neuron): both are fine
        assert h.layout == layout or (n == 1 and h.layout == "cartesian")
        assert h.neuron_shape == ((c, nd, nd) if c > 1 else (nd, nd))
        np.testing.assert_array_equal(t.numpy(), wts)
        s = SOM(p)
        np.testing.assert_array_equal(s.weights.numpy(), wts)
        if h.layout == "cartesian":
            x, y, z = s.som_shape
            for k, key in enumerate(s):
                assert s.key_to_index(key) == k
                np.testing.assert_array_equal(s[key], wts[k] if c > 1 else wts[k, 0])  # imshow-ready
            assert s.data.shape == (c, x * nd, y * z * nd)


@SETTINGS
@given(lat=lattices(), n=st.integers(0, 5), seed=st.integers(0, 2**31))
def test_mapping_and_transform_roundtrip(lat, n, seed):
    dims, layout, nn = lat
    dist = np.abs(_arr(seed, (n, nn)))
    rng = np.random.default_rng(seed)
    flip = rng.integers(0, 2, (n, nn)).astype(np.int8)
    ang = rng.random((n, nn), dtype=np.float32) * np.float32(2 * np.pi)
    with tempfile.TemporaryDirectory() as d:
        write_mapping(Path(d) / "m.bin", dist, dims)
        out, mh = read_mapping(Path(d) / "m.bin")
        assert mh.som_dims == dims and mh.n_images == n
        if n:  # with no images a hexagonal lattice cannot be told from the payload
            np.testing.assert_array_equal(out.numpy(), dist)
            assert mh.num_neurons == nn
            m = Mapping(Path(d) / "m.bin")
            k = m.bmu(squeeze=False)
            flat_k = k[:, 0] if k.shape[1] == 1 else k[:, 0] * m.data.shape[2] + k[:, 1]
            assert flat_k.tolist() == dist.argmin(1).tolist()
        write_transforms(Path(d) / "t.bin", flip, ang, dims)
        f, a, th = read_transforms(Path(d) / "t.bin")
        assert th.n_images == n and f.shape[0] == n
        if n:
            np.testing.assert_array_equal(f.numpy(), flip)
            np.testing.assert_array_equal(a.numpy(), ang)
            assert len(list(Transform(Path(d) / "t.bin"))) == n


# ------------------------------------------------------------------------------------------
# garbage in: only SomtorchError subclasses may escape
# ------------------------------------------------------------------------------------------

SEEDS = {name: (DATA / name).read_bytes() for name in
         ("train20.bin", "two_channel20.bin", "somA.bin", "som_hex5.bin", "som_two_channel.bin",
          "mapA.bin", "map_hex5.bin", "rfA.bin", "rf_hex5.bin")}
READERS = [read_header, read_images, lambda p: read_images(p, mmap=False), read_som,
           lambda p: read_som(p, mmap=True), read_mapping, read_transforms, ImageReader, SOM,
           lambda p: SOM(p).data, Mapping, lambda p: Mapping(p).bmu(), Transform]


def _try_all(data: bytes):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "g.bin"
        p.write_bytes(data)
        for reader in READERS:
            try:
                reader(p)
            except SomtorchError:
                pass


@st.composite
def corrupted(draw):
    base = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    kind = draw(st.sampled_from(["truncate", "extend", "flip", "header_int", "prefix", "random"]))
    if kind == "truncate":
        return bytes(base[:draw(st.integers(0, len(base) - 1))])
    if kind == "extend":
        return bytes(base) + draw(st.binary(min_size=1, max_size=16))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, min(len(base), 64) - 1))
            base[i] = draw(st.integers(0, 255))
        return bytes(base)
    if kind == "header_int":
        i = draw(st.integers(0, 10))
        base[4 * i:4 * i + 4] = struct.pack("<i", draw(st.sampled_from(
            [0, -1, 1, 2, 3, 4, 9, 10, 100, 2**31 - 1, -2**31, 2**16])))
        return bytes(base)
    if kind == "prefix":
        return draw(st.sampled_from([b"#", b"# x\n", b"#\r\n", b"# END OF HEADER\n", b"##"])) + bytes(base)
    return draw(st.binary(max_size=96))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=corrupted())
def test_corrupted_files_raise_only_typed_errors(data):
    _try_all(data)


@settings(max_examples=60, deadline=None)
@given(fields=st.lists(st.integers(-3, 12), min_size=0, max_size=14), tail=st.binary(max_size=40))
def test_small_int_headers_raise_only_typed_errors(fields, tail):
    data = struct.pack(f"<{len(fields)}i", *fields) + tail
    if fields:
        data = struct.pack("<i", 2) + data[4:]  # make version right more often
    _try_all(data)
