"""Process-group set-up for ``torchrun`` launches, and collectives that fail loudly.

Convention
----------
A run is *distributed* when the launcher's environment says so: ``WORLD_SIZE > 1`` together
with ``RANK`` (``torchrun`` sets both, plus ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``).
The backend is NCCL when the run's device is CUDA and gloo otherwise; on CUDA each process uses
``cuda:<LOCAL_RANK>``. Every collective has a timeout (``SOMTORCH_DIST_TIMEOUT_S``, default
600 s, or the ``timeout_s`` argument of :func:`init`, e.g. ``runtime.dist_timeout_s``): a rank
that dies or hangs makes the others fail with :class:`DistributedError` instead of waiting for
ever. Before each collective every rank records in the rendezvous store which collective it
reached (one small key per rank, overwritten), so the error names the rank(s) that never arrived
and the collective they were last seen at, and says whether the timeout expired (a hung rank) or
a peer's connection closed (a dead rank). Rank 0 is the one that writes run-level outputs
(summaries, plots).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from dataclasses import dataclass

import torch

from somtorch.errors import SomtorchError

__all__ = ["DistEnv", "DistributedError", "detect", "init", "shutdown", "is_distributed", "barrier",
           "all_reduce_sum_", "all_reduce_flag", "broadcast_object", "broadcast_bytes",
           "collective", "timeout_s", "DEFAULT_TIMEOUT_S"]

DEFAULT_TIMEOUT_S = 600.0


class DistributedError(SomtorchError, RuntimeError):
    """A collective failed: another rank died, raised an error or did not answer in time."""


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int_env(name: str, default: int) -> int:
    v = os.environ.get(name)
    if v in (None, ""):
        return default
    try:
        return int(v)
    except ValueError:
        from somtorch.errors import ConfigError

        raise ConfigError(None, f"${name}", v, "an integer (set by torchrun)") from None


def detect() -> DistEnv:
    """The launcher's view (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) without initialising anything."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return DistEnv(dist.get_rank(), dist.get_world_size(), _int_env("LOCAL_RANK", dist.get_rank()),
                       str(dist.get_backend()))
    ws = _int_env("WORLD_SIZE", 1)
    rank = _int_env("RANK", 0)
    return DistEnv(rank, ws, _int_env("LOCAL_RANK", rank), None)


def is_distributed() -> bool:
    """True when a process group with more than one rank is initialised."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


#: the timeout the process group was initialised with, and where it came from
_ACTIVE: dict = {"timeout_s": None, "source": None}


def _timeout(timeout_s: float | None) -> float:
    if timeout_s is None:
        timeout_s = float(os.environ.get("SOMTORCH_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    return float(timeout_s)


def timeout_s() -> float:
    """The collective timeout in force: the one :func:`init` used, else ``$SOMTORCH_DIST_TIMEOUT_S`` / 600."""
    return _ACTIVE["timeout_s"] if _ACTIVE["timeout_s"] is not None else _timeout(None)


def _timeout_source() -> str:
    if _ACTIVE["source"]:
        return _ACTIVE["source"]
    return ("SOMTORCH_DIST_TIMEOUT_S" if os.environ.get("SOMTORCH_DIST_TIMEOUT_S") else "the default")


def init(device: str | torch.device | None = None, timeout_s: float | None = None) -> DistEnv:
    """Initialise the default process group if the launcher asked for more than one process.

    Parameters
    ----------
    device : device, optional
        The run's device; CUDA selects NCCL (and ``cuda:<LOCAL_RANK>``), anything else gloo.
    timeout_s : float, optional
        Collective timeout in seconds (default ``$SOMTORCH_DIST_TIMEOUT_S`` or 600).

    Returns
    -------
    DistEnv
        ``world_size == 1`` (nothing initialised) for an ordinary single-process run.
    """
    env = detect()
    if not env.distributed:
        return env
    dist = torch.distributed
    if not dist.is_available():
        raise DistributedError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if dist.is_initialized():
        return detect()
    dev = torch.device(device) if device is not None else torch.device("cpu")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank)
    tmo = _timeout(timeout_s)
    _ACTIVE.update(timeout_s=tmo, source=("timeout_s argument (runtime.dist_timeout_s)" if timeout_s is not None
                                          else None))
    _SEQ[0] = 0
    try:
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=tmo))
    except Exception as e:  # rendezvous failures come in many types
        raise DistributedError(f"rank {env.rank}/{env.world_size}: could not join the process group "
                               f"({backend}, MASTER_ADDR={os.environ.get('MASTER_ADDR')}, "
                               f"MASTER_PORT={os.environ.get('MASTER_PORT')}): {e}") from e
    return DistEnv(env.rank, env.world_size, env.local_rank, backend)


def device_for(env: DistEnv, device: torch.device) -> torch.device:
    """``cuda`` -> ``cuda:<LOCAL_RANK>`` in a distributed run; other devices unchanged."""
    device = torch.device(device)
    if env.distributed and device.type == "cuda":
        return torch.device("cuda", env.local_rank)
    return device


def shutdown() -> None:
    """Destroy the default process group if there is one (safe to call twice)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    _ACTIVE.update(timeout_s=None, source=None)


_SEQ = [0]  # collectives entered by this process since init (the same sequence on every rank)
_KEY = "somtorch/reached/"


def _store():
    with contextlib.suppress(Exception):
        from torch.distributed import distributed_c10d as c10d

        return c10d._get_default_store()
    return None


def _mark_reached(what: str) -> int:
    """Record in the rendezvous store that this rank reached collective number ``seq``."""
    seq = _SEQ[0]
    _SEQ[0] += 1
    store = _store()
    if store is not None:
        with contextlib.suppress(Exception):
            store.set(_KEY + str(torch.distributed.get_rank()), f"{seq}:{what}")
    return seq


def _missing_ranks(seq: int) -> tuple[list[str], bool]:
    """Ranks whose last recorded collective is before ``seq`` (``'rank 1 (last at #3 'x')'``), and
    whether the store could be read at all (it lives on rank 0's host)."""
    store = _store()
    if store is None:
        return [], False
    out = []
    try:
        old = store.timeout
        store.set_timeout(datetime.timedelta(seconds=2))
        try:
            for r in range(torch.distributed.get_world_size()):
                key = _KEY + str(r)
                if not store.check([key]):
                    out.append(f"rank {r} (never reached a collective)")
                    continue
                got = store.get(key).decode(errors="replace")
                n, _, name = got.partition(":")
                if int(n) < seq:
                    out.append(f"rank {r} (last seen at collective #{n} '{name}')")
        finally:
            store.set_timeout(old)
    except Exception:  # noqa: BLE001 -- the store's host (rank 0) may be gone
        return out, False
    return out, True


def _cause(e: BaseException, waited: float) -> str:
    text = f"{type(e).__name__}: {e}".lower()
    tmo = timeout_s()
    if "timed out" in text or "timeout" in text or waited >= 0.95 * tmo:
        return (f"the timeout expired ({tmo:g} s, set by {_timeout_source()}): a rank is hung or far "
                "behind")
    if any(w in text for w in ("connection closed", "connection reset", "broken pipe", "peer", "closed")):
        return "a peer's connection closed: a rank died, was killed or exited after an error (see its log)"
    return "a rank failed inside the collective (see the other ranks' logs)"


@contextlib.contextmanager
def collective(what: str):
    """Turn any failure of the collectives inside into a :class:`DistributedError` naming ``what``,
    the rank(s) that never reached it and the cause (timeout or a closed connection)."""
    seq = _mark_reached(what) if is_distributed() else -1
    t0 = time.monotonic()
    try:
        yield
    except DistributedError:
        raise
    except Exception as e:
        waited = time.monotonic() - t0
        r, ws = detect().rank, detect().world_size
        missing, readable = _missing_ranks(seq) if seq >= 0 else ([], False)
        if missing:
            who = "; not arrived: " + ", ".join(missing)
        elif readable:
            who = "; every rank reached it (one died or failed inside it)"
        else:
            who = "; rank 0 (host of the rendezvous store) is unreachable: it probably died" if r != 0 else ""
        raise DistributedError(
            f"rank {r}/{ws}: collective #{seq} '{what}' failed after {waited:.1f} s -- {_cause(e, waited)}{who}. "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e


def barrier(what: str = "barrier") -> None:
    """Wait for every rank (no-op on one process)."""
    if is_distributed():
        with collective(what):
            # an all-reduce instead of dist.barrier(): gloo honours the timeout and NCCL needs no device id
            t = torch.zeros(1, device=_comm_device())
            torch.distributed.all_reduce(t)


def _comm_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum_(t: torch.Tensor, what: str = "all_reduce") -> torch.Tensor:
    """Sum ``t`` over the ranks, in place (returned); no-op on one process."""
    if not is_distributed():
        return t
    with collective(what):
        dev = _comm_device()
        if t.device == dev:
            torch.distributed.all_reduce(t)
        else:
            buf = t.to(dev)
            torch.distributed.all_reduce(buf)
            t.copy_(buf)
    return t


def all_reduce_flag(flag: bool, what: str) -> int:
    """Number of ranks that pass ``flag=True`` (how ranks tell each other they failed)."""
    t = torch.tensor([1.0 if flag else 0.0])
    return int(all_reduce_sum_(t, what).item())


def broadcast_object(obj, src: int = 0, what: str = "broadcast"):
    """Rank ``src``'s JSON-serialisable ``obj`` on every rank (sent as JSON, never pickled);
    identity on one process."""
    if not is_distributed():
        return obj
    import json

    with collective(what):
        dev = _comm_device()
        data = json.dumps(obj).encode() if torch.distributed.get_rank() == src else b""
        n = torch.tensor([len(data)], dtype=torch.int64, device=dev)
        torch.distributed.broadcast(n, src=src)
        buf = (torch.frombuffer(bytearray(data), dtype=torch.uint8).to(dev) if data
               else torch.zeros(int(n.item()), dtype=torch.uint8, device=dev))
        torch.distributed.broadcast(buf, src=src)
    return json.loads(bytes(buf.cpu().numpy().tobytes()).decode())


def broadcast_bytes(data: bytes | None, src: int = 0, what: str = "broadcast") -> bytes:
    """Rank ``src``'s ``data`` on every rank (others pass ``None``); identity on one process."""
    if not is_distributed():
        return b"" if data is None else bytes(data)
    with collective(what):
        dev = _comm_device()
        mine = torch.distributed.get_rank() == src
        payload = bytes(data or b"") if mine else b""
        n = torch.tensor([len(payload)], dtype=torch.int64, device=dev)
        torch.distributed.broadcast(n, src=src)
        k = int(n.item())
        if k == 0:
            return b""
        buf = (torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(dev) if mine
               else torch.zeros(k, dtype=torch.uint8, device=dev))
        torch.distributed.broadcast(buf, src=src)
    return bytes(buf.cpu().numpy().tobytes())
