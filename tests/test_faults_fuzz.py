"""Mutation fuzzers for every reader of files a user hands to somtorch.

Each reader gets a valid seed file and mutations of it (truncations, bit and byte flips, inserted
and deleted runs, header integers set to extreme values, spliced garbage). Whatever the bytes,
a reader either returns or raises a :class:`~somtorch.errors.SomtorchError` naming the file --
never a builtin exception, a crash, a hang or a huge allocation (each call is timed).

Default suite: ``FUZZ_SHORT`` mutations per reader; slow suite (``SOMTORCH_SLOW=1``):
``FUZZ_LONG`` (see ``benchmarks/bench_faults.py`` for the recorded figures).
"""

from __future__ import annotations

import json
import pickle
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from somtorch.errors import SomtorchError

DATA = Path(__file__).parent / "data"
FUZZ_SHORT = 60
FUZZ_LONG = 1500
MAX_CALL_S = 10.0


# ------------------------------------------------------------------ seeds and readers
def _seed_records(d: Path) -> tuple[Path, callable]:
    from somtorch.io import read_records

    p = d / "img.bin.records.json"
    p.write_text(json.dumps([{"name": f"J{i:04d}", "ra": 10.0 + i, "dec": -3.5, "flags": [i, {"a": None}]}
                             for i in range(6)]))
    return p, lambda f: read_records(d / "img.bin", record_path=f)


def _seed_pickle(d: Path):
    from somtorch.io.safe_pickle import safe_load

    p = d / "results.pkl"
    obj = {"records": [{"name": "J0001", "ra": 1.5, "idx": np.int64(3)}],
           "arr": np.arange(12, dtype=np.float32).reshape(3, 4), "t": (1, 2.5, "x", None), "b": b"\x00\x01"}
    p.write_bytes(pickle.dumps(obj, protocol=2))
    return p, lambda f: safe_load(f, "results")


def _seed_annotations(d: Path):
    from somtorch.annotation import Annotation, AnnotationSet

    s = AnnotationSet(["core", "lobe"])
    a = Annotation(np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6))
    m = np.zeros((6, 6), bool)
    m[1:3, 1:4] = True
    a.add_mask(1, m, 6)
    s[3] = a
    s[5] = Annotation(np.ones((2, 6, 6)), base={0: np.full((6, 6), 2)})
    p = d / "som.annotations.npz"
    s.save(p, keep=0)
    return p, AnnotationSet.load


def _seed_checkpoint(d: Path):
    from somtorch.engine import RotationInvariantSOM, SOMGeometry, Trainer
    from somtorch.geometry import Lattice

    som = RotationInvariantSOM(Lattice("cartesian", (2, 2)), SOMGeometry(8, numrot=4), init="random", seed=1)
    tr = Trainer(som, num_iter=1, batch_size=2, metrics_sample=0, checkpoint_path=str(d / "ckpt.pt"))
    tr.stop_after = 2
    with pytest.raises(KeyboardInterrupt):
        tr.fit(torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    return d / "ckpt.pt", Trainer.load_checkpoint


def _seed_manifest(d: Path):
    from somtorch.io.identity import file_identity, read_manifest

    p = d / ".m.bin.partial.json"
    p.write_text(json.dumps({"images": file_identity(DATA / "train20.bin"), "som_config": {"a": [1, 2]}}))
    return p, read_manifest


def _seed_catalogue(d: Path):
    from somtorch.data import read_catalogue

    p = d / "cat.csv"
    p.write_text("Component_name,RA,DEC,Total_flux\n" + "".join(f"C{i},{i * 1.5},{-i * 0.5},{i * 0.1}\n"
                                                                  for i in range(8)))
    return p, lambda f: read_catalogue(f, id_column="Component_name")


def _seed_fits(d: Path):
    from astropy.io import fits
    from astropy.wcs import WCS

    from somtorch.data.fits import read_fits_image

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [8, 8]
    w.wcs.cdelt = [-0.001, 0.001]
    p = d / "img.fits"
    fits.PrimaryHDU(np.random.default_rng(0).random((16, 16)).astype(np.float32), header=w.to_header()).writeto(p)
    return p, read_fits_image


def _pink_readers():
    from somtorch.io import (
        SOM,
        ImageReader,
        Mapping,
        Transform,
        read_header,
        read_images,
        read_mapping,
        read_som,
        read_transforms,
    )

    return [read_header, read_images, lambda p: read_images(p, mmap=False), read_som, lambda p: read_som(p, mmap=True),
            read_mapping, read_transforms, ImageReader, SOM, lambda p: SOM(p).data, Mapping,
            lambda p: Mapping(p).bmu(), Transform]


def _pink_seed(name):
    def make(d: Path):
        p = d / name
        p.write_bytes((DATA / name).read_bytes())
        readers = _pink_readers()

        def read_all(f):
            errors = []
            for r in readers:  # every PINK reader sees every mutation
                try:
                    r(f)
                except SomtorchError as e:
                    errors.append(e)
            if errors and len(errors) == len(readers):
                raise errors[0]
        return p, read_all
    return make


READERS = {
    "pink_images": _pink_seed("train20.bin"), "pink_som": _pink_seed("somA.bin"),
    "pink_mapping": _pink_seed("mapA.bin"), "pink_transform": _pink_seed("rfA.bin"),
    "records_json": _seed_records, "pyink_pickle": _seed_pickle, "annotation_archive": _seed_annotations,
    "checkpoint": _seed_checkpoint, "inputs_record": _seed_manifest, "catalogue_csv": _seed_catalogue,
    "fits_image": _seed_fits,
}


# ------------------------------------------------------------------ mutations
def mutate(good: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(good)
    kind = int(rng.integers(7))
    if kind == 0 and b:  # truncate
        return bytes(b[:int(rng.integers(0, len(b)))])
    if kind == 1:  # bit flips, mostly near the start (headers)
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(0, min(len(b), 256) if rng.random() < 0.7 else len(b)))
            b[i] ^= 1 << int(rng.integers(8))
        return bytes(b)
    if kind == 2:  # random bytes
        for _ in range(int(rng.integers(1, 33))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        return bytes(b)
    if kind == 3:  # extreme integer written at a 4-byte aligned offset in the first 128 bytes
        i = 4 * int(rng.integers(0, min(len(b), 128) // 4))
        v = int(rng.choice([0, -1, 1, 2, 3, 255, 2**16, 2**31 - 1, -2**31]))
        b[i:i + 4] = struct.pack("<i", v)
        return bytes(b)
    if kind == 4:  # delete a run
        i = int(rng.integers(len(b)))
        return bytes(b[:i] + b[i + int(rng.integers(1, 64)):])
    if kind == 5:  # insert garbage
        i = int(rng.integers(len(b) + 1))
        return bytes(b[:i] + rng.bytes(int(rng.integers(1, 64))) + b[i:])
    return rng.bytes(int(rng.integers(0, 200)))  # pure garbage


def fuzz(name: str, n: int, folder: Path, seed: int = 0) -> dict:
    """``n`` mutations of reader ``name``'s seed file; returns counts (read, refused, slowest_s)."""
    folder.mkdir(parents=True, exist_ok=True)
    path, reader = READERS[name](folder)
    good = path.read_bytes()
    reader(path)  # the seed itself is valid
    rng = np.random.default_rng(seed)
    bad = path.with_name("fuzzed_" + path.name)
    counts = {"reader": name, "files": 0, "read": 0, "refused": 0, "slowest_s": 0.0}
    for _ in range(n):
        bad.write_bytes(mutate(good, rng))
        t0 = time.perf_counter()
        try:
            reader(bad)
            counts["read"] += 1
        except SomtorchError as e:
            assert bad.name in str(e) or "fuzzed_" in str(e) or name.startswith("pink"), (name, str(e)[:300])
            counts["refused"] += 1
        dt = time.perf_counter() - t0
        counts["slowest_s"] = max(counts["slowest_s"], dt)
        assert dt < MAX_CALL_S, (name, dt)
        counts["files"] += 1
    return counts


@pytest.mark.parametrize("name", sorted(READERS))
def test_fuzz_reader_short(name, tmp_path):
    c = fuzz(name, FUZZ_SHORT, tmp_path)
    assert c["files"] == FUZZ_SHORT and c["refused"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(READERS))
def test_fuzz_reader_long(name, tmp_path):
    c = fuzz(name, FUZZ_LONG, tmp_path, seed=1)
    assert c["files"] == FUZZ_LONG and c["refused"] > 0


def test_pickle_announcing_a_huge_bytearray_is_refused_without_allocating(tmp_path):
    """Found by the long fuzzer: BYTEARRAY8 allocates its announced length before reading, so a
    500-byte pickle could make the reader zero 4 GB (12 s); the length is now checked first."""
    from somtorch.io.safe_pickle import safe_load

    p = tmp_path / "huge.pkl"
    p.write_bytes(b"\x80\x05\x96" + struct.pack("<Q", 1 << 40) + b"abc." )
    t0 = time.perf_counter()
    with pytest.raises(SomtorchError, match=r"huge.pkl.*BYTEARRAY8 announces 1099511627776 bytes, 4 left"):
        safe_load(p)
    assert time.perf_counter() - t0 < 1.0
    p.write_bytes(b"\x80\x05\x96" + struct.pack("<Q", 3) + b"abc.")  # an honest one still loads
    assert safe_load(p) == bytearray(b"abc")
