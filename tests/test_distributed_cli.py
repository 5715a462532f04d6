"""``torchrun`` front ends: somtorch.map, somtorch.pink --map and somtorch.train runtime.mode=batch on
2 gloo ranks give the single-process results; somtorch.map resume=true finishes a crashed mapping."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from somtorch.distributed import map_to_files_sharded
from somtorch.engine import Mapper, RotationInvariantSOM, SOMGeometry
from somtorch.geometry import Lattice
from somtorch.io import read_som, write_images

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0", SOMTORCH_DIST_TIMEOUT_S="60")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _torchrun(*args):
    return [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]


def _run(cmd, cwd):
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300, cwd=cwd)
    assert r.returncode == 0, (r.stdout[-1500:], r.stderr[-3000:])
    return r


@pytest.fixture
def files(tmp_path):
    x = torch.rand(50, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    write_images(tmp_path / "img.bin", x.numpy())
    # PINK's geometry (neuron side 23 for 16-pixel images): the SOM somtorch.pink reads by default
    som = RotationInvariantSOM(Lattice("cartesian", (3, 3)), SOMGeometry(16, numrot=4, convention="pink"),
                               init="random", seed=5)
    som.save_pink(tmp_path / "som.bin")
    return tmp_path


def _map_args(d, out, *extra):
    return ["-m", "somtorch.map", f"som={d / 'som.bin'}", "som_config=null", "numrot=4", "data=file",
            f"data.path={d / 'img.bin'}", "plots=false", "runtime=cpu", "runtime.threads=1", "batch_size=8",
            f"hydra.run.dir={out}", *extra]


@pytest.mark.slow
def test_torchrun_map_cli_byte_identical(files):
    d = files
    _run([PY, *_map_args(d, d / "one")], d)
    _run(_torchrun(*_map_args(d, d / "two")), d)
    for name in ("mapping.bin", "transform.bin", "bmu.csv"):
        assert (d / "one" / name).read_bytes() == (d / "two" / name).read_bytes(), name


@pytest.mark.slow
def test_torchrun_pink_map_byte_identical(files):
    d = files
    opts = ["--som-width", "3", "--som-height", "3", "--numrot", "4", "-t", "1", "--batch-size", "8"]
    _run([PY, "-m", "somtorch.pink", "--map", "img.bin", "m1.bin", "som.bin", "--store-rot-flip", "t1.bin", *opts], d)
    _run(_torchrun("-m", "somtorch.pink", "--map", "img.bin", "m2.bin", "som.bin", "--store-rot-flip", "t2.bin",
                   *opts), d)
    assert (d / "m1.bin").read_bytes() == (d / "m2.bin").read_bytes()
    assert (d / "t1.bin").read_bytes() == (d / "t2.bin").read_bytes()


@pytest.mark.slow
def test_torchrun_batch_training_equals_single(tmp_path):
    args = ["som=small", "data.n=40", "data.image_size=16", "+stage=demo", "stage.numrot=4", "stage.num_iter=2",
            "runtime=cpu", "runtime.threads=1", "runtime.mode=batch", "runtime.step_size=10", "plots=false",
            "metrics_sample=16"]
    _run([PY, "-m", "somtorch.train", *args, f"hydra.run.dir={tmp_path / 'one'}"], tmp_path)
    _run(_torchrun("-m", "somtorch.train", *args, f"hydra.run.dir={tmp_path / 'two'}"), tmp_path)
    a, _ = read_som(tmp_path / "one" / "demo" / "som.bin")
    b, _ = read_som(tmp_path / "two" / "demo" / "som.bin")
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_map_cli_resume_maps_only_missing_rows(files, monkeypatch):
    d = files
    _run([PY, *_map_args(d, d / "ref")], d)
    out = d / "crashed"
    out.mkdir()
    som = RotationInvariantSOM(Lattice("cartesian", (3, 3)), SOMGeometry(16, numrot=4, convention="pink"),
                               init=str(d / "som.bin"))
    real, calls = os.pwrite, [0]

    def pwrite(fd, data, offset):  # the disk fills up after a few batches
        calls[0] += 1
        if calls[0] > 6:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    with pytest.raises(OSError, match="resume=true"):
        map_to_files_sharded(Mapper(som, batch_size=8), d / "img.bin", out / "mapping.bin", out / "transform.bin")
    monkeypatch.setattr(os, "pwrite", real)
    assert (out / ".mapping.bin.partial").exists() and not (out / "mapping.bin").exists()
    _run([PY, *_map_args(d, out, "resume=true")], d)
    summary = json.loads((out / "map_summary.json").read_text())
    assert 0 < summary["rows_mapped"] < 50  # only the rows the crashed run had not written
    for name in ("mapping.bin", "transform.bin", "bmu.csv"):
        assert (out / name).read_bytes() == (d / "ref" / name).read_bytes(), name
