"""Distributed / batch benchmarks: batch vs online quality, and 1- vs 2-process throughput.

Usage
-----
::

    python benchmarks/bench_distributed.py quality   # batch vs online at equal epochs (built-in sample)
    python benchmarks/bench_distributed.py scaling   # mapping / batch-training images/s, 1 and 2 ranks
    python benchmarks/bench_distributed.py all --json out.json

``quality`` trains the same SOM (8x8, 32 px sample images, the demo schedule: 3 iterations with
4 rotations, sigma 2, damping 0.3, then 2 with 8 rotations, sigma 1, damping 0.1) online and in
batch mode with several step sizes, then maps every image and reports the quantization error
(mean Euclidean distance to the best-matching neuron), the topographic error and the label purity
(count-weighted majority fraction of the true morphology class, and of sidelobe/real, per neuron).

``scaling`` runs gloo process groups on this machine with one thread per process (the issue-3
geometry: 64x64 images, 10x10 SOM, 360 rotations with flip) and reports images/s of
:func:`somtorch.distributed.map_to_files_sharded` and of data-parallel batch training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ------------------------------------------------------------------ quality
def _stage_params():
    return [dict(sigma=2.0, damping=0.3, numrot=4, num_iter=3), dict(sigma=1.0, damping=0.1, numrot=8, num_iter=2)]


def _train(path, mode: str, step: int, side: int, seed: int):
    from somtorch.engine import Neighbourhood, RotationInvariantSOM, SOMGeometry, Trainer
    from somtorch.engine.batch import BatchTrainer
    from somtorch.geometry import Lattice
    from somtorch.io import read_images_header

    h = read_images_header(path)
    d = int(h.img_shape[-1])
    w = None
    t0 = time.perf_counter()
    for st in _stage_params():
        som = RotationInvariantSOM(Lattice("cartesian", (side, side)), SOMGeometry(d, numrot=st["numrot"]),
                                   init="random" if w is None else w, seed=seed)
        nb = Neighbourhood("unitygaussian", st["sigma"], st["damping"])
        if mode == "online":
            tr = Trainer(som, nb, num_iter=st["num_iter"], metrics_sample=0)
        else:
            tr = BatchTrainer(som, nb, num_iter=st["num_iter"], step_size=step, metrics_sample=0)
        tr.fit(path)
        w = som.weight.detach().clone()
    return som, time.perf_counter() - t0


def quality(n: int = 1000, side: int = 8, image_size: int = 32, steps=(16, 64, 256), seed: int = 1234) -> list:
    from somtorch.analysis import neuron_purity
    from somtorch.cli.common import prepare_sample_binary
    from somtorch.engine import Mapper, quality_metrics
    from somtorch.io.records import records_path

    path = prepare_sample_binary({"kind": "sample", "n": n, "image_size": image_size})
    with open(records_path(path)) as f:
        recs = json.load(f)
    morph = np.array([r["Morph_class"] for r in recs], dtype=object)
    sl = np.array([bool(r["Is_sidelobe"]) for r in recs])
    rows = []
    for mode, step in [("online", 1)] + [("batch", s) for s in steps]:
        som, secs = _train(path, mode, step, side, seed)
        res = Mapper(som).map(path)
        m = quality_metrics(res.distances, som.lattice)
        bmu = res.bmu.numpy()
        rows.append({"mode": mode, "step_size": step if mode == "batch" else None, "qe": m["qe"], "te": m["te"],
                     "purity_morphology": neuron_purity(bmu, morph), "purity_sidelobe": neuron_purity(bmu, sl),
                     "neurons_used": int(len(np.unique(bmu))), "train_s": round(secs, 2),
                     "updates_per_epoch": n if mode == "online" else -(-n // step)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


# ------------------------------------------------------------------ scaling (runs in each rank)
def _geometry():
    from somtorch.engine import RotationInvariantSOM, SOMGeometry
    from somtorch.geometry import Lattice

    return lambda init: RotationInvariantSOM(Lattice("cartesian", (10, 10)), SOMGeometry(64, numrot=360),
                                             init=init, seed=7)


def _total_cpu(seconds: float) -> float:
    """CPU seconds summed over the ranks (load-independent cost of the work)."""
    from somtorch.distributed import all_reduce_sum_

    return float(all_reduce_sum_(torch.tensor([seconds], dtype=torch.float64)).item())


def _map_worker(img, som_path, out, res_path):
    from somtorch.distributed import barrier, detect, map_to_files_sharded
    from somtorch.engine import Mapper

    som = _geometry()(som_path)
    mapper = Mapper(som, batch_size=32)
    mapper.map(torch.rand(32, 1, 64, 64))  # warm-up
    barrier()
    t0, c0 = time.perf_counter(), time.process_time()
    map_to_files_sharded(mapper, img, os.path.join(out, "m.bin"), os.path.join(out, "t.bin"), overwrite=True)
    dt = time.perf_counter() - t0
    cpu = _total_cpu(time.process_time() - c0)
    env = detect()
    if env.rank == 0:
        with open(res_path, "w") as f:
            json.dump({"seconds": dt, "cpu_seconds": cpu, "world_size": env.world_size}, f)


def _train_worker(img, res_path, step):
    from somtorch.distributed import barrier, detect
    from somtorch.distributed.training import fit_batch_distributed
    from somtorch.engine import Neighbourhood

    som = _geometry()("random")
    barrier()
    t0, c0 = time.perf_counter(), time.process_time()
    fit_batch_distributed(som, img, Neighbourhood("gaussian", 1.1, 0.2), num_iter=1, step_size=step,
                          metrics_sample=0, batch_size=32)
    dt = time.perf_counter() - t0
    cpu = _total_cpu(time.process_time() - c0)
    env = detect()
    if env.rank == 0:
        with open(res_path, "w") as f:
            json.dump({"seconds": dt, "cpu_seconds": cpu, "world_size": env.world_size,
                       "weight_sum": float(som.weight.double().sum())}, f)


def scaling(n_map: int = 1024, n_train: int = 768, step: int = 256, procs=(1, 2)) -> list:
    from somtorch.distributed.launch import launch_local
    from somtorch.io import write_images

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        img = os.path.join(tmp, "img.bin")
        x = torch.rand(max(n_map, n_train), 1, 64, 64, generator=torch.Generator().manual_seed(0))
        write_images(img, x[:n_map].numpy())
        timg = os.path.join(tmp, "timg.bin")
        write_images(timg, x[:n_train].numpy())
        som_path = os.path.join(tmp, "som.bin")
        _geometry()("random").save_pink(som_path)
        for k in procs:
            res = os.path.join(tmp, f"map{k}.json")
            codes = launch_local(_map_worker, k, (img, som_path, tmp, res), timeout_s=1800)
            if codes != [0] * k:
                raise RuntimeError(f"mapping with {k} ranks failed: exit codes {codes}")
            with open(res) as f:
                r = json.load(f)
            rows.append({"task": "map", "procs": k, "images": n_map, "seconds": round(r["seconds"], 3),
                         "images_per_s": round(n_map / r["seconds"], 1),
                         "cpu_ms_per_image": round(1e3 * r["cpu_seconds"] / n_map, 2)})
            print(json.dumps(rows[-1]), flush=True)
            res = os.path.join(tmp, f"train{k}.json")
            codes = launch_local(_train_worker, k, (timg, res, step), timeout_s=1800)
            if codes != [0] * k:
                raise RuntimeError(f"batch training with {k} ranks failed: exit codes {codes}")
            with open(res) as f:
                r = json.load(f)
            rows.append({"task": f"batch train (step {step})", "procs": k, "images": n_train,
                         "seconds": round(r["seconds"], 3), "images_per_s": round(n_train / r["seconds"], 1),
                         "cpu_ms_per_image": round(1e3 * r["cpu_seconds"] / n_train, 2),
                         "weight_sum": r["weight_sum"]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["quality", "scaling", "all"])
    p.add_argument("--json", help="write the results here")
    p.add_argument("--n", type=int, default=1000, help="quality: sample images")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    out = {}
    if a.what in ("quality", "all"):
        out["quality"] = quality(n=a.n)
    if a.what in ("scaling", "all"):
        out["scaling"] = scaling()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
