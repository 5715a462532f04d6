"""Distributed mapping and batch training on 2 local gloo processes (CPU)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from somtorch.distributed import map_to_files_sharded, row_runs, shard_rows
from somtorch.distributed.launch import launch_local
from somtorch.engine import Mapper, Neighbourhood, RotationInvariantSOM, SOMGeometry
from somtorch.engine.batch import BatchTrainer
from somtorch.geometry import Lattice
from somtorch.io import read_som, write_images

LAT = ("cartesian", (3, 3))


def _som(init="random"):
    return RotationInvariantSOM(Lattice(*LAT), SOMGeometry(16, numrot=4), init=init, seed=3)


def _images(path, n=45, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 16, 16, generator=g)
    write_images(path, x.numpy())
    return x


# ------------------------------------------------------------------ workers (run in each rank)
def _map_worker(img, som_path, out, resume):
    torch.set_num_threads(1)
    som = _som(init=som_path)
    info = map_to_files_sharded(Mapper(som, batch_size=8), img, os.path.join(out, "map.bin"),
                                os.path.join(out, "tr.bin"), resume=resume)
    with open(os.path.join(out, f"rank{info['rank']}.json"), "w") as f:
        json.dump(info, f)


def _batch_worker(img, out, step):
    from somtorch.distributed import detect
    from somtorch.distributed.training import fit_batch_distributed

    som = _som()
    fit_batch_distributed(som, img, Neighbourhood("gaussian", 1.1, 0.3), num_iter=2, step_size=step,
                          metrics_sample=0)
    som.save_pink(os.path.join(out, f"som{detect().rank}.bin"))


# ------------------------------------------------------------------ tests
def test_shard_rows_cover_disjoint():
    for n in (0, 1, 7, 45, 64):
        for ws in (1, 2, 3, 5):
            for al in (1, 4, 8):
                parts = [shard_rows(n, ws, r, al) for r in range(ws)]
                flat = [i for p in parts for i in p]
                assert flat == list(range(n))
                assert all(p.start % al == 0 for p in parts if len(p))


def test_row_runs_split_at_gaps_and_alignment():
    assert row_runs(np.array([], dtype=np.int64)) == []
    assert row_runs(np.array([3, 4, 5, 9]), align=1) == [range(3, 6), range(9, 10)]
    assert row_runs(np.arange(10), align=4) == [range(0, 4), range(4, 8), range(8, 10)]


def test_sharded_mapping_single_process_equals_mapper(tmp_path):
    img = tmp_path / "img.bin"
    _images(img)
    som = _som()
    m = Mapper(som, batch_size=8)
    m.map_to_files(img, tmp_path / "a.bin", tmp_path / "at.bin")
    info = map_to_files_sharded(m, img, tmp_path / "b.bin", tmp_path / "bt.bin")
    assert info["rows_mapped"] == 45
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    assert (tmp_path / "at.bin").read_bytes() == (tmp_path / "bt.bin").read_bytes()


def test_two_process_mapping_byte_identical(tmp_path):
    """torchrun-style 2-rank gloo mapping == single-process mapping, byte for byte."""
    img = tmp_path / "img.bin"
    _images(img)
    som = _som()
    som.save_pink(tmp_path / "som.bin")
    som = _som(init=str(tmp_path / "som.bin"))
    Mapper(som, batch_size=8).map_to_files(img, tmp_path / "ref.bin", tmp_path / "ref_t.bin")
    out = tmp_path / "dist"
    out.mkdir()
    codes = launch_local(_map_worker, 2, (str(img), str(tmp_path / "som.bin"), str(out), False), timeout_s=120)
    assert codes == [0, 0]
    infos = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [i["shard"] for i in infos] == [[0, 24], [24, 45]]
    assert sum(i["rows_mapped"] for i in infos) == 45
    assert (out / "map.bin").read_bytes() == (tmp_path / "ref.bin").read_bytes()
    assert (out / "tr.bin").read_bytes() == (tmp_path / "ref_t.bin").read_bytes()
    assert not list(out.glob(".*partial*"))


@pytest.mark.slow
def test_two_process_batch_training_equals_single(tmp_path):
    img = tmp_path / "img.bin"
    _images(img, n=40)
    out = tmp_path / "dist"
    out.mkdir()
    codes = launch_local(_batch_worker, 2, (str(img), str(out), 10), timeout_s=180)
    assert codes == [0, 0]
    som = _som()
    BatchTrainer(som, Neighbourhood("gaussian", 1.1, 0.3), num_iter=2, step_size=10, metrics_sample=0).fit(img)
    w0, _ = read_som(out / "som0.bin")
    w1, _ = read_som(out / "som1.bin")
    assert np.array_equal(np.asarray(w0), np.asarray(w1))  # ranks stay identical
    ref = som.weight.detach().reshape(np.asarray(w0).shape).numpy()
    np.testing.assert_allclose(np.asarray(w0), ref, rtol=1e-5, atol=1e-6)
    # and batch training really changed the weights
    assert np.abs(ref - _som().weight.detach().reshape(ref.shape).numpy()).max() > 1e-2


@pytest.mark.slow
def test_error_on_one_rank_stops_all_with_message(tmp_path, capfd):
    """NaNs in rank 1's shard: rank 1 names the image, rank 0 stops too (no hang), partial kept."""
    img = tmp_path / "img.bin"
    _images(img)
    with open(img, "r+b") as f:  # image 40 (rank 1's shard) gets a NaN pixel
        f.seek(os.path.getsize(img) - 5 * 16 * 16 * 4)
        f.write(np.float32("nan").tobytes())
    _som().save_pink(tmp_path / "som.bin")
    out = tmp_path / "dist"
    out.mkdir()
    codes = launch_local(_map_worker, 2, (str(img), str(tmp_path / "som.bin"), str(out), False), timeout_s=120)
    assert codes == [1, 1]
    err = capfd.readouterr().err
    assert "non-finite pixel values in image(s) [40]" in err
    assert "rank 0: 1 other rank(s) failed while mapping" in err
    assert not (out / "map.bin").exists() and (out / ".map.bin.partial").exists()
