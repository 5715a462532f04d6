"""Batch training of the rotation/flip-invariant SOM (one process or data-parallel).

Convention
----------
The images of one iteration are visited in the same shuffled order as online training
(:func:`~somtorch.engine.training.shuffle_order`) and cut into *steps* of ``step_size``
consecutive images. Within a step the weights are frozen; for every image ``x`` of the step:

1. all ``T`` transformations are compared with every neuron; neuron ``i`` gets its own best
   transformation ``bt[i]`` and the best-matching neuron is ``best`` (PINK's rules and tie-breaks,
   exactly as in online training);
2. neuron ``i`` accumulates ``S_i += f * X_{bt[i]}`` and ``F_i += f`` with ``f = factor[best, i]``
   (neighbourhood function times damping, as in online training).

After the step (the sums all-reduced over the ranks in a distributed run) every neuron moves::

    w_i <- w_i + (S_i - F_i * w_i) / max(F_i, 1)

For ``F_i >= 1`` this is Kohonen's batch map with the damped kernel (``w_i = S_i / F_i``, the
neighbourhood-weighted mean of the best transformations); for ``F_i < 1`` (a neuron few images
reach) it is the sum of the online updates the step's images would make with frozen weights.
Sums are accumulated in float64; the weights stay float32.

Semantic difference from online (PINK) training
-----------------------------------------------
Online training moves the neurons after **every** image, so the best match of the next image is
computed against updated weights and the result depends on the image order. Batch training
computes the best matches of a whole step against the same weights and applies one averaged
update, so (i) within a step the order does not matter, (ii) the result does not depend on how the
step is split across processes (up to float summation order), and (iii) there are
``n / step_size`` updates per iteration instead of ``n``: at equal epochs batch training moves the
weights less often (on the built-in sample its quantization error, topographic error and label
purity after 5 epochs matched online training's for steps of 16-256 images; see
``benchmarks/RESULTS.md``, "Distributed / batch"). Results are never bit-identical to PINK's. ``step_size=1`` makes every step one image:
with every factor ``<= 1`` the update is then online training's ``w_i <- w_i + f (x - w_i)`` (up to
float rounding: PINK's float32 operation order is not reproduced).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import torch

from somtorch.engine.data import check_finite, open_for_som
from somtorch.engine.distance import best_match
from somtorch.engine.training import (
    Trainer,
    TrainingHistory,
    progress_ticks,
    shuffle_order,
)
from somtorch.errors import ConfigError, NonFiniteError

__all__ = ["BatchTrainer", "batch_sums", "apply_batch_update", "split_step"]


def split_step(k: int, world_size: int, rank: int) -> slice:
    """Contiguous part of a step of ``k`` images that ``rank`` of ``world_size`` processes.

    >>> [split_step(5, 2, r) for r in range(2)]
    [slice(0, 3, None), slice(3, 5, None)]
    """
    per, extra = divmod(k, world_size)
    a = rank * per + min(rank, extra)
    return slice(a, a + per + (1 if rank < extra else 0))


@torch.no_grad()
def batch_sums(som, images: torch.Tensor, factors: torch.Tensor, chunk: int = 16):
    """Per-neuron sums of one step's images (weights frozen).

    Parameters
    ----------
    som : RotationInvariantSOM
    images : ``(B, C, d, d)`` float32 on ``som.device``
    factors : ``(N, N)`` update-factor matrix ``factor[best, i]``
    chunk : images whose distances are computed together (memory only)

    Returns
    -------
    S : ``(N, C, nd, nd)`` float64, sum of ``factor[best, i] * X_{bt[i]}``
    F : ``(N,)`` float64, sum of ``factor[best, i]``
    hits : ``(N,)`` float64, best-match counts
    """
    eng = som.engine
    w = som.weight.data
    n = som.num_neurons
    S = torch.zeros((n,) + tuple(w.shape[1:]), dtype=torch.float64, device=w.device)
    F = torch.zeros(n, dtype=torch.float64, device=w.device)
    hits = torch.zeros(n, dtype=torch.float64, device=w.device)
    exact = eng.arithmetic == "pink"
    if exact:
        wf = eng.neuron_features(w)
    else:
        wv, wnorm = eng.neuron_parity(w)
    for s in range(0, len(images), chunk):
        x = images[s:s + chunk]
        if exact:
            _, tb, best = best_match(eng.sq_distances(eng.image_features(x), wf))
        else:
            dmin, tb = eng.match_fast(x, wv, wnorm, w)
            best = torch.argmin(dmin, dim=1)  # as best_match
        for b in range(len(x)):
            f = factors[int(best[b])]
            sel = torch.nonzero(f).flatten()
            if len(sel) == 0:
                continue
            xt = eng.transformer.select(x[b], tb[b, sel])  # (M, C, nd, nd)
            fs = f[sel].double()
            S.index_add_(0, sel, xt.double() * fs.view(-1, 1, 1, 1))
            F.index_add_(0, sel, fs)
            hits[int(best[b])] += 1
    return S, F, hits


@torch.no_grad()
def apply_batch_update(weight: torch.Tensor, S: torch.Tensor, F: torch.Tensor) -> None:
    """``w_i <- w_i + (S_i - F_i w_i) / max(F_i, 1)`` in place (float64 arithmetic, float32 result)."""
    w64 = weight.double()
    shape = (-1,) + (1,) * (weight.ndim - 1)
    w64 += (S - F.view(shape) * w64) / F.clamp_min(1.0).view(shape)
    weight.copy_(w64.to(weight.dtype))


class BatchTrainer(Trainer):
    """Batch (optionally data-parallel) trainer; same parameters and outputs as :class:`Trainer`.

    Parameters
    ----------
    som, neighbourhood, num_iter, shuffle, seed, rng, batch_size, progress, progress_steps,
    inter_store, inter_store_path, metrics_sample, checkpoint_path, checkpoint_every,
    handle_signals, stage_name :
        As :class:`~somtorch.engine.training.Trainer` (``batch_size`` is the number of images
        whose distances are computed together; it does not change the result).
    step_size : int
        Images per update step, over all processes (default 256). Changes the result.
    reduce : callable, optional
        ``reduce(tensor, what)`` sums a float64 tensor over processes in place
        (:func:`somtorch.distributed.all_reduce_sum_`); ``None`` on one process.
    rank, world_size : int
        This process's part of every step (:func:`split_step`).

    Notes
    -----
    See the module docstring for the update rule and how it differs from online training.
    Checkpoints are written at step boundaries (progress points, every ``checkpoint_every``
    images, on SIGTERM/SIGINT); a resumed run ends with exactly the SOM of an uninterrupted one.

    Data-parallel runs (``world_size > 1``): a stop request (SIGTERM/SIGINT) on any rank travels
    with the step's sums (a max of the flags) and stops every rank after the same step; a request
    that arrives during a step's reduction is kept for the next step. After the all-reduce every
    rank holds the same state, so one checkpoint file is the whole generation: rank 0 alone
    replaces it atomically (temporary file, fsync, rename) and, on a stop, every rank waits for
    its answer. A kill at any instant leaves the last complete checkpoint. On resume rank 0 reads
    it and sends it to every rank (``share``), so the other ranks need no files of their own and
    the number of processes may change: with the same number the result is byte-identical to an
    uninterrupted run; with another number each step's float64 sums are added in another
    grouping, so the float32 weights can differ from the uninterrupted run's in the last bit
    (a float64 rounding difference crossing a float32 rounding boundary; byte-identical in the
    tests, see ``tests/test_distributed_faults.py``).
    share : callable, optional
        ``share(data_or_None, src, what) -> bytes`` sends rank 0's bytes to every rank
        (:func:`somtorch.distributed.broadcast_bytes`); used to hand the checkpoint over on resume.
    """

    def __init__(self, som, neighbourhood=None, num_iter: int = 1, *, step_size: int = 256, reduce=None,
                 rank: int = 0, world_size: int = 1, share=None, **kwargs):
        super().__init__(som, neighbourhood, num_iter, **kwargs)
        if int(step_size) < 1:
            raise ConfigError(None, "step_size", step_size, ">= 1")
        if not 0 <= int(rank) < int(world_size):
            raise ConfigError(None, "rank", rank, f"0..{int(world_size) - 1}")
        self.step_size = int(step_size)
        self.reduce = reduce
        self.rank, self.world_size = int(rank), int(world_size)
        self.share = share
        self._writes_checkpoint = self.rank == 0

    def _resume_state(self, resume: bool) -> dict | None:
        """The checkpoint to continue from, or None; in a data-parallel run rank 0 decides and sends it."""
        from somtorch.engine.training import checkpoint_from_bytes

        path = self.checkpoint_path
        if self.share is None or self.world_size == 1:
            return self.load_checkpoint(path) if resume and path is not None and os.path.exists(path) else None
        data = None
        if self.rank == 0 and resume and path is not None and os.path.exists(path):
            from somtorch.io.files import open_regular

            with open_regular(path, "rb", "checkpoint") as f:
                data = f.read()
        data = self.share(data, 0, "checkpoint from rank 0")
        return checkpoint_from_bytes(data, path) if data else None

    def _state(self, *args) -> dict:
        st = super()._state(*args)
        meta = json.loads(st["meta_json"])
        meta.update(mode="batch", step_size=self.step_size)
        st["meta_json"] = json.dumps(meta)
        return st

    def _check_same_start(self, tick: int, w: torch.Tensor) -> None:
        """All ranks must start from the same weights and position (e.g. a resume with another
        number of processes would not): compare a hash and the tick through the reduction."""
        import zlib

        h = float(zlib.crc32(w.detach().cpu().numpy().tobytes()) % (1 << 20))
        loc = torch.tensor([float(tick), float(tick) ** 2, h, h * h], dtype=torch.float64, device=w.device)
        tot = loc.clone()
        self.reduce(tot, "start-state check")
        if not torch.equal(tot, loc * self.world_size):
            raise ConfigError(None, "distributed start state", f"rank {self.rank}: tick {tick}",
                              "the same weights and position on every rank",
                              "the ranks start from different states: resume a distributed run with the same "
                              "number of processes, the same data and the same run folder")

    @torch.no_grad()
    def fit(self, data, resume: bool = False) -> TrainingHistory:
        """Train on ``data`` (tensor, array, PINK image file or ImageReader)."""
        som = self.som
        src = open_for_som(som, data)
        n = len(src)
        if n == 0:
            raise ConfigError(None, "data", 0, "at least one image")
        dev = som.device
        factors = som.factors(self.neighbourhood)
        ticks_total = n * self.num_iter
        pticks = np.array(progress_ticks(ticks_total, self.progress_steps), dtype=np.int64)
        msub = self._metrics_subset(n)
        chunk = self._auto_batch()
        it0, pos0, tick, elapsed0 = 0, 0, 0, 0.0
        self._store_k = 0
        prev_w = som.weight.detach().clone()
        self._inputs = self._inputs_record(src) if self.checkpoint_path is not None else None
        st = self._resume_state(resume)
        if st is not None:
            meta = json.loads(st["meta_json"])
            if meta.get("mode") != "batch" or int(meta.get("step_size", -1)) != self.step_size:
                raise ConfigError(self.checkpoint_path, "mode/step_size",
                                  (meta.get("mode", "online"), meta.get("step_size")), ("batch", self.step_size),
                                  "the checkpoint was written by another training mode or step size")
            self._check_resume(st, n)
            som.weight.copy_(st["weight"].to(dev))
            som.update_count.copy_(st["update_count"].to(som.update_count.device))
            prev_w = st["prev_weight"].to(dev)
            it0, pos0, tick = int(st["iteration"]), int(st["position"]), int(st["tick"])
            self._store_k = int(st["store_index"])
            elapsed0 = float(st["elapsed_s"])
            self.history.records = json.loads(st["history_json"])
        w = som.weight.data
        if self.reduce is not None and self.world_size > 1:
            self._check_same_start(tick, w)
        t_start = time.perf_counter()
        bar = None
        if self.progress and self.rank == 0:
            from tqdm.auto import tqdm

            bar = tqdm(total=ticks_total, initial=tick, desc=f"batch {self.stage_name}", unit="img",
                       dynamic_ncols=True)
        last_ckpt = tick
        nsz = som.num_neurons
        with self._stoppable(bar):
            for it in range(it0, self.num_iter):
                order = shuffle_order(n, self.seed, it, self.rng, self.shuffle)
                for start in range(pos0 if it == it0 else 0, n, self.step_size):
                    step_idx = order[start:start + self.step_size]
                    mine = step_idx[split_step(len(step_idx), self.world_size, self.rank)]
                    imgs = src.get(mine, device=dev) if len(mine) else None
                    if imgs is not None:
                        check_finite(imgs, mine, src, "training", NonFiniteError)
                    if imgs is not None:
                        S, F, hits = batch_sums(som, imgs, factors, chunk)
                    else:
                        S = torch.zeros((nsz,) + tuple(w.shape[1:]), dtype=torch.float64, device=dev)
                        F = torch.zeros(nsz, dtype=torch.float64, device=dev)
                        hits = torch.zeros_like(F)
                    if self.reduce is not None:
                        # the stop flag travels with the sums (any rank's request stops all after this
                        # step); self._stop is only read here, so a signal during the reduce is kept
                        stop = torch.tensor([1.0 if self._stop else 0.0], dtype=torch.float64, device=dev)
                        buf = torch.cat([S.flatten(), F, hits, stop])
                        self.reduce(buf, f"batch step (iteration {it}, image {start})")
                        S = buf[:S.numel()].view_as(S)
                        F = buf[S.numel():S.numel() + nsz]
                        hits = buf[S.numel() + nsz:S.numel() + 2 * nsz]
                        self._agreed_stop = bool(buf[-1] > 0)
                    apply_batch_update(w, S, F)
                    som.update_count += hits.round().to(som.update_count.dtype).to(som.update_count.device)
                    prev_tick, tick = tick, tick + len(step_idx)
                    pos = start + len(step_idx)
                    if bar is not None:
                        bar.update(len(step_idx))
                    at_progress = bool(((pticks > prev_tick) & (pticks <= tick)).any())
                    if at_progress:
                        rec = self._progress_record(src, msub, it, tick, ticks_total, prev_w,
                                                    elapsed0 + time.perf_counter() - t_start)
                        prev_w = w.clone()
                        if bar is not None and rec.get("qe") is not None:
                            bar.set_postfix(qe=f"{rec['qe']:.4g}", te=f"{rec['te']:.3f}")
                        if self.inter_store and tick != ticks_total:
                            self._inter_store()
                    last_ckpt = self._checkpoint_or_stop(
                        at_progress, self.stop_after is not None and tick >= self.stop_after, it, pos, n, tick,
                        False, prev_w, elapsed0 + time.perf_counter() - t_start, last_ckpt)
        if bar is not None:
            bar.close()
        return self.history
