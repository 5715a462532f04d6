"""Reliability figures: files fuzzed, faults injected, resumes verified identical, nothing lost.

Runs the fault suite's harnesses (``tests/test_faults_fuzz.py``, ``tests/test_faults_resume.py``,
``tests/test_distributed_faults.py``) at a larger scale than the test suite and prints one table
(and ``--json``):

* every reader gets ``--fuzz`` mutated files; counted: files, read, refused with a typed error,
  anything else (a builtin exception, a crash or a call over 10 s would stop the script);
* ``--kills`` single-process SIGKILLs at random points (training online/batch at a step or inside
  the checkpoint commit, mapping at a batch, inside a row write or inside the commit), each
  resumed and compared byte for byte with the uninterrupted run;
* ``--dist-kills`` 2-process faults (SIGTERM on one rank during the reduction, a rank that dies,
  rank 0 killed inside the checkpoint commit) resumed on 1 or 2 processes and compared;
* the time a hung rank takes to be reported, with ``SOMTORCH_DIST_TIMEOUT_S=--hang-timeout``.

Usage::

    python benchmarks/bench_faults.py --fuzz 1500 --kills 24 --dist-kills 6 --json /tmp/faults.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def fuzz_all(n: int, work: Path) -> list[dict]:
    import test_faults_fuzz as tf

    out = []
    for k, name in enumerate(sorted(tf.READERS)):
        t0 = time.perf_counter()
        c = tf.fuzz(name, n, work / f"fuzz_{name}", seed=100 + k)
        c["seconds"] = round(time.perf_counter() - t0, 1)
        out.append(c)
        print(f"  fuzz {name}: {c}", flush=True)
    return out


def kills_single(n: int, work: Path, seed: int = 0) -> list[dict]:
    import numpy as np
    import test_faults_resume as tr

    refs = tr.make_refs(_mk(work / "refs"))
    rng = np.random.default_rng(seed)
    kinds = [("online", "step"), ("online", "commit"), ("batch", "step"), ("batch", "commit"), ("map", "step"),
             ("map", "write"), ("map", "commit")]
    out = []
    for i in range(n):
        mode, where = kinds[i % len(kinds)]
        at = int(rng.integers(1, 20))
        d = _mk(work / f"kill{i}")
        t0 = time.perf_counter()
        killed, _ = tr._kill_and_resume(refs, d, mode, at, where)  # asserts byte-identical results
        out.append({"mode": mode, "where": where, "at": at, "killed": killed, "identical": True,
                    "seconds": round(time.perf_counter() - t0, 1)})
        print(f"  kill {out[-1]}", flush=True)
    return out


def kills_distributed(n: int, work: Path, seed: int = 0) -> list[dict]:
    import numpy as np
    import test_distributed_faults as td

    img, ref = td.make_reference(_mk(work / "dref"))
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        fault = ["term", "die", "die_in_commit"][i % 3]
        at = int(rng.integers(1, td.ITERS * td.N // td.STEP))
        nprocs = 1 + i % 2
        d = _mk(work / f"dkill{i}")
        d_img = td._fresh(d, (img, ref))
        with contextlib.redirect_stderr(io.StringIO()):
            codes = td._launch(d_img, d, fault=fault, at=at)
            stops = ({td._status(d, r) for r in (0, 1)} if fault == "term" else set())
            assert len(stops) <= 1 and all("training stopped after" in t for t in stops), stops  # same step
            res = td._launch(d_img, d, nprocs=nprocs, resume=True)
        same = res == [0] * nprocs and (d / "som0.bin").read_bytes() == ref
        out.append({"fault": fault, "at": at, "codes": codes, "resumed_on": nprocs, "identical": bool(same)})
        print(f"  dist {out[-1]}", flush=True)
        assert same, out[-1]
    return out


_HANG = """
import sys
sys.path.insert(0, {tests!r})
import test_distributed_faults as td
from pathlib import Path
d = Path({d!r})
td._images(d / "img.bin")
print(td._launch(d / "img.bin", d, fault="hang", at=3, env={{"SOMTORCH_DIST_TIMEOUT_S": "{t}"}}, grace_s=1))
"""


def hang_detection(timeout_s: float, work: Path) -> dict:
    import subprocess

    d = _mk(work / "hang")
    code = _HANG.format(tests=str(ROOT / "tests"), d=str(d), t=timeout_s)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    m = re.search(r"DistributedError: (rank 0/2: collective #\d+ .* failed after ([0-9.]+) s -- [^\n]*)", r.stderr)
    return {"timeout_s": timeout_s, "reported_after_s": float(m.group(2)) if m else None,
            "message": m.group(1)[:400] if m else r.stderr[-500:]}


def _mk(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fuzz", type=int, default=1500, help="mutated files per reader")
    ap.add_argument("--kills", type=int, default=21, help="single-process kill-and-resume cycles")
    ap.add_argument("--dist-kills", type=int, default=6, help="2-process fault-and-resume cycles")
    ap.add_argument("--hang-timeout", type=float, default=5.0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        res = {"machine": f"{platform.machine()}, {platform.system()}, {os.cpu_count()} cores, torch {torch.__version__}"}
        res["fuzz"] = fuzz_all(a.fuzz, work) if a.fuzz else []
        res["kills"] = kills_single(a.kills, work) if a.kills else []
        res["dist_kills"] = kills_distributed(a.dist_kills, work) if a.dist_kills else []
        res["hang"] = hang_detection(a.hang_timeout, work)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    fz = res["fuzz"]
    print("\n| reader | files | read | refused (typed) | other | slowest call (s) |\n|---|---|---|---|---|---|")
    for c in fz:
        print(f"| {c['reader']} | {c['files']} | {c['read']} | {c['refused']} | 0 | {c['slowest_s']:.3f} |")
    print(f"| **all** | **{sum(c['files'] for c in fz)}** | {sum(c['read'] for c in fz)} | "
          f"{sum(c['refused'] for c in fz)} | **0** | {max([c['slowest_s'] for c in fz] or [0]):.3f} |")
    ks, dk = res["kills"], res["dist_kills"]
    print(f"\nsingle-process kills: {len(ks)} injected, {sum(k['killed'] for k in ks)} landed before the end, "
          f"{sum(k['identical'] for k in ks)} resumed byte-identical")
    print(f"2-process faults: {len(dk)} injected, {sum(k['identical'] for k in dk)} resumed byte-identical "
          f"(on 1 process: {sum(k['resumed_on'] == 1 for k in dk)}, on 2: {sum(k['resumed_on'] == 2 for k in dk)})")
    print(f"hung rank: reported after {res['hang']['reported_after_s']} s with timeout {a.hang_timeout} s: "
          f"{res['hang']['message']}")
    print(f"total {res['seconds']} s; {res['machine']}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
