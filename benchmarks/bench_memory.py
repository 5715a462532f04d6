"""Mapping an image file several times larger than the memory budget: peak memory stays flat.

Usage
-----
::

    python benchmarks/bench_memory.py [--budget 16MiB] [--json out.json]

For image files of 1x, 2x, 4x and 8x the budget (64x64 images, 10x10 SOM, 8 rotations with flip),
a fresh process maps the file with :func:`somtorch.distributed.map_to_files_sharded` (one
process), the batch size chosen by :func:`somtorch.engine.memory.fit_batch_size` for the budget.
A sampling thread reads ``/proc/self/status`` every 10 ms and records the peak *anonymous*
resident memory (``RssAnon``: tensors, numpy arrays, Python objects) above the baseline taken
just before mapping, and the peak file-backed resident memory (``RssFile``: pages of the
memory-mapped image file, which the kernel can drop at any time). The anonymous peak must not
grow with the file size and must stay within the budget; the estimate of the batch is printed next
to it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _status() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("RssAnon", "RssFile", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out


def child(img: str, out_dir: str, budget: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from somtorch.distributed import map_to_files_sharded
    from somtorch.engine import Mapper, RotationInvariantSOM, SOMGeometry
    from somtorch.engine.memory import estimate_memory, fit_batch_size, parse_bytes
    from somtorch.geometry import Lattice
    from somtorch.io import read_images_header

    n = read_images_header(img).n_images
    som = RotationInvariantSOM(Lattice("cartesian", (10, 10)), SOMGeometry(64, numrot=8), init="random", seed=1)
    est = estimate_memory(som, "map")
    b = fit_batch_size(est, parse_bytes(budget))
    mapper = Mapper(som, batch_size=b)
    mapper.map(torch.rand(b, 1, 64, 64))  # warm-up: allocator pools, BLAS buffers
    base = _status()
    peak = dict(base)
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            s = _status()
            for k in ("RssAnon", "RssFile"):
                peak[k] = max(peak[k], s[k])
            time.sleep(0.01)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    map_to_files_sharded(mapper, img, os.path.join(out_dir, "m.bin"), os.path.join(out_dir, "t.bin"), overwrite=True)
    dt = time.perf_counter() - t0
    stop.set()
    th.join()
    return {"images": n, "file_bytes": os.path.getsize(img), "budget_bytes": parse_bytes(budget), "batch_size": b,
            "estimate_bytes": est.total(b), "baseline_anon_bytes": base["RssAnon"],
            "peak_anon_above_baseline_bytes": peak["RssAnon"] - base["RssAnon"],
            "peak_file_bytes": peak["RssFile"], "seconds": round(dt, 3), "images_per_s": round(n / dt, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", default="16MiB")
    p.add_argument("--factors", default="1,2,4,8", help="file sizes as multiples of the budget")
    p.add_argument("--json")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(*a.child)))
        return 0
    import numpy as np

    from somtorch.engine.memory import parse_bytes
    from somtorch.io import write_images

    budget = parse_bytes(a.budget)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fac in (int(f) for f in a.factors.split(",")):
            n = fac * budget // (64 * 64 * 4)
            img = os.path.join(tmp, f"img{fac}.bin")
            rng = np.random.default_rng(fac)
            write_images(img, rng.random((n, 64, 64), dtype=np.float32), overwrite=True)
            env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
            r = subprocess.run([sys.executable, __file__, "--child", img, tmp, a.budget], capture_output=True,
                               text=True, env=env, check=True)
            row = json.loads(r.stdout.strip().splitlines()[-1])
            row["file_over_budget"] = fac
            rows.append(row)
            print(json.dumps(row), flush=True)
            os.remove(img)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
