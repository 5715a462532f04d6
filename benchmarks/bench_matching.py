"""Approximate vs exact matching, and the zoom-factor search: throughput, peak memory, agreement.

Every case maps the same images onto the same SOM with every mode, in one process and one run
(ratios are taken within the run: the machine is shared):

* ``exact``: :class:`somtorch.engine.Mapper` (the reference);
* ``approx``: :class:`somtorch.engine.ApproxMapper` with its defaults (surrogate search, coarse 15,
  refine 4: 19 of 90 base rotations);
* ``approx-fast``: surrogate search, coarse 11, refine 3 (14 of 90);
* ``approx-bisect``: the first search (``search="bisect"``, coarse 6, refine 1: 14 of 90);
* ``approx-fine``: bisect, coarse 15, refine 2 (27 of 90);
* ``approx-polar``: bisect plus 2 polar-FFT seed angles (:class:`somtorch.engine.polar.PolarMatcher`);
* ``polar``: the polar search (``search="polar"``: no exact first pass; exact norms, exact inner
  cross term, polar-FFT outer cross term for the 6 best neurons of an invariant bound, then 5 of
  90 base rotations exact in two passes, :mod:`somtorch.engine.polarsearch`); ``polar-r3``: 3
  (2 + 1); ``polar-r2``: 2 (1 + 1);
* ``exact+scales`` / ``approx+scales``: the same with the five default zoom factors
  (0.8 ... 1.25, :func:`somtorch.engine.scale_factors`), compared with ``exact+scales``.

Cases: ``sky32`` (the built-in sky sample, 32x32 images, the default of ``somtorch.train``),
``sky64`` (the same sky at 64x64, the size of the 360-rotation row of bench_pink), ``structured``
(32x32 doubles, FR I/II, triples, resolved sources and sidelobe artefacts, neurons = 25 of them).
The sky SOMs (10x10) are trained here for two short stages at 8 rotations, then mapped at 360.

Each (case, mode) runs in a fresh subprocess. Columns: images/s (the fastest of ``--repeat`` timed
runs after a warm-up batch), speed-up over ``exact`` of the same case, peak anonymous memory of
the mapping above the subprocess's level after loading the case (``RssAnon`` sampled every 5 ms;
``torch.cuda.max_memory_allocated`` on CUDA), base rotations searched per image (of ``numrot/4``),
and against the reference: best-neuron agreement, flip and transform agreement at the exact best
neuron, median/p95 angle error (degrees, same flip), fraction of best distances within 1 % and the
largest relative error, median and p95 relative error over all (image, neuron) distances.

Usage::

    python benchmarks/bench_matching.py                 # all cases, CPU, 1 thread
    python benchmarks/bench_matching.py --quick         # small sizes (a smoke test)
    python benchmarks/bench_matching.py --device cuda --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_engine import machine  # noqa: E402  (one description of the machine for every benchmark)


def _anon_kib() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakAnon:
    """Highest ``RssAnon`` seen while the block runs, minus the level at its start (MiB)."""

    def __enter__(self):
        self.base = self.peak = _anon_kib()
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, _anon_kib())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, _anon_kib())
        self.mib = (self.peak - self.base) / 1024.0


def sky_som(d: int, n_img: int, n_train: int, device, cache: str | None):
    """A 10x10 SOM trained briefly on the built-in sky at side ``d`` (8 rotations), mapped at 360."""
    from somtorch.datasets import sample_image_binary
    from somtorch.engine import Neighbourhood, RotationInvariantSOM, SOMGeometry, Trainer
    from somtorch.geometry import Lattice
    from somtorch.io import read_images

    x = read_images(sample_image_binary(n=n_img, image_size=d, cache_dir=cache))
    lat = Lattice("cartesian", (10, 10))
    som8 = RotationInvariantSOM(lat, SOMGeometry(d, numrot=8), init="random", seed=1)
    Trainer(som8, Neighbourhood("gaussian", 1.5, 0.2), num_iter=1).fit(x[:n_train])
    Trainer(som8, Neighbourhood("gaussian", 0.7, 0.1), num_iter=1).fit(x[:n_train])
    som = RotationInvariantSOM(lat, SOMGeometry(d, numrot=360), init=som8.weight.detach().clone(), device=device)
    return som, x[n_train:]


def structured_som(n_map: int, device):
    from somtorch.datasets import generate_sky, preprocess_cutouts, render_cutouts
    from somtorch.engine import RotationInvariantSOM, SOMGeometry
    from somtorch.geometry import Lattice
    from somtorch.geometry.transforms import pad_or_crop

    n = 25 + n_map
    sky = generate_sky(n_sources=max(120, int(n / 1.2)), seed=3, image_size=96,
                       class_mix={"double": 0.3, "fr2": 0.2, "resolved": 0.2, "triple": 0.15, "fr1": 0.15})
    n = min(n, len(sky.catalogue))
    cube = render_cutouts(sky, indices=np.arange(n), channels=("radio",), size=96)[:, 0]
    imgs = torch.from_numpy(preprocess_cutouts(cube, snr=2.0, log=True, crop=None, image_size=32))[:, None]
    geo = SOMGeometry(32, numrot=360)
    som = RotationInvariantSOM(Lattice("cartesian", (5, 5)), geo, init=pad_or_crop(imgs[:25], geo.nd), device=device)
    return som, imgs[25:]


MODES = {
    "exact": ("exact", {}, False),
    "approx": ("approximate", {}, False),
    "approx-fast": ("approximate", {"coarse": 11, "refine": 3}, False),
    "approx-bisect": ("approximate", {"search": "bisect"}, False),
    "approx-fine": ("approximate", {"search": "bisect", "coarse": 15, "refine": 2}, False),
    "approx-polar": ("approximate", {"search": "bisect", "seeds": 2}, False),
    "polar": ("approximate", {"search": "polar"}, False),
    "polar-r3": ("approximate", {"search": "polar", "refine": 3}, False),
    "polar-r2": ("approximate", {"search": "polar", "refine": 2}, False),
    "exact+scales": ("exact", {}, True),
    "approx+scales": ("approximate", {}, True),
}


def _child(spec: dict) -> None:
    """One (case, mode) in a fresh process: load the case, map (best of ``repeat`` timed runs after
    a warm-up batch), save the result; peak anonymous memory from before the mapper is built."""
    from somtorch.engine import MappingResult, RotationInvariantSOM, make_mapper, scale_factors

    torch.set_num_threads(spec["threads"])
    data = torch.load(spec["case_file"])
    device = torch.device(spec["device"])
    som = RotationInvariantSOM.from_config_dict(data["config"], init=data["weight"], device=device)
    x = data["images"].to(device)
    matching, opts, scaled = MODES[spec["mode"]]
    times = []
    with PeakAnon() as mem:
        mapper = make_mapper(som, matching, scale_factors() if scaled else None, opts)
        mapper.map(x[:8])
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        for _ in range(spec["repeat"]):
            t0 = time.perf_counter()
            res: MappingResult = mapper.map(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    out = {"distances": res.distances, "transform_index": res.transform_index,
           "scale": getattr(res, "scale", None), "seconds": min(times),
           "peak_mib": (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else mem.mib),
           "base_rotations": (mapper.base_rotations_per_image() if hasattr(mapper, "base_rotations_per_image")
                              else max(som.geometry.numrot // 4, 1))}
    torch.save(out, spec["out_file"])


def run_case(name: str, som, x, modes, args, tmp: str) -> list[dict]:
    import subprocess
    import sys

    from somtorch.engine import MappingResult, matching_agreement

    case_file = os.path.join(tmp, f"{name}.pt")
    torch.save({"config": som.config_dict(), "weight": som.weight.detach().cpu(), "images": x.cpu()}, case_file)
    rows, refs = [], {}
    for mode in modes:
        out_file = os.path.join(tmp, f"{name}-{mode}.pt")
        spec = {"case_file": case_file, "out_file": out_file, "mode": mode, "device": str(som.device),
                "threads": args.threads, "repeat": args.repeat}
        subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)], check=True)
        r = torch.load(out_file)
        res = MappingResult(r["distances"], r["transform_index"], som.geometry.numrot)
        if r["scale"] is not None:
            res.scale = r["scale"]
        row = {"case": name, "mode": mode, "n_images": len(x), "images_per_s": len(x) / r["seconds"],
               "peak_mib": round(float(r["peak_mib"]), 1), "base_rotations": r["base_rotations"],
               "k": max(som.geometry.numrot // 4, 1)}
        scaled = MODES[mode][2]
        ref_key = "exact+scales" if scaled else "exact"
        if mode == ref_key:
            refs[ref_key] = (res, row["images_per_s"])
        if ref_key in refs:
            ref, ref_speed = refs[ref_key]
            row["speedup"] = row["images_per_s"] / ref_speed
            agg = matching_agreement(som, x, mapper=_Fixed(res), reference=ref, warmup=0)
            for k in ("bmu_agreement", "flip_agreement", "transform_agreement", "angle_error_deg_median",
                      "angle_error_deg_p95", "bmu_distance_within_1pc", "bmu_distance_rel_error_max",
                      "distance_rel_error_median", "distance_rel_error_p95"):
                row[k] = agg[k]
            if scaled:
                rr = torch.arange(len(x))
                b = ref.distances.argmin(1)
                row["scale_agreement"] = float((res.scale[rr, b] == ref.scale[rr, b]).double().mean())
        rows.append(row)
        print(_fmt(row), flush=True)
    return rows


class _Fixed:
    """A 'mapper' returning a result already computed (so agreement is measured on the timed run)."""

    def __init__(self, res):
        self.res = res

    def map(self, images):
        return self.res


HEAD = ("case", "mode", "img/s", "x exact", "peak MiB", "bases/k", "bmu agree", "flip", "transform",
        "angle med/p95", "best d within 1%", "best d max err", "all d med/p95 err", "scale agree")


def _fmt(r: dict) -> str:
    def f(k, fmt="{:.3f}"):
        return fmt.format(r[k]) if k in r and r[k] == r[k] else "-"

    return ("| " + " | ".join([
        r["case"], r["mode"], f"{r['images_per_s']:.0f}", f("speedup", "{:.1f}"), f("peak_mib", "{:.1f}"),
        f"{r['base_rotations']}/{r['k']}", f("bmu_agreement"), f("flip_agreement"), f("transform_agreement"),
        (f("angle_error_deg_median", "{:.1f}") + " / " + f("angle_error_deg_p95", "{:.1f}")),
        f("bmu_distance_within_1pc"), f("bmu_distance_rel_error_max", "{:.4f}"),
        (f("distance_rel_error_median", "{:.4f}") + " / " + f("distance_rel_error_p95", "{:.4f}")),
        f("scale_agreement")]) + " |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", default="sky32,sky64,structured")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared 2-core host, 2 OpenMP threads stall)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per mode (the fastest counts)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--cache", default=None, help="sample cache folder (default: somtorch's)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    a = p.parse_args(argv)
    if a.child:
        _child(json.loads(a.child))
        return 0
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    modes = [m for m in a.modes.split(",") if m]
    print(f"# machine: {machine()}; device {device}; threads {torch.get_num_threads()}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| " + " | ".join(HEAD) + " |")
    print("|" + "---|" * len(HEAD))
    import tempfile

    rows = []
    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="bench_matching-")
    for case in [c for c in a.cases.split(",") if c]:
        if case == "sky32":
            som, x = sky_som(32, 120 if a.quick else 1000, 60 if a.quick else 600, device, a.cache)
        elif case == "sky64":
            som, x = sky_som(64, 100 if a.quick else 400, 60 if a.quick else 200, device, a.cache)
        elif case == "structured":
            som, x = structured_som(40 if a.quick else 300, device)
        else:
            raise SystemExit(f"unknown case {case!r}")
        rows += run_case(case, som, x, modes, a, tmp)
    print(f"# total {time.time() - t0:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": machine(), "device": str(device), "threads": a.threads, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
