"""somtorch's drop-in command line against PINK 2.5 on identical command lines, in one run.

For every case, PINK (``Pink --cuda-off``) and ``python -m somtorch.pink`` train and map the same
kind of images with the same options, interleaved, ``--rounds`` times (median reported). Each
program runs twice per round, on ``n1`` and ``n2`` images, and the **marginal** rate
``(n2 - n1) / (t2 - t1)`` is reported, so start-up (Python and torch imports, PINK's parameter
print) does not count. somtorch gets more images than PINK (``--ours-factor``) so that its
marginal time is long enough to measure, and its counts are scaled further per case and mode
(calibrated once, up to 64x) until the larger run takes about :data:`MAP_SECONDS` more than the
smaller (``somtorch_<mode>_images`` in the output). A round whose larger run was not at least 0.2 s longer gives no rate (it is
dropped and counted, ``<who>_<mode>_dropped``) instead of an absurd one.

Each case is also reported as a fraction of the machine's GEMM bound for its distance work:
``2 * T * P * N`` FLOP per image (T transformations, P region pixels times channels, N neurons:
PINK's arithmetic), divided by the GFLOP/s that torch reaches *right now* on one large float32
GEMM of that shape (``(many*T, P) @ (P, N)``, best of 5). somtorch's flip-parity path does 4x fewer
multiply-adds than that count, so the fraction can exceed what a plain GEMM would allow.

Usage::

    python benchmarks/bench_pink.py --pink /path/to/Pink              # all cases, 3 rounds
    python benchmarks/bench_pink.py --pink Pink --cases 40-6-36,64-10-360 --rounds 1
    python benchmarks/bench_pink.py --no-pink --cases 64-10-360        # somtorch only
    python benchmarks/bench_pink.py --pink Pink --record               # append to RESULTS.md

PINK is not shipped (GPL): build its CPU version from the ``astro-pink`` 2.5 source
distribution (``cmake -G Ninja -DCMAKE_BUILD_TYPE=Release <src> && ninja Pink``) or pass the
path of an existing build; ``$PINK`` is used when ``--pink`` is not given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

#: name -> (image side, SOM side, numrot, PINK images for n2 (about 2-4 s of PINK training))
CASES = {
    "40-6-36": (40, 6, 36, 800),
    "32-20-8": (32, 20, 8, 120),
    "100-8-72": (100, 8, 72, 30),
    "64-10-360": (64, 10, 360, 16),
    # the cookbook's stages (§8: 40x40 crops, 10x10 SOM, 8 -> 36 -> 72 rotations)
    "40-10-8": (40, 10, 8, 800),
    "40-10-36": (40, 10, 36, 400),
    "40-10-72": (40, 10, 72, 200),
}


def _write(path: str, d: int, n: int) -> None:
    from bench_engine import _images

    from somtorch.io import write_images

    if not os.path.exists(path):
        write_images(path, _images(d, n, seed=3), overwrite=True)


def _timed(cmd: list[str], cwd: str) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-1500:]}\n{res.stderr[-1500:]}")
    return dt


THREADS = os.cpu_count() or 1  # both programs get every core (PINK's default; somtorch's CLIs
# would take the idle cores only)


def _options(side: int, numrot: int) -> list[str]:
    return ["--som-width", str(side), "--som-height", str(side), "-n", str(numrot), "--init", "random",
            "--num-iter", "1", "--numthreads", str(THREADS)]


def _commands(prog: list[str], mode: str, data: str, side: int, numrot: int, tag: str) -> list[str]:
    if mode == "train":
        return prog + ["--train", data, f"som_{tag}.bin"] + _options(side, numrot)
    return prog + ["--map", data, f"map_{tag}.bin", f"som_{tag}_ref.bin", "--som-width", str(side),
                   "--som-height", str(side), "-n", str(numrot), "--store-rot-flip", f"rf_{tag}.bin",
                   "--numthreads", str(THREADS)]


_RUN = [0]

#: seconds by which somtorch's larger run should outlast its smaller one, per mode (see run_case)
MAP_SECONDS = 3.0


def _rate(images: int, seconds: float) -> float | None:
    """Marginal images/s, or None when the larger run was not measurably longer (< 0.2 s more)."""
    return images / seconds if seconds >= 0.2 else None


def _hydra_train(data: str, side: int, numrot: int, tmp: str) -> list[str]:
    """``python -m somtorch.train`` with one stage equivalent to the drop-in command line."""
    _RUN[0] += 1
    return [sys.executable, "-m", "somtorch.train", "data=file", f"data.path={data}", "+stage=demo",
            f"stage.numrot={numrot}", "stage.num_iter=1", "stage.dist_func=gaussian", "stage.sigma=1.1",
            "stage.damping=0.2", "stage.progress=1", f"som.shape=[{side},{side}]", "metrics_sample=0",
            "plots=false", f"runtime.threads={THREADS}", f"hydra.run.dir={os.path.join(tmp, f'hydra_{_RUN[0]}')}"]


def gemm_bound(d: int, side: int, numrot: int) -> dict:
    """GFLOP/s of one large float32 GEMM shaped like the case's distance work, and its FLOP/image."""
    import torch

    from somtorch.engine import RotationInvariantSOM, SOMGeometry
    from somtorch.geometry import Lattice

    som = RotationInvariantSOM(Lattice("cartesian", (side, side)), SOMGeometry(d, numrot=numrot, convention="pink"))
    t, p, n = som.num_transforms, som.engine.num_region_pixels, som.num_neurons
    flop = 2 * t * p * n
    reps = max(1, int(2e9 // flop))
    a, b = torch.rand(reps * t, p), torch.rand(p, n)
    best = 1e9
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return {"flop_per_image": flop, "gemm_gflops": round(reps * flop / best / 1e9, 1)}


def run_case(name: str, pink: str | None, rounds: int, ours_factor: int, tmp: str, modes: list[str],
             hydra: bool = False, tie_none: bool = False, compile_on: bool = False) -> dict:
    d, side, numrot, n2 = CASES[name]
    n1 = max(1, n2 // 4)
    ours = (n1 * ours_factor, n2 * ours_factor)
    files = {}
    for n in {n1, n2, *ours}:
        files[n] = os.path.join(tmp, f"img{d}_{n}.bin")
        _write(files[n], d, n)
    drop = [sys.executable, "-m", "somtorch.pink"]
    # a trained SOM to map onto (somtorch's; both programs read it)
    _timed(_commands(drop, "train", files[n1], side, numrot, f"{name}_ref"), tmp)
    os.replace(os.path.join(tmp, f"som_{name}_ref.bin"), os.path.join(tmp, f"som_{name}_ref_ref.bin"))
    rates: dict = {}
    # somtorch trains 8-50x and maps 40-100x faster than PINK: with PINK's counts times
    # --ours-factor its runs could last ~0.1-1 s beside ~3 s of start-up, and the marginal rate
    # would be noise (even negative). Scale its counts per mode until the larger run takes
    # >= MAP_SECONDS more than the smaller one (capped at 64x).
    counts = {}
    for mode in modes:
        tag = f"{name}_cal" if mode == "train" else f"{name}_ref"
        t1 = _timed(_commands(drop, mode, files[ours[1]], side, numrot, tag), tmp)
        t0 = _timed(_commands(drop, mode, files[ours[0]], side, numrot, tag), tmp)
        grow = min(64, max(1, math.ceil(MAP_SECONDS / max(t1 - t0, 0.05))))
        counts[mode] = (ours[0] * grow, ours[1] * grow)
        for n in counts[mode]:
            if n not in files:
                files[n] = os.path.join(tmp, f"img{d}_{n}.bin")
                _write(files[n], d, n)
    if compile_on:  # warm Inductor's on-disk cache: otherwise the first timed run compiles cold
        # (10-30 s) and the second warm (~3 s), and the marginal rate is meaningless
        _timed(_commands([*drop, "--compile", "on"], "train", files[n1], side, numrot, f"{name}_warm"), tmp)
    for _ in range(rounds):
        for mode in modes:
            progs = [("somtorch", drop, counts[mode])] + (
                [("pink", [pink, "--cuda-off"], (n1, n2))] if pink else [])
            for who, prog, (a, b) in progs:
                tag = f"{name}_{who}"
                ref = f"{name}_ref"
                cmd_a = _commands(prog, mode, files[a], side, numrot, tag if mode == "train" else ref)
                cmd_b = _commands(prog, mode, files[b], side, numrot, tag if mode == "train" else ref)
                ta, tb = _timed(cmd_a, tmp), _timed(cmd_b, tmp)
                rates.setdefault((who, mode), []).append(_rate(b - a, tb - ta))
            if tie_none and mode == "train":  # the drop-in without PINK's exact near-tie re-evaluation
                a, b = counts[mode]
                cmd = [*drop, "--tie-break", "none"]
                ta = _timed(_commands(cmd, mode, files[a], side, numrot, f"{name}_tn"), tmp)
                tb = _timed(_commands(cmd, mode, files[b], side, numrot, f"{name}_tn"), tmp)
                rates.setdefault(("tienone", mode), []).append(_rate(b - a, tb - ta))
            if compile_on and mode == "train":  # the drop-in with the fused compiled update forced on
                # (the default, --compile auto, compiles only for jobs of ~1e11 weight updates);
                # compilation is paid once per process, so the marginal rate excludes it
                a, b = counts[mode]
                cmd = [*drop, "--compile", "on"]
                ta = _timed(_commands(cmd, mode, files[a], side, numrot, f"{name}_co"), tmp)
                tb = _timed(_commands(cmd, mode, files[b], side, numrot, f"{name}_co"), tmp)
                rates.setdefault(("compile", mode), []).append(_rate(b - a, tb - ta))
            if hydra and mode == "train":  # the same training through the Hydra program
                a, b = counts[mode]
                ta = _timed(_hydra_train(files[a], side, numrot, tmp), tmp)
                tb = _timed(_hydra_train(files[b], side, numrot, tmp), tmp)
                rates.setdefault(("hydra", mode), []).append(_rate(b - a, tb - ta))
    out = {"case": name, "image": d, "som": f"{side}x{side}", "numrot": numrot}
    out.update(gemm_bound(d, side, numrot))
    for (who, mode), v in rates.items():
        good = [r for r in v if r is not None]
        # a marginal rate needs the larger run to take measurably longer; rounds where it did not
        # are dropped (counted in "<who>_<mode>_dropped"), never turned into absurd rates
        if good:
            out[f"{who}_{mode}"] = round(statistics.median(good), 1)
        if len(good) < len(v):
            out[f"{who}_{mode}_dropped"] = len(v) - len(good)
    for mode in modes:
        out[f"somtorch_{mode}_images"] = list(counts[mode])
    for mode in modes:
        ours_r = out.get(f"somtorch_{mode}")
        if pink and ours_r:
            out[f"x_{mode}"] = round(ours_r / out[f"pink_{mode}"], 1)
        if ours_r:
            out[f"bound_{mode}"] = round(ours_r * out["flop_per_image"] / (out["gemm_gflops"] * 1e9), 3)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pink", default=os.environ.get("PINK"), help="path of PINK's executable")
    p.add_argument("--no-pink", action="store_true", help="somtorch only")
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--modes", default="train,map")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ours-factor", type=int, default=8, help="somtorch gets this many times PINK's images")
    p.add_argument("--hydra", action="store_true", help="also time training through python -m somtorch.train")
    p.add_argument("--tie-none", action="store_true", help="also time drop-in training with --tie-break none")
    p.add_argument("--compile-on", action="store_true", help="also time drop-in training with --compile on")
    p.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    a = p.parse_args(argv)
    pink = None if a.no_pink else a.pink
    if not a.no_pink and not (pink and os.path.exists(pink)):
        p.error("PINK's executable not found: --pink PATH (or $PINK), or --no-pink")
    from bench_engine import machine, machine_state

    state = machine_state()
    print(json.dumps(state), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.cases.split(","):
            r = run_case(name, pink, a.rounds, a.ours_factor, tmp, a.modes.split(","), a.hydra, a.tie_none,
                         a.compile_on)
            rows.append(r)
            print(json.dumps(r), flush=True)
    table = _table(rows)
    print(table)
    if a.record:
        with open(os.path.join(HERE, "RESULTS.md"), "a") as f:
            f.write(f"\n### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — drop-in vs PINK 2.5 CPU — "
                    f"{machine()}\n\n`python benchmarks/bench_pink.py {' '.join(argv or sys.argv[1:])}` "
                    f"(machine state: {state['gemm_gflops']} GFLOP/s GEMM, {state['copy_gb_s']} GB/s copy)\n\n")
            f.write(table + "\n")
    return 0


def _table(rows: list[dict]) -> str:
    head = ("| case (image/SOM/rotations) | PINK train | somtorch train | × | `--compile on` | × | `--tie-break none` "
            "| Hydra train | PINK map | somtorch map | × | GEMM GFLOP/s | train / bound | map / bound |\n|" + "---|" * 14)
    lines = [head]
    for r in rows:
        co, pt_ = r.get("compile_train"), r.get("pink_train")
        xc = round(co / pt_, 1) if co and pt_ else "–"
        lines.append("| {case} | {pt} | {st} | {xt} | {co} | {xc} | {tn} | {ht} | {pm} | {sm} | {xm} | {g} | {bt} | {bm} |".format(
            case=f"{r['image']}×{r['image']} / {r['som']} / {r['numrot']}", pt=r.get("pink_train", "–"),
            co=co or "–", xc=xc,
            st=r.get("somtorch_train", "–"), xt=r.get("x_train", "–"), ht=r.get("hydra_train", "–"),
            tn=r.get("tienone_train", "–"),
            pm=r.get("pink_map", "–"),
            sm=r.get("somtorch_map", "–"), xm=r.get("x_map", "–"), g=r["gemm_gflops"],
            bt=r.get("bound_train", "–"), bm=r.get("bound_map", "–")))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
