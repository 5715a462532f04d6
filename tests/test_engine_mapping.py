"""Mapping through the Python API (:class:`somtorch.engine.Mapper`).

* every golden mapping PINK 2.5 wrote (``tests/data``, commands in ``manifest.json``) is reproduced:
  distances within 1e-4 relative, flips/angles identical except where PINK's and our choice tie
  (re-evaluated with PINK's exact arithmetic); with ``tie_break="pink"`` the transform files are
  byte-identical;
* streaming: ``map_to_files`` with a small batch gives byte-identical files to one big batch, to
  in-memory mapping, and to two shards; the input is read from a memory map, batch by batch, so
  memory does not depend on the number of images;
* ``precision_agreement`` reports the BMU/transform agreement of a lower precision.
(The PINK command line is checked on the same files by ``test_cli_pink.py``.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from somtorch.engine import Mapper, RotationInvariantSOM, SOMGeometry, precision_agreement
from somtorch.engine.data import ImageSource
from somtorch.geometry import Lattice, flip_angle_to_index
from somtorch.io import (
    read_images,
    read_images_header,
    read_mapping,
    read_som,
    read_transforms,
    write_images,
)

DATA = Path(__file__).parent / "data"
MD5 = json.loads((DATA / "manifest.json").read_text())["md5"]

# name: (images, som, lattice, numrot, distance shape, mapping file, transform file)
GOLDEN = {
    "A": ("train20.bin", "somA.bin", Lattice("cartesian", (3, 3)), 4, "quadratic", "mapA.bin", "rfA.bin"),
    "B": ("train20.bin", "somB.bin", Lattice("cartesian", (3, 3)), 4, "quadratic", "mapB.bin", "rfB.bin"),
    "D": ("train20.bin", "somD.bin", Lattice("cartesian", (3, 3)), 8, "quadratic", "mapD.bin", "rfD.bin"),
    "blobs64": ("blobs64.bin", "som_blobs64.bin", Lattice("cartesian", (4, 4)), 360, "quadratic",
                "map_blobs64.bin", "rf_blobs64.bin"),
    "blobs64_circ": ("blobs64.bin", "som_blobs64.bin", Lattice("cartesian", (4, 4)), 360, "circular",
                     "map_blobs64_circ.bin", "rf_blobs64_circ.bin"),
    "hex5": ("blobs24.bin", "som_hex5.bin", Lattice("hexagonal", (5,)), 8, "quadratic",
             "map_hex5.bin", "rf_hex5.bin"),
}


def _md5(path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _golden_som(name: str, **kw) -> tuple[RotationInvariantSOM, torch.Tensor]:
    images, som_file, lat, numrot, shape, _, _ = GOLDEN[name]
    imgs = read_images(DATA / images)
    geo = SOMGeometry(imgs.shape[-1], imgs.shape[1], numrot=numrot, distance_shape=shape, convention="pink")
    som = RotationInvariantSOM.from_pink_file(DATA / som_file, lat, geo, **kw)
    return som, imgs


def _transform_index(flip, angle, numrot) -> torch.Tensor:
    return flip_angle_to_index(torch.as_tensor(flip), torch.as_tensor(angle), numrot)


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_mapping_reproduced_except_near_ties(name, tmp_path):
    images, _, lat, numrot, _, map_file, rf_file = GOLDEN[name]
    assert _md5(DATA / map_file) == MD5[map_file] and _md5(DATA / rf_file) == MD5[rf_file]
    som, imgs = _golden_som(name, tie_break="none")
    res = Mapper(som, batch_size=16).map(DATA / images)
    ref, _ = read_mapping(DATA / map_file)
    assert res.distances.shape == ref.shape == (len(imgs), lat.num_neurons)
    np.testing.assert_allclose(res.distances.numpy(), ref.numpy(), rtol=1e-4, atol=1e-6)
    fg, ag, _ = read_transforms(DATA / rf_file)
    t_gold = _transform_index(fg, ag, numrot)
    bad = torch.nonzero(res.transform_index != t_gold)
    # mismatches are allowed only where both choices give the same distance (a tie PINK breaks by
    # its own float rounding); re-evaluate them with PINK's exact arithmetic
    exact, _ = _golden_som(name, arithmetic="pink")
    for i, n in bad.tolist():
        dsq = exact.sq_distances(imgs[i:i + 1])[0, :, n]
        assert float(dsq[res.transform_index[i, n]]) == pytest.approx(float(dsq[t_gold[i, n]]), rel=1e-5), (i, n)
    assert len(bad) <= 0.02 * t_gold.numel()
    # the BMU of every image agrees (best distances are far from ties on these data)
    assert torch.equal(res.bmu, ref.argmin(dim=1))


@pytest.mark.parametrize("name", ["A", "B", "D", "hex5"])
def test_golden_transform_files_byte_identical_with_pink_tie_break(name, tmp_path):
    images, _, _, _, _, map_file, rf_file = GOLDEN[name]
    som, _ = _golden_som(name, tie_break="pink")
    out = Mapper(som).map_to_files(DATA / images, tmp_path / "map.bin", tmp_path / "rf.bin")
    assert out["n_images"] == len(read_images(DATA / images))
    assert _md5(tmp_path / "rf.bin") == MD5[rf_file]
    a, ha = read_mapping(tmp_path / "map.bin")
    b, hb = read_mapping(DATA / map_file)
    assert (tmp_path / "map.bin").stat().st_size == (DATA / map_file).stat().st_size
    assert ha.som_dims == hb.som_dims
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)


def test_pink_arithmetic_mapping_bit_exact():
    """``arithmetic="pink"`` gives PINK's distances to the last bit (spec §9.1 c)."""
    som, imgs = _golden_som("D", arithmetic="pink")
    res = Mapper(som).map(imgs)
    ref, _ = read_mapping(DATA / "mapD.bin")
    assert torch.equal(res.distances, ref)
    fg, ag, _ = read_transforms(DATA / "rfD.bin")
    assert torch.equal(res.flip, fg) and torch.equal(res.angle, ag)


def test_spec_first_image_values():
    """Spec §9.2: image 0 of mapping B (distances, flips, angles) and the BMU of every image."""
    som, imgs = _golden_som("B")
    res = Mapper(som).map(imgs)
    np.testing.assert_allclose(res.distances[0].numpy(), [3.4566617, 3.2884872, 3.1809497, 3.3485913,
                               3.2587247, 3.2469978, 3.2170098, 3.0126815, 3.3964529], rtol=1e-6)
    assert res.flip[0].tolist() == [1, 0, 0, 1, 1, 0, 1, 1, 0]
    np.testing.assert_allclose(res.angle[0].numpy(), [4.712389, 1.5707964, 0, 0, 4.712389, 1.5707964,
                               1.5707964, 1.5707964, 4.712389], rtol=1e-7)
    assert res.bmu.tolist() == [7, 7, 4, 5, 4, 4, 7, 4, 4, 5, 4, 5, 4, 4, 8, 4, 4, 3, 5, 4]


# --------------------------------------------------------------------------------------------
# streaming, batching, memory maps
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stream_case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stream")
    g = torch.Generator().manual_seed(5)
    imgs = torch.rand(37, 1, 12, 12, generator=g)
    path = tmp / "imgs.bin"
    write_images(path, imgs)
    som = RotationInvariantSOM(Lattice("cartesian", (3, 2)), SOMGeometry(12, numrot=8, convention="pink"), init="random", seed=2)
    return tmp, path, imgs, som


def test_small_batches_give_identical_files(stream_case, tmp_path):
    _, path, imgs, som = stream_case
    Mapper(som, batch_size=3).map_to_files(path, tmp_path / "m3.bin", tmp_path / "t3.bin")
    Mapper(som, batch_size=1000).map_to_files(path, tmp_path / "mall.bin", tmp_path / "tall.bin")
    assert (tmp_path / "m3.bin").read_bytes() == (tmp_path / "mall.bin").read_bytes()
    assert (tmp_path / "t3.bin").read_bytes() == (tmp_path / "tall.bin").read_bytes()
    # and equal to in-memory mapping of the tensor
    res = Mapper(som).map(imgs)
    d, _ = read_mapping(tmp_path / "m3.bin")
    fl, an, _ = read_transforms(tmp_path / "t3.bin")
    assert torch.equal(d, res.distances)
    assert torch.equal(fl, res.flip) and torch.equal(an, res.angle)


def test_sharded_mapping_equals_single_run(stream_case, tmp_path):
    _, path, _, som = stream_case
    m = Mapper(som, batch_size=4)
    m.map_to_files(path, tmp_path / "one.bin", tmp_path / "one_t.bin")
    a = m.map_to_files(path, tmp_path / "sh.bin", tmp_path / "sh_t.bin", rows=range(0, 20))
    assert a["n_images"] == 37
    assert not (tmp_path / "sh.bin").exists()  # incomplete: not published yet
    m.map_to_files(path, tmp_path / "sh.bin", tmp_path / "sh_t.bin", rows=range(20, 37), resume=True)
    assert (tmp_path / "sh.bin").read_bytes() == (tmp_path / "one.bin").read_bytes()
    assert (tmp_path / "sh_t.bin").read_bytes() == (tmp_path / "one_t.bin").read_bytes()


def test_mapping_reads_a_memory_map_batch_by_batch(stream_case, tmp_path, monkeypatch):
    _, path, imgs, som = stream_case
    h = read_images_header(path)
    mm = np.memmap(path, dtype=np.float32, mode="r", offset=h.offset, shape=(h.n_images, 1) + h.img_shape)
    src = ImageSource(mm)
    reads = []
    orig = ImageSource.get

    def spy(self, idx, device=None):
        x = orig(self, idx, device)
        reads.append(len(x))
        return x

    monkeypatch.setattr(ImageSource, "get", spy)
    res = Mapper(som, batch_size=5).map(src)
    assert reads == [5] * 7 + [2]  # never more than one batch in memory
    assert torch.equal(res.distances, Mapper(som).map(imgs).distances)
    # also straight from the file name
    reads.clear()
    Mapper(som, batch_size=8).map_to_files(path, tmp_path / "m.bin")
    assert max(reads) <= 8 and sum(reads) == 37
    assert torch.equal(read_mapping(tmp_path / "m.bin")[0], res.distances)


def test_auto_batch_size_respects_memory_budget(stream_case):
    _, _, _, som = stream_case
    m = Mapper(som, memory_budget=1 << 20)
    per = m.bytes_per_image()
    assert per > som.num_transforms * som.num_neurons * 4  # at least the distance matrix
    assert m.auto_batch_size() == max(1, min(1024, (1 << 20) // per))
    assert Mapper(som, memory_budget=1).auto_batch_size() == 1


def test_existing_outputs_are_not_overwritten(stream_case, tmp_path):
    from somtorch.errors import OutputExistsError

    _, path, _, som = stream_case
    (tmp_path / "m.bin").write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        Mapper(som).map_to_files(path, tmp_path / "m.bin")
    assert (tmp_path / "m.bin").read_bytes() == b"keep"
    Mapper(som).map_to_files(path, tmp_path / "m.bin", overwrite=True)
    assert read_mapping(tmp_path / "m.bin")[0].shape == (37, 6)


def test_wrong_image_size_is_a_clear_error(stream_case):
    from somtorch.errors import ShapeError

    _, _, _, som = stream_case
    with pytest.raises(ShapeError, match="SOM expects 1x12x12"):
        Mapper(som).map(torch.rand(2, 1, 10, 10))


# --------------------------------------------------------------------------------------------
# precision
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["float64", "bf16"])
def test_precision_agreement_reports(precision):
    som, imgs = _golden_som("blobs64")
    rep = precision_agreement(som, imgs[:12], precision)
    assert rep["precision"] == precision and rep["n_images"] == 12
    assert set(rep) >= {"bmu_agreement", "transform_agreement", "max_rel_distance_error"}
    assert som.precision == "float32"  # restored
    if precision == "float64":
        assert rep["bmu_agreement"] == 1.0 and rep["max_rel_distance_error"] < 1e-4
    else:  # bf16 has an 8-bit mantissa: distances are ~1e-2 off, choices mostly agree
        assert 0 < rep["max_rel_distance_error"] < 0.2
        assert rep["bmu_agreement"] >= 0.5
    ref, _ = read_mapping(DATA / "map_blobs64.bin")
    som.set_precision(precision)
    d, _ = som(imgs[:12])
    tol = 1e-4 if precision == "float64" else 0.2
    np.testing.assert_allclose(d.numpy(), ref[:12].numpy(), rtol=tol)


@pytest.mark.parametrize("chunk", [7, 4096])
@pytest.mark.parametrize("init", ["zero", "somD"])
def test_pink_tie_break_equals_pink_arithmetic(init, chunk, monkeypatch):
    """GEMM + exact re-evaluation of near-ties chooses exactly what PINK's arithmetic chooses, also
    where everything ties (zero SOM) and when candidates are processed in small chunks."""
    import somtorch.engine.ties as dist

    monkeypatch.setattr(dist, "_TIE_CHUNK", chunk)
    monkeypatch.setattr(dist, "_TIE_ROWS", 2 if chunk < 10 else 64)  # images held at a time
    imgs = read_images(DATA / "train20.bin")
    lat, geo = Lattice("cartesian", (3, 3)), SOMGeometry(16, numrot=8, convention="pink")
    w = torch.zeros(9, 1, 23, 23) if init == "zero" else read_som(DATA / "somD.bin")[0]
    fast = Mapper(RotationInvariantSOM(lat, geo, init=w, tie_break="pink"), batch_size=6).map(imgs)
    exact = Mapper(RotationInvariantSOM(lat, geo, init=w, arithmetic="pink")).map(imgs)
    assert torch.equal(fast.transform_index, exact.transform_index)
    assert torch.equal(fast.bmu, exact.bmu)
    np.testing.assert_allclose(fast.distances.numpy(), exact.distances.numpy(), rtol=1e-5)


@pytest.mark.parametrize("shape, dim", [((7, 16, 400), 1), ((3, 720, 100), 1), ((5, 9), 0), ((4, 6, 3), 2)])
def test_first_min_matches_torch_min_and_argmin_with_ties(shape, dim):
    """best_match's fast reduction: values of torch.min, lowest index of torch.argmin, on data
    full of exact ties (small integers)."""
    from somtorch.engine.distance import first_min

    g = torch.Generator().manual_seed(sum(shape))
    for dtype in (torch.float32, torch.float64):
        for _ in range(10):
            x = torch.randint(0, 4, shape, generator=g).to(dtype)
            v, i = first_min(x, dim)
            ref_v, _ = torch.min(x, dim)
            assert torch.equal(v, ref_v)
            assert torch.equal(i, torch.argmin(x, dim))
            # lowest index by a slow loop, independently of torch's tie rule
            xm = x.movedim(dim, -1).reshape(-1, shape[dim])
            low = torch.tensor([min(j for j in range(shape[dim]) if row[j] == row.min()) for row in xm])
            assert torch.equal(i.reshape(-1), low)


@pytest.mark.parametrize("d, nd, numrot, interp", [(16, 23, 8, "bilinear"), (12, 18, 12, "bilinear"),
                                                    (11, 16, 4, "bilinear"), (12, 18, 12, "nearest")])
def test_exact_windows_of_some_base_rotations_equal_the_full_exact_sampling(d, nd, numrot, interp):
    """The tie resolver samples only the base rotations its candidates need: bit for bit the
    exact transformer's base rotations (any subset, any order, several images and channels)."""
    from somtorch.engine.distance import _exact_windows
    from somtorch.geometry.transforms import PinkTransformer

    tr = PinkTransformer(d, nd, numrot, True, interp, exact=True)
    imgs = torch.rand(3, 2, d, d, generator=torch.Generator().manual_seed(d))
    k = max(numrot // 4, 1)
    lo = (nd - (nd - 6)) // 2
    win = (lo, nd - lo)
    ref = tr.base_rotations(imgs, window=win)
    pairs = torch.tensor([r * k + i for r in range(3) for i in range(k)][::-2])
    got = _exact_windows(tr, imgs, pairs, k, win)
    for n, p in enumerate(pairs.tolist()):
        assert torch.equal(got[n], ref[p // k, p % k].reshape(2, -1))
