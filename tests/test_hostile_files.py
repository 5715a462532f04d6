"""Hostile input files (issue 16): every one raises a typed somtorch error, never a crash or hang."""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest

from somtorch.annotation.store import import_pyink_results
from somtorch.errors import FileFormatError, SomtorchError
from somtorch.io import read_records
from somtorch.io.safe_pickle import MAX_DEPTH, safe_load

_reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy._core.multiarray._reconstruct
_frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # numpy._core.numeric._frombuffer


class _Reduce:
    """Pickles as ``func(*args)`` then ``BUILD state`` (to craft what NumPy would never write)."""

    def __init__(self, *rv):
        self.rv = rv

    def __reduce__(self):
        return self.rv


def _write(tmp_path, data: bytes, name="x.pkl"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


# ---------------------------------------------------------------------- 1. pickles

def test_safe_load_reads_plain_values_and_arrays(tmp_path):
    value = {"a": [1, 2.5, None, True, "s", b"raw", (3, 4)], "arr": np.arange(6, dtype=">i4").reshape(2, 3),
             "f": np.asfortranarray(np.ones((2, 3), np.float32)), "c": np.array([1 + 2j]), "b": np.array([True]),
             "k": {np.int64(3): np.float64(1.5)}, "e": np.zeros((0, 4)), "set": {1, 2}}
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        got = safe_load(_write(tmp_path, pickle.dumps(value, protocol=proto)))
        assert got["a"] == value["a"] and got["set"] == {1, 2}
        for k in ("arr", "f", "c", "b", "e"):
            assert type(got[k]) is np.ndarray and got[k].dtype == value[k].dtype
            np.testing.assert_array_equal(got[k], value[k])
        assert got["k"] == {3: 1.5} and type(next(iter(got["k"]))) is np.int64


_MARK = "somtorch_hostile_marker"


@pytest.mark.parametrize("payload", [
    # os.system via REDUCE (protocol 0)
    b"cos\nsystem\n(S'touch " + _MARK.encode() + b"'\ntR.",
    # builtins.open via STACK_GLOBAL
    b"\x80\x04\x8c\x08builtins\x8c\x04open\x93\x8c\x17" + _MARK.encode() + b"\x8c\x01w\x86R.",
    # getattr chain / eval
    b"cbuiltins\neval\n(S'1+1'\ntR.",
    # a dotted name to walk to os through an allowed module
    b"\x80\x04\x8c\x05numpy\x8c\x06os.sep\x93.",
    # bytes(n) / bytearray(n) with a huge n (an allocation, not data in the file)
    b"\x80\x02c__builtin__\nbytearray\nJ\xff\xff\xff\x7f\x85R.",
    b"\x80\x04\x8c\x08builtins\x8c\x05bytes\x93\x8a\x06\x00\x00\x00\x00\x00\x01\x85R.",
    # copyreg reconstructor (builds arbitrary classes)
    b"ccopyreg\n_reconstructor\n(ccollections\nCounter\ncbuiltins\ndict\n(dtR.",
])
def test_code_running_pickles_are_refused(tmp_path, payload, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = _write(tmp_path, payload)
    with pytest.raises(FileFormatError, match="x.pkl"):
        safe_load(p)
    with pytest.raises(FileFormatError, match="x.pkl"):
        read_records("img.bin", p, allow_pickle=True)
    with pytest.raises(FileFormatError):
        import_pyink_results(p, allow_pickle=True)
    assert not os.path.exists(tmp_path / _MARK)


def _hostile_arrays():
    f8 = np.dtype("f8")
    yield _Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (10**12, 10**12), f8, False, b"\0" * 8))
    yield _Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (4,), f8, False, b"\0" * 8))  # short buffer
    yield _Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), f8, False, b"\0" * 80))  # long buffer
    yield _Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (-1, 2), f8, False, b""))
    yield _Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (2,), np.dtype(object), False, [print, os]))
    yield _Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), np.dtype([("a", "f8")]), False, b"\0" * 8))
    yield _Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), "f8", False, b"\0" * 8))  # not a dtype
    yield _Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (7, 1, 2))
    yield _Reduce(_reconstruct, (np.ma.MaskedArray, (0,), b"b"), (1, (1,), f8, False, b"\0" * 8))
    yield _Reduce(_reconstruct, (np.ndarray, (0,), b"b"), None)  # never built
    yield _Reduce(_frombuffer, (bytearray(8), f8, (10**9,), "C"))
    yield _Reduce(_frombuffer, (bytearray(8), f8, (1,), "Z"))
    yield _Reduce(np.dtype, ("O8", False, True))
    yield _Reduce(np.dtype, ("f8", False, True), (3, "<", (np.dtype("f8"), (2,)), None, None, -1, -1, 0))
    yield _Reduce(np.dtype, ("f8", False, True), (3, "?", None, None, None, -1, -1, 0))
    yield np.ma.masked_array([1.0])
    yield np.array(["a"])
    yield np.array([object()], dtype=object)


@pytest.mark.parametrize("obj", list(_hostile_arrays()))
def test_crafted_numpy_pickles_are_refused(tmp_path, obj):
    for proto in (2, 4, 5):
        try:
            data = pickle.dumps([obj], protocol=proto)
        except Exception:  # noqa: BLE001 - some crafts cannot be written with every protocol
            continue
        with pytest.raises(FileFormatError, match="refused|not a readable pickle"):
            safe_load(_write(tmp_path, data))


def test_crafted_pickle_streams_are_refused(tmp_path):
    # memo index 2**32-1: the C unpickler would allocate 32 GiB for it; this one does not
    assert safe_load(_write(tmp_path, b"\x80\x04N\x94r\xff\xff\xff\xff.")) is None
    bad = [
        b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b".",  # BINBYTES8 claiming 4 EiB
        b"\x80\x04\x95" + struct.pack("<Q", 2**62) + b"N.",  # a frame claiming 4 EiB
        b"\x80\x04h\x07.",  # memo get of nothing
        b"\x80\x04" + b"]" * (MAX_DEPTH + 50) + b"a" * (MAX_DEPTH + 49) + b".",  # nested too deep
        b"",
        b"\x80\x09N.",
        b"\x80\x04Q.",  # persistent id
        b"\x80\x04\x82\x01.",  # extension code
    ]
    for data in bad:
        with pytest.raises(FileFormatError):
            safe_load(_write(tmp_path, data))


def test_shared_references_are_walked_once(tmp_path):
    t = ()
    for _ in range(MAX_DEPTH - 2):
        t = (t, t)  # 2**98 paths through a 98-level DAG: a walk without memo would never end
    lst = []
    for _ in range(MAX_DEPTH - 2):
        lst = [lst, lst]
    got = safe_load(_write(tmp_path, pickle.dumps((t, lst), protocol=4)))
    assert got[0][0][0] is got[0][0][1] and got[1][0] is got[1][1]


def test_pickle_fuzz_never_escapes(tmp_path):
    rng = np.random.default_rng(16)
    good = pickle.dumps({"a": [np.arange(5.0), np.int32(3), "x", (1, None)]}, protocol=4)
    for i in range(200):
        b = bytearray(good)
        if i % 2:
            b = b[:rng.integers(0, len(b))]
        else:
            for _ in range(rng.integers(1, 4)):
                b[rng.integers(len(b))] = rng.integers(256)
        try:
            safe_load(_write(tmp_path, bytes(b)))
        except SomtorchError:
            pass


# ---------------------------------------------------------------------- 2. annotation archives

def _saved_annotations(tmp_path):
    from somtorch.annotation import Annotation, AnnotationSet

    s = AnnotationSet(["core", "lobe"])
    a = Annotation(np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6))
    m = np.zeros((6, 6), bool)
    m[1:3, 1:4] = True
    a.add_mask(1, m, 6)
    s[3] = a
    s[5] = Annotation(np.ones((2, 6, 6)), base={0: np.full((6, 6), 2)})
    p = tmp_path / "som.annotations.npz"
    s.save(p, keep=0)
    return p


def test_annotation_archive_fuzz_raises_only_typed_errors(tmp_path):
    from somtorch.annotation import AnnotationSet

    good = _saved_annotations(tmp_path).read_bytes()
    rng = np.random.default_rng(1616)
    bad = tmp_path / "bad.annotations.npz"
    loaded = refused = 0
    for i in range(200):
        b = bytearray(good)
        if i % 3 == 0:
            b = b[:rng.integers(0, len(b))]
        else:
            for _ in range(rng.integers(1, 6)):
                b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
        bad.write_bytes(bytes(b))
        try:
            AnnotationSet.load(bad)
            loaded += 1
        except SomtorchError as e:
            assert "bad.annotations.npz" in str(e)
            refused += 1
    assert refused > 100


def _npz_with(tmp_path, members: dict):
    import zipfile

    p = tmp_path / "crafted.npz"
    with zipfile.ZipFile(p, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return p


def _npy_header(shape, descr="<f4"):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_annotation_archive_crafted_members(tmp_path):
    import json

    from somtorch.annotation import AnnotationSet
    from somtorch.annotation.store import FORMAT, FORMAT_VERSION

    def meta(**kw):
        d = {"format": FORMAT, "version": FORMAT_VERSION, "labels": [], "neurons": []}
        d.update(kw)
        return _npy_header((len(json.dumps(d)),), "|u1") + json.dumps(d).encode()

    cases = {
        "no meta": {"x.npy": _npy_header((1,)) + b"\0" * 4},
        "huge shape": {"meta.npy": meta(neurons=[{"index": 0, "regions": []}]),
                       "neuron_0.npy": _npy_header((10**6, 10**6, 10**6)) + b"\0" * 64},
        "object dtype": {"meta.npy": _npy_header((2,), "|O") + b"\0" * 16},
        "deep meta": {"meta.npy": _npy_header((20000,), "|u1") + b"[" * 10000 + b"]" * 10000},
        "meta not an object": {"meta.npy": meta()[:0] + _npy_header((2,), "|u1") + b"[]"},
        "bad neurons": {"meta.npy": meta(neurons=[{"index": "x"}])},
        "missing neuron": {"meta.npy": meta(neurons=[{"index": 4, "regions": []}])},
        "bad region": {"meta.npy": meta(neurons=[{"index": 0, "regions": [{"kind": "mask", "channel": 9,
                                                                            "value": 2**80}]}]),
                       "neuron_0.npy": _npy_header((1, 2, 2)) + b"\0" * 16,
                       "masks_0.npy": _npy_header((1, 1), "|u1") + b"\xff"},
        "not a zip": {},
    }
    for name, members in cases.items():
        p = _npz_with(tmp_path, members)
        if name == "not a zip":
            p.write_bytes(b"PK\x03\x04 not really")
        with pytest.raises(FileFormatError, match="crafted.npz"):
            AnnotationSet.load(p)


# ---------------------------------------------------------------------- 3. records JSON

def test_records_json_depth_and_size_are_limited(tmp_path, monkeypatch):
    import somtorch.io.records as records
    from somtorch.io import write_records

    p = tmp_path / "img.bin.records.json"
    for depth in (records.MAX_RECORDS_DEPTH + 1, 100_000):
        p.write_text("[" * depth + "]" * depth)
        with pytest.raises(FileFormatError, match=r"img\.bin\.records\.json.*nested deeper"):
            read_records(tmp_path / "img.bin")
    deep = [0]
    for _ in range(99):
        deep = [deep]
    write_records(p, [deep], overwrite=True)  # the deepest write_records accepts reads back
    assert read_records(tmp_path / "img.bin") == [deep]
    monkeypatch.setattr(records, "MAX_RECORDS_BYTES", 10)
    with pytest.raises(FileFormatError, match="at most 10 bytes"):
        read_records(tmp_path / "img.bin")


# ---------------------------------------------------------------------- 4. PINK headers claiming huge sizes

def _pink_headers(tmp_path):
    """Files whose headers announce huge payloads (84.6 TB and more) over a 64-byte payload."""
    ints = lambda *v: struct.pack(f"<{len(v)}i", *v)  # noqa: E731
    pad = b"\0" * 64
    files = {
        "img.bin": ints(2, 0, 0, 2**31 - 1, 0, 3, 3, 2000, 2000) + pad,
        "som.bin": ints(2, 1, 0, 0, 2, 2**20, 2**20, 0, 3, 3, 100, 100) + pad,
        "map.bin": ints(2, 2, 0, 2**31 - 1, 0, 2, 1000, 1000) + pad,
        "tr.bin": ints(2, 3, 2**31 - 1, 0, 2, 1000, 1000) + pad,
        "modest.bin": ints(2, 0, 0, 1000, 0, 2, 100, 100) + pad,  # 40 MB announced: plain truncation
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


def test_pink_headers_claiming_huge_sizes_are_refused_before_allocating(tmp_path):
    from somtorch.io import (
        ImageReader,
        read_header,
        read_images,
        read_mapping,
        read_som,
        read_transforms,
    )

    d = _pink_headers(tmp_path)
    for fn, name in [(read_images, "img.bin"), (read_som, "som.bin"), (read_mapping, "map.bin"),
                     (read_transforms, "tr.bin"), (ImageReader, "img.bin"), (read_header, "som.bin")]:
        with pytest.raises(FileFormatError, match=name + r".*field 'payload'.*absurd"):
            fn(d / name)
    with pytest.raises(FileFormatError, match=r"modest\.bin.*truncated"):
        read_images(d / "modest.bin", mmap=False)


def test_pink_readers_refuse_payloads_larger_than_memory(tmp_path, monkeypatch):
    import somtorch.io.pink as pink
    from somtorch.io import read_images, read_som, write_images, write_som

    write_images(tmp_path / "i.bin", np.ones((4, 1, 8, 8), np.float32))
    write_som(tmp_path / "s.bin", np.ones((4, 1, 8, 8), np.float32), (2, 2))
    monkeypatch.setattr(pink, "_physical_memory", lambda: 100)
    with pytest.raises(FileFormatError, match=r"i\.bin.*too large to load"):
        read_images(tmp_path / "i.bin", mmap=False)
    assert read_images(tmp_path / "i.bin").shape == (4, 1, 8, 8)  # memory-mapped: fine
    with pytest.raises(FileFormatError, match=r"s\.bin.*too large to load"):
        read_som(tmp_path / "s.bin")


def test_pink_dropin_refuses_huge_headers(tmp_path, capsys):
    from somtorch.pink import main

    d = _pink_headers(tmp_path)
    assert main(["--train", str(d / "img.bin"), str(d / "out.som"), "--som-width", "3", "--som-height", "3",
                 "--num-iter", "1"]) == 1
    out = capsys.readouterr().out
    assert "img.bin" in out and "absurd" in out and "Program was aborted." in out
    assert not (d / "out.som").exists()


# ---------------------------------------------------------------------- 5. FIFOs and special files

@pytest.mark.skipif(not hasattr(os, "mkfifo") or not hasattr(os, "fork"), reason="needs FIFOs and SIGALRM")
def test_fifos_and_folders_are_refused_without_blocking(tmp_path):
    import signal

    from somtorch.annotation import AnnotationSet
    from somtorch.cli.common import read_json
    from somtorch.data import read_catalogue, read_fits_image
    from somtorch.errors import NotRegularFileError
    from somtorch.io import read_header, read_images, read_mapping, read_som, read_transforms

    fifo = tmp_path / "input.fifo"
    os.mkfifo(fifo)
    os.mkfifo(tmp_path / "input.fifo.pkl")
    readers = [read_images, read_som, read_mapping, read_transforms, read_header, AnnotationSet.load,
               read_json, safe_load, read_catalogue, read_fits_image,
               lambda p: read_records("x.bin", p),
               lambda p: read_records("x.bin", str(p) + (".pkl" if p == fifo else ""), allow_pickle=True)]

    def hung(signum, frame):
        raise AssertionError("a reader blocked on a FIFO")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        for reader in readers:
            for target in (fifo, tmp_path):
                with pytest.raises(NotRegularFileError, match=r"expected a regular file"):
                    reader(target)
        with pytest.raises(NotRegularFileError, match=r"input\.fifo.*a FIFO"):
            read_images(fifo)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_pink_dropin_refuses_a_fifo_as_data(tmp_path, capsys):
    from somtorch.pink import main

    os.mkfifo(tmp_path / "data.bin")
    assert main(["--train", str(tmp_path / "data.bin"), str(tmp_path / "out.som"), "--som-width", "3",
                 "--som-height", "3"]) == 1
    out = capsys.readouterr().out
    assert "data.bin" in out and "a FIFO" in out and "Program was aborted." in out


# ---------------------------------------------------------------------- 6. missing files and folders

def test_missing_inputs_raise_the_projects_error(tmp_path):
    from somtorch.annotation import AnnotationSet
    from somtorch.data import read_catalogue, read_fits_image, run_preprocessing
    from somtorch.errors import MissingFileError
    from somtorch.io import Mapping, Transform, read_images, read_mapping, read_som

    gone = tmp_path / "gone.bin"
    for reader in (read_images, read_som, read_mapping, Mapping, Transform, AnnotationSet.load, read_catalogue,
                   read_fits_image, safe_load, lambda p: read_records("x.bin", p)):
        with pytest.raises(MissingFileError, match=r"gone\.bin.*file not found") as ei:
            reader(gone)
        assert isinstance(ei.value, FileNotFoundError) and ei.value.filename == str(gone)
    cat = tmp_path / "cat.csv"
    cat.write_text("Component_name,File_name\na,a.fits\n")
    with pytest.raises(MissingFileError, match=r"nowhere.*image_dir"):
        run_preprocessing(catalogue=cat, image_dir=tmp_path / "nowhere", output=str(tmp_path / "o.bin"),
                          progress=False)


# ---------------------------------------------------------------------- 7. catalogue paths leaving the image folder

@pytest.mark.parametrize("fname", ["../secret.fits", "sub/../../secret.fits", "/etc/passwd", "./../x.fits"])
def test_catalogue_paths_are_confined_to_the_image_folder(tmp_path, fname):
    from somtorch.data import run_preprocessing
    from somtorch.errors import UnsafePathError

    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    cat = tmp_path / "cat.csv"
    cat.write_text(f"Component_name,File_name\nok,sub/a.fits\nbad,{fname}\n")
    with pytest.raises(UnsafePathError, match=r"cat\.csv: row 1, column 'File_name'.*outside the image folder"):
        run_preprocessing(catalogue=cat, image_dir=images, output=str(tmp_path / "o.bin"), progress=False)
    assert not (tmp_path / "o.bin").exists()


def test_process_entry_refuses_paths_outside_the_image_folder(tmp_path):
    from somtorch.data.run import PreprocessConfig, _spec, process_entry
    from somtorch.errors import UnsafePathError

    spec = _spec(PreprocessConfig(catalogue=tmp_path / "cat.csv", image_dir=str(tmp_path)))
    with pytest.raises(UnsafePathError, match="outside the image folder"):
        process_entry({"files": ["../x.fits"], "ra": 0.0, "dec": 0.0}, spec)


# ---------------------------------------------------------------------- 8. transform records

@pytest.mark.parametrize("field,value,match", [("flip", 7, r"record \[2, 1\] flip.*found 7, expected 0 or 1"),
                                               ("flip", -1, r"record \[2, 1\] flip"),
                                               ("angle", np.nan, r"record \[2, 1\] angle.*finite"),
                                               ("angle", np.inf, r"record \[2, 1\] angle.*finite")])
def test_transform_records_are_validated_on_read(tmp_path, field, value, match):
    from somtorch.io import Transform, read_transforms, write_transforms
    from somtorch.io.pink import TRANSFORM_DTYPE

    p = tmp_path / "t.bin"
    h = write_transforms(p, np.zeros((4, 6), np.int8), np.full((4, 6), 0.5, np.float32), (2, 3))
    rec = np.fromfile(p, TRANSFORM_DTYPE, offset=h.offset).reshape(4, 6)
    rec[2, 1][field] = value
    with open(p, "r+b") as f:
        f.seek(h.offset)
        f.write(rec.tobytes())
    for reader in (read_transforms, Transform):
        with pytest.raises(FileFormatError, match=r"t\.bin: field '" + match):
            reader(p)


# ---------------------------------------------------------------------- 9. mapping and rotation/flip to one file

def _small_som(tmp_path):
    import torch

    import somtorch

    somtorch.write_images(tmp_path / "imgs.bin", torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    som = somtorch.RotationInvariantSOM(somtorch.Lattice("cartesian", (2, 2)), somtorch.SOMGeometry(8, numrot=4),
                                        init="random", seed=1)
    som.save_pink(tmp_path / "som.bin")
    return som


def test_mapper_refuses_one_file_for_mapping_and_transforms(tmp_path):
    import somtorch
    from somtorch.errors import ConfigError

    som = _small_som(tmp_path)
    before = sorted(os.listdir(tmp_path))
    for second in (tmp_path / "out.bin", tmp_path / "sub" / ".." / "out.bin"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(ConfigError, match=r"out\.bin.*already open for a MappingWriter"):
            somtorch.Mapper(som).map_to_files(tmp_path / "imgs.bin", tmp_path / "out.bin", second)
        assert sorted(f for f in os.listdir(tmp_path) if f != "sub") == before  # no partial files left
    somtorch.Mapper(som).map_to_files(tmp_path / "imgs.bin", tmp_path / "m.bin", tmp_path / "t.bin")
    assert len(somtorch.Transform(tmp_path / "t.bin")) == 6


def test_pink_dropin_refuses_one_file_for_map_and_rot_flip(tmp_path, capsys):
    from somtorch.pink import main

    _small_som(tmp_path)
    out = tmp_path / "same.bin"
    rc = main(["--map", str(tmp_path / "imgs.bin"), str(out), str(tmp_path / "som.bin"), "--som-width", "2",
               "--som-height", "2", "--neuron-dimension", "8", "--numrot", "4", "--store-rot-flip", str(out)])
    text = capsys.readouterr().out
    assert rc == 1 and "--store-rot-flip" in text and "same.bin" in text and "Program was aborted." in text
    assert "Starting mapping" not in text
    assert not out.exists() and not any(f.startswith(".same") for f in os.listdir(tmp_path))
