"""Online training with PINK's update rule, with metrics, intermediate SOMs and checkpoints.

Convention
----------
For every image, in shuffled order (spec §5.1):

1. all ``T`` transformations ``X_t`` of the image are compared with every neuron;
2. each neuron ``i`` gets its own best transformation ``bt[i]`` (lowest index on ties);
3. the best-matching neuron ``best`` is the neuron with the smallest ``Dsq[i, bt[i]]``;
4. **every** neuron with ``f = factor[best, i] != 0`` moves toward its *own* best transformation,
   over the full ``nd x nd`` neuron: ``w_i <- w_i - (w_i - X_{bt[i]}) * f`` (float32).

Shuffling: ``rng="pink"`` uses PINK's exact libstdc++ order (``seed + iteration``, spec §5.2);
``rng="torch"`` uses ``torch.randperm`` with a generator seeded by ``seed + iteration``; both are
deterministic. ``shuffle=False`` processes the images in file order.

Progress, metrics and ``inter_store`` follow PINK's schedule (spec §5.8): with ``ticks = n * num_iter``
and ``P = min(ticks, progress_steps)``, progress points are at tick ``sec + (rem > 0)`` and then every
``sec = ticks // P`` ticks; intermediate SOMs are written after the image that *follows* each
progress point, never after the last image.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from somtorch.engine.data import check_finite, open_for_som
from somtorch.engine.metrics import quality_metrics
from somtorch.engine.neighbourhood import Neighbourhood
from somtorch.engine.online import STEPS, dense_bank_bytes, online_step, step_kind
from somtorch.engine.som import RotationInvariantSOM
from somtorch.errors import ConfigError

__all__ = ["Trainer", "TrainingHistory", "shuffle_order", "progress_ticks", "inter_store_name"]


def shuffle_order(n: int, seed: int, iteration: int, rng: str = "torch", shuffle: bool = True) -> np.ndarray:
    """The image order of one training iteration (see module docstring)."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    if rng == "pink":
        from somtorch.engine.rng import pink_shuffle_order

        return np.asarray(pink_shuffle_order(n, seed, iteration), dtype=np.int64)
    g = torch.Generator().manual_seed(int(seed) + int(iteration))
    return torch.randperm(n, generator=g).numpy().astype(np.int64)


def progress_ticks(ticks: int, progress_steps: int = 10) -> list[int]:
    """PINK's progress points (1-based image counts) for ``ticks`` images in total."""
    if progress_steps < 1:
        raise ConfigError(None, "progress", progress_steps, ">= 1")
    if ticks <= 0:
        return []
    p = min(ticks, progress_steps)
    sec, rem = divmod(ticks, p)
    first = sec + (1 if rem else 0)
    return list(range(first, ticks + 1, sec))


def inter_store_name(path: str, k: int) -> str:
    """``res.som.bin`` -> ``res.som_<k>.bin`` (before the last '.'; appended if there is none)."""
    head, tail = os.path.split(os.fspath(path))
    if "." in tail:
        stem, ext = tail.rsplit(".", 1)
        return os.path.join(head, f"{stem}_{k}.{ext}")
    return os.path.join(head, f"{tail}_{k}")


@dataclass
class TrainingHistory:
    """Metrics recorded at each progress point."""

    records: list = field(default_factory=list)

    def append(self, rec: dict) -> None:
        self.records.append(rec)

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame(self.records)

    def save(self, path) -> None:
        """Write ``.csv`` or ``.json`` (by extension) atomically."""
        from somtorch.io.atomic import atomic_output

        path = os.fspath(path)
        if path.endswith(".json"):
            with atomic_output(path, overwrite=True, mode="w") as f:
                json.dump(self.records, f, indent=1)
        else:
            with atomic_output(path, overwrite=True, mode="w") as f:
                self.to_dataframe().to_csv(f, index=False)

    def __len__(self) -> int:
        return len(self.records)


class _StopRequested(Exception):
    """Raised inside a training loop; ``args[0]`` is the number of images trained so far."""


class Trainer:
    """Online (PINK-exact) trainer of a :class:`RotationInvariantSOM`.

    Parameters
    ----------
    som : RotationInvariantSOM
    neighbourhood : Neighbourhood
        Distribution function, sigma, damping and max-update-distance. Default PINK's gaussian 1.1/0.2.
    num_iter : int
        Passes over the data (PINK ``--num-iter``).
    shuffle : bool
        Shuffle the input each iteration (PINK default; ``--input-shuffle-off`` disables).
    seed : int, optional
        Shuffle seed; defaults to ``som.seed`` (PINK uses one seed for init and shuffle).
    rng : {"torch", "pink"}, optional
        Shuffle generator; defaults to ``som.rng``.
    batch_size : int, optional
        Images whose transformations are generated together (memory/speed trade-off only; the
        result does not depend on it). Default: for the dense step, ~16 MB of transformation
        banks on CPU and ~256 MB on a GPU; for the parity step, as many as keep their features
        cache-resident on CPU (:meth:`~somtorch.engine.distance.DistanceEngine.cache_batch`) and
        ~256 MB of features on a GPU; at most 64.
    progress : bool
        Show a tqdm progress bar.
    progress_steps : int
        Number of progress points (PINK ``--progress``, default 10); metrics are computed there.
    inter_store : {None, "overwrite", "keep"}
        Write intermediate SOMs to ``inter_store_path`` (PINK ``--inter-store``).
    metrics_sample : int
        Number of images (fixed random subset) used for quality metrics at each progress point;
        0 disables metrics.
    step : {"auto", "dense", "parity"}
        How one image's update is computed (:mod:`somtorch.engine.online`): ``"dense"`` generates
        a batch's full transformation bank once and does ~12 tensor operations per image
        (small and mid-sized problems), ``"parity"`` uses flip-parity GEMMs and samples only the
        needed rotations per image (large problems); ``"auto"`` picks by the bank's size. The
        update rule and the selected transformations are the same; distances differ only in
        float32 rounding (near-ties are re-evaluated exactly with ``tie_break="pink"``).
    compile : {"auto", "on", "off"}
        Where the compiled C loops of :mod:`somtorch.engine._native` are unavailable (no C
        compiler, ``SOMTORCH_NATIVE=0``; otherwise they run the dense step's update), the dense
        step's neuron update as one ``torch.compile`` loop on CPU (:mod:`somtorch.engine.fused`;
        bit-identical, so results never depend on it). ``"auto"`` (default) compiles for jobs
        large enough to repay the few seconds compilation takes
        (:data:`~somtorch.engine.fused.AUTO_MIN_ELEMENTS` weight updates).
    prefetch : bool, optional
        On CPU with two or more threads, prepare the next batch's rotations on half of the threads
        while the other half updates the neurons (identical results). Default (``None``): where
        the step says it pays -- the dense step when a batch has at least as many
        transformations as the SOM has neurons (e.g. 40x40 images, 6x6 SOM, 36 rotations).
    checkpoint_path : path, optional
        Full training state is written here every ``checkpoint_every`` images, at each progress
        point, and on SIGTERM/SIGINT; :meth:`fit` with ``resume=True`` continues from it and ends
        with exactly the SOM of an uninterrupted run. The checkpoint records its inputs (the
        image file's size, modification time and content hash, or the in-memory array's hash;
        :mod:`somtorch.io.identity`) and the SOM and run settings; a resume on anything else is
        refused with a :class:`~somtorch.errors.ConfigError` saying what changed. It is replaced
        atomically (a kill at any instant leaves the previous or the new one, never a torn file);
        a full disk raises :class:`~somtorch.errors.OutOfSpaceError` naming the file and size.
    """

    def __init__(self, som: RotationInvariantSOM, neighbourhood: Neighbourhood | None = None,
                 num_iter: int = 1, shuffle: bool = True, seed: int | None = None, rng: str | None = None,
                 batch_size: int | None = None, progress: bool = False, progress_steps: int = 10,
                 inter_store: str | None = None, inter_store_path=None, metrics_sample: int = 64,
                 checkpoint_path=None, checkpoint_every: int | None = None, handle_signals: bool = True,
                 stage_name: str = "stage", step: str = "auto", compile: str = "auto", prefetch: bool | None = None):
        if num_iter < 1:
            raise ConfigError(None, "num_iter", num_iter, ">= 1")
        if step not in STEPS:
            raise ConfigError(None, "step", step, f"one of {STEPS}")
        self.step = step
        from somtorch.engine.fused import COMPILE_MODES

        if compile not in COMPILE_MODES:
            raise ConfigError(None, "compile", compile, f"one of {COMPILE_MODES}")
        self.compile = compile
        self.prefetch = prefetch
        if inter_store not in (None, "off", "overwrite", "keep"):
            raise ConfigError(None, "inter_store", inter_store, "off, overwrite or keep")
        if inter_store in ("overwrite", "keep") and inter_store_path is None:
            raise ConfigError(None, "inter_store_path", None, "a path when inter_store is set")
        self.som = som
        self.neighbourhood = neighbourhood or Neighbourhood()
        self.num_iter = int(num_iter)
        self.shuffle = bool(shuffle)
        self.seed = som.seed if seed is None else int(seed)
        self.rng = som.rng if rng is None else rng
        self.batch_size = batch_size
        self.progress = progress
        self.progress_steps = int(progress_steps)
        self.inter_store = None if inter_store == "off" else inter_store
        self.inter_store_path = inter_store_path
        self.metrics_sample = int(metrics_sample)
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.handle_signals = handle_signals
        self.stage_name = stage_name
        self.history = TrainingHistory()
        self._stop = False  # a stop request (signal handler) on this process
        self._agreed_stop: bool | None = None  # data-parallel runs: the stop all ranks agreed on
        self._writes_checkpoint = True  # data-parallel runs: rank 0 only (the ranks' states are identical)
        self._inputs: dict | None = None
        self.stop_after: int | None = None  # testing hook: stop (as if signalled) after this many images

    # ------------------------------------------------------------------ helpers
    def _auto_batch(self) -> int:
        if self.batch_size:
            return int(self.batch_size)
        eng = self.som.engine
        g = self.som.geometry
        if self.som.arithmetic == "pink":
            per_image = self.som.num_transforms * eng.num_region_pixels * g.channels * 4
            return int(max(1, min(64, (256 << 20) // max(per_image, 1))))
        dense = self.step == "dense" or (self.step == "auto" and step_kind(self.som, "auto") == "dense")
        if dense:  # a batch's full transformation banks: ~16 MB on CPU, ~256 MB on a GPU
            budget = (16 << 20) if self.som.device.type == "cpu" else (256 << 20)
            return int(max(1, min(64, budget // max(dense_bank_bytes(self.som), 1))))
        if self.som.device.type != "cpu":  # GPU: bigger batches, ~256 MB of features
            return int(max(1, min(64, (256 << 20) // max(eng.feature_bytes(g.channels), 1))))
        # CPU: a batch's features should stay cache-resident (measured 64x64 on a 2-core EPYC:
        # 4-16 images ~195 img/s, 64 images ~156 img/s); the result does not depend on it
        return int(min(64, eng.cache_batch(g.channels)))

    def _metrics_subset(self, n: int) -> np.ndarray:
        k = min(self.metrics_sample, n)
        if k <= 0:
            return np.zeros(0, dtype=np.int64)
        g = torch.Generator().manual_seed(self.seed + 7919)
        return np.sort(torch.randperm(n, generator=g)[:k].numpy())

    def _state(self, it, pos, tick, pending, prev_w, t_elapsed) -> dict:
        return {
            "weight": self.som.weight.detach().cpu().clone(),
            "update_count": self.som.update_count.detach().cpu().clone(),
            "prev_weight": prev_w.detach().cpu().clone(),
            "iteration": torch.tensor(it), "position": torch.tensor(pos), "tick": torch.tensor(tick),
            "pending_store": torch.tensor(int(pending)), "store_index": torch.tensor(self._store_k),
            "elapsed_s": torch.tensor(float(t_elapsed)),
            "history_json": json.dumps(self.history.records),
            "inputs_json": json.dumps(self._inputs),
            "meta_json": json.dumps({"seed": self.seed, "rng": self.rng, "shuffle": self.shuffle,
                                     "num_iter": self.num_iter, "stage": self.stage_name,
                                     "neighbourhood": [self.neighbourhood.name, self.neighbourhood.sigma,
                                                       self.neighbourhood.damping,
                                                       self.neighbourhood.max_update_distance],
                                     "som": self.som.config_dict()}),
        }

    def save_checkpoint(self, state: dict) -> None:
        """Replace the checkpoint atomically (temporary file, fsync, rename); a full disk raises
        :class:`~somtorch.errors.OutOfSpaceError` naming the file and the size needed."""
        if self.checkpoint_path is None or not self._writes_checkpoint:
            return
        import io

        from somtorch.io.atomic import atomic_output, space_error

        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getbuffer()
        try:
            with atomic_output(self.checkpoint_path, overwrite=True) as f:
                f.write(data)
        except OSError as e:
            raise space_error(e, self.checkpoint_path, len(data),
                              "the checkpoint could not be written; the previous one is kept") from e

    @staticmethod
    def load_checkpoint(path) -> dict:
        """Load a checkpoint written by :meth:`save_checkpoint` (safe: ``weights_only=True``);
        a damaged file raises :class:`~somtorch.errors.FileFormatError`."""
        from somtorch.io.files import open_regular

        with open_regular(path, "rb", "checkpoint") as f:
            return checkpoint_from_bytes(f.read(), path)

    def _check_resume(self, st: dict, n_images: int) -> None:
        """Refuse a checkpoint whose run differs in anything that changes the result."""
        from somtorch.io.identity import check_same_inputs

        meta = json.loads(st["meta_json"])

        nb = self.neighbourhood
        want = {"seed": self.seed, "rng": self.rng, "shuffle": self.shuffle, "num_iter": self.num_iter,
                "neighbourhood": [nb.name, nb.sigma, nb.damping, nb.max_update_distance]}
        for key, value in want.items():
            found = meta.get(key)
            if key == "neighbourhood" and found is not None:
                same = (str(found[0]).lower() == str(value[0]).lower() and list(found[1:]) == list(value[1:]))
            else:
                same = found == value
            if not same:
                raise ConfigError(self.checkpoint_path, key, found, value,
                                  "the checkpoint belongs to a run with other settings; resume with the "
                                  "original settings or start afresh (resume=False)")
        shape = tuple(self.som.weight.shape)
        if tuple(st["weight"].shape) != shape:
            raise ConfigError(self.checkpoint_path, "weight shape", tuple(st["weight"].shape), shape)
        if int(st["tick"]) > n_images * self.num_iter:
            raise ConfigError(self.checkpoint_path, "tick", int(st["tick"]), f"<= {n_images * self.num_iter}",
                              "the checkpoint was written for more images than given")
        recorded = json.loads(st["inputs_json"]) if "inputs_json" in st else None
        if not recorded:
            raise ConfigError(self.checkpoint_path, "inputs_json", None, "a record of the training inputs",
                              "the checkpoint does not say which data it was trained on; start afresh (resume=False)")
        check_same_inputs({"images": recorded.get("images"), "som": meta.get("som")},
                          {"images": self._inputs["images"], "som": self.som.config_dict()},
                          self.checkpoint_path, "checkpoint")

    def _inter_store(self) -> None:
        path = self.inter_store_path
        if self.inter_store == "keep":
            path = inter_store_name(path, self._store_k)
        self._store_k += 1
        self.som.save_pink(path, overwrite=True)

    # ------------------------------------------------------------------ main loop
    @torch.no_grad()
    def fit(self, data, resume: bool = False) -> TrainingHistory:
        """Train on ``data`` (tensor, array, PINK image file or ImageReader)."""
        som = self.som
        src = open_for_som(som, data)
        n = len(src)
        if n == 0:
            raise ConfigError(None, "data", 0, "at least one image (Number of data entries must be larger than 0.)")
        dev = som.device
        factors = som.factors(self.neighbourhood)
        ticks_total = n * self.num_iter
        pticks = set(progress_ticks(ticks_total, self.progress_steps))
        msub = self._metrics_subset(n)
        batch = self._auto_batch()

        it0, pos0, tick, pending = 0, 0, 0, False
        self._store_k = 0
        elapsed0 = 0.0
        prev_w = som.weight.detach().clone()
        self._inputs = self._inputs_record(src) if self.checkpoint_path is not None else None
        if resume and self.checkpoint_path is not None and os.path.exists(self.checkpoint_path):
            st = self.load_checkpoint(self.checkpoint_path)
            self._check_resume(st, n)
            som.weight.copy_(st["weight"].to(dev))
            som.update_count.copy_(st["update_count"].to(som.update_count.device))
            prev_w = st["prev_weight"].to(dev)
            it0, pos0, tick = int(st["iteration"]), int(st["position"]), int(st["tick"])
            pending = bool(int(st["pending_store"]))
            self._store_k = int(st["store_index"])
            elapsed0 = float(st["elapsed_s"])
            self.history.records = json.loads(st["history_json"])

        w = som.weight.data
        from somtorch.engine.fused import use_fused

        work = som.weight.numel() * float(ticks_total - tick)  # weights updated by the rest of the job
        stepper = online_step(som, factors, self.step, fused=use_fused(self.compile, dev, work))
        uc = som.update_count
        counts = uc.numpy() if uc.device.type == "cpu" and uc.is_contiguous() else None
        one = torch.ones(1, dtype=uc.dtype, device=uc.device)
        t_start = time.perf_counter()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=ticks_total, initial=tick, desc=f"train {self.stage_name}", unit="img", dynamic_ncols=True)

        last_ckpt = tick
        stream = self._batch_stream(stepper, src, dev, n, batch, it0, pos0)
        with self._stoppable(bar), contextlib.closing(stream):
            for it, start, idx in stream:
                for b in range(len(idx)):
                    # PINK's rule for one image (engine.online): distances, every neuron's own
                    # best transformation, the best match, then d = c - x; p = d * f; c = c - p
                    best = stepper.step(b)
                    if counts is not None:  # CPU: the buffer's memory, no tensor op
                        counts[best] += 1
                    else:  # a device index: no host synchronisation
                        som.update_count.index_add_(0, best.view(1), one)
                    tick += 1
                    pos = start + b + 1
                    if bar is not None:
                        bar.update(1)
                    if pending:
                        pending = False
                        if self.inter_store:
                            self._inter_store()
                    if tick in pticks:
                        rec = self._progress_record(src, msub, it, tick, ticks_total, prev_w,
                                                    elapsed0 + time.perf_counter() - t_start)
                        prev_w = w.clone()
                        if bar is not None and rec.get("qe") is not None:
                            bar.set_postfix(qe=f"{rec['qe']:.4g}", te=f"{rec['te']:.3f}")
                        pending = tick != ticks_total
                    if (tick in pticks or self._stop or tick == self.stop_after
                            or (self.checkpoint_every and tick - last_ckpt >= self.checkpoint_every)):
                        last_ckpt = self._checkpoint_or_stop(
                            tick in pticks, tick == self.stop_after, it, pos, n, tick, pending, prev_w,
                            elapsed0 + time.perf_counter() - t_start, last_ckpt)
        if bar is not None:
            bar.close()
        return self.history

    def _batch_stream(self, stepper, src, dev, n: int, batch: int, it0: int, pos0: int):
        """Yield ``(iteration, start, indices)`` for every batch still to train, the batch's
        rotations prepared and installed in ``stepper``.

        With prefetching (:attr:`prefetch`), batch ``j + 1`` is read and prepared on a second
        thread while the neurons are updated from batch ``j`` (two buffer sets, one thread each):
        the preparation -- half the time where a batch has more transformations than the SOM has
        neurons -- overlaps the sequential updates. Results are identical (the same operations on
        the same data; tested).
        """
        jobs = ((it, start) for it in range(it0, self.num_iter) for start in range(pos0 if it == it0 else 0, n, batch))
        orders: dict = {}

        def load(it, start, slot):
            idx = orders[it][start:start + batch]
            imgs = src.get(idx, device=dev)
            check_finite(imgs, idx, src, "training")
            return idx, stepper.prepare_state(imgs, slot)

        def order_of(it):  # in the calling thread, before the job is handed over
            if it not in orders:
                orders.clear()
                orders[it] = shuffle_order(n, self.seed, it, self.rng, self.shuffle)
            return it

        if not self._prefetch_wanted(stepper, dev, n, batch, it0, pos0):
            # a step that is one small GEMM and compiled loops runs faster on one thread: with more,
            # the idle OpenMP workers spin after every GEMM and slow the loops beside them (40x40,
            # 10x10 SOM, 8 rotations on 2 cores: 466 -> 271 us per step); batches are still
            # prepared on every thread
            threads = torch.get_num_threads()
            serial = dev.type == "cpu" and threads > 1 and stepper.serial_steps
            try:
                for it, start in jobs:
                    idx, st = load(order_of(it), start, 0)
                    stepper.install(st)
                    if serial:
                        torch.set_num_threads(1)
                    yield it, start, idx
                    if serial:
                        torch.set_num_threads(threads)
            finally:
                torch.set_num_threads(threads)
            return
        from concurrent.futures import ThreadPoolExecutor

        threads = torch.get_num_threads()
        pool = ThreadPoolExecutor(1, thread_name_prefix="somtorch-prefetch", initializer=torch.set_num_threads,
                                  initargs=(max(1, threads // 2),))
        torch.set_num_threads(max(1, threads - threads // 2))
        fut = None
        try:
            slot, nxt = 0, next(jobs, None)
            if nxt is not None:
                fut = pool.submit(load, order_of(nxt[0]), nxt[1], slot)
            while fut is not None:
                cur = nxt
                idx, st = fut.result()
                slot ^= 1
                nxt = next(jobs, None)
                # the other slot's batch is done with: prepare the next one into it meanwhile
                fut = pool.submit(load, order_of(nxt[0]), nxt[1], slot) if nxt is not None else None
                stepper.install(st)
                yield cur[0], cur[1], idx
        finally:
            if fut is not None:
                fut.cancel()
            pool.shutdown(wait=True)
            torch.set_num_threads(threads)

    def _prefetch_wanted(self, stepper, dev, n: int, batch: int, it0: int, pos0: int) -> bool:
        if self.prefetch is not None:
            want = bool(self.prefetch)
        else:  # measured on 2 cores: pays where a batch's preparation is a large share (the bank path)
            want = stepper.prefetch_pays
        more = (self.num_iter - it0) * n - pos0 > batch  # at least two batches to go
        return want and more and dev.type == "cpu" and torch.get_num_threads() >= 2

    def _checkpoint_or_stop(self, at_progress: bool, stop_hook: bool, it: int, pos: int, n: int, tick: int,
                            pending: bool, prev_w, elapsed: float, last_ckpt: int) -> int:
        """After an image (online) or a step (batch): write the checkpoint when one is due (at a
        progress point, on a stop request, or ``checkpoint_every`` images after the last), then
        stop if asked to. Returns the tick of the last checkpoint written."""
        stop = (self._stop if self._agreed_stop is None else self._agreed_stop) or stop_hook
        err = None
        if self.checkpoint_path is not None and (
                at_progress or stop or (self.checkpoint_every and tick - last_ckpt >= self.checkpoint_every)):
            nxt_it, nxt_pos = (it, pos) if pos < n else (it + 1, 0)
            try:
                self.save_checkpoint(self._state(nxt_it, nxt_pos, tick, pending, prev_w, elapsed))
                last_ckpt = tick
            except BaseException as e:  # noqa: BLE001 -- re-raised below, after telling the other ranks
                err = e
        if stop and self._agreed_stop is not None:  # every rank learns whether rank 0's checkpoint landed
            flag = torch.tensor([0.0 if err is None else 1.0], dtype=torch.float64)
            self.reduce(flag, "stop checkpoint written")
            if err is None and flag.item() > 0:
                from somtorch.errors import SomtorchError

                raise SomtorchError(f"rank 0 could not write the checkpoint {self.checkpoint_path} (see its log)")
        if err is not None:
            raise err
        if stop:
            raise _StopRequested(tick)
        return last_ckpt

    def _inputs_record(self, src) -> dict:
        """What a checkpoint of this run records about its inputs (see :mod:`somtorch.io.identity`)."""
        from somtorch.io.identity import images_identity

        return {"images": images_identity(src)}

    @contextlib.contextmanager
    def _stoppable(self, bar):
        """The training loop's frame: SIGTERM/SIGINT handlers installed and restored, and a stop
        request turned into ``KeyboardInterrupt`` (after the checkpoint was written)."""
        old = self._install_stop_handlers()
        try:
            yield
        except _StopRequested as stop:
            if bar is not None:
                bar.close()
            raise KeyboardInterrupt(f"training stopped after {stop.args[0]} images; checkpoint written to "
                                    f"{self.checkpoint_path}") from None
        finally:
            _restore_handlers(old)

    def _install_stop_handlers(self) -> dict:
        """Turn SIGTERM/SIGINT into a stop request (checkpoint, then stop) while training with a
        checkpoint path; returns the previous handlers for :func:`_restore_handlers`."""
        self._stop = False
        old: dict = {}
        if self.handle_signals and self.checkpoint_path is not None:
            def _handler(signum, frame):
                self._stop = True
            try:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    old[sig] = signal.signal(sig, _handler)
            except ValueError:  # not in the main thread
                for sig, h in old.items():
                    signal.signal(sig, h)
                old = {}
        return old

    def _progress_record(self, src, msub, it, tick, ticks_total, prev_w, elapsed) -> dict:
        som = self.som
        w = som.weight.data
        denom = float(prev_w.norm()) or 1.0
        rec = {"stage": self.stage_name, "iteration": it, "tick": tick, "epoch": tick / len(src),
               "sigma": self.neighbourhood.sigma, "damping": self.neighbourhood.damping,
               "change": float((w - prev_w).norm()) / denom, "elapsed_s": round(elapsed, 4),
               "qe": None, "te": None}
        if len(msub):
            dist, _ = _map_subset(som, src, msub)
            rec.update(quality_metrics(dist, som.lattice))
        self.history.append(rec)
        return rec


def checkpoint_from_bytes(data: bytes, path=None) -> dict:
    """A checkpoint's state from its bytes (``weights_only``); damage raises FileFormatError."""
    import io
    import warnings

    from somtorch.errors import FileFormatError

    try:
        with warnings.catch_warnings():  # a damaged file may announce an odd pickle protocol
            warnings.simplefilter("ignore")
            st = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- torch.load raises many kinds on damaged bytes
        raise FileFormatError(path, "checkpoint", None, None,
                              f"damaged or not a somtorch checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    need = ("weight", "update_count", "prev_weight", "iteration", "position", "tick", "pending_store",
            "store_index", "elapsed_s", "history_json", "meta_json")
    if not isinstance(st, dict) or any(k not in st for k in need):
        raise FileFormatError(path, "checkpoint", None, None, "not a somtorch training checkpoint (fields missing)")
    for k in ("history_json", "meta_json"):
        if not isinstance(st[k], str):
            raise FileFormatError(path, f"checkpoint {k}", type(st[k]).__name__, "a JSON string")
        try:
            json.loads(st[k])
        except ValueError as e:
            raise FileFormatError(path, f"checkpoint {k}", None, None, f"invalid JSON: {e}") from None
    for k in need[:3]:
        if not isinstance(st[k], torch.Tensor):
            raise FileFormatError(path, f"checkpoint {k}", type(st[k]).__name__, "a tensor")
    return st


def _restore_handlers(old: dict) -> None:
    for sig, h in old.items():
        signal.signal(sig, h)


def _map_subset(som: RotationInvariantSOM, src, idx: np.ndarray, batch: int = 32):
    out_d, out_t = [], []
    for s in range(0, len(idx), batch):
        d, t = som(src.get(idx[s:s + batch], device=som.device))
        out_d.append(d)
        out_t.append(t)
    return torch.cat(out_d), torch.cat(out_t)

