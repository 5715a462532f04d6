"""The online steps for large problems (flip-parity GEMMs) and for PINK's exact arithmetic.

See :mod:`somtorch.engine.online` for the step family, its contract (the same selected
transformations and update as every other step) and how :func:`~somtorch.engine.online.online_step`
chooses; :class:`ParityStep` and :class:`ExactStep` are re-exported there.
"""

from __future__ import annotations

import torch

from somtorch.engine.distance import best_match
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
        self.wv, self.wnorm = self.eng.neuron_parity(self.w)

    def _select_and_update(self, b: int, dsq: torch.Tensor) -> int:
        if not self.native:
            return super()._select_and_update(b, dsq)
        from somtorch.engine._native import pink_update

        _, tb, best = best_match(dsq)
        best = int(best[0])
        if self._sel[best] is not None and len(self._sel[best]) == 0:
            return best
        bases, variants = self.eng.transformer.select_sources(self.images[b], tb[0])
        if not pink_update(self.w, bases, variants, self._each, self._fac_rows[best]):
            self.native = False
            self._update(best, tb[0], lambda rows: self.eng.transformer.select(self.images[b], rows))
        return best

    def prepare_state(self, images: torch.Tensor, slot: int = 0) -> dict:
        xr, rnorm = self.eng.base_features(images)
        return {"images": images, "xr": xr, "rnorm": rnorm, "rmax": rnorm.amax(dim=1)}

    def step(self, b: int):
        eng = self.eng
        dsq = eng.sq_distances_fast(self.xr[b:b + 1], self.rnorm[b:b + 1], self.wv, self.wnorm)
        if eng.tie_break == "pink" and self._near_ties(dsq[0], dsq[0].amin(dim=0), self.rmax[b], self.wnorm):
            dsq = eng.resolve_ties(self.images[b:b + 1], dsq, self.w, self.rnorm[b:b + 1], self.wnorm)
        best = self._select_and_update(b, dsq)
        sel = self._sel[best]
        if sel is None:
            self.refresh()
        elif len(sel):
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

