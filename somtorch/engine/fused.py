"""A fused, compiled form of PINK's per-image neuron update (CPU), bit-identical to the eager one.

PINK's update ``c <- c - (c - x) * f`` (spec §5.1) is three float32 operations per weight, each
rounded. Eagerly that is four memory passes over all neurons per image: gathering every neuron's
best transformation ``x``, ``c - x``, ``* f`` and ``c - ...``. On small and mid-sized SOMs these
passes are most of a training step (32x32 images, 20x20 SOM: ~60 % of the time). Compiled with
:func:`torch.compile` (TorchInductor's C++ backend), the gather and the three operations are one
loop: every weight is read once and written once.

Convention
----------
The compiled loop performs exactly the eager operations in the same order, each rounded to
float32: Inductor compiles with ``-ffp-contract=off`` and without unsafe math, so no fused
multiply-add or reassociation can change a bit. ``tests/test_engine_fused.py`` checks bit
equality against the eager update. Only this elementwise update is compiled; the distances, their
norms and the tie rules stay eager, so whether the fused update runs never changes a result.

Compiling costs a few seconds once per process (about 3 s with Inductor's on-disk cache warm, 15-30 s
cold on a 2-core machine), so ``compile="auto"`` uses it only for jobs whose eager update work is
large (:data:`AUTO_MIN_ELEMENTS`); ``"on"`` always, ``"off"`` never. A machine without a working
C++ compiler falls back to the eager update (logged once).
"""

from __future__ import annotations

import logging
import warnings

import torch

__all__ = ["COMPILE_MODES", "AUTO_MIN_ELEMENTS", "FusedUpdate", "use_fused"]

log = logging.getLogger(__name__)

COMPILE_MODES = ("auto", "on", "off")

#: ``compile="auto"`` compiles when the job updates at least this many weights in total
#: (neurons x channels x neuron pixels x images x iterations): about 25 s of eager update time on
#: a 2-core EPYC, against ~3-30 s to compile.
AUTO_MIN_ELEMENTS = 100_000_000_000

_FAILED = {"cpu": False}


def use_fused(mode: str, device: torch.device, elements: float) -> bool:
    """Should a job updating ``elements`` weights in total use the fused update (see module)?"""
    if mode not in COMPILE_MODES:
        from somtorch.errors import ConfigError

        raise ConfigError(None, "compile", mode, f"one of {COMPILE_MODES}")
    if device.type != "cpu" or mode == "off" or _FAILED["cpu"]:
        return False
    return mode == "on" or elements >= AUTO_MIN_ELEMENTS


def _update(w: torch.Tensor, rows: torch.Tensor, table: torch.Tensor, tb: torch.Tensor, off: torch.Tensor,
            factors: torch.Tensor, best: torch.Tensor) -> None:
    # x[n] = rows[off + table[tb[n]]]: every neuron's best transformation, (N, M, L)
    n, m, ell = w.shape
    x = rows.index_select(0, (off + table.index_select(0, tb)).view(-1)).view(n, m, ell)
    f = factors.index_select(0, best.view(1)).view(n, 1, 1)
    w.copy_(w - (w - x) * f)


_COMPILED = None


def _compiled():
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = torch.compile(_update, dynamic=False, fullgraph=True)
    return _COMPILED


class FusedUpdate:
    """PINK's update of every neuron in one compiled loop.

    Parameters
    ----------
    weights : Tensor ``(N, C, nd, nd)``
        The neurons (updated in place).
    factors : Tensor ``(N, N)``
        ``factors[best, n]``, the update factor of neuron ``n`` when ``best`` matches.

    :meth:`__call__` takes the source rows of the transformations, either ``(S, nd)`` with a
    table ``(T, C*nd)`` of each transformation's rows in them, or whole transformations
    ``(S, C*nd*nd)`` with a table ``(T, 1)``; the row offset of the current image; every neuron's
    best transformation ``tb (N,)``; and the best-matching neuron (an ``int``). Long contiguous
    rows (whole transformations) compile to the faster loop.
    """

    def __init__(self, weights: torch.Tensor, factors: torch.Tensor):
        n, c, nd, _ = weights.shape
        self.w3 = {nd: weights.view(n, c * nd, nd), c * nd * nd: weights.view(n, 1, c * nd * nd)}
        self.factors = factors.contiguous()
        self._ints = torch.arange(max(n, 1), dtype=torch.int64)
        self._offs: dict = {}
        self._ready = False

    def _off(self, off: int) -> torch.Tensor:
        t = self._offs.get(off)
        if t is None:
            t = self._offs[off] = torch.tensor(off, dtype=torch.int64)
        return t

    def __call__(self, rows: torch.Tensor, table: torch.Tensor, off: int, tb: torch.Tensor, best: int) -> bool:
        """Apply the update; False (nothing changed) when compilation is unavailable."""
        if _FAILED["cpu"]:
            return False
        args = (self.w3[rows.shape[1]], rows, table, tb, self._off(off), self.factors, self._ints[best])
        if self._ready:
            _compiled()(*args)
            return True
        try:
            with warnings.catch_warnings():  # torch's own deprecation notices while compiling
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", FutureWarning)
                _compiled()(*args)
        except Exception as exc:  # no C++ compiler, unsupported platform: eager from now on
            _FAILED["cpu"] = True
            log.warning("somtorch: the compiled neuron update is unavailable (%s: %s); using the eager update",
                        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            return False
        self._ready = True
        return True
