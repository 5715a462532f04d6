"""One image's online (PINK) update, in as few tensor operations as the arithmetic allows.

PINK's rule (spec §5.1, :mod:`somtorch.engine.training`) is sequential: image ``j``'s distances
depend on the neurons after image ``j - 1``'s update. What does not depend on the neurons -- the
rotations/flips of a batch of images, their region features and norms -- is computed once per
batch (:meth:`OnlineStep.prepare`); :meth:`OnlineStep.step` then does only what must be done per
image. Three implementations give the same update with different trade-offs:

* :class:`DenseStep` (small and mid-sized problems): the batch's ``T`` full-size transformations
  are generated once (:class:`~somtorch.geometry.PinkTransformer`, bit-identical to the per-image
  selection), so one image costs one GEMM ``(T, C*u*u) @ (C*u*u, N)`` with the region norms as
  its bias, one ``min`` over transformations, one ``argmin`` over neurons, one gather of every
  neuron's best transformation and PINK's three-pass update -- about a dozen operations, whatever
  the number of rotations. Nothing on the way needs the host except the best neuron's index on
  CPU (which picks the update rows); on CUDA the step runs without host synchronisation (the
  neighbourhood row is gathered on the device and every neuron is updated, non-moving ones with
  factor 0, which leaves them bit-identical). On CPU, everything after the GEMM is two compiled
  C loops (:mod:`somtorch.engine._native`): the minima, best neuron and near-tie test in one, PINK's
  update in the other, with each neuron's transformation read straight from the image's base
  rotations (transposes appended once per batch, reversals as index arithmetic: no bank is built)
  and the window and norm refresh in the same pass -- the eager operations' roundings, bit for
  bit (with the loops, the neuron norms are their fixed-order double sum rounded once, also in
  :meth:`DenseStep.refresh`). Those steps run on one thread (:attr:`DenseStep.serial_steps`).
* :class:`ParityStep` (large problems, e.g. 64x64 images at 360 rotations, where the full bank
  of one image is ~24 MB): flip-parity GEMMs (:mod:`somtorch.engine.parity`, 4x fewer
  multiply-adds) and only the needed base rotations sampled per image
  (:meth:`~somtorch.geometry.PinkTransformer.select`). On CPU with the compiled loops, the rest is
  four compiled passes: the distances' tail with the near-tie test
  (:func:`~somtorch.engine._native_parity.map_tail`), the needed base rotations sampled straight into
  place (:func:`~somtorch.geometry._sampler.sample_one`), PINK's update, and the moved neurons'
  parity rows and norms (:func:`~somtorch.engine._native_parity.neuron_parity`; the norms a fixed-order
  double sum, as the dense step's).
* :class:`ExactStep` (``arithmetic="pink"``): PINK's float arithmetic, bit for bit.

Every step gives the selected transformations and the update bit-identical to the others; the
GEMM paths differ from each other only in the float32 rounding of the distances (~1e-6
relative), which matters only for near-ties -- and those are re-evaluated with PINK's exact
arithmetic when ``tie_break="pink"`` (:class:`~somtorch.engine.distance.TieResolver`).
:func:`online_step` chooses (``step="auto"``) by the bytes of one image's full transformation bank.
"""

from __future__ import annotations

import numpy as np
import torch

from somtorch.engine.distance import TIE_RTOL, best_match
from somtorch.errors import ConfigError

__all__ = ["OnlineStep", "DenseStep", "ParityStep", "ExactStep", "online_step", "step_kind", "dense_bank_bytes",
           "STEPS", "DENSE_BANK_BYTES"]

STEPS = ("auto", "dense", "parity")

#: ``step="auto"`` uses :class:`DenseStep` when one image's full transformation bank
#: (``T * C * nd * nd`` float32 values) is at most this many bytes. Measured on a 2-core EPYC:
#: 40x40/36 rotations (0.9 MB) and 32x32/8 (0.14 MB) train 2-4x faster dense; 100x100/72
#: (11.6 MB) and 64x64/360 (23 MB) faster with parity features.
DENSE_BANK_BYTES = 6 << 20


class OnlineStep:
    """Base class: per-batch preparation and the per-image update of PINK's online rule.

    Parameters
    ----------
    som : RotationInvariantSOM
    factors : Tensor ``(N, N)``
        Update factors ``factor[best, i]`` (:meth:`RotationInvariantSOM.factors`).
    """

    def __init__(self, som, factors: torch.Tensor):
        self.som = som
        self.eng = som.engine
        self.w = som.weight.data
        self.factors = factors
        self.device = self.w.device
        self.cuda = self.device.type == "cuda"
        n = factors.shape[0]
        # per best match: the neurons that move (PINK skips factor 0) and their factor column.
        # Where at least half of them move (a gaussian's tail underflows to 0 on big SOMs), every
        # neuron is updated: c - (c - x) * 0 = c for finite data (bit for bit, except that a
        # weight of -0.0 may become +0.0), and one pass over all neurons is cheaper than
        # gathering and scattering the movers.
        moving = factors != 0
        self.all_move = (moving.sum(dim=1) * 2 >= n).tolist()
        self._sel = [None if self.all_move[i] else torch.nonzero(moving[i]).flatten() for i in range(n)]
        self._fcol = [factors[i].view(-1, 1, 1, 1) for i in range(n)]
        self.images = None

    #: Does preparing the next batch on a second thread pay (the trainer's prefetch)?
    prefetch_pays: bool = False
    #: Do the per-image steps run faster on one torch thread (see :attr:`DenseStep.serial_steps`)?
    serial_steps: bool = False

    def prepare(self, images: torch.Tensor) -> None:
        """Compute everything about a batch of images that does not depend on the neurons."""
        self.install(self.prepare_state(images))

    def prepare_state(self, images: torch.Tensor, slot: int = 0) -> dict:
        """What :meth:`prepare` computes, returned as a dict instead of installed. Safe to run in a
        second thread while the neurons are updated from a batch prepared in the other ``slot``."""
        raise NotImplementedError

    def install(self, state: dict) -> None:
        """Make a :meth:`prepare_state` result the current batch."""
        self.__dict__.update(state)

    def step(self, b: int):
        """Update the neurons with image ``b`` of the prepared batch; returns the best-matching
        neuron (an ``int`` on CPU, a 0-d device tensor on CUDA: no host synchronisation)."""
        raise NotImplementedError

    def refresh(self) -> None:
        """Recompute the neuron-side caches after the weights were changed from outside."""

    # ------------------------------------------------------------------ shared pieces
    @staticmethod
    def _near_ties(d: torch.Tensor, dmin: torch.Tensor, rmax: torch.Tensor, wnorm: torch.Tensor) -> bool:
        """Could PINK's tie rules pick differently for distances ``d (T, N)``?

        True when some neuron has a second transformation, or the best neuron a second neuron,
        within twice :class:`~somtorch.engine.distance.TieResolver`'s band (with the largest
        neuron norm: a superset of its candidates, so rounding of the comparison cannot lose
        one); the resolver then decides exactly. Counting entries in the band is one pass:
        every neuron's minimum is in it, so more than ``N + 1`` entries means a near-tie.
        """
        if d.device.type == "cpu":  # numpy: the same float32 comparisons, a fifth of the overhead
            dn, mn = d.numpy(), dmin.numpy()
            tol = (np.float32(float(rmax)) + wnorm.numpy().max()) * (2.0 * TIE_RTOL)
            cnt = np.count_nonzero(dn <= mn + tol) + np.count_nonzero(mn <= mn.min() + tol)
            return int(cnt) > d.shape[1] + 1
        tol = (rmax + wnorm.max()) * (2.0 * TIE_RTOL)
        cnt = torch.count_nonzero(d <= dmin + tol) + torch.count_nonzero(dmin <= dmin.min() + tol)
        return int(cnt) > d.shape[1] + 1

    def _select_and_update(self, b: int, dsq: torch.Tensor) -> int:
        """Best matches from ``dsq (1, T, N)`` (PINK's tie rules), then the update with the needed
        transformations of image ``b`` sampled on demand
        (:meth:`~somtorch.geometry.PinkTransformer.select`); returns the best neuron."""
        _, tb, best = best_match(dsq)
        tb, best = tb[0], int(best[0])
        img, tr = self.images[b], self.eng.transformer
        self._update(best, tb, lambda rows: tr.select(img, rows))
        return best

    def _update(self, best, tb: torch.Tensor, select) -> None:
        """PINK's update ``c <- c - (c - x) * f`` (three float32 passes) of the moving neurons,
        ``select(rows_t)`` giving the full-size transformations ``(M, C, nd, nd)``."""
        w = self.w
        if not isinstance(best, int):  # CUDA: every neuron, factor 0 where PINK skips (exact)
            f = self.factors.index_select(0, best.view(1)).view(-1, 1, 1, 1)
            x = select(tb)
            w.sub_(torch.sub(w, x, out=x).mul_(f))
            return
        sel = self._sel[best]
        if sel is None:  # every neuron moves: no index copies
            x = select(tb)
            w.sub_(torch.sub(w, x, out=x).mul_(self._fcol[best]))
            return
        if len(sel) == 0:
            return
        x = select(tb.index_select(0, sel))
        ws = w.index_select(0, sel)
        ws.sub_(torch.sub(ws, x, out=x).mul_(self.factors[best].index_select(0, sel).view(-1, 1, 1, 1)))
        w.index_copy_(0, sel, ws)


class DenseStep(OnlineStep):
    """Every transformation of a batch at once; one GEMM and an update per image (see module).

    Parameters
    ----------
    som, factors : see :class:`OnlineStep`.
    cuda_graphs : bool, optional
        On CUDA (without PINK tie-breaking, which needs the host), capture each batch position's
        step once as a CUDA graph and replay it: one launch per image instead of ~15 kernel
        launches. The batch's inputs are copied into static buffers, so replays see them.
        Default: on for CUDA.
    fused : bool, optional
        On CPU, apply PINK's update of all neurons in one compiled loop
        (:class:`~somtorch.engine.fused.FusedUpdate`, bit-identical to the eager update) where
        whole transformations are gathered (fewer transformations than neurons; with the bank's
        short rows it measured slower).
    """

    def __init__(self, som, factors: torch.Tensor, cuda_graphs: bool | None = None, fused: bool = False):
        super().__init__(som, factors)
        self.fused = None
        self._want_fused = bool(fused) and not self.cuda
        eng = self.eng
        lo, hi = eng.window
        self.lo, self.hi = lo, hi
        n, c = self.w.shape[0], self.w.shape[1]
        u = hi - lo
        mask = eng.mask[lo:hi, lo:hi].to(device=self.device, dtype=self.w.dtype)
        self.full = bool(mask.all())
        self.mask = mask
        self.wwin = self.w[:, :, lo:hi, lo:hi]  # view of the neurons' window
        self.wf = self.w.new_empty((n, c, u, u))  # neuron window, zero outside the region
        self.wf2 = self.wf.view(n, c * u * u)
        self.wnorm = self.w.new_empty(n)
        self.precision = eng.precision
        self.ties = eng.tie_break == "pink"
        self.graphs = self.cuda and not self.ties and (True if cuda_graphs is None else bool(cuda_graphs))
        self._graph: dict = {}
        self._tables()
        if self._want_fused and self._t < n:
            # only where whole transformations are gathered (fewer transformations than neurons):
            # with the bank's short rows the compiled loop measured slower than the eager passes
            # (40x40, 6x6 SOM, 36 rotations: 2,177 against 3,155 img/s, same run)
            from somtorch.engine.fused import FusedUpdate

            self.fused = FusedUpdate(self.w, factors)
        self._slots: list = [{}, {}]
        self.dbuf = self.w.new_empty((self._t, n))
        # PINK's update and the window refresh as one compiled C loop (engine._native): reads
        # every weight once instead of a gather and four passes; bit-identical (tested)
        self.native = False
        if not self.cuda and self.w.dtype == torch.float32 and self.w.is_contiguous():
            from somtorch.engine import _native

            self.native = _native.update_available()
        if self.native:
            self._mask_c = None if self.full else mask.contiguous()
            self._fac_rows = factors.to(torch.float32).contiguous()
            self._dmin = self.w.new_empty(n)
            self._tb = torch.empty(n, dtype=torch.int64)
            self._near = torch.zeros(1, dtype=torch.int64)
            self._bind_native()
        self.refresh()

    def refresh(self) -> None:
        if self.full:
            self.wf.copy_(self.wwin)
        else:
            torch.mul(self.wwin, self.mask, out=self.wf)
        if self.native:  # the norms' arithmetic of the compiled update
            from somtorch.engine._native import window_norms

            window_norms(self.wf, self.wnorm)
        else:
            torch.linalg.vecdot(self.wf2, self.wf2, out=self.wnorm)

    def _tables(self) -> None:
        """Row tables of the bank (see :meth:`prepare`), built once.

        The bank holds, per base rotation ``i``, only the column-order variants the search needs:
        the rotation ``R`` or its transpose ``R^T`` (``side``), with columns reversed or not. Every
        dihedral variant is one of those with its rows in order or reversed
        (:meth:`~somtorch.engine.distance.DistanceEngine.pairing`), so a transformation is a list of
        bank rows: ``rows[t]`` for the full ``nd x nd`` image, ``win_rows[t]`` for the window.
        """
        tr = self.eng.transformer
        pairs = self.eng.pairing()["pairs"]  # (side, g) of every searched variant, PINK order
        self._cvs = sorted({(side, g & 2) for side, g in pairs})
        cv_of = {cv: n for n, cv in enumerate(self._cvs)}
        k = max(tr.numrot // 4, 1)
        c, nd = self.w.shape[1], self.w.shape[-1]

        def rows_of(side, g, i, n):  # (C * n,) row indices of one variant in a (ncv, k, C, n) stack
            r = torch.arange(n)
            r = n - 1 - r if g & 1 else r
            blk = (cv_of[(side, g & 2)] * k + i) * c + torch.arange(c)
            return (blk[:, None] * n + r[None, :]).reshape(-1)

        order = [(side, g, i) for side, g in pairs for i in range(k)]  # t = q * k + i
        self._rows = torch.stack([rows_of(s_, g, i, nd) for s_, g, i in order]).to(self.device)  # (T, C*nd)
        # the same transformations for the compiled update: (base rotation, transpose, reverse
        # rows, reverse columns)
        self._variants = torch.tensor([[i, side, g & 1, (g >> 1) & 1] for side, g, i in order], dtype=torch.int64)
        self._tvariants = bool(self._variants[:, 1].any())
        if self._tvariants:  # transposed variants read entry k + i (prepare_state appends the transposes)
            self._variants[:, 0] += self._variants[:, 1] * k
            self._variants[:, 1] = 0
        # region norms: per base rotation and searched variant q (PINK order), t = q * k + i
        self._nq = len(pairs)
        self._t = len(order)
        self._flat: dict = {}
        self._ident = torch.arange(self._t, device=self.device).view(self._t, 1)  # whole transformations

    def _flat_index(self, name: str, b: int, per_image: int) -> torch.Tensor:
        """Row indices of table ``name`` for ``b`` images into the ``(b * per_image, nd)`` bank rows
        (one gather along the first dimension: several times faster than along the second)."""
        key = (name, b)
        idx = self._flat.get(key)
        if idx is None:
            tab = self._rows.view(-1)
            off = torch.arange(b, device=self.device).mul_(per_image).unsqueeze(1)
            idx = self._flat[key] = (off + tab.unsqueeze(0)).reshape(-1)
        return idx

    def prepare(self, images: torch.Tensor) -> None:
        """Everything about a batch that does not depend on the neurons.

        Only the ``k`` base rotations are interpolated (:meth:`PinkTransformer.base_rotations`);
        the bank ``(B, ncv, k, C, nd, nd)`` adds their transposes and column reversals where the
        search needs them, and every transformation is then a gather of bank rows (row
        reversal in the gather). Values are pure copies, bit-identical to
        :meth:`~somtorch.geometry.PinkTransformer.forward`. The window features
        ``(B, T, C*u*u)`` (the GEMM operand, PINK's transformation order) and their region
        norms are one row gather and one product.
        """
        self.install(self.prepare_state(images))

    def prepare_state(self, images: torch.Tensor, slot: int = 0) -> dict:
        """:meth:`prepare`'s work into buffer set ``slot`` (0 or 1), returned instead of installed:
        the trainer prepares the next batch in one slot on a second core while the neurons are
        updated from the other (see :meth:`~somtorch.engine.training.Trainer`)."""
        bufs = self._slots[slot]
        st: dict = {"images": images}
        tr = self.eng.transformer
        k = max(tr.numrot // 4, 1)
        lo, hi = self.lo, self.hi
        u, t = hi - lo, self._t
        if self.native:  # the compiled update reads the base rotations directly: no bank
            # (with their transposes appended where the search has transposed variants, sampled on
            # the transposed grids: reading rows is several times faster than reading columns)
            base = tr.base_rotations(images, transposes=self._tvariants).contiguous()  # (B, k or 2k, C, nd, nd)
            st["base"] = base
        else:
            base = tr.base_rotations(images)  # (B, k, C, nd, nd)
            self._prepare_bank(st, bufs, base)
        b, _, c, nd, _ = base.shape
        bmax = max(b, bufs["xf"].shape[0] if bufs.get("xf") is not None else 0)
        if bufs.get("xf") is None or bufs["xf"].shape[0] < b:
            bufs["xf"] = base.new_empty((bmax, self._nq, k, c, u, u))
        xf = bufs["xf"][:b]
        basew = base[:, :k, :, lo:hi, lo:hi]
        if self.native:
            # the GEMM operand (B, T, C*u*u) in one gather of the windows of the base rotations and
            # their transposes, rows and columns reversed by the index (pure copies)
            torch.index_select(base.view(b, -1), 1, self._xf_index(k, c, nd, u, base.shape[1]),
                               out=xf.view(b, -1))
        else:
            # each searched dihedral variant of the base rotations' windows (the window is centred,
            # so transposes and reversals commute with it), one strided copy per variant
            for q, (side, g) in enumerate(self.eng.pairing()["pairs"]):
                x = basew if side == 0 else basew.transpose(-1, -2)
                dims = [dim for dim, bit in ((-2, 1), (-1, 2)) if g & bit]
                xf[:, q].copy_(x.flip(dims) if dims else x)
        st["xf"] = xf.view(b, t, c * u * u)
        st["rnorm"] = self._region_norms(basew)  # (B, T)
        st["rcol"] = st["rnorm"].unsqueeze(-1)  # (B, T, 1): the GEMM's bias
        if self.ties:
            st["rmax"] = st["rnorm"].amax(dim=1)
        return st

    def _xf_index(self, k: int, c: int, nd: int, u: int, entries: int) -> torch.Tensor:
        """Where each value of one image's GEMM operand ``(nq, k, C, u, u)`` lies in its base rotations
        ``(entries, C, nd, nd)`` (transposes at ``k + i`` when there are ``2k`` entries): variant
        ``(side, g)`` of base ``i`` reads window row ``u-1-r`` if ``g & 1``, column ``u-1-s`` if
        ``g & 2``, from entry ``i + side * k`` (from ``i``, transposed by the index, without)."""
        key = ("xf", k, c, nd, u, entries)
        idx = self._flat.get(key)
        if idx is None:
            lo = self.lo
            r = torch.arange(u)
            parts = []
            for side, g in self.eng.pairing()["pairs"]:
                rr = (u - 1 - r) if g & 1 else r
                ss = (u - 1 - r) if g & 2 else r
                rows, cols = (rr[:, None] + lo), (ss[None, :] + lo)
                if side and entries < 2 * k:  # no appended transposes: (r, s) reads (ss[s], rr[r])
                    rows, cols = cols.expand(u, u), rows.expand(u, u)
                for i in range(k):
                    e = i + (k if side and entries >= 2 * k else 0)
                    ch = (e * c + torch.arange(c)).view(c, 1, 1)
                    parts.append(((ch * nd + rows) * nd + cols).reshape(-1))
            idx = self._flat[key] = torch.cat(parts).to(self.device)
        return idx

    def _prepare_bank(self, st: dict, bufs: dict, base: torch.Tensor) -> None:
        """The eager update's sources (without the compiled loops): the transformation bank and,
        where there are fewer transformations than neurons, the whole transformations."""
        b, k, c, nd, _ = base.shape
        shape = (b, len(self._cvs), k, c, nd, nd)
        if bufs.get("bank") is None or bufs["bank"].shape[0] < b:
            # reused (no page faults per batch) and sized for the largest batch, so the fused
            # update always sees the same shapes (no recompilation for a short last batch)
            bufs["bank"] = base.new_empty(shape)
            bufs["src"] = None
        bmax = bufs["bank"].shape[0]
        bank = bufs["bank"][:b]
        for n, (side, cr) in enumerate(self._cvs):
            src = base if side == 0 else base.transpose(-2, -1)
            bank[:, n].copy_(torch.flip(src, dims=(-1,)) if cr else src)
        per = len(self._cvs) * k * c * nd  # bank rows per image
        # the per-image gather's source: whole transformations (B, T, C, nd, nd) when there are
        # fewer of them than neurons (one batched row gather here, N whole copies per image),
        # else the bank's rows (N * C * nd rows gathered per image)
        st["whole"] = self._t < self.w.shape[0]
        t = self._t
        if st["whole"]:
            if bufs["src"] is None:
                bufs["src"] = base.new_empty((bmax, t, c, nd, nd))
            st["src"] = bufs["src"][:b]
            torch.index_select(bank.view(b * per, nd), 0, self._flat_index("rows", b, per),
                               out=st["src"].view(b * t * c * nd, nd))
            st["_fused_src"] = (bufs["src"].view(-1, c * nd * nd), self._ident, t)
        else:
            st["src"] = bank.view(b, per, nd)
            st["_fused_src"] = (bufs["bank"].view(-1, nd), self._rows, per)

    def install(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.graphs:
            self._to_static()
        if self.native:
            self._install_native()

    @property
    def serial_steps(self) -> bool:
        """Do the per-image steps run faster on one thread (the trainer then sets one thread for
        them and every thread for preparing batches)? Yes with the compiled loops on CPU: one
        small GEMM and two single-threaded loops per image, which idle OpenMP workers spinning
        after each GEMM would slow down."""
        return self.native

    @property
    def prefetch_pays(self) -> bool:
        """Does preparing the next batch on a second core pay (:class:`~somtorch.engine.training.Trainer`)?
        Where there are at least as many transformations as neurons, a batch's preparation (the
        bank and the GEMM operand) is about half of the time; otherwise the update dominates and
        is faster on all cores."""
        return not self.cuda and self._t >= self.w.shape[0]

    def _region_norms(self, basew: torch.Tensor) -> torch.Tensor:
        """Region norms ``(B, T)`` of every transformation from the base rotations' windows
        ``(B, k, C, u, u)``: a dihedral variant's norm is the base rotation's squared pixels summed
        over the region as that variant sees it (one small product; one norm per rotation when
        the region is dihedrally symmetric, as square and circular regions are)."""
        b, k = basew.shape[:2]
        eng = self.eng
        if self.full or eng._mask_symmetric():
            xm = basew if self.full else basew * self.mask
            r = torch.linalg.vecdot(xm.reshape(b, k, -1), xm.reshape(b, k, -1))  # (B, k)
            return r.unsqueeze(1).expand(b, self._nq, k).reshape(b, -1)
        r2 = basew.square().sum(2).reshape(b * k, -1)  # (B*k, u*u)
        m = eng._variant_tables(basew.device)[1].to(basew.dtype)  # (u*u, nq): region per variant
        from somtorch.engine.distance import _matmul_rows

        return _matmul_rows(r2, m).view(b, k, -1).transpose(1, 2).reshape(b, -1)

    def _to_static(self) -> None:
        """Graph mode: the batch's tensors copied into buffers that every replay reads."""
        b = self.xf.shape[0]
        st = getattr(self, "_static", None)
        if st is None or st["xf"].shape[0] < b:
            self._graph = {}  # graphs read the old buffers: capture again
            st = self._static = {"xf": torch.empty_like(self.xf), "rcol": torch.empty_like(self.rcol),
                                 "src": torch.empty_like(self.src),
                                 "best": torch.zeros(b, dtype=torch.int64, device=self.device)}
        for key, val in (("xf", self.xf), ("rcol", self.rcol), ("src", self.src)):
            st[key][:b].copy_(val)
        self.xf, self.rcol, self.src = st["xf"], st["rcol"], st["src"]

    def _capture(self, b: int):
        """Record image position ``b``'s step as a CUDA graph (after two warm-up steps on a side
        stream, whose effect on the neurons is undone)."""
        w0 = self.w.clone()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._step(b)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.w.copy_(w0)
        self.refresh()
        graph = torch.cuda.CUDAGraph()
        # one memory pool for all positions: their temporaries never outlive a replay, and they
        # are replayed in the order they were captured (0, 1, ... of every batch)
        with torch.cuda.graph(graph, pool=self._static.get("pool")):
            self._static["best"][b].copy_(self._step(b))
        self._static.setdefault("pool", graph.pool())
        self._graph[b] = graph
        return graph

    def _distances(self, b: int) -> torch.Tensor:
        """Squared distances ``(T, N)`` of image ``b`` to the current neurons."""
        if self.precision == "float32" and not self.cuda:
            d = torch.addmm(self.rcol[b], self.xf[b], self.wf2.T, alpha=-2.0, out=self.dbuf)
        else:
            d = self.eng._mm(self.xf[b].unsqueeze(0), self.wf2.T)[0].float().mul_(-2.0).add_(self.rcol[b])
        return d.add_(self.wnorm).clamp_min_(0)

    def step(self, b: int):
        if self.graphs:
            graph = self._graph.get(b)
            (graph if graph is not None else self._capture(b)).replay()
            return self._static["best"][b]
        return self._step(b)

    def _step(self, b: int):
        if self.native:
            return self._step_native(b)
        d = self._distances(b)
        dmin, tb = torch.min(d, dim=0)  # lowest transformation index among equal minima
        if self.ties and self._near_ties(d, dmin, self.rmax[b], self.wnorm):
            d = self.eng.resolve_ties(self.images[b:b + 1], d.unsqueeze(0), self.w, self.rnorm[b:b + 1],
                                      self.wnorm)[0]
            dmin, tb = torch.min(d, dim=0)
        best = torch.argmin(dmin)
        if not self.cuda:
            best = int(best)
            if self.fused is not None and self._sel[best] is None:
                rows, table, per = self._fused_src
                if self.fused(rows, table, b * per, tb, best):
                    self.refresh()
                    return best
                self.fused = None  # compilation unavailable: eager from now on
        src_b, table, shape = self.src[b], self._rows, self.w.shape[1:]
        if self.whole:
            self._update(best, tb, lambda t: src_b.index_select(0, t))
        else:
            self._update(best, tb, lambda t: src_b.index_select(0, table.index_select(0, t).view(-1)).view(-1, *shape))
        self.refresh()
        return best


    def _step_native(self, b: int) -> int:
        """:meth:`_step` on CPU with the compiled loops (:mod:`somtorch.engine._native`): the GEMM,
        then one C pass for the neuron norms, the minima and the near-tie test, and one for PINK's
        update with the window and its norms -- the same operations and roundings as the eager
        step (tested bit-identical), in three calls instead of ~15, their pointer arguments bound
        once per batch (:meth:`_bind_native`)."""
        xf_b, rcol_b, base_b, rmax_b = self._per_image[b]
        d = torch.addmm(rcol_b, xf_b, self._wf2t, alpha=-2.0, out=self.dbuf)
        best = self._c_best(*self._best_args[0], rmax_b, *self._best_args[1])
        if self._near[0]:
            d = self.eng.resolve_ties(self.images[b:b + 1], d.unsqueeze(0), self.w, self.rnorm[b:b + 1],
                                      self.wnorm)[0]
            dmin, tb = torch.min(d, dim=0)
            best = int(torch.argmin(dmin))
            from somtorch.engine._native import pink_update

            pink_update(self.w, self.base[b], self._variants, tb, self._fac_rows[best], self.wf, self._mask_c,
                        self.lo, self.wnorm)
            return best
        self._c_update(self._w_ptr, base_b, *self._update_args[0], self._fac_ptrs[best], *self._update_args[1])
        return best

    def _bind_native(self) -> None:
        """Bind the compiled loops' constant pointer arguments (neurons, buffers, tables) once."""
        from somtorch.engine._native import functions

        fns = functions()
        self._c_update, self._c_best = fns["update"], fns["best"]
        n, c, nd = self.w.shape[0], self.w.shape[1], self.w.shape[-1]
        u = self.wf.shape[-1]
        self._w_ptr = self.w.data_ptr()
        self._wf2t = self.wf2.T
        self._fac_ptrs = [self._fac_rows[i].data_ptr() for i in range(n)]
        mask = self._mask_c.data_ptr() if self._mask_c is not None else None
        self._update_args = ((self._variants.data_ptr(), self._tb.data_ptr()),
                             (0, n, c, nd, self.wf.data_ptr(), mask, self.lo, u, self.wnorm.data_ptr()))
        rtol = float(np.float32(2.0 * TIE_RTOL)) if self.ties else -1.0
        self._best_args = ((self.dbuf.data_ptr(), self._t, n, self.wnorm.data_ptr()),
                           (rtol, self._dmin.data_ptr(), self._tb.data_ptr(), self._near.data_ptr()))

    def _install_native(self) -> None:
        """Per-image views and pointers of the installed batch (see :meth:`_step_native`)."""
        rmax = self.rmax.tolist() if self.ties else [0.0] * len(self.xf)
        per = self.base[0].numel() * self.base.element_size() if len(self.base) else 0
        p0 = self.base.data_ptr()
        self._per_image = [(self.xf[b], self.rcol[b], p0 + b * per, rmax[b]) for b in range(len(self.xf))]


def step_kind(som, step: str = "auto") -> str:
    """``"exact"`` for ``arithmetic="pink"``, else ``step`` resolved: ``"auto"`` is ``"dense"`` when
    one image's full bank is at most :data:`DENSE_BANK_BYTES`, else ``"parity"``."""
    if step not in STEPS:
        raise ConfigError(None, "step", step, f"one of {STEPS}")
    if som.arithmetic == "pink":
        return "exact"
    if step == "auto":
        return "dense" if dense_bank_bytes(som) <= DENSE_BANK_BYTES else "parity"
    return step


def online_step(som, factors: torch.Tensor, step: str = "auto", fused: bool = False) -> OnlineStep:
    """The :class:`OnlineStep` for a SOM and ``step`` (:func:`step_kind`); ``fused`` asks the dense
    step for the compiled update (:mod:`somtorch.engine.fused`)."""
    kind = step_kind(som, step)
    if kind == "dense":
        return DenseStep(som, factors, fused=fused)
    from somtorch.engine.online_parity import ExactStep, ParityStep

    return {"exact": ExactStep, "parity": ParityStep}[kind](som, factors)


def dense_bank_bytes(som) -> int:
    """Bytes of one image's full transformation bank (``T * C * nd * nd`` float32)."""
    g = som.geometry
    return g.num_transforms * g.channels * g.nd * g.nd * 4


# the steps for large problems and PINK's arithmetic live in their own module (they subclass
# OnlineStep); re-exported here, where the step family is documented
from somtorch.engine.online_parity import ExactStep, ParityStep  # noqa: E402
