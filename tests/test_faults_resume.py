"""Nothing lost under faults, single process: kills at random points of training and mapping
(resume ends byte-identical to an uninterrupted run), resume identity (other inputs refused with
a message saying what changed), full disks (one clear message naming the path and the size),
atomic non-clobbering outputs and the sweep of orphaned temporary files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from somtorch.distributed import map_to_files_sharded
from somtorch.engine import Mapper, Neighbourhood, RotationInvariantSOM, SOMGeometry, Trainer
from somtorch.engine.batch import BatchTrainer
from somtorch.errors import ConfigError, FileFormatError, OutOfSpaceError, OutputExistsError
from somtorch.geometry import Lattice
from somtorch.io import write_images
from somtorch.io.atomic import (
    AtomicFile,
    PreallocatedOutput,
    atomic_output,
    check_free_space,
    sweep_temp_files,
)

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
N = 40


def _som(init="random"):
    return RotationInvariantSOM(Lattice("cartesian", (3, 3)), SOMGeometry(16, numrot=4), init=init, seed=3)


def _images(path, n=N, seed=0):
    x = torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))
    write_images(path, x.numpy())
    return x


def _trainer(kind, ckpt, **kw):
    nb = Neighbourhood("gaussian", 1.1, 0.3)
    if kind == "batch":
        return BatchTrainer(_som(), nb, 2, step_size=4, metrics_sample=8, checkpoint_path=str(ckpt),
                            checkpoint_every=1, **kw)
    return Trainer(_som(), nb, 2, batch_size=4, metrics_sample=8, checkpoint_path=str(ckpt), checkpoint_every=3,
                   **kw)


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    return make_refs(tmp_path_factory.mktemp("refs"))


def make_refs(d: Path) -> dict:
    """Uninterrupted reference results (online and batch training, mapping) in folder ``d``."""
    img = d / "img.bin"
    _images(img)
    out = {"img": img}
    for kind in ("online", "batch"):
        tr = _trainer(kind, d / f"{kind}.pt")
        tr.fit(str(img))
        out[kind] = tr.som.weight.clone()
        out[kind + "_history"] = tr.history.records
    som = _som()
    som.save_pink(d / "som.bin")
    Mapper(_som(init=str(d / "som.bin")), batch_size=4).map_to_files(img, d / "map.bin", d / "tr.bin")
    out.update(som=d / "som.bin", map=(d / "map.bin").read_bytes(), tr=(d / "tr.bin").read_bytes())
    return out


# ------------------------------------------------------------------ SIGKILL at random points
_CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    import test_faults_resume as t
    mode, kill_at, where, work = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    count = [0]
    def boom():
        os.kill(os.getpid(), signal.SIGKILL)  # no handler runs, nothing is cleaned up
    if where == "commit":  # inside an atomic write: temporary file complete, rename/link pending
        def hook(real):
            def moved(a, b, **k):
                count[0] += 1
                if count[0] == kill_at:
                    boom()
                return real(a, b, **k)
            return moved
        os.replace, os.link = hook(os.replace), hook(os.link)
    elif where == "write":  # in the middle of writing output rows
        real_pw = os.pwrite
        def pwrite(fd, data, off):
            count[0] += 1
            if count[0] == kill_at:
                real_pw(fd, bytes(data)[: len(data) // 2], off)
                boom()
            return real_pw(fd, data, off)
        os.pwrite = pwrite
    t.child(mode, kill_at, where, work)
""")


def child(mode, kill_at, where, work):
    """Runs in the killed subprocess: the same work as the references, with a kill hook."""
    work = Path(work)
    img = str(work / "img.bin")
    if mode == "map":
        som = _som(init=str(work / "som.bin"))
        mapper = Mapper(som, batch_size=4)
        if where == "step":
            orig, seen = Mapper.iter_batches, [0]

            def iter_batches(self, data, rows=None):
                for item in orig(self, data, rows):
                    seen[0] += 1
                    if seen[0] == kill_at:
                        os.kill(os.getpid(), signal.SIGKILL)
                    yield item
            Mapper.iter_batches = iter_batches
        map_to_files_sharded(mapper, img, work / "map.bin", work / "tr.bin")
        return
    tr = _trainer(mode, work / "ckpt.pt")
    if where == "step":
        from somtorch.engine import batch as batch_mod
        from somtorch.engine import training as training_mod

        orig_save, seen = training_mod.Trainer.save_checkpoint, [0]

        def save(self, state):
            seen[0] += 1
            if seen[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return orig_save(self, state)
        training_mod.Trainer.save_checkpoint = save
        batch_mod.Trainer.save_checkpoint = save
    tr.fit(img)


def _run_child(work, mode, kill_at, where):
    script = _CHILD.format(tests=str(Path(__file__).parent))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([PY, "-c", script, mode, str(kill_at), where, str(work)], env=env, timeout=120,
                          capture_output=True, text=True)


def _kill_and_resume(refs, tmp_path, mode, kill_at, where):
    shutil.copy2(refs["img"], tmp_path / "img.bin")
    shutil.copy2(refs["som"], tmp_path / "som.bin")
    r = _run_child(tmp_path, mode, kill_at, where)
    killed = r.returncode == -signal.SIGKILL
    assert killed or r.returncode == 0, r.stderr[-2000:]
    sweep_temp_files(tmp_path)  # what a CLI does when it claims the run folder again
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]
    if mode == "map":
        info = map_to_files_sharded(Mapper(_som(init=str(tmp_path / "som.bin")), batch_size=4), tmp_path / "img.bin",
                                    tmp_path / "map.bin", tmp_path / "tr.bin", resume=True) \
            if killed else None
        assert (tmp_path / "map.bin").read_bytes() == refs["map"]
        assert (tmp_path / "tr.bin").read_bytes() == refs["tr"]
        assert not [f for f in os.listdir(tmp_path) if f.startswith(".map.bin") or f.startswith(".tr.bin")]
        return killed, info
    tr = _trainer(mode, tmp_path / "ckpt.pt")
    tr.fit(str(tmp_path / "img.bin"), resume=True)
    assert torch.equal(tr.som.weight, refs[mode])
    assert [{k: v for k, v in r.items() if k != "elapsed_s"} for r in tr.history.records] == \
        [{k: v for k, v in r.items() if k != "elapsed_s"} for r in refs[mode + "_history"]]
    return killed, None


# (mode, where, kill point); the kill points are drawn once from a seeded generator
_RNG = np.random.default_rng(16)
_SLOW = pytest.mark.slow
KILLS = [("online", "step", int(_RNG.integers(2, 20))),
         pytest.param("batch", "step", int(_RNG.integers(2, 15)), marks=_SLOW),
         ("batch", "commit", int(_RNG.integers(2, 15))),
         pytest.param("map", "step", int(_RNG.integers(1, 10)), marks=_SLOW),
         ("map", "write", int(_RNG.integers(1, 18))), ("map", "commit", int(_RNG.integers(1, 3)))]


@pytest.mark.parametrize("mode,where,at", KILLS)
def test_sigkill_at_a_random_point_then_resume_is_identical(refs, tmp_path, mode, where, at):
    killed, _ = _kill_and_resume(refs, tmp_path, mode, at, where)
    assert killed


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(24))
def test_sigkill_fuzz_long(refs, tmp_path, seed):
    rng = np.random.default_rng(1000 + seed)
    mode, where = [("online", "step"), ("batch", "step"), ("batch", "commit"), ("online", "commit"),
                   ("map", "step"), ("map", "write"), ("map", "commit")][int(rng.integers(7))]
    _kill_and_resume(refs, tmp_path, mode, int(rng.integers(1, 20)), where)


# ------------------------------------------------------------------ resume identity
def test_training_resume_on_other_images_is_refused(refs, tmp_path):
    img = tmp_path / "img.bin"
    shutil.copy2(refs["img"], img)
    tr = _trainer("online", tmp_path / "ckpt.pt")
    tr.stop_after = 10
    with pytest.raises(KeyboardInterrupt):
        tr.fit(str(img))
    # same content, moved and touched: accepted (content decides)
    moved = tmp_path / "moved.bin"
    shutil.copy(img, moved)
    os.utime(moved, ns=(1, 10**18))
    tr2 = _trainer("online", tmp_path / "ckpt.pt")
    tr2.stop_after = 12
    with pytest.raises(KeyboardInterrupt):
        tr2.fit(str(moved), resume=True)
    # one pixel changed in place (same size): refused, naming the file and the content hash
    data = bytearray(img.read_bytes())
    data[-7] ^= 0x01
    img.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"images .*img.bin \(was .*moved.bin\): content hash of the data region .* -> .* \(same size\), modified"):
        _trainer("online", tmp_path / "ckpt.pt").fit(str(img), resume=True)
    # more images: refused, naming the size change
    _images(tmp_path / "more.bin", n=N + 4)
    with pytest.raises(ConfigError, match=r"more.bin \(was .*moved.bin\): size 40992 -> 45088 bytes, modified"):
        _trainer("online", tmp_path / "ckpt.pt").fit(str(tmp_path / "more.bin"), resume=True)
    # an in-memory array of other values
    with pytest.raises(ConfigError, match=r"images: was file .* now array"):
        _trainer("online", tmp_path / "ckpt.pt").fit(torch.rand(N, 1, 16, 16), resume=True)


def test_training_resume_with_another_som_config_is_refused(refs, tmp_path):
    tr = _trainer("batch", tmp_path / "ckpt.pt")
    tr.stop_after = 8
    with pytest.raises(KeyboardInterrupt):
        tr.fit(str(refs["img"]))
    other = RotationInvariantSOM(Lattice("cartesian", (3, 3)), SOMGeometry(16, numrot=4), init="random", seed=3,
                                 precision="float64")
    bt = BatchTrainer(other, Neighbourhood("gaussian", 1.1, 0.3), 2, step_size=4, metrics_sample=8,
                      checkpoint_path=str(tmp_path / "ckpt.pt"))
    with pytest.raises(ConfigError, match=r"som.precision: 'float32' -> 'float64'"):
        bt.fit(str(refs["img"]), resume=True)


def test_mapping_resume_on_other_inputs_is_refused(refs, tmp_path, monkeypatch):
    img = tmp_path / "img.bin"
    shutil.copy2(refs["img"], img)
    som = _som(init=str(refs["som"]))
    calls = [0]
    orig = Mapper.iter_batches

    def failing(self, data, rows=None):
        for item in orig(self, data, rows):
            calls[0] += 1
            if calls[0] == 3:
                raise OSError(5, "injected I/O error")
            yield item
    monkeypatch.setattr(Mapper, "iter_batches", failing)
    with pytest.raises(OSError, match="injected"):
        map_to_files_sharded(Mapper(som, batch_size=4), img, tmp_path / "m.bin", tmp_path / "t.bin")
    monkeypatch.setattr(Mapper, "iter_batches", orig)
    # another SOM (weights changed)
    som2 = _som(init=str(refs["som"]))
    with torch.no_grad():
        som2.weight[0, 0, 0, 0] += 1
    with pytest.raises(ConfigError, match=r"som: content hash"):
        map_to_files_sharded(Mapper(som2, batch_size=4), img, tmp_path / "m.bin", tmp_path / "t.bin", resume=True)
    # another image file
    _images(tmp_path / "other.bin", seed=5)
    with pytest.raises(ConfigError, match=r"images .*other.bin \(was .*img.bin\): content hash"):
        map_to_files_sharded(Mapper(som, batch_size=4), tmp_path / "other.bin", tmp_path / "m.bin",
                             tmp_path / "t.bin", resume=True)
    # another rotation count
    som3 = RotationInvariantSOM(Lattice("cartesian", (3, 3)), SOMGeometry(16, numrot=8), init=str(refs["som"]))
    with pytest.raises(ConfigError, match=r"som_config.geometry.numrot: 4 -> 8"):
        map_to_files_sharded(Mapper(som3, batch_size=4), img, tmp_path / "m.bin", tmp_path / "t.bin", resume=True)
    # the original inputs finish it, byte-identical
    info = map_to_files_sharded(Mapper(som, batch_size=4), img, tmp_path / "m.bin", tmp_path / "t.bin", resume=True)
    assert 0 < info["rows_mapped"] < N
    assert (tmp_path / "m.bin").read_bytes() == refs["map"]
    assert not (tmp_path / ".m.bin.partial.json").exists()


def test_mapping_partial_without_inputs_record_is_refused(refs, tmp_path, monkeypatch):
    som = _som(init=str(refs["som"]))
    monkeypatch.setattr(Mapper, "iter_batches", lambda self, data, rows=None: iter(()))
    with pytest.raises(Exception, match="rows never written"):
        map_to_files_sharded(Mapper(som, batch_size=4), refs["img"], tmp_path / "m.bin", tmp_path / "t.bin")
    os.remove(tmp_path / ".m.bin.partial.json")
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="no record of its inputs"):
        map_to_files_sharded(Mapper(som, batch_size=4), refs["img"], tmp_path / "m.bin", tmp_path / "t.bin",
                             resume=True)


def test_damaged_checkpoint_is_a_typed_error(refs, tmp_path):
    tr = _trainer("online", tmp_path / "ckpt.pt")
    tr.stop_after = 5
    with pytest.raises(KeyboardInterrupt):
        tr.fit(str(refs["img"]))
    good = (tmp_path / "ckpt.pt").read_bytes()
    rng = np.random.default_rng(0)
    for k in range(40):
        b = bytearray(good)
        if k % 2:
            b = b[: int(rng.integers(0, len(b)))]
        else:
            for _ in range(int(rng.integers(1, 20))):
                b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        (tmp_path / "bad.pt").write_bytes(bytes(b))
        try:
            Trainer.load_checkpoint(tmp_path / "bad.pt")
        except FileFormatError as e:
            assert "bad.pt" in str(e)


# ------------------------------------------------------------------ full disk, clobbering, temporary files
def _limit_fsize(limit):
    def f():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return f


def test_full_disk_in_training_cli_one_clear_message(tmp_path):
    """RLIMIT_FSIZE (40 kB) stops the first checkpoint (~69 kB): exit 1, one line naming the
    checkpoint and the size, no traceback, no temporary file left."""
    img = tmp_path / "img.bin"
    _images(img, n=24)
    env = dict(os.environ, OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = tmp_path / "run"
    r = subprocess.run([PY, "-m", "somtorch.train", "som=small", "data=file", f"data.path={img}", "+stage=demo",
                        "stage.numrot=4", "stage.num_iter=1", "runtime=cpu", "runtime.threads=1", "plots=false",
                        "metrics_sample=4", "checkpoint_every=5", f"hydra.run.dir={run}"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
                       preexec_fn=_limit_fsize(40_000))
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    line = [ln for ln in r.stderr.splitlines() if "file size limit exceeded" in ln]
    assert len(line) == 1 and "checkpoint.pt" in line[0] and "needs " in line[0] and "bytes" in line[0], r.stderr
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name]


def test_free_space_is_checked_before_mapping(refs, tmp_path, monkeypatch):
    import shutil as sh

    real = sh.disk_usage
    monkeypatch.setattr(sh, "disk_usage", lambda p: real(p)._replace(free=1000))
    som = _som(init=str(refs["som"]))
    with pytest.raises(OutOfSpaceError, match=r"m.bin: no space left on device; needs .* \(\d+ bytes\), 1000 bytes "
                                              r"free; checked before writing"):
        map_to_files_sharded(Mapper(som, batch_size=4), refs["img"], tmp_path / "m.bin", tmp_path / "t.bin")
    assert os.listdir(tmp_path) == []  # nothing created
    with pytest.raises(OutOfSpaceError, match="needs 9.5 GiB"):
        check_free_space(tmp_path / "x", int(9.5 * 2**30))
    with pytest.raises(OutOfSpaceError):
        PreallocatedOutput(tmp_path / "p.bin", b"h", 10**6, 100)


def test_atomic_writes_never_clobber_and_clean_up(tmp_path):
    p = tmp_path / "bmu.csv"
    p.write_text("old")
    with pytest.raises(OutputExistsError):
        with atomic_output(p, mode="w") as f:
            f.write("new")
    assert p.read_text() == "old"
    with pytest.raises(ZeroDivisionError):
        with atomic_output(tmp_path / "x.csv", mode="w") as f:
            f.write("partial")
            raise ZeroDivisionError("a failure while writing")
    assert sorted(os.listdir(tmp_path)) == ["bmu.csv"]
    # orphans of dead writers are swept; a live writer's file and resumable partials are kept
    live = AtomicFile(tmp_path / "live.bin")
    dead = tmp_path / ".a.bin.tmp-p999999999-0123456789ab"
    dead.write_bytes(b"x")
    old = tmp_path / ".b.bin.tmp-0123456789ab"
    old.write_bytes(b"x")
    os.utime(old, (1, 1))
    keep = tmp_path / ".m.bin.partial"
    keep.write_bytes(b"x")
    removed = sweep_temp_files(tmp_path)
    assert sorted(os.path.basename(r) for r in removed) == sorted([old.name, dead.name])
    assert os.path.exists(live.temp_path) and keep.exists()
    live.abort()


def _map_cli(tmp_path, out, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([PY, "-m", "somtorch.map", f"som={tmp_path / 'som.bin'}", "som_config=null", "numrot=4",
                           "data=file", f"data.path={tmp_path / 'img.bin'}", f"hydra.run.dir={out}", "plots=false",
                           "runtime=cpu", *extra], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)


def test_map_cli_bmu_csv_atomic_and_not_clobbered(refs, tmp_path):
    shutil.copy2(refs["img"], tmp_path / "img.bin")
    shutil.copy2(refs["som"], tmp_path / "som.bin")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".bmu.csv.tmp-p999999999-0123456789ab").write_text("orphan of a killed run")
    r = _map_cli(tmp_path, out)
    assert r.returncode == 0, r.stderr[-2000:]
    first = (out / "bmu.csv").read_bytes()
    assert first.startswith(b"image,bmu,row,col,distance,flip,angle")
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]  # swept at the start, none left
    r = _map_cli(tmp_path, out)  # a second run into the same folder: refused, nothing replaced
    assert r.returncode == 1 and "overwrite=true" in r.stderr
    assert (out / "bmu.csv").read_bytes() == first
