"""engine._malloc: the glibc allocator tuning is opt-out and changes no numbers."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

CODE = "from somtorch.engine._malloc import tune_malloc; print(tune_malloc(), tune_malloc())"


def _run(env_value):
    import os

    env = dict(os.environ)
    env.pop("SOMTORCH_MALLOC_TUNING", None)
    if env_value is not None:
        env["SOMTORCH_MALLOC_TUNING"] = env_value
    return subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env,
                          check=True).stdout.split()


def test_opt_out_leaves_the_allocator_alone():
    assert _run("0") == ["False", "False"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_active_on_glibc_and_idempotent():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not a glibc system")
    assert _run(None) == ["True", "True"]


def test_training_result_does_not_depend_on_the_tuning(tmp_path):
    """The same tiny training run with and without the tuning gives bit-identical weights."""
    code = (
        "import torch, sys\n"
        "from somtorch.engine import RotationInvariantSOM, SOMGeometry, Trainer, Neighbourhood\n"
        "from somtorch.geometry import Lattice\n"
        "torch.set_num_threads(1)\n"
        "x = torch.rand(12, 1, 20, 20, generator=torch.Generator().manual_seed(0))\n"
        "som = RotationInvariantSOM(Lattice('cartesian', (3, 3)), SOMGeometry(20, numrot=8),"
        " init='random', seed=2)\n"
        "Trainer(som, Neighbourhood('gaussian', 1.1, 0.2), metrics_sample=0,"
        " handle_signals=False).fit(x)\n"
        "torch.save(som.weight.detach().clone(), sys.argv[1])\n")
    import os

    outs = []
    for v in ("0", "1"):
        p = tmp_path / f"w{v}.pt"
        env = dict(os.environ, SOMTORCH_MALLOC_TUNING=v)
        subprocess.run([sys.executable, "-c", code, str(p)], env=env, check=True)
        outs.append(torch.load(p))
    assert torch.equal(outs[0], outs[1])
