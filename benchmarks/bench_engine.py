"""Training and mapping throughput and peak memory of the somtorch engine.

Every measurement runs in a fresh subprocess, so its peak memory belongs to it alone. Cases follow
the issue's reference geometries (native geometry, 10x10 cartesian SOM, 360 rotations + flip):

* ``64``:  64x64 images, neuron 90, distance window 44 (T = 720 transformations);
* ``150``: 150x150 images, neuron 212, distance window 106;
* ``D-S-R`` (e.g. ``40-6-36``): DxD images, SxS SOM, R rotations + flip (the drop-in comparison's
  cases, ``benchmarks/bench_pink.py``).

Usage::

    python benchmarks/bench_engine.py                       # throughput, 64 and 150, default device
    python benchmarks/bench_engine.py --cases 64 --device cuda --train-images 5000 --map-images 20000
    python benchmarks/bench_engine.py --memory-scaling      # map N and 4N images from a memory-mapped file
    python benchmarks/bench_engine.py --profile             # per-step time of one 64x64 training step
    python benchmarks/bench_engine.py --record              # also write the results to RESULTS.md
    python benchmarks/bench_engine.py --cases 40-6-36,32-20-8 --train-images 2000
    python benchmarks/bench_engine.py --vs-pink /path/to/Pink  # the drop-in CLI vs PINK (bench_pink.py)

Every CPU run first prints the machine's state (``mode: machine``: GEMM GFLOP/s and memory-copy
GB/s right now): the machine is shared, and the engine's non-GEMM steps are memory-bound.

Memory figures (MiB)
--------------------
* ``rss_before``: resident memory when the timed work starts (interpreter, torch, data, SOM);
* ``peak_rss``: ``getrusage`` max RSS (high-water mark; includes file pages of memory maps);
* ``peak_anon``: highest anonymous resident memory (``RssAnon``, sampled every 5 ms), i.e. heap
  without the page cache of a memory-mapped input;
* ``tracemalloc_peak``: peak of allocations tracemalloc sees (Python objects and numpy arrays, not
  torch tensors; only with ``--memory-scaling``);
* ``peak_cuda``: ``torch.cuda.max_memory_allocated`` on CUDA.

Ratios to PINK are only taken in one run, on identical command lines: ``--vs-pink`` (or
``benchmarks/bench_pink.py``) times PINK and ``python -m somtorch.pink`` interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _case(case) -> tuple[int, int, int]:
    """``64`` -> (64, 10, 360); ``"40-6-36"`` -> (40, 6, 36)."""
    parts = [int(x) for x in str(case).split("-")]
    return (parts[0], 10, 360) if len(parts) == 1 else tuple(parts)


# ---------------------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class _AnonPeak:
    """Samples ``RssAnon`` in a thread; ``peak`` is the highest value seen (KiB)."""

    def __init__(self, interval=0.005):
        self.interval, self.peak, self._stop = interval, _status_kib("RssAnon"), False
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, _status_kib("RssAnon"))
            time.sleep(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, _status_kib("RssAnon"))


def _mib(kib: float) -> float:
    return round(kib / 1024, 1)


# ---------------------------------------------------------------------------------------- child
def _images(d: int, n: int, seed: int = 1):
    """Smooth, source-like images (sums of three Gaussian blobs), ``(n, 1, d, d)``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n_unique = min(n, 512)
    yy, xx = torch.meshgrid(torch.arange(d, dtype=torch.float32), torch.arange(d, dtype=torch.float32),
                            indexing="ij")
    imgs = torch.zeros(n_unique, 1, d, d)
    for _ in range(3):
        cy = torch.rand(n_unique, 1, 1, generator=g) * d * 0.6 + d * 0.2
        cx = torch.rand(n_unique, 1, 1, generator=g) * d * 0.6 + d * 0.2
        s = torch.rand(n_unique, 1, 1, generator=g) * d * 0.05 + d * 0.02
        a = torch.rand(n_unique, 1, 1, generator=g)
        imgs[:, 0] += a * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    imgs += 0.01 * torch.rand(imgs.shape, generator=g)
    return imgs[torch.arange(n) % n_unique]


def _child(args: dict) -> dict:
    import resource

    import torch

    from somtorch.engine import Mapper, Neighbourhood, RotationInvariantSOM, SOMGeometry, Trainer
    from somtorch.geometry import Lattice

    dev = torch.device(args["device"])
    if args.get("threads"):
        torch.set_num_threads(args["threads"])
    if dev.type == "cpu":
        from somtorch.engine import tune_malloc

        tune_malloc()  # as the command-line programs do (engine._malloc)
    mode = args["mode"]
    d, side, numrot = _case(args["size"])
    som = RotationInvariantSOM(Lattice("cartesian", (side, side)), SOMGeometry(d, numrot=numrot), init="random",
                               seed=1, device=dev, precision=args.get("precision", "float32"),
                               tie_break=args.get("tie_break"))
    out = {"mode": mode, "case": d, "device": str(dev), "nd": som.geometry.nd, "ed": som.geometry.ed,
           "T": som.num_transforms, "threads": torch.get_num_threads(), "precision": som.precision,
           "tie_break": som.tie_break}

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    n = args["n"]
    data = _images(d, n) if mode in ("train", "map") else args["file"]
    # warm-up: sampling grids, allocator, BLAS
    warm = _images(d, 4, seed=2)
    if mode == "train":
        Trainer(som, metrics_sample=0).fit(warm)
    else:
        Mapper(som).map(warm)
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tm = None
    if args.get("tracemalloc"):
        import tracemalloc

        tracemalloc.start()
        tm = tracemalloc
    out["rss_before"] = _mib(_status_kib("VmRSS"))
    with _AnonPeak() as anon:
        t0 = time.perf_counter()
        if mode == "train":
            Trainer(som, Neighbourhood("gaussian", 1.1, 0.2), shuffle=True, metrics_sample=0,
                    batch_size=args.get("batch_size"), step=args.get("step") or "auto").fit(data)
        elif mode == "map":
            Mapper(som, batch_size=args.get("batch_size")).map(data)
        else:  # map a PINK image file (memory-mapped) straight to PINK output files
            m = Mapper(som, batch_size=args.get("batch_size"))
            outdir = args["outdir"]
            m.map_to_files(data, os.path.join(outdir, f"map_{n}.bin"), os.path.join(outdir, f"rf_{n}.bin"),
                           overwrite=True)
            out["batch"] = m.auto_batch_size()
        sync()
        dt = time.perf_counter() - t0
    out["images"] = n
    out["seconds"] = round(dt, 2)
    out["img_per_s"] = round(n / dt, 2)
    out["peak_rss"] = _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    out["peak_anon"] = _mib(anon.peak)
    if tm is not None:
        out["tracemalloc_peak"] = round(tm.get_traced_memory()[1] / 2**20, 1)
        tm.stop()
    if dev.type == "cuda":
        out["peak_cuda"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def _profile(args: dict) -> dict:
    """Milliseconds per training image spent in each step of the Trainer's inner loop."""
    import torch

    from somtorch.engine import Neighbourhood, RotationInvariantSOM, SOMGeometry
    from somtorch.engine._malloc import tune_malloc
    from somtorch.engine.distance import best_match
    from somtorch.geometry import Lattice

    dev = torch.device(args["device"])
    if args.get("threads"):
        torch.set_num_threads(args["threads"])
    if dev.type == "cpu":
        tune_malloc()  # as the command-line programs do
    d, side, numrot = _case(args["size"])
    # the parity path's steps (engine.online.ParityStep); the dense step is ~12 operations per image
    som = RotationInvariantSOM(Lattice("cartesian", (side, side)), SOMGeometry(d, numrot=numrot), init="random",
                               seed=1, device=dev, tie_break=args.get("tie_break"))
    eng, w = som.engine, som.weight.data
    f_all = som.factors(Neighbourhood())
    imgs = _images(d, args["n"]).to(dev)
    acc: dict = {}

    def tick(name, t0):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        acc[name] = acc.get(name, 0.0) + (t1 - t0)
        return t1

    wv, wnorm = eng.neuron_parity(w)
    for _rep in range(2):  # first pass warms up
        acc.clear()
        for b in range(len(imgs)):
            x = imgs[b:b + 1]
            t = time.perf_counter()
            xr, rnorm = eng.base_features(x)
            t = tick("base rotations + norms", t)
            dsq = eng.sq_distances_fast(xr, rnorm, wv, wnorm)
            t = tick("distances (GEMM)", t)
            dsq = eng.resolve_ties(x, dsq, w, rnorm, wnorm)
            t = tick("tie re-evaluation", t)
            _, tb, best = best_match(dsq)
            best = int(best[0])
            t = tick("best match", t)
            sel = eng.transformer.select(x[0], tb[0])
            t = tick("select best transforms (full size)", t)
            f = f_all[best]
            w.sub_(sel.sub_(w).neg_().mul_(f.view(-1, 1, 1, 1)))
            t = tick("update", t)
            wv, wnorm = eng.neuron_parity(w)
            t = tick("neuron parity features", t)
    n = len(imgs)
    ms = {k: round(v / n * 1e3, 3) for k, v in acc.items()}
    ms["total"] = round(sum(acc.values()) / n * 1e3, 3)
    return {"mode": "profile", "case": d, "device": str(dev), "threads": torch.get_num_threads(),
            "tie_break": som.tie_break, "images": n, "ms_per_image": ms}


# ---------------------------------------------------------------------------------------- parent
def run_case(args: dict) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(args)]
    env = dict(os.environ)
    if args.get("threads"):
        env.setdefault("OMP_NUM_THREADS", str(args["threads"]))
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"case {args} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f", {round(int(f.readline().split()[1]) / 2**20)} GiB RAM"
    except OSError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} logical CPUs{mem}, {gpu}, torch {torch.__version__}, "
            f"Python {platform.python_version()}{load}")


def machine_state(threads: int = 0) -> dict:
    """What the shared machine delivers right now: a 2048^3 float32 GEMM (compute) and a 64 MiB
    copy (memory bandwidth), best of a few tries. Other tenants load the memory bus more than the
    cores, and the engine's non-GEMM steps are memory-bound: quote these with every figure."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    x = torch.randn(16 << 20)
    y = torch.empty_like(x)
    gemm = copy = 1e9
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        gemm = min(gemm, time.perf_counter() - t0)
        t0 = time.perf_counter()
        y.copy_(x)
        copy = min(copy, time.perf_counter() - t0)
    return {"mode": "machine", "threads": torch.get_num_threads(),
            "gemm_gflops": round(2 * 2048 ** 3 / gemm / 1e9, 1), "copy_gb_s": round(2 * x.numel() * 4 / copy / 1e9, 1)}


def _write_images(path: str, d: int, n: int) -> None:
    from somtorch.io import write_images

    write_images(path, _images(d, n, seed=3), overwrite=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--cases", default="64,150")
    p.add_argument("--modes", default="train,map", help="train, map or both (comma-separated)")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--train-images", type=int, default=0,
                   help="default: 200 (64) / 30 (150) on CPU; 5000 / 1000 on CUDA")
    p.add_argument("--map-images", type=int, default=0,
                   help="default: 300 (64) / 50 (150) on CPU; 20000 / 4000 on CUDA")
    p.add_argument("--batch-size", type=int, default=0, help="images per batch (0: automatic)")
    p.add_argument("--precision", default="float32")
    p.add_argument("--tie-break", default=None, help="pink | none (default: the library default)")
    p.add_argument("--step", default=None, help="online step: auto | dense | parity (engine.online)")
    p.add_argument("--vs-pink", metavar="PINK", help="run bench_pink.py: the drop-in CLI against this PINK executable")
    p.add_argument("--memory-scaling", action="store_true",
                   help="map N and 4N images from a memory-mapped file (N = --scaling-images)")
    p.add_argument("--scaling-images", type=int, default=256)
    p.add_argument("--profile", action="store_true", help="per-step time of training (64x64)")
    p.add_argument("--no-machine-state", action="store_true", help="skip the GEMM / memory-copy check")
    p.add_argument("--record", action="store_true", help="write the results to benchmarks/RESULTS.md")
    a = p.parse_args(argv)
    if a.vs_pink:
        from bench_pink import main as vs_pink

        return vs_pink(["--pink", a.vs_pink] + (["--record"] if a.record else []))
    if a.child:
        args = json.loads(a.child)
        run = {"profile": _profile, "machine": lambda a: machine_state(a.get("threads") or 0)}.get(args["mode"], _child)
        print(json.dumps(run(args)))
        return 0
    gpu = a.device.startswith("cuda")
    common = {"device": a.device, "threads": a.threads, "precision": a.precision, "tie_break": a.tie_break,
              "batch_size": a.batch_size or None, "step": a.step}
    rows = []
    cases = [c if "-" in c else int(c) for c in a.cases.split(",") if c]
    if not gpu and not a.no_machine_state:
        st = run_case(dict(common, mode="machine"))
        rows.append(st)
        print(json.dumps(st), flush=True)
    if a.profile:
        r = run_case(dict(common, mode="profile", size=cases[0], n=24 if not gpu else 200))
        rows.append(r)
        print(json.dumps(r), flush=True)
    elif a.memory_scaling:
        with tempfile.TemporaryDirectory() as tmp:
            for case in cases:
                n = a.scaling_images
                path = os.path.join(tmp, f"images{case}.bin")
                _write_images(path, case, 4 * n)
                for k in (n, 4 * n):
                    part = os.path.join(tmp, f"images{case}_{k}.bin")
                    if k != 4 * n:
                        _write_images(part, case, k)
                    else:
                        part = path
                    r = run_case(dict(common, mode="map_file", size=case, n=k, file=part, outdir=tmp,
                                      batch_size=a.batch_size or 64, tracemalloc=True))
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    else:
        for case in cases:
            big = _case(case)[0] >= 100
            ntr = a.train_images or ((1000 if gpu else 30) if big else (5000 if gpu else 200))
            nmp = a.map_images or ((4000 if gpu else 50) if big else (20000 if gpu else 300))
            modes = a.modes.split(",")
            for mode, n in [m for m in (("train", ntr), ("map", nmp)) if m[0] in modes]:
                r = run_case(dict(common, mode=mode, size=case, n=n))
                rows.append(r)
                print(json.dumps(r), flush=True)
    if a.record:
        _record(rows, argv if argv is not None else sys.argv[1:])
    return 0


def _record(rows: list[dict], argv: list[str]) -> None:
    path = os.path.join(HERE, "RESULTS.md")
    new = not os.path.exists(path)
    with open(path, "a") as f:
        if new:
            f.write("# somtorch engine benchmarks\n")
        f.write(f"\n### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — {machine()}\n\n")
        f.write("`python benchmarks/bench_engine.py " + " ".join(argv) + "`\n\n")
        flat = []
        for r in rows:
            r = dict(r)
            ms = r.pop("ms_per_image", None)
            if ms:
                r.update({f"ms:{k}": v for k, v in ms.items()})
            r.pop("file", None)
            flat.append(r)
        keys = []
        for r in flat:
            keys += [k for k in r if k not in keys]
        f.write("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n")
        for r in flat:
            f.write("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |\n")


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


if __name__ == "__main__":
    raise SystemExit(main())
