"""Fault injection: faults end with a clear message and a non-zero exit, never a hang."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from somtorch.distributed import map_to_files_sharded
from somtorch.distributed.launch import launch_local
from somtorch.engine import Mapper, RotationInvariantSOM, SOMGeometry, Trainer
from somtorch.engine.batch import BatchTrainer
from somtorch.errors import NonFiniteError, OutOfSpaceError, ShapeError, TruncatedFileError
from somtorch.geometry import Lattice
from somtorch.io import write_images

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _som(init="random"):
    return RotationInvariantSOM(Lattice("cartesian", (3, 3)), SOMGeometry(16, numrot=4), init=init, seed=3)


def _images(path, n=40, seed=0, nan_at=None):
    x = torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))
    write_images(path, x.numpy())
    if nan_at is not None:  # write_images refuses NaNs: corrupt the payload afterwards
        x[nan_at, 0, 3, 4] = float("nan")
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) - (n - nan_at) * 16 * 16 * 4 + (3 * 16 + 4) * 4)
            f.write(np.float32("nan").tobytes())
    return x


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0", SOMTORCH_DIST_TIMEOUT_S="30")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ------------------------------------------------------------------ truncated input
def test_image_file_truncated_mid_mapping(tmp_path):
    img = tmp_path / "img.bin"
    _images(img)
    it = Mapper(_som(), batch_size=8).iter_batches(str(img))
    next(it)
    os.truncate(img, os.path.getsize(img) - 16 * 16 * 4 * 5)  # another process cuts the file
    with pytest.raises(TruncatedFileError, match="truncated while in use"):
        next(it)


def test_image_file_truncated_mid_training(tmp_path, monkeypatch):
    img = tmp_path / "img.bin"
    _images(img)
    from somtorch.engine import data as data_mod

    calls = {"n": 0}
    orig = data_mod.ImageSource.get

    def get(self, idx, device=None):
        calls["n"] += 1
        if calls["n"] == 2 and self.path:
            os.truncate(self.path, 100)
        return orig(self, idx, device)

    monkeypatch.setattr(data_mod.ImageSource, "get", get)
    with pytest.raises(TruncatedFileError, match="file size"):
        Trainer(_som(), num_iter=1, batch_size=8, metrics_sample=0).fit(str(img))


# ------------------------------------------------------------------ NaNs
def test_nan_images_stop_training_and_mapping(tmp_path):
    img = tmp_path / "img.bin"
    x = _images(img, nan_at=13)
    with pytest.raises(NonFiniteError, match=r"\[13\]"):
        BatchTrainer(_som(), num_iter=1, step_size=8, metrics_sample=0).fit(x)
    with pytest.raises(ShapeError, match=r"non-finite pixel values in image\(s\) \[13\]"):
        Mapper(_som(), batch_size=8).map(x)


def test_nan_images_cli_exit_nonzero(tmp_path):
    img = tmp_path / "img.bin"
    _images(img, nan_at=7)
    _som().save_pink(tmp_path / "som.bin")
    r = subprocess.run([PY, "-m", "somtorch.map", f"som={tmp_path / 'som.bin'}", "som_config=null", "numrot=4",
                        "data=file", f"data.path={img}", f"hydra.run.dir={tmp_path / 'out'}", "plots=false",
                        "runtime=cpu"], capture_output=True, text=True, env=_env(), timeout=120, cwd=tmp_path)
    assert r.returncode != 0
    assert "non-finite pixel values in image(s) [7]" in r.stderr + r.stdout
    assert not (tmp_path / "out" / "mapping.bin").exists()


# ------------------------------------------------------------------ full disk
def test_disk_full_keeps_partial_and_resume_finishes(tmp_path, monkeypatch):
    img = tmp_path / "img.bin"
    _images(img)
    som = _som()
    Mapper(som, batch_size=8).map_to_files(img, tmp_path / "ref.bin", tmp_path / "ref_t.bin")
    real = os.pwrite
    count = {"n": 0}

    def pwrite(fd, data, offset):
        count["n"] += 1
        if count["n"] > 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    with pytest.raises(OutOfSpaceError, match=r"m.bin: no space left on device.*resume=true") as ei:
        map_to_files_sharded(Mapper(som, batch_size=8), img, tmp_path / "m.bin", tmp_path / "t.bin")
    assert ei.value.errno == errno.ENOSPC
    monkeypatch.setattr(os, "pwrite", real)
    assert not (tmp_path / "m.bin").exists() and (tmp_path / ".m.bin.partial").exists()
    info = map_to_files_sharded(Mapper(som, batch_size=8), img, tmp_path / "m.bin", tmp_path / "t.bin", resume=True)
    assert 0 < info["rows_mapped"] < 40  # only the rows the failed run had not written
    assert (tmp_path / "m.bin").read_bytes() == (tmp_path / "ref.bin").read_bytes()
    assert (tmp_path / "t.bin").read_bytes() == (tmp_path / "ref_t.bin").read_bytes()


def _limit_fsize():  # runs in the child before exec
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))


def test_disk_full_cli_exit_nonzero(tmp_path):
    """RLIMIT_FSIZE makes every write past 6000 bytes fail (EFBIG), as a full disk would."""
    img = tmp_path / "img.bin"
    _images(img, n=200)
    _som().save_pink(tmp_path / "som.bin")
    r = subprocess.run([PY, "-m", "somtorch.map", f"som={tmp_path / 'som.bin'}", "som_config=null", "numrot=4",
                        "data=file", f"data.path={img}", f"hydra.run.dir={tmp_path / 'out'}", "plots=false",
                        "runtime=cpu"], capture_output=True, text=True, env=_env(), timeout=120, cwd=tmp_path,
                       preexec_fn=_limit_fsize)
    assert r.returncode != 0
    assert "File too large while writing" in r.stderr + r.stdout
    assert not (tmp_path / "out" / "mapping.bin").exists()


# ------------------------------------------------------------------ a rank dies
def _dying_worker(img, som_path, out):
    from somtorch.distributed import detect

    som = _som(init=som_path)
    mapper = Mapper(som, batch_size=4)
    if detect().rank == 1:
        orig = Mapper.iter_batches
        done = [0]

        def iter_batches(self, data, rows=None):
            for item in orig(self, data, rows):
                if done[0] == 2:
                    os._exit(3)  # killed mid-shard, without any clean-up
                done[0] += 1
                yield item

        Mapper.iter_batches = iter_batches
    map_to_files_sharded(mapper, img, os.path.join(out, "m.bin"), os.path.join(out, "t.bin"))


@pytest.mark.slow
def test_rank_dies_others_abort_then_resume(tmp_path, capfd):
    img = tmp_path / "img.bin"
    _images(img)
    som = _som()
    som.save_pink(tmp_path / "som.bin")
    som = _som(init=str(tmp_path / "som.bin"))
    Mapper(som, batch_size=4).map_to_files(img, tmp_path / "ref.bin", tmp_path / "ref_t.bin")
    t0 = time.monotonic()
    codes = launch_local(_dying_worker, 2, (str(img), str(tmp_path / "som.bin"), str(tmp_path)), timeout_s=90,
                         grace_s=60, env={"SOMTORCH_DIST_TIMEOUT_S": "30"})
    assert codes[1] == 3 and codes[0] == 1, codes
    assert time.monotonic() - t0 < 60  # no hang: rank 0 noticed the dead peer
    err = capfd.readouterr().err
    assert "DistributedError" in err and "rank 0/2" in err
    assert not (tmp_path / "m.bin").exists()
    # the shards are idempotent: one process finishes only the missing rows
    info = map_to_files_sharded(Mapper(som, batch_size=4), img, tmp_path / "m.bin", tmp_path / "t.bin", resume=True)
    assert 0 < info["rows_mapped"] < 40
    assert (tmp_path / "m.bin").read_bytes() == (tmp_path / "ref.bin").read_bytes()
    assert (tmp_path / "t.bin").read_bytes() == (tmp_path / "ref_t.bin").read_bytes()


# ------------------------------------------------------------------ SIGKILL + resume
def _train_cmd(run_dir, *extra):
    return [PY, "-m", "somtorch.train", "som=small", "data.n=200", "data.image_size=16", "+stage=demo",
            "stage.numrot=4", "stage.num_iter=3", "runtime=cpu", "runtime.threads=1", "plots=false",
            "metrics_sample=16", "checkpoint_every=5", f"hydra.run.dir={run_dir}", *extra]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["online", "batch"])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, mode):
    extra = [f"runtime.mode={mode}", "runtime.step_size=10"]
    env = _env()
    ref = tmp_path / "ref"
    r = subprocess.run(_train_cmd(ref, *extra), capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "run"
    p = subprocess.Popen(_train_cmd(run, *extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                         cwd=tmp_path)
    ckpt = run / "demo" / "checkpoint.pt"
    t0 = time.monotonic()
    while not ckpt.exists() and p.poll() is None and time.monotonic() - t0 < 120:
        time.sleep(0.02)
    time.sleep(0.1)
    p.send_signal(signal.SIGKILL)  # no handler, no final checkpoint
    p.wait(30)
    assert p.returncode == -signal.SIGKILL
    assert not (run / "demo" / "som.bin").exists(), "killed too late: the run had finished"
    r = subprocess.run(_train_cmd(run, "resume=true", *extra), capture_output=True, text=True, env=env, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from checkpoint" in r.stderr + r.stdout
    assert (run / "demo" / "som.bin").read_bytes() == (ref / "demo" / "som.bin").read_bytes()


# ------------------------------------------------------------------ training: a dead or hung rank
def _train_fault_worker(img, kind):
    from somtorch.distributed import detect
    from somtorch.distributed.training import fit_batch_distributed
    from somtorch.engine import batch as batch_mod

    if detect().rank == 1:
        if kind == "hang":
            time.sleep(120)  # alive but never joins the collective
        orig, calls = batch_mod.batch_sums, [0]

        def batch_sums(*a, **k):
            calls[0] += 1
            if calls[0] == 2:
                os._exit(4)
            return orig(*a, **k)

        batch_mod.batch_sums = batch_sums
    fit_batch_distributed(_som(), img, num_iter=2, step_size=8, metrics_sample=0)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dies", "hang"])
def test_training_rank_dies_or_hangs_others_abort(tmp_path, capfd, kind):
    img = tmp_path / "img.bin"
    _images(img)
    t0 = time.monotonic()
    codes = launch_local(_train_fault_worker, 2, (str(img), kind), timeout_s=100, grace_s=5,
                         env={"SOMTORCH_DIST_TIMEOUT_S": "4"})
    assert codes[0] == 1, codes
    assert codes[1] == (4 if kind == "dies" else -9), codes
    assert time.monotonic() - t0 < 60
    err = capfd.readouterr().err
    assert "DistributedError: rank 0/2: collective" in err
    if kind == "hang":
        # the hung rank is named, and the cause is the timeout that was set
        assert "not arrived: rank 1 (never reached a collective)" in err, err[-2000:]
        assert "the timeout expired (4 s, set by SOMTORCH_DIST_TIMEOUT_S)" in err
