"""Faults in data-parallel runs (2 local gloo processes on CPU): stop requests, killed and hung
ranks, resume with the same or another number of processes.

Reference results come from an uninterrupted run of the same configuration; a faulted run that
is resumed must end with the same SOM bytes.
"""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
import torch

from somtorch.distributed.launch import launch_local
from somtorch.engine import Neighbourhood, RotationInvariantSOM, SOMGeometry, Trainer
from somtorch.geometry import Lattice
from somtorch.io import write_images

N, STEP, ITERS = 48, 8, 2  # 12 steps


def _som():
    return RotationInvariantSOM(Lattice("cartesian", (3, 3)), SOMGeometry(16, numrot=4), init="random", seed=3)


def _images(path, n=N):
    x = torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    write_images(path, x.numpy())


# ------------------------------------------------------------------ the worker (runs in every rank)
def _worker(img, out, resume, fault, at):
    """Batch training with a checkpoint every step; ``fault`` at the ``at``-th step on one rank:
    ``term`` (SIGTERM during the step's reduction, rank 1), ``die`` (rank 1 exits),
    ``die_in_commit`` (rank 0 exits between writing the temporary checkpoint and renaming it),
    ``hang`` (rank 1 stops answering)."""
    from somtorch.distributed import detect
    from somtorch.distributed.training import make_batch_trainer

    torch.set_num_threads(1)
    rank = detect().rank
    som = _som()
    tr = make_batch_trainer(som, Neighbourhood("gaussian", 1.1, 0.3), num_iter=ITERS, step_size=STEP,
                            metrics_sample=0, checkpoint_path=os.path.join(out, "ckpt.pt"), checkpoint_every=1)
    orig, calls = tr.reduce, [0]

    def reduce(t, what):
        if what.startswith("batch step"):
            calls[0] += 1
            if calls[0] == at:
                if fault == "term" and rank == 1:
                    os.kill(os.getpid(), signal.SIGTERM)  # lands after the stop flag was sampled
                elif fault == "die" and rank == 1:
                    os._exit(5)
                elif fault == "hang" and rank == 1:
                    time.sleep(60)
                elif fault == "die_in_commit" and rank == 0:
                    real = os.link

                    def link(*a, **k):  # the temporary file is complete; the rename never happens
                        os._exit(6)
                    os.link = link
                    os.replace = link
                    _ = real
        return orig(t, what) if tr.world_size > 1 else t

    if tr.world_size > 1:
        tr.reduce = reduce
    status = "done"
    try:
        tr.fit(img, resume=resume)
    except KeyboardInterrupt as e:
        status = str(e)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"status": status, "world_size": tr.world_size}, f)
    som.save_pink(os.path.join(out, f"som{rank}.bin"), overwrite=True)


def _launch(img, out, nprocs=2, resume=False, fault="none", at=0, timeout_s=90, env=None, grace_s=30):
    return launch_local(_worker, nprocs, (str(img), str(out), resume, fault, at), timeout_s=timeout_s, grace_s=grace_s,
                        env=env or {"SOMTORCH_DIST_TIMEOUT_S": "20"})


def _status(out, rank):
    return json.loads((out / f"rank{rank}.json").read_text())["status"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 2-process run: the bytes every resumed run must end with."""
    return make_reference(tmp_path_factory.mktemp("ref"))


def make_reference(d):
    """(image file, SOM bytes) of an uninterrupted 2-process run in folder ``d``."""
    _images(d / "img.bin")
    assert _launch(d / "img.bin", d) == [0, 0]
    ref = (d / "som0.bin").read_bytes()
    assert (d / "som1.bin").read_bytes() == ref  # the ranks agree
    return d / "img.bin", ref


def _fresh(tmp_path, reference):
    img = tmp_path / "img.bin"
    img.write_bytes(reference[0].read_bytes())
    os.utime(img, ns=(os.stat(reference[0]).st_atime_ns, os.stat(reference[0]).st_mtime_ns))
    return img


# ------------------------------------------------------------------ tests
def test_sigterm_on_one_rank_stops_every_rank_at_the_same_step(tmp_path, reference):
    """SIGTERM on rank 1 only, arriving while the step's sums are being reduced (the race that
    lost the request): every rank stops after the next step, one checkpoint, resume identical."""
    img = _fresh(tmp_path, reference)
    assert _launch(img, tmp_path, fault="term", at=4) == [0, 0]
    s0, s1 = _status(tmp_path, 0), _status(tmp_path, 1)
    assert s0 == s1 == f"training stopped after {5 * STEP} images; checkpoint written to {tmp_path / 'ckpt.pt'}"
    st = Trainer.load_checkpoint(tmp_path / "ckpt.pt")
    assert int(st["tick"]) == 5 * STEP
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]
    # resume with the same number of processes: byte-identical to the uninterrupted run
    assert _launch(img, tmp_path, resume=True) == [0, 0]
    assert _status(tmp_path, 0) == _status(tmp_path, 1) == "done"
    assert (tmp_path / "som0.bin").read_bytes() == (tmp_path / "som1.bin").read_bytes() == reference[1]


def test_dead_rank_then_resume_with_one_process(tmp_path, reference, capfd):
    """Rank 1 dies mid-run: rank 0 names it; the last checkpoint is complete and a single process
    finishes the run with the uninterrupted run's bytes (documented: another world size)."""
    img = _fresh(tmp_path, reference)
    t0 = time.monotonic()
    codes = _launch(img, tmp_path, fault="die", at=7)
    assert codes[1] == 5 and codes[0] == 1, codes
    assert time.monotonic() - t0 < 40
    err = capfd.readouterr().err
    assert "DistributedError: rank 0/2: collective" in err
    assert int(Trainer.load_checkpoint(tmp_path / "ckpt.pt")["tick"]) == 6 * STEP
    assert _launch(img, tmp_path, nprocs=1, resume=True) == [0]
    assert (tmp_path / "som0.bin").read_bytes() == reference[1]


@pytest.mark.slow  # the default suite kills inside a commit in tests/test_faults_resume.py
def test_kill_inside_the_checkpoint_commit_keeps_the_last_generation(tmp_path, reference):
    """Rank 0 dies after writing a checkpoint's temporary file, before the rename: the previous
    generation is intact, the orphaned temporary file is swept, and resume ends identical."""
    img = _fresh(tmp_path, reference)
    codes = _launch(img, tmp_path, fault="die_in_commit", at=3)
    assert codes[0] == 6, codes
    assert int(Trainer.load_checkpoint(tmp_path / "ckpt.pt")["tick"]) == 2 * STEP
    from somtorch.io.atomic import sweep_temp_files

    assert [os.path.basename(p) for p in sweep_temp_files(tmp_path)] and \
        not [f for f in os.listdir(tmp_path) if ".tmp-" in f]
    assert _launch(img, tmp_path, resume=True) == [0, 0]
    assert (tmp_path / "som0.bin").read_bytes() == (tmp_path / "som1.bin").read_bytes() == reference[1]


@pytest.mark.slow
def test_one_process_run_resumed_on_two(tmp_path, reference):
    """Started on one process, stopped, resumed on two: the same bytes as the 2-process run."""
    img = _fresh(tmp_path, reference)
    som = _som()
    from somtorch.engine.batch import BatchTrainer

    bt = BatchTrainer(som, Neighbourhood("gaussian", 1.1, 0.3), ITERS, step_size=STEP, metrics_sample=0,
                      checkpoint_path=str(tmp_path / "ckpt.pt"), checkpoint_every=1)
    bt.stop_after = 3 * STEP
    with pytest.raises(KeyboardInterrupt):
        bt.fit(str(img))
    assert _launch(img, tmp_path, resume=True) == [0, 0]
    assert (tmp_path / "som0.bin").read_bytes() == reference[1]


def test_hung_rank_is_named_within_the_timeout(tmp_path, reference, capfd):
    img = _fresh(tmp_path, reference)
    t0 = time.monotonic()
    codes = _launch(img, tmp_path, fault="hang", at=3, env={"SOMTORCH_DIST_TIMEOUT_S": "2"}, grace_s=1)
    took = time.monotonic() - t0
    assert codes[0] == 1, codes
    err = capfd.readouterr().err
    assert "not arrived: rank 1 (last seen at collective" in err, err[-3000:]
    assert "the timeout expired (2 s, set by SOMTORCH_DIST_TIMEOUT_S)" in err
    assert took < 40, took


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_kill_at_random_steps_then_resume_identical(tmp_path, reference, seed):
    """Random fault kind and step; resume on a random number of processes; identical bytes."""
    rng = np.random.default_rng(seed)
    img = _fresh(tmp_path, reference)
    fault = ["term", "die", "die_in_commit"][int(rng.integers(3))]
    at = int(rng.integers(1, ITERS * N // STEP))
    _launch(img, tmp_path, fault=fault, at=at)
    nprocs = int(rng.integers(1, 3))
    assert _launch(img, tmp_path, nprocs=nprocs, resume=True) == [0] * nprocs
    assert (tmp_path / "som0.bin").read_bytes() == reference[1]


# ------------------------------------------------------------------ 2-process mapping killed at a random batch
def _map_worker(img, som_path, out, die_at, resume):
    from somtorch.distributed import detect, map_to_files_sharded
    from somtorch.engine import Mapper

    torch.set_num_threads(1)
    som = RotationInvariantSOM(Lattice("cartesian", (3, 3)), SOMGeometry(16, numrot=4), init=som_path)
    if die_at and detect().rank == 1:
        orig, seen = Mapper.iter_batches, [0]

        def iter_batches(self, data, rows=None):
            for item in orig(self, data, rows):
                seen[0] += 1
                if seen[0] == die_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield item
        Mapper.iter_batches = iter_batches
    map_to_files_sharded(Mapper(som, batch_size=4), img, os.path.join(out, "m.bin"), os.path.join(out, "t.bin"),
                         resume=resume)


@pytest.mark.parametrize("die_at,nprocs", [(int(np.random.default_rng(16).integers(1, 6)), 2)])
def test_two_process_mapping_killed_then_resumed_identical(tmp_path, reference, die_at, nprocs):
    from somtorch.engine import Mapper

    img = _fresh(tmp_path, reference)
    _som().save_pink(tmp_path / "som.bin")
    som = RotationInvariantSOM(Lattice("cartesian", (3, 3)), SOMGeometry(16, numrot=4), init=str(tmp_path / "som.bin"))
    Mapper(som, batch_size=4).map_to_files(img, tmp_path / "ref.bin", tmp_path / "ref_t.bin")
    args = (str(img), str(tmp_path / "som.bin"), str(tmp_path))
    codes = launch_local(_map_worker, 2, args + (die_at, False), timeout_s=60, grace_s=30,
                         env={"SOMTORCH_DIST_TIMEOUT_S": "20"})
    assert codes[1] == -signal.SIGKILL and codes[0] == 1, codes
    assert not (tmp_path / "m.bin").exists()
    assert launch_local(_map_worker, nprocs, args + (0, True), timeout_s=60) == [0] * nprocs
    assert (tmp_path / "m.bin").read_bytes() == (tmp_path / "ref.bin").read_bytes()
    assert (tmp_path / "t.bin").read_bytes() == (tmp_path / "ref_t.bin").read_bytes()


# ------------------------------------------------------------------ the CLI under torchrun: SIGTERM, resume on another world size
def _cli_env():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return dict(os.environ, OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0", SOMTORCH_DIST_TIMEOUT_S="60",
                PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))


_TRAIN = ["-m", "somtorch.train", "som=small", "data.n=160", "data.image_size=16", "+stage=demo", "stage.numrot=4",
          "stage.num_iter=3", "runtime=cpu", "runtime.threads=1", "runtime.mode=batch", "runtime.step_size=8",
          "plots=false", "metrics_sample=8", "checkpoint_every=8"]


def _torchrun(n):
    import sys

    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]


@pytest.mark.slow
def test_torchrun_sigterm_then_resume_on_one_process_identical(tmp_path):
    import subprocess
    import sys

    env = _cli_env()
    ref = tmp_path / "ref"
    r = subprocess.run(_torchrun(2) + _TRAIN + [f"hydra.run.dir={ref}"], env=env, cwd=tmp_path, timeout=300,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    p = subprocess.Popen(_torchrun(2) + _TRAIN + [f"hydra.run.dir={run}"], env=env, cwd=tmp_path,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ckpt = run / "demo" / "checkpoint.pt"
    t0 = time.monotonic()
    while not ckpt.exists() and p.poll() is None and time.monotonic() - t0 < 120:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)  # the scheduler's stop: torchrun forwards it to every rank
    err = p.communicate(timeout=120)[1]
    assert not (run / "demo" / "som.bin").exists(), "stopped too late"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted", err[-3000:]
    assert not (run / ".rank1" / "demo" / "checkpoint.pt").exists()  # one generation, rank 0's
    # a single process finishes it (another world size: see BatchTrainer's notes)
    r = subprocess.run([sys.executable, "-m", "somtorch.train", f"resume={run}"], env=env, cwd=tmp_path, timeout=300,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from checkpoint" in r.stderr + r.stdout
    assert (run / "demo" / "som.bin").read_bytes() == (ref / "demo" / "som.bin").read_bytes()
    # and a 1-process run stopped early is finished by two processes, identical as well
    one = tmp_path / "one"
    r = subprocess.run([sys.executable] + _TRAIN + [f"hydra.run.dir={one}", "stop_after_images=200"], env=env,
                       cwd=tmp_path, timeout=300, capture_output=True, text=True)
    assert r.returncode == 130, r.stderr[-3000:]
    r = subprocess.run(_torchrun(2) + ["-m", "somtorch.train", f"resume={one}"], env=env, cwd=tmp_path, timeout=300,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (one / "demo" / "som.bin").read_bytes() == (ref / "demo" / "som.bin").read_bytes()
