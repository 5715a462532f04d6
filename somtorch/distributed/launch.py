"""Start a small local process group without ``torchrun`` (tests, benchmarks, notebooks).

:func:`launch_local` runs ``fn(*args)`` in ``nprocs`` fresh (``spawn``) processes with the
environment ``torchrun`` would give them (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR=127.0.0.1``, a free ``MASTER_PORT``), after :func:`somtorch.distributed.init`.
It never hangs: processes still alive ``timeout_s`` seconds after the start, or ``grace_s``
seconds after another rank failed, are killed, and the exit codes are returned.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import time
import traceback

__all__ = ["free_port", "launch_local"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(fn, rank: int, world_size: int, port: int, args: tuple, env: dict, threads: int) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)})
    os.environ.update(env)
    import torch

    torch.set_num_threads(threads)
    from somtorch.distributed.env import init, shutdown

    code = 0
    try:
        init(os.environ.get("SOMTORCH_LAUNCH_DEVICE", "cpu"))
        fn(*args)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 -- reported through the exit code and stderr
        traceback.print_exc()
        code = 1
    finally:
        shutdown()
    os._exit(code)


def launch_local(fn, nprocs: int = 2, args: tuple = (), timeout_s: float = 120.0, grace_s: float = 20.0,
                 env: dict | None = None, threads: int = 1) -> list[int]:
    """Run ``fn(*args)`` on ``nprocs`` local ranks (gloo); returns their exit codes (rank order).

    ``fn`` must be importable (a module-level function). A rank that is killed reports
    ``-signal``; ranks still running after ``timeout_s`` (or ``grace_s`` after a failure) are
    killed and report ``-9``.
    """
    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_entry, args=(fn, r, nprocs, port, tuple(args), dict(env or {}), threads))
             for r in range(nprocs)]
    for p in procs:
        p.start()
    t0 = time.monotonic()
    failed_at = None
    while any(p.is_alive() for p in procs):
        now = time.monotonic()
        if failed_at is None and any(p.exitcode not in (None, 0) for p in procs):
            failed_at = now
        if now - t0 > timeout_s or (failed_at is not None and now - failed_at > grace_s):
            for p in procs:
                if p.is_alive():
                    p.kill()
            break
        time.sleep(0.05)
    for p in procs:
        p.join(5)
    return [p.exitcode if p.exitcode is not None else -9 for p in procs]
