"""The online steps for large problems (flip-parity GEMMs) and for PINK's exact arithmetic.

See :mod:`somtorch.engine.online` for the step family, its contract (the same selected
transformations and update as every other step) and how :func:`~somtorch.engine.online.online_step`
chooses; :class:`ParityStep` and :class:`ExactStep` are re-exported there.
"""

from __future__ import annotations

import torch

from somtorch.engine.distance import TIE_RTOL, best_match, first_min
from somtorch.engine.online import OnlineStep

__all__ = ["ParityStep", "ExactStep"]


class ParityStep(OnlineStep):
    """Flip-parity distance GEMMs and per-image sampling of the needed base rotations."""

    def __init__(self, som, factors: torch.Tensor):
        super().__init__(som, factors)
        # PINK's update as the compiled C loop (engine._native) on CPU, reading each neuron's
        # transformation from the few full-size base rotations sampled (bit-identical, tested)
        self.native = False
        if not self.cuda and self.w.dtype == torch.float32 and self.w.is_contiguous():
            from somtorch.engine import _native

            self.native = _native.update_available()
            self._fac_rows = factors.to(torch.float32).contiguous()
            self._each = torch.arange(factors.shape[0], dtype=torch.int64)
        self.refresh()

    def refresh(self) -> None:
        if not self._parity_native():
            self.wv, self.wnorm = self.eng.neuron_parity(self.w)

    def _parity_native(self, fac: torch.Tensor | None = None) -> bool:
        """The neurons' parity rows and norms by the compiled pass (those with ``fac != 0`` when
        ``fac`` is given, into the current buffers; all of them otherwise): the rows of
        :meth:`~somtorch.engine.distance.DistanceEngine.neuron_parity` bit for bit, the norms a
        fixed-order double sum (last bits differ from torch's float32 sum; decisions within the
        near-tie band are re-evaluated exactly, so training is unchanged -- tested). False when
        the compiled loops are not used."""
        if not self.native:
            return False
        from somtorch.engine import _native_parity as _native

        eng, w = self.eng, self.w
        tab = self.__dict__.get("_npar")
        if tab is None:
            lo, hi = eng.window
            c = w.shape[1]
            _, mult = eng._neuron_gather(w.device, c, w.dtype)
            tab = self._npar = {"lo": lo, "u": hi - lo, "mult": mult.contiguous(),
                                "omask": eng._orbit_tables(w.device)[0].to(w.dtype).contiguous(),
                                "f": c * (hi - lo) ** 2}
        if fac is None or getattr(self, "wv", None) is None or self.wv.shape != (w.shape[0], tab["f"]):
            self.wv, self.wnorm = w.new_empty((w.shape[0], tab["f"])), w.new_empty(w.shape[0])
            fac = None
        return _native.neuron_parity(w, tab["lo"], tab["u"], tab["mult"], tab["omask"], self.wv, self.wnorm, fac)

    def _select_and_update(self, b: int, dsq: torch.Tensor, tb: torch.Tensor | None = None,
                           best: int | None = None) -> int:
        """The base class's, with the compiled update; ``tb (N,)`` and ``best`` instead of ``dsq``
        when the compiled tail has found them."""
        if tb is None:
            if not self.native:
                return super()._select_and_update(b, dsq)
            _, tb, best = best_match(dsq)
            tb, best = tb[0], int(best[0])
        if not self.native:
            img, tr = self.images[b], self.eng.transformer
            self._update(best, tb, lambda rows: tr.select(img, rows))
            return best
        from somtorch.engine._native import pink_update

        if self._sel[best] is not None and len(self._sel[best]) == 0:
            return best
        bases, variants = self.eng.transformer.select_sources(self.images[b], tb)
        if not pink_update(self.w, bases, variants, self._each, self._fac_rows[best]):
            self.native = False
            self._update(best, tb, lambda rows: self.eng.transformer.select(self.images[b], rows))
        return best

    def prepare_state(self, images: torch.Tensor, slot: int = 0) -> dict:
        xr, rnorm = self.eng.base_features(images)
        return {"images": images, "xr": xr, "rnorm": rnorm, "rmax": rnorm.amax(dim=1)}

    def _match_native(self, b: int):
        """Image ``b``'s best transformation per neuron ``(N,)`` and best neuron by the compiled tail
        (:func:`~somtorch.engine._native_parity.map_tail`: the combinations, norms, minima and the
        near-tie test of :meth:`_near_ties` -- twice the resolver's band, so ``rtol = 2 *
        TIE_RTOL`` -- in one pass), with the resolver where a near-tie is possible; None when the
        compiled loops are unavailable. The same numbers as the eager path (tested)."""
        from somtorch.engine._native_parity import map_tail

        eng = self.eng
        tab = self.__dict__.get("_tail")
        if tab is None:
            side, flip = eng._tail_pairs()
            n, f = self.wv.shape
            sides = eng.pairing()["sides"]
            ks = self.xr.shape[1] // f
            tab = self._tail = {
                "side": side, "flip": flip,
                "k": ks // sides, "sides": sides, "blocks": eng._blocks(eng.window[1] - eng.window[0], f, ks),
                "dsq": torch.empty((1, len(side) * (ks // sides), n)), "dmin": torch.empty((1, n)),
                "tb": torch.empty((1, n), dtype=torch.int64), "flag": torch.empty(1, dtype=torch.int64),
                "rtol": 2.0 * TIE_RTOL if eng.tie_break == "pink" else -1.0}
        prods = [p.contiguous() for p in eng._products(self.xr, b, b + 1, self.wv, tab["blocks"])]
        if not map_tail(prods, tab["k"], tab["sides"], tab["side"], tab["flip"], self.rnorm[b:b + 1], self.wnorm,
                        tab["rtol"], tab["dsq"], tab["dmin"], tab["tb"], tab["flag"]):
            return None
        if int(tab["flag"][0]):
            from somtorch.engine._native_parity import col_first_min

            dsq = eng.resolve_ties(self.images[b:b + 1], tab["dsq"], self.w, self.rnorm[b:b + 1], self.wnorm)
            dmin, tb = col_first_min(dsq[0]) or first_min(dsq[0], dim=0)
            return tb, int(torch.argmin(dmin))
        return tab["tb"][0], int(torch.argmin(tab["dmin"][0]))

    def step(self, b: int):
        eng = self.eng
        found = (self._match_native(b) if self.native and self.xr.dtype == torch.float32 and eng.precision == "float32"
                 else None)
        if found is not None:
            best = self._select_and_update(b, None, *found)
        else:
            dsq = eng.sq_distances_fast(self.xr[b:b + 1], self.rnorm[b:b + 1], self.wv, self.wnorm)
            if eng.tie_break == "pink" and self._near_ties(dsq[0], dsq[0].amin(dim=0), self.rmax[b], self.wnorm):
                dsq = eng.resolve_ties(self.images[b:b + 1], dsq, self.w, self.rnorm[b:b + 1], self.wnorm)
            best = self._select_and_update(b, dsq)
        sel = self._sel[best]
        if sel is not None and len(sel) == 0:
            return best
        if self.native and self._parity_native(self._fac_rows[best]):  # the moved neurons (factor != 0)
            return best
        if sel is None:
            self.refresh()
        else:
            eng.update_neuron_parity(self.wv, self.wnorm, sel, self.w.index_select(0, sel))
        return best


class ExactStep(OnlineStep):
    """PINK's exact float arithmetic (``arithmetic="pink"``): slow, bit for bit."""

    def __init__(self, som, factors: torch.Tensor):
        super().__init__(som, factors)
        self.refresh()

    def refresh(self) -> None:
        self.wf = self.eng.neuron_features(self.w)

    def prepare_state(self, images: torch.Tensor, slot: int = 0) -> dict:
        return {"images": images, "xf": self.eng.image_features(images)}

    def step(self, b: int):
        best = self._select_and_update(b, self.eng.sq_distances(self.xf[b:b + 1], self.wf))
        self.refresh()
        return best

