"""One online training step with and without the compiled loops (``somtorch.engine._native``), in one run.

For each case, the dense step (small problems) or the parity step (large ones) trains the same
images from the same SOM twice per round, once with the compiled C loops and once eager
(``SOMTORCH_NATIVE=0`` behaviour), interleaved, and reports microseconds per step (median of the
rounds), their ratio, whether the weights and best matches are identical (they must be), and the
process's peak RSS. The batch is prepared outside the timing: this isolates the per-image step.

Usage::

    python benchmarks/bench_step.py                      # default cases, 3 rounds, 1 thread
    python benchmarks/bench_step.py --cases 40-10-8 --threads 2 --images 256
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

#: name -> (image side, SOM side, numrot, step)
CASES = {"40-10-8": (40, 10, 8, "dense"), "40-6-36": (40, 6, 36, "dense"), "32-20-8": (32, 20, 8, "dense"),
         "100-8-72": (100, 8, 72, "parity"), "64-10-360": (64, 10, 360, "parity")}


def run_case(name: str, rounds: int, n_images: int) -> dict:
    import torch
    from bench_engine import _images

    from somtorch.engine import Neighbourhood, RotationInvariantSOM, SOMGeometry
    from somtorch.engine.online import DenseStep, ParityStep
    from somtorch.geometry import Lattice

    d, side, numrot, kind = CASES[name]
    geo = SOMGeometry(image_dim=d, numrot=numrot, convention="pink")  # the drop-in's geometry and tie rules
    som = RotationInvariantSOM(Lattice("cartesian", (side, side)), geo, init="random", seed=1, rng="pink",
                               tie_break="pink")
    factors = som.factors(Neighbourhood("gaussian", 1.1, 0.2))
    w0 = som.weight.data.clone()
    imgs = _images(d, n_images)
    times: dict = {True: [], False: []}
    out: dict = {}
    for _ in range(rounds):
        for native in (True, False):
            som.weight.data.copy_(w0)
            st = (DenseStep if kind == "dense" else ParityStep)(som, factors)
            if not native:
                st.native = False
                st.refresh()
            st.prepare(imgs)
            t0 = time.perf_counter()
            bmus = [int(st.step(b)) for b in range(len(imgs))]
            times[native].append((time.perf_counter() - t0) / len(imgs) * 1e6)
            out[native] = (som.weight.data.clone(), bmus)
    nat, eag = statistics.median(times[True]), statistics.median(times[False])
    return {"case": name, "step": kind, "native_us": round(nat, 1), "eager_us": round(eag, 1),
            "speedup": round(eag / nat, 2), "identical": bool(torch.equal(out[True][0], out[False][0])
                                                               and out[True][1] == out[False][1]),
            "compiled_loops": _available(),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _available() -> bool:
    from somtorch.engine import _native

    return _native.update_available()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--images", type=int, default=128, help="images per timed pass (parity cases use a quarter)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    import torch
    from bench_engine import machine

    torch.set_num_threads(a.threads)
    print(json.dumps({"machine": machine(), "threads": a.threads}))
    rows = []
    for name in a.cases.split(","):
        n = a.images if CASES[name][3] == "dense" else max(8, a.images // 4)
        rows.append(run_case(name, a.rounds, n))
        print(json.dumps(rows[-1]), flush=True)
    print("| case | step | compiled µs/step | eager µs/step | × | identical |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['step']} | {r['native_us']} | {r['eager_us']} | {r['speedup']} | {r['identical']} |")
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
