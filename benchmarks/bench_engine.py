"""Training and mapping throughput and peak memory of the somtorch engine.

Each case runs in a fresh subprocess so that peak memory (max RSS on CPU, max allocated on CUDA)
belongs to that case alone. Cases follow the issue's reference geometries:

* ``64``:  64x64 images, 10x10 SOM, 360 rotations + flip, PINK defaults nd=91, ed=45;
* ``150``: 150x150 images, 10x10 SOM, 360 rotations + flip, nd=213, ed=106.

Usage::

    python benchmarks/bench_engine.py                    # all cases on the default device
    python benchmarks/bench_engine.py --cases 64 --device cuda --train-images 2000 --map-images 20000
    python benchmarks/bench_engine.py --memory-scaling   # mapping peak memory vs number of images

Prints one line per case; ``--record`` appends a table to benchmarks/RESULTS.md with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def _child(args: dict) -> dict:
    import resource

    import torch

    from somtorch.engine import Mapper, Neighbourhood, RotationInvariantSOM, SOMGeometry, Trainer
    from somtorch.geometry import Lattice

    torch.manual_seed(0)
    dev = torch.device(args["device"])
    if args.get("threads"):
        torch.set_num_threads(args["threads"])
    d = args["size"]
    som = RotationInvariantSOM(Lattice("cartesian", (10, 10)), SOMGeometry(d, numrot=360), init="random",
                               seed=1, device=dev, precision=args.get("precision", "float32"),
                               tie_break=args.get("tie_break", "pink"))
    g = torch.Generator().manual_seed(1)
    # smooth, source-like images (sums of Gaussian blobs), not white noise
    n = max(args["train_images"], args["map_images"])
    n_unique = min(n, 512)
    yy, xx = torch.meshgrid(torch.arange(d, dtype=torch.float32), torch.arange(d, dtype=torch.float32), indexing="ij")
    imgs = torch.zeros(n_unique, 1, d, d)
    for _ in range(3):
        cy = torch.rand(n_unique, 1, 1, generator=g) * d * 0.6 + d * 0.2
        cx = torch.rand(n_unique, 1, 1, generator=g) * d * 0.6 + d * 0.2
        s = torch.rand(n_unique, 1, 1, generator=g) * d * 0.05 + d * 0.02
        a = torch.rand(n_unique, 1, 1, generator=g)
        imgs[:, 0] += a * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    imgs += 0.01 * torch.rand(imgs.shape, generator=g)
    idx = torch.arange(n) % n_unique
    out = {"case": d, "device": str(dev), "nd": som.geometry.nd, "ed": som.geometry.ed,
           "T": som.num_transforms, "threads": torch.get_num_threads(), "precision": som.precision,
           "tie_break": som.tie_break}
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    if args["train_images"]:
        data = imgs[idx[: args["train_images"]]]
        tr = Trainer(som, Neighbourhood("gaussian", 1.1, 0.2), shuffle=True, metrics_sample=0)
        Trainer(som, metrics_sample=0).fit(data[: min(8, len(data))])  # warm-up (grids, allocator)
        sync()
        t0 = time.perf_counter()
        tr.fit(data)
        sync()
        out["train_img_per_s"] = round(args["train_images"] / (time.perf_counter() - t0), 2)
    if args["map_images"]:
        data = imgs[idx[: args["map_images"]]] if not args.get("map_file") else args["map_file"]
        m = Mapper(som, batch_size=args.get("batch_size"))
        m.map(imgs[:8])
        sync()
        t0 = time.perf_counter()
        if args.get("map_file"):
            m.map_to_files(data, args["map_file"] + ".map", overwrite=True)
            nmap = len(m.som.weight) and args["map_images"]
        else:
            res = m.map(data)
            nmap = len(res)
        sync()
        out["map_img_per_s"] = round(nmap / (time.perf_counter() - t0), 2)
        out["map_batch"] = m.auto_batch_size()
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if dev.type == "cuda":
        out["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def run_case(args: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(args)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
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
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}, Python {platform.python_version()}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--cases", default="64,150")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--train-images", type=int, default=0, help="default: 200 (64) / 40 (150) on CPU")
    p.add_argument("--map-images", type=int, default=0, help="default: 300 (64) / 60 (150) on CPU")
    p.add_argument("--precision", default="float32")
    p.add_argument("--tie-break", default="pink")
    p.add_argument("--memory-scaling", action="store_true", help="mapping peak RSS for 1x, 4x, 16x images")
    p.add_argument("--record", action="store_true", help="append results to benchmarks/RESULTS.md")
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_child(json.loads(a.child))))
        return 0
    rows = []
    gpu = a.device.startswith("cuda")
    for case in [int(c) for c in a.cases.split(",") if c]:
        ntr = a.train_images or ((5000 if gpu else 200) if case == 64 else (1000 if gpu else 40))
        nmp = a.map_images or ((20000 if gpu else 300) if case == 64 else (4000 if gpu else 60))
        if a.memory_scaling:
            for mult in (1, 4, 16):
                r = run_case({"size": case, "device": a.device, "threads": a.threads, "train_images": 0,
                              "map_images": nmp * mult, "precision": a.precision, "tie_break": a.tie_break})
                r["map_images"] = nmp * mult
                rows.append(r)
                print(json.dumps(r), flush=True)
            continue
        r = run_case({"size": case, "device": a.device, "threads": a.threads, "train_images": ntr,
                      "map_images": nmp, "precision": a.precision, "tie_break": a.tie_break})
        r["train_images"], r["map_images"] = ntr, nmp
        rows.append(r)
        print(json.dumps(r), flush=True)
    if a.record:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
        with open(path, "a") as f:
            f.write(f"\n### {time.strftime('%Y-%m-%d %H:%M')} — {machine()}\n\n")
            f.write("`python benchmarks/bench_engine.py " + " ".join(argv or sys.argv[1:]) + "`\n\n")
            keys = sorted({k for r in rows for k in r})
            f.write("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n")
            for r in rows:
                f.write("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |\n")
    return 0


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


if __name__ == "__main__":
    raise SystemExit(main())
