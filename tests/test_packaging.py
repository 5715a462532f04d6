"""The installed package, as a user gets it from a package index.

``pip wheel .`` builds the wheel; it is installed (without dependencies, which are reused from
this environment) into a fresh virtual environment, and ``somtorch-train`` / ``python -m
somtorch.map`` run from an empty folder on the built-in sample: the Hydra configs travel inside
the package (``somtorch/configs``), nothing is read from the source tree.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _sh(args, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)
    assert p.returncode == 0, f"{args}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy of the files git knows (a stale build/ folder in the checkout could add
    # deleted modules); no build isolation: this environment's build backend, no download
    src = tmp_path_factory.mktemp("src")
    listed = _sh(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO).stdout.split("\0")
    for rel in filter(None, listed):
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    _sh([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", out],
        cwd=src)
    (whl,) = out.glob("somtorch-*.whl")
    return whl


def test_wheel_holds_the_configs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("train.yaml", "map.yaml", "preprocess.yaml", "som/default.yaml", "data/sample.yaml",
                 "schedule/demo.yaml", "stage/demo.yaml", "runtime/default.yaml",
                 "recipe/cookbook_vlass.yaml", "hydra/job_logging/somtorch.yaml", "__init__.py"):
        assert f"somtorch/configs/{name}" in names, name
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry).decode()
    for cmd in ("somtorch-train = somtorch.train:main", "somtorch-map = somtorch.map:main",
                "somtorch-pink = somtorch.pink:main"):
        assert cmd in scripts


def test_installed_wheel_trains_and_maps_from_an_empty_folder(wheel, tmp_path):
    """About 10 s: a fresh venv with the wheel, a 2x2 SOM on 12 sample images, one short stage."""
    venv = tmp_path / "venv"
    _sh([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    purelib = Path(_sh([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # the dependencies (torch, hydra, ...) come from this environment's site-packages; its .pth
    # files (the editable install of the source tree) are not processed from a .pth path entry
    deps = [p for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()} if os.path.isdir(p)]
    (purelib / "_somtorch_test_deps.pth").write_text("\n".join(deps) + "\n")
    _sh([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheel])
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    env.update(OMP_NUM_THREADS="1", SOMTORCH_CACHE_DIR=str(tmp_path / "cache"))
    where = _sh([py, "-c", "import somtorch.configs as c; print(c.__file__)"], cwd=work, env=env).stdout
    assert str(venv) in where and str(REPO) not in where  # the installed copy, not the source tree
    run = work / "run"
    p = _sh([venv / "bin" / "somtorch-train", "som=small", "som.shape=[2,2]", "runtime=cpu", "data.n=12",
             "data.image_size=16", "+stage=demo", "stage.numrot=4", "stage.num_iter=1", "metrics_sample=4",
             "plots=false", "hydra.run.dir=run"], cwd=work, env=env)
    assert p.stdout.strip().splitlines()[-1] == str(run / "demo" / "som.bin")
    assert (run / "demo" / "som.bin").is_file() and (run / "summary.json").is_file()
    _sh([py, "-m", "somtorch.map", "run_dir=run", "plots=false", "hydra.run.dir=map"], cwd=work, env=env)
    assert (work / "map" / "mapping.bin").is_file() and (work / "map" / "bmu.csv").is_file()
    p = subprocess.run([venv / "bin" / "somtorch-map", "run_dir=run", "hydra.run.dir=map"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and p.stderr.startswith(f"somtorch.map: error: {work / 'map'} already holds a mapping;")
    assert _sh([venv / "bin" / "somtorch-pink", "--version"], cwd=work, env=env).stdout.startswith("somtorch-pink 0.1.0")
    # the approximate search (surrogate) from the installed copy
    _sh([venv / "bin" / "somtorch-map", "run_dir=run", "numrot=40", "matching=approximate", "plots=false",
         "hydra.run.dir=map_fast"], cwd=work, env=env)
    assert (work / "map_fast" / "mapping.bin").is_file()
    # the drop-in in PINK's reproduction mode from a zero SOM (every step has exact ties): the tie
    # rule compiles its C loop into the cache folder when a compiler is there (numpy otherwise)
    _sh([py, "-c", "import torch; from somtorch.io import write_images; "
         "write_images('x.bin', torch.rand(10, 1, 16, 16, generator=torch.Generator().manual_seed(0)))"],
        cwd=work, env=env)
    _sh([venv / "bin" / "somtorch-pink", "--train", "x.bin", "som.bin", "--som-width", "2", "--som-height", "2",
         "-n", "8", "--init", "zero", "--num-iter", "1"], cwd=work, env=env)
    assert (work / "som.bin").is_file()
    if shutil.which("cc") or shutil.which("gcc"):
        assert list((tmp_path / "cache" / "native").glob("pinksq-*.so"))
        # and the rotation sampler (somtorch.geometry._sampler), from the wheel's copy of its source
        assert list((tmp_path / "cache" / "native").glob("sampler-*.so"))
