"""The Hydra programs ``python -m somtorch.train`` and ``python -m somtorch.map`` on tiny configurations.

The entry points (:func:`somtorch.train.main`, :func:`somtorch.map.main`) run in-process with
``sys.argv`` set as the shell would set it; one slow test runs them as real subprocesses.

* a single stage writes every per-stage output (PINK SOM, config, checkpoint, metrics, plots);
* in a 2-stage schedule, stage 2 starts from stage 1's SOM (re-trained here through the Python API
  from stage 1's file: identical);
* ``somtorch.map`` writes mapping/transform files equal to :meth:`Mapper.map_to_files`;
* an interrupted run (``stop_after_images``) resumed with ``resume=true`` ends with exactly the SOM
  of an uninterrupted run; an existing run folder is not overwritten without ``resume``/``overwrite``;
* bad configurations fail with exit status 1 and a message naming the field.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from somtorch.engine import Mapper, Neighbourhood, RotationInvariantSOM, Trainer
from somtorch.io import read_mapping, read_som, read_transforms, write_images
from somtorch.testing import run_module

REPO = Path(__file__).resolve().parents[1]

# a tiny schedule: 2x2 SOM, 10x10 images, numrot 4 then 8, one iteration each, no plots
TINY = ["som=small", "som.shape=[2,2]", "runtime=cpu", "metrics_sample=5", "plots=false",
        "schedule.stages.stage1.num_iter=1", "schedule.stages.stage2.num_iter=1"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(10.0), torch.arange(10.0), indexing="ij")
    imgs = torch.zeros(10, 1, 10, 10)
    for i in range(10):  # one elongated blob per image, at several angles
        a = i * 0.6
        u = (xx - 4.5) * np.cos(a) + (yy - 4.5) * np.sin(a)
        v = -(xx - 4.5) * np.sin(a) + (yy - 4.5) * np.cos(a)
        imgs[i, 0] = torch.exp(-(u / 2.5) ** 2 - (v / 1.0) ** 2)
    imgs += 0.05 * torch.rand(imgs.shape, generator=g)
    path = tmp_path_factory.mktemp("data") / "imgs.bin"
    write_images(path, imgs)
    return path


@pytest.fixture(scope="module")
def reference_run(images, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ref") / "run"
    assert run_module("train", TINY + ["data=file", f"data.path={images}", f"hydra.run.dir={run}"]) == 0
    return run


def test_single_stage_writes_every_output(images, tmp_path, capsys):
    run = tmp_path / "run"
    rc = run_module("train", ["+stage=demo", "stage.numrot=4", "stage.num_iter=1", "stage.inter_store=keep",
                        "som=small", "som.shape=[2,2]", "runtime=cpu", "metrics_sample=4",
                        "data=file", f"data.path={images}", f"hydra.run.dir={run}"])
    assert rc == 0
    stage = run / "demo"
    for name in ("som.bin", "som_config.json", "checkpoint.pt", "metrics.csv", "metrics.json",
                 "mosaic.png", "training_curves.png"):
        assert (stage / name).is_file() and (stage / name).stat().st_size > 0, name
    assert (stage / "mosaic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(stage / "som.bin") in capsys.readouterr().out  # main prints the final SOM
    w, h = read_som(stage / "som.bin")
    assert w.shape == (4, 1, 14, 14) and tuple(h.som_dims) == (2, 2)  # native geometry: 10 px -> 14
    assert any("somtorch stage demo" in c for c in h.comments)
    cfg = json.loads((stage / "som_config.json").read_text())
    assert cfg["geometry"]["numrot"] == 4 and cfg["lattice"]["shape"] == [2, 2]
    metrics = pd.read_csv(stage / "metrics.csv")
    assert {"qe", "te", "change", "tick"} <= set(metrics.columns) and len(metrics) == 10
    assert metrics["qe"].notna().all()
    ck = Trainer.load_checkpoint(stage / "checkpoint.pt")
    assert torch.equal(ck["weight"], w)
    assert sorted(os.listdir(stage / "progress")) == [f"som_{k}.bin" for k in range(9)]  # PINK: 9 stores
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "done" and summary["final_som"] == str(stage / "som.bin")
    assert summary["stages"][0]["final_metrics"]["qe"] == pytest.approx(metrics["qe"].iloc[-1])


def test_schedule_stage2_starts_from_stage1(reference_run, images):
    s1, s2 = reference_run / "stage1", reference_run / "stage2"
    summary = json.loads((reference_run / "summary.json").read_text())
    assert [s["status"] for s in summary["stages"]] == ["done", "done"]
    assert summary["stages"][1]["init"] == str(s1 / "som.bin")
    assert summary["final_som"] == str(s2 / "som.bin")
    # stage 2 re-trained with the Python API from stage 1's file gives stage 2's file
    cfg2 = json.loads((s2 / "som_config.json").read_text())
    assert cfg2["geometry"]["numrot"] == 8 and json.loads((s1 / "som_config.json").read_text())["geometry"]["numrot"] == 4
    som = RotationInvariantSOM.from_config_dict(cfg2, init=str(s1 / "som.bin"))
    st = cfg2["stage"]
    Trainer(som, Neighbourhood(st["dist_func"], st["sigma"], st["damping"], st["max_update_distance"]),
            num_iter=st["num_iter"], shuffle=st["shuffle"], metrics_sample=0).fit(images)
    assert torch.equal(som.weight, read_som(s2 / "som.bin")[0])
    # and stage 1 from scratch (random init, seed 1234) gives stage 1's file
    cfg1 = json.loads((s1 / "som_config.json").read_text())
    som1 = RotationInvariantSOM.from_config_dict(cfg1, init="random")
    st1 = cfg1["stage"]
    Trainer(som1, Neighbourhood(st1["dist_func"], st1["sigma"], st1["damping"]), num_iter=1,
            metrics_sample=0).fit(images)
    assert torch.equal(som1.weight, read_som(s1 / "som.bin")[0])


def test_map_writes_the_python_api_result(reference_run, images, tmp_path):
    out = tmp_path / "map"
    som_file = reference_run / "stage2" / "som.bin"
    rc = run_module("map", [f"som={som_file}", "data=file", f"data.path={images}", "runtime=cpu",
                      "batch_size=3", "plots=false", f"hydra.run.dir={out}"])
    assert rc == 0
    cfg = json.loads((reference_run / "stage2" / "som_config.json").read_text())
    som = RotationInvariantSOM.from_config_dict(cfg, init=str(som_file))
    Mapper(som).map_to_files(images, tmp_path / "m.bin", tmp_path / "t.bin")
    assert (out / "mapping.bin").read_bytes() == (tmp_path / "m.bin").read_bytes()
    assert (out / "transform.bin").read_bytes() == (tmp_path / "t.bin").read_bytes()
    dist, _ = read_mapping(out / "mapping.bin")
    flip, angle, _ = read_transforms(out / "transform.bin")
    bmu = pd.read_csv(out / "bmu.csv")
    assert bmu["bmu"].tolist() == dist.argmin(1).tolist()
    rows = np.arange(len(bmu))
    np.testing.assert_allclose(bmu["distance"], dist.min(1).values.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(bmu["flip"], flip.numpy()[rows, bmu["bmu"]])
    summ = json.loads((out / "map_summary.json").read_text())
    assert sum(summ["counts"]) == 10 and summ["counts"] == np.bincount(bmu["bmu"], minlength=4).tolist()
    # run_dir= (the run's final SOM) and data=trained (the images it was trained on) give the same
    out2 = tmp_path / "map2"
    assert run_module("map", [f"run_dir={reference_run}", "plots=false", f"hydra.run.dir={out2}"]) == 0
    assert (out2 / "mapping.bin").read_bytes() == (out / "mapping.bin").read_bytes()


def _tree(folder: Path) -> dict:
    """Every file under ``folder`` -> (bytes, mtime): to show that nothing was touched."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_interrupt_and_resume(reference_run, images, tmp_path, capsys):
    """``resume=<run folder>`` continues with the run's saved config and never rewrites it."""
    run = tmp_path / "run"
    base = TINY + ["data=file", f"data.path={images}", f"hydra.run.dir={run}"]
    assert run_module("train", base + ["stop_after_images=4", "stop_stage=stage2"]) == 130
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert [s["status"] for s in summary["stages"]] == ["done", "interrupted"]
    assert not (run / "stage2" / "som.bin").exists() and (run / "stage2" / "checkpoint.pt").exists()
    saved = {f: (run / ".hydra" / f).read_bytes() for f in ("config.yaml", "overrides.yaml")}
    assert b"stop_after_images=4" in saved["overrides.yaml"]
    capsys.readouterr()
    # only the run folder: the schedule, SOM, data and stop options come from the saved config
    assert run_module("train", [f"resume={run}"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(run / "stage2" / "som.bin")
    for stage in ("stage1", "stage2"):
        assert (run / stage / "som.bin").read_bytes() == (reference_run / stage / "som.bin").read_bytes()
    ours = json.loads((run / "stage2" / "metrics.json").read_text())
    ref = json.loads((reference_run / "stage2" / "metrics.json").read_text())
    assert [r["qe"] for r in ours] == [r["qe"] for r in ref]
    assert json.loads((run / "summary.json").read_text())["status"] == "done"
    assert {f: (run / ".hydra" / f).read_bytes() for f in saved} == saved  # never rewritten
    assert "resuming from checkpoint" in (run / "train.log").read_text()


def test_resume_refuses_changes_and_accepts_the_original_command(images, tmp_path, capsys):
    run = tmp_path / "run"
    base = TINY + ["data=file", f"data.path={images}", f"hydra.run.dir={run}"]
    assert run_module("train", base + ["stop_after_images=3"]) == 130
    before = _tree(run)
    capsys.readouterr()
    # another sigma would not continue the same run: refused, nothing touched
    assert run_module("train", [f"resume={run}", "schedule.stages.stage1.sigma=0.5"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("somtorch.train: error: field 'schedule.stages.stage1.sigma': found 0.5, expected 2.0")
    assert len(err.splitlines()) == 1 and _tree(run) == before
    # the original command with resume (older form: resume=true + hydra.run.dir) and options that
    # do not change the result
    assert run_module("train", base + ["resume=true", "runtime.threads=1", "runtime.batch_size=2"]) == 0
    assert json.loads((run / "summary.json").read_text())["status"] == "done"
    ref = tmp_path / "ref"
    assert run_module("train", TINY + ["data=file", f"data.path={images}", f"hydra.run.dir={ref}"]) == 0
    assert (run / "stage2" / "som.bin").read_bytes() == (ref / "stage2" / "som.bin").read_bytes()
    # a folder that is not a run
    assert run_module("train", [f"resume={tmp_path / 'nothing'}"]) == 1
    assert "field 'resume'" in capsys.readouterr().err


def test_second_run_into_a_used_folder_is_refused_untouched(reference_run, images, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    before = _tree(run)
    capsys.readouterr()
    for extra in ([], ["+stage=demo", "stage.numrot=4", "stage.num_iter=1"]):  # same or other stage names
        rc = run_module("train", TINY + ["data=file", f"data.path={images}", f"hydra.run.dir={run}", *extra])
        assert rc == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[0] == (f"somtorch.train: error: {run} already holds a training run; continue it with "
                          f"resume={run}, choose another hydra.run.dir, or pass overwrite=true to replace it")
        assert len(err) <= 2 and "Traceback" not in "".join(err)
        assert _tree(run) == before
    # overwrite=true replaces the earlier run's outputs
    rc = run_module("train", TINY + ["data=file", f"data.path={images}", f"hydra.run.dir={run}", "overwrite=true",
                               "+stage=demo", "stage.numrot=4", "stage.num_iter=1"])
    assert rc == 0
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "demo", "summary.json", "train.log"]


def test_a_run_that_fails_before_it_starts_leaves_no_folder(images, tmp_path, capsys):
    bad = tmp_path / "not_images.bin"
    bad.write_bytes(b"this is not a PINK file" * 10)
    run = tmp_path / "run"
    assert run_module("train", TINY + ["data=file", f"data.path={bad}", f"hydra.run.dir={run}"]) == 1
    assert "not_images.bin" in capsys.readouterr().err and not run.exists()
    # a budget too small for the SOM: refused when the first stage is set up
    assert run_module("train", TINY + ["data=file", f"data.path={images}", f"hydra.run.dir={run}",
                                 "runtime.memory_limit=1KiB"]) == 1
    assert "runtime.memory_limit" in capsys.readouterr().err and not run.exists()
    # an empty folder made beforehand is kept (empty)
    run.mkdir()
    assert run_module("train", TINY + ["data=file", f"data.path={bad}", f"hydra.run.dir={run}"]) == 1
    assert run.is_dir() and not any(run.iterdir())


@pytest.mark.parametrize("overrides,message", [
    (["som.layout=hexagonal", "som.shape=[4]"], "field 'som.shape': found [4], expected one odd side"),
    (["data.path=/nonexistent/imgs.bin"], "field 'data.path': found '/nonexistent/imgs.bin', expected an existing"),
    (["schedule.stages.stage1.num_iter=0"], "field 'schedule.stages.stage1.num_iter': found 0"),
    (["+schedule.stages.stage1.colour=red"], "field 'schedule.stages.stage1.colour': unknown option"),
    (["+som.shapee=[3,3]"], "field 'som.shapee': unknown option of 'som' (did you mean 'som.shape'?)"),
    (["som.shapee=[3,3]"], "option 'som.shapee': Key 'shapee' not in 'SOMConfig' (did you mean 'shape'?)"),
    (["som.numrot=abc"], "option 'som.numrot': Value 'abc' of type 'str' could not be converted to Integer"),
    (["som.numrot=7"], "field 'som.numrot': found 7, expected 1 or a positive multiple of 4"),
    (["schedule.common.dist_func=triangle"], "field 'schedule.common.dist_func': found 'triangle'"),
    (["som.numrot=6", "schedule.stages.stage1.numrot=null", "schedule.stages.stage2.numrot=null"], "som.numrot"),
    (["runtime.threads=0"], "field 'runtime.threads': found 0"),
    (["runtime.step_size=0"], "field 'runtime.step_size': found 0, expected an integer >= 1"),
    (["runtime.batch_size=-1"], "field 'runtime.batch_size': found -1"),
    (["checkpoint_every=-5"], "field 'checkpoint_every': found -5"),
    (["schedule.stages.stage2.damping=nan"], "field 'schedule.stages.stage2.damping': found nan, expected a finite"),
    (["schedule.common.sigma=inf"], "field 'schedule.common.sigma': found inf"),
    (["data.path=???"], "field 'data.path': no value given; data=file needs the image binary"),
    (["data.path=null"], "field 'data.path': no value given; data=file needs the image binary"),
    (["schedule.stages.stage1.init=/no/som.bin"], "field 'schedule.stages.stage1.init': found '/no/som.bin', expected one of zero"),
    (["som.init=randon"], "field 'som.init': found 'randon', expected one of zero, random"),
    (["runtime=nosuch"], "Could not find 'runtime/nosuch'; available options in 'runtime': cpu, cuda, default,"),
])
def test_bad_config_is_one_clear_line(overrides, message, images, tmp_path, capsys):
    run = tmp_path / "run"
    argv = TINY + ["data=file", f"data.path={images}", f"hydra.run.dir={run}"] + overrides
    assert run_module("train", argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("somtorch.train: error: ") and message in err, err[-2000:]
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "???" not in err.replace(message, "")
    assert not run.exists()  # checked before anything is created


def test_debug_switches_show_the_exception(images, tmp_path, monkeypatch):
    from somtorch.errors import ConfigError

    argv = TINY + ["data=file", f"data.path={images}", f"hydra.run.dir={tmp_path / 'r'}", "runtime.step_size=0"]
    with pytest.raises(ConfigError, match="runtime.step_size"):
        run_module("train", argv + ["debug=true"])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match="runtime.step_size"):
        run_module("train", argv)


def test_map_bad_config(tmp_path, images, capsys):
    assert run_module("map", [f"som={tmp_path / 'missing.bin'}", "data=file", f"data.path={images}",
                        f"hydra.run.dir={tmp_path / 'm'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("somtorch.map: error: ") and "an existing PINK SOM file" in err[0] and len(err) == 1
    assert not (tmp_path / "m").exists()  # failed before mapping: no folder left
    for bad, msg in ((["numrot=7"], "field 'numrot': found 7"), (["+colour=red"], "field 'colour': unknown option"),
                     (["runtime.batch_size=0"], "field 'runtime.batch_size': found 0")):
        assert run_module("map", [f"som={tmp_path / 'missing.bin'}", f"hydra.run.dir={tmp_path / 'm'}", *bad]) == 1
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1, err


def test_map_into_a_used_folder_is_refused_untouched(reference_run, tmp_path, capsys):
    out = tmp_path / "map"
    argv = [f"run_dir={reference_run}", "plots=false", f"hydra.run.dir={out}"]
    assert run_module("map", argv) == 0
    assert (out / ".hydra" / "config.yaml").is_file() and (out / "map.log").is_file()
    import re

    done = re.search(r"done: qe=([0-9.e+-]+) te=([0-9.e+-]+);", (out / "map.log").read_text())
    summ = json.loads((out / "map_summary.json").read_text())
    assert done.group(1) == f"{summ['metrics']['qe']:.4g}" and done.group(2) == f"{summ['metrics']['te']:.4g}"
    before = _tree(out)
    capsys.readouterr()
    assert run_module("map", argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"somtorch.map: error: {out} already holds a mapping;") and len(err) <= 2
    assert _tree(out) == before
    assert run_module("map", argv + ["overwrite=true"]) == 0
    assert (out / "mapping.bin").read_bytes() == before["mapping.bin"][0]


@pytest.mark.slow
def test_entry_points_as_subprocesses(images, tmp_path):
    """``python -m somtorch.train`` / ``python -m somtorch.map`` as a user runs them (about 15 s)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
    run = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "somtorch.train", *TINY, "data=file", f"data.path={images}",
                        f"hydra.run.dir={run}"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip().splitlines()[-1] == str(run / "stage2" / "som.bin")
    p = subprocess.run([sys.executable, "-m", "somtorch.map", f"run_dir={run}", "plots=false",
                        f"hydra.run.dir={tmp_path / 'map'}"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert read_mapping(tmp_path / "map" / "mapping.bin")[0].shape == (10, 4)
    p = subprocess.run([sys.executable, "-m", "somtorch.train", "data=file", "data.path=/nonexistent.bin",
                        f"hydra.run.dir={tmp_path / 'bad'}"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [
        "somtorch.train: error: field 'data.path': found '/nonexistent.bin', expected an existing PINK image binary"]


def test_without_a_terminal_progress_is_logged_with_formatted_figures(images, tmp_path, capsys):
    """Under pytest stderr is not a terminal: no bar, a log line per progress point instead."""
    import re

    run = tmp_path / "run"
    rc = run_module("train", ["+stage=demo", "stage.numrot=4", "stage.num_iter=1", "stage.progress=2", "som=small",
                        "som.shape=[2,2]", "runtime=cpu", "metrics_sample=4", "plots=false", "data=file",
                        f"data.path={images}", f"hydra.run.dir={run}"])
    assert rc == 0
    log = (run / "train.log").read_text()
    lines = [ln for ln in log.splitlines() if "] - demo: " in ln]
    assert [re.search(r"demo: (\d+)% \((\d+)/10 images", ln).groups() for ln in lines] == [("50", "5"), ("100", "10")]
    metrics = pd.read_csv(run / "demo" / "metrics.csv")
    assert f"qe={float(metrics['qe'].iloc[-1]):.4g} " in lines[-1]
    # figures in the log have at most 4 significant digits
    for num in re.findall(r"(?:qe|te|sigma|damping)=([0-9.e+-]+)", log):
        assert len(num.replace(".", "").replace("-", "").lstrip("0").split("e")[0]) <= 4, num
    assert "\r" not in capsys.readouterr().err  # no tqdm bar


@pytest.mark.parametrize("cores,load,local,expected", [
    (2, 0.0, "1", 2), (2, 0.4, "1", 2), (2, 0.6, "1", 1), (2, 1.9, "1", 1), (2, 7.0, "1", 1),
    (16, 3.2, "1", 13), (16, 0.0, "4", 4), (16, 8.0, "4", 2),
])
def test_thread_default_is_the_idle_cores(cores, load, local, expected, monkeypatch):
    from somtorch.cli.common import apply_runtime, auto_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", local)
    assert auto_threads() == expected
    old = torch.get_num_threads()
    try:
        apply_runtime({"threads": None, "device": "cpu"})
        assert torch.get_num_threads() == expected
        apply_runtime({"threads": 1, "device": "cpu"})
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("module,argv", [("train", ["--help"]), ("map", ["--help"]), ("pink", ["--version"])])
def test_programs_tune_the_allocator_for_their_process(module, argv):
    code = (f"import contextlib, io; from somtorch.{module} import main; from somtorch.engine import _malloc\n"
            f"with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n    main({argv!r})\n"
            "print(_malloc._DONE)")
    env = {k: v for k, v in os.environ.items() if k != "SOMTORCH_MALLOC_TUNING"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == ("[True]" if sys.platform.startswith("linux") else "[False]")


def test_expected_failures_read_as_one_line():
    import errno

    from somtorch.cli.runner import describe_error, is_expected_error
    from somtorch.errors import OutputExistsError

    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/run/stage1/som.bin")
    assert describe_error(full) == ("No space left on device while writing /data/run/stage1/som.bin -- free some "
                                    "space and run again (outputs written so far are kept for resume)")
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore details")
    assert describe_error(oom).startswith("out of memory: CUDA out of memory. Tried to allocate 2.00 GiB -- lower "
                                          "runtime.memory_limit or runtime.batch_size")
    assert describe_error(FileNotFoundError(errno.ENOENT, "No such file or directory", "x.bin")) == \
        "x.bin: No such file or directory"
    assert describe_error(OutputExistsError("a\nb")) == "a b"
    assert all(is_expected_error(e) for e in (full, oom, MemoryError(), OutputExistsError("x")))
    assert not is_expected_error(ZeroDivisionError()) and not is_expected_error(KeyError("k"))


def test_map_after_a_full_disk_resumes_with_its_saved_config(reference_run, tmp_path, capsys, monkeypatch):
    """A mapping that runs out of disk ends with one line and keeps its partial outputs;
    ``resume=<folder>`` alone finishes it, byte-identical to an uninterrupted mapping."""
    import errno

    ref = tmp_path / "ref"
    base = [f"run_dir={reference_run}", "plots=false", "batch_size=2"]
    assert run_module("map", base + [f"hydra.run.dir={ref}"]) == 0
    real, count = os.pwrite, {"n": 0}

    def pwrite(fd, data, offset):
        count["n"] += 1
        if count["n"] > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    out = tmp_path / "out"
    monkeypatch.setattr(os, "pwrite", pwrite)
    capsys.readouterr()
    assert run_module("map", base + [f"hydra.run.dir={out}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"somtorch.map: error: {out / 'mapping.bin'}: no space left on device") and len(err) == 2
    monkeypatch.setattr(os, "pwrite", real)
    assert not (out / "mapping.bin").exists() and (out / ".hydra" / "config.yaml").is_file()
    saved = (out / ".hydra" / "config.yaml").read_bytes()
    assert run_module("map", [f"resume={out}", "runtime.threads=1"]) == 0
    for f in ("mapping.bin", "transform.bin", "bmu.csv"):
        assert (out / f).read_bytes() == (ref / f).read_bytes(), f
    assert (out / ".hydra" / "config.yaml").read_bytes() == saved
    assert run_module("map", [f"resume={out}", "numrot=4"]) == 1  # would change the result
    assert "field 'numrot': found 4" in capsys.readouterr().err
    # resuming the finished mapping again: nothing to do, said as such, and nothing rewritten
    stamps = {f: (out / f).stat().st_mtime_ns for f in ("mapping.bin", "transform.bin", "map_summary.json")}
    assert run_module("map", [f"resume={out}"]) == 0
    assert "nothing to resume" in (out / "map.log").read_text()
    assert {f: (out / f).stat().st_mtime_ns for f in stamps} == stamps
