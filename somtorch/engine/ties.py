"""PINK's tie rules for the fast GEMM distances: near-ties re-evaluated with PINK's exact arithmetic.

The GEMM path of :class:`~somtorch.engine.distance.DistanceEngine` rounds differently from PINK in
the last bits, so transformations (or neurons) whose distances are equal in exact arithmetic come
out in an arbitrary order. :class:`TieResolver` finds the candidates within a relative band
(:data:`TIE_RTOL`) of a minimum and recomputes them exactly as PINK does (spec §4: float32
differences squared in double, accumulated in float32), so the lowest index wins where PINK's
does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from somtorch.geometry.transforms import PinkTransformer

if TYPE_CHECKING:  # distance.py imports this module
    from somtorch.engine.distance import DistanceEngine

__all__ = ["TieResolver", "TIE_RTOL"]

#: relative width of the near-tie band that :class:`TieResolver` re-evaluates exactly
TIE_RTOL = 1e-6


class TieResolver:
    """Makes the fast GEMM path break exact ties the way PINK does.

    GEMM distances carry ~1e-6 relative round-off, so transformations whose distances are equal
    in exact arithmetic (rot90 copies on symmetric data, zero-initialised SOMs) come out in an
    arbitrary order. Candidates within ``rtol * (|x|^2 + |w|^2)`` of a minimum (per neuron over
    transformations, and over neurons for the best match) are recomputed with PINK's exact
    arithmetic (:func:`_exact_sq` on bit-exact transformations), so the lowest index wins
    exactly where PINK's lowest index wins.
    """

    def __init__(self, engine: DistanceEngine, rtol: float = TIE_RTOL):
        self.engine = engine
        self.rtol = float(rtol)
        tr = engine.transformer
        self._exact = tr if tr.exact else PinkTransformer(tr.image_dim, tr.neuron_dim, tr.numrot, tr.flip,
                                                          tr.interpolation, exact=True)

    def candidates(self, dsq: torch.Tensor, rnorm: torch.Tensor, wnorm: torch.Tensor) -> torch.Tensor:
        """Boolean ``(B, T, N)``: pairs that may tie with their neuron's (or the global) minimum."""
        near_t, involved = self._near(dsq, rnorm, wnorm)
        return near_t & involved.unsqueeze(1)

    def _near(self, dsq, rnorm, wnorm):
        """``near_t (B, T, N)``: within the band of the neuron's minimum; ``involved (B, N)``:
        neurons with more than one such transformation, or near the global minimum with another."""
        tol = self.rtol * (rnorm.amax(dim=1, keepdim=True).unsqueeze(-1) + wnorm)  # (B, 1, N)
        dmin = dsq.amin(dim=1, keepdim=True)  # (B, 1, N)
        near_t = dsq <= dmin + tol
        tied_neuron = near_t.sum(dim=1) > 1  # (B, N)
        gmin = dmin.amin(dim=2, keepdim=True)  # (B, 1, 1)
        near_n = (dmin <= gmin + tol).squeeze(1)  # (B, N)
        multi_n = near_n.sum(dim=1, keepdim=True) > 1
        return near_t, tied_neuron | (near_n & multi_n)

    def _perms(self, device) -> torch.Tensor:
        """``(nq, P)``: window pixel of the base rotation read by each region pixel (row-major
        region order) of dihedral variant ``q = 4 f + j`` (PINK order; the window is centred, so
        every variant maps it onto itself)."""
        key = str(device)
        cache = self.__dict__.setdefault("_perm_cache", {})
        if key not in cache:
            eng = self.engine
            lo, hi = eng.window
            u = hi - lo
            mask_w = eng.mask[lo:hi, lo:hi]
            a = torch.arange(u * u).reshape(u, u)
            perms = []
            for f in (0, 1):
                for j in range(4):
                    q = torch.rot90(a, -j)
                    perms.append((torch.flip(q, dims=(0,)) if f else q)[mask_w])
            cache[key] = torch.stack(perms).to(device)
        return cache[key]

    def _windows_one(self, image: torch.Tensor, pairs: torch.Tensor, use_numpy: bool | None = None) -> torch.Tensor:
        """:func:`_exact_windows` of one image ``(C, d, d)`` from a cached table: every base
        rotation's taps over the window (the unrotated one as a single tap of weight 1, padding as
        a zero pixel), one gather and PINK's tap order; bit-identical, fewer operations."""
        tr = self._exact
        k = max(tr.numrot // 4, 1)
        lo, hi = self.engine.window
        grid = tr._grid(lo, hi, image.device, image.dtype) if k > 1 else None
        if k > 1 and not isinstance(grid, tuple):
            return _exact_windows(tr, image.unsqueeze(0), pairs, k, self.engine.window)
        use_numpy = image.device.type == "cpu" if use_numpy is None else use_numpy
        key = ("win1", str(image.device), image.dtype, use_numpy)
        cache = self.__dict__.setdefault("_perm_cache", {})
        if key not in cache:
            from somtorch.geometry.transforms import pad_or_crop

            u, d = hi - lo, tr.image_dim
            taps = grid[0].shape[0] if grid is not None else 1
            probe = torch.arange(1, d * d + 1, dtype=torch.float64).reshape(1, 1, d, d)
            w0 = pad_or_crop(probe, tr.neuron_dim)[0, 0, lo:hi, lo:hi].reshape(-1).long()
            idx = torch.full((k, taps, u * u), d * d, dtype=torch.int64)  # d * d: the zero pixel
            wt = torch.zeros((k, taps, u * u), dtype=image.dtype)
            idx[0, 0] = torch.where(w0 > 0, w0 - 1, torch.full_like(w0, d * d))
            wt[0, 0] = 1.0
            if grid is not None:
                idx[1:] = grid[0].reshape(taps, k - 1, u * u).transpose(0, 1).cpu()
                wt[1:] = grid[1].reshape(taps, k - 1, u * u).transpose(0, 1).cpu()
            cache[key] = (idx.numpy(), wt.numpy()) if use_numpy else (idx.to(image.device), wt.to(image.device))
        idx, wt = cache[key]
        c = image.shape[0]
        if use_numpy:  # numpy on CPU: the same IEEE float32 operations, less overhead per call
            p = pairs.numpy()
            flat = np.concatenate([image.reshape(c, -1).numpy(), np.zeros((c, 1), image.numpy().dtype)], axis=1)
            ib, wb = idx[p], wt[p]  # (U, taps, u*u)
            vals = flat[:, ib]  # (C, U, taps, u*u)
            out = wb[:, 0] * vals[:, :, 0]
            if ib.shape[1] > 1:  # PINK's order ((w0 a + w1 b) + w2 c) + w3 d
                out = ((out + wb[:, 1] * vals[:, :, 1]) + wb[:, 2] * vals[:, :, 2]) + wb[:, 3] * vals[:, :, 3]
            return torch.from_numpy(np.ascontiguousarray(out.transpose(1, 0, 2)))
        flat = torch.nn.functional.pad(image.reshape(c, -1), (0, 1))  # (C, d*d + 1)
        ib, wb = idx.index_select(0, pairs), wt.index_select(0, pairs)
        vals = flat[:, ib]
        out = wb[:, 0] * vals[:, :, 0]
        if ib.shape[1] > 1:
            out = ((out + wb[:, 1] * vals[:, :, 1]) + wb[:, 2] * vals[:, :, 2]) + wb[:, 3] * vals[:, :, 3]
        return out.transpose(0, 1)

    def _maybe_rows(self, dsq, rnorm, wnorm) -> torch.Tensor:
        """Images that may hold a near-tie (a superset of those :meth:`_near` involves), in one
        contiguous pass: every neuron's minimum lies in its band, so more than ``N`` entries of an
        image in the (widest) band, or a second neuron near the best, flags it."""
        b, _, n = dsq.shape
        tol = self.rtol * (rnorm.amax(dim=1, keepdim=True).unsqueeze(-1) + wnorm.amax())  # (B, 1, 1)
        dmin = dsq.amin(dim=1, keepdim=True)  # (B, 1, N)
        cnt = (dsq <= dmin + tol).view(b, -1).sum(dim=1)  # (B,)
        gmin = dmin.amin(dim=2, keepdim=True)
        cnt_n = (dmin <= gmin + tol).view(b, -1).sum(dim=1)
        return torch.nonzero((cnt > n) | (cnt_n > 1)).flatten()

    def _split(self, tt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Base rotation ``b`` and dihedral variant ``q = 4 f + j`` of transformations ``tt``."""
        numrot = self._exact.numrot
        k = max(numrot // 4, 1)
        s = torch.remainder(tt, numrot)
        q = 4 * torch.div(tt, numrot, rounding_mode="floor") + torch.div(s, k, rounding_mode="floor")
        return torch.remainder(s, k), q

    def _exact_values(self, base, which, q, nn_, weights) -> torch.Tensor:
        """PINK-exact squared distances of candidates: variant ``q`` of base window ``which`` (rows
        of ``base (U, C, u*u)``) against neurons ``nn_``; a variant reads its region pixels from
        its base rotation with one gather (a pixel permutation, bit for bit)."""
        lo, hi = self.engine.window
        mask_w = self.engine.mask[lo:hi, lo:hi]
        c = base.shape[1]
        pq = self._perms(base.device).index_select(0, q)  # (M, P)
        xa = torch.gather(base.index_select(0, which), 2, pq.unsqueeze(1).expand(-1, c, -1)).reshape(len(pq), -1)
        wa = weights.index_select(0, nn_)[..., lo:hi, lo:hi][..., mask_w].reshape(len(pq), -1)
        return torch.from_numpy(_exact_sq(xa.cpu().numpy(), wa.cpu().numpy()))

    def _resolve_one(self, images, dsq, weights, rnorm, wnorm) -> torch.Tensor:
        """:meth:`resolve` for one image in the fewest operations (the training step's case): the
        window of each base rotation its candidates need, PINK-exact, once each
        (:meth:`_windows_one`)."""
        from somtorch.engine._native_parity import near_pairs

        found = near_pairs(dsq[0], rnorm[0].contiguous(), wnorm, self.rtol) if dsq.shape[0] == 1 else None
        if found is None:
            near_t, involved = self._near(dsq, rnorm, wnorm)
            found = torch.nonzero(near_t[0] & involved[0].unsqueeze(0), as_tuple=True)
        tt, nn_ = found
        if len(tt) == 0:
            return dsq
        b, q = self._split(tt)
        pairs, which = torch.unique(b, return_inverse=True)
        base = self._windows_one(images[0], pairs)  # (U, C, u*u)
        dsq[0, tt, nn_] = self._exact_values(base, which, q, nn_, weights).to(dsq.device)
        return dsq

    @torch.no_grad()
    def resolve(self, images: torch.Tensor, dsq: torch.Tensor, weights: torch.Tensor,
                rnorm: torch.Tensor, wnorm: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Replace near-tied entries of ``dsq (B, T, N)`` by PINK-exact values (in place).

        The involved images' base rotations are sampled once with PINK's exact arithmetic over the
        window only, for all of them together; every candidate ``(image, t, neuron)`` then reads its
        transformation's region pixels with one gather (a dihedral variant is a pixel permutation
        of its base rotation, bit for bit).
        """
        if dsq.shape[0] == 1 and rows is None:  # one image (the online step, which has checked for near-ties)
            return self._resolve_one(images, dsq, weights, rnorm, wnorm)
        if rows is None:  # else the caller has found them (the compiled tail of DistanceEngine.match_fast)
            rows = self._maybe_rows(dsq, rnorm, wnorm)
        if len(rows) == 0:  # the usual case: one pass over (B, T, N), nothing else
            return dsq
        near_t, involved = self._near(dsq[rows], rnorm[rows], wnorm)
        keep = involved.any(dim=1)
        rows, near_t, involved = rows[keep], near_t[keep], involved[keep]
        if len(rows) == 0:
            return dsq
        tr = self._exact
        k = max(tr.numrot // 4, 1)
        for r0 in range(0, len(rows), _TIE_ROWS):
            rws = rows[r0:r0 + _TIE_ROWS]
            rr, tt, nn_ = torch.nonzero(near_t[r0:r0 + _TIE_ROWS] & involved[r0:r0 + _TIE_ROWS].unsqueeze(1),
                                        as_tuple=True)
            b, q = self._split(tt)
            # only the base rotations some candidate needs, PINK-exact, over the window
            pairs, which = torch.unique(rr * k + b, return_inverse=True)
            base = _exact_windows(tr, images[rws], pairs, k, self.engine.window)  # (U, C, u*u)
            for m0 in range(0, len(tt), _TIE_CHUNK):
                sl = slice(m0, m0 + _TIE_CHUNK)
                vals = self._exact_values(base, which[sl], q[sl], nn_[sl], weights)
                dsq[rws[rr[sl]], tt[sl], nn_[sl]] = vals.to(dsq.device)
        return dsq


#: candidates whose exact distances are accumulated together by :meth:`TieResolver.resolve`
_TIE_CHUNK = 4096
#: images whose exact base rotations :meth:`TieResolver.resolve` holds at a time
_TIE_ROWS = 64


def _exact_windows(tr: PinkTransformer, images: torch.Tensor, pairs: torch.Tensor, k: int, window) -> torch.Tensor:
    """Window pixels ``(U, C, u*u)`` of base rotation ``i`` of image ``r`` for ``pairs = r * k + i``,
    with the exact transformer's arithmetic: bit-identical to
    ``tr.base_rotations(images, window)[r, i]``, computing only the pairs asked for."""
    from somtorch.geometry.transforms import _combine_taps, pad_or_crop

    lo, hi = window
    u = hi - lo
    r_, c, d, _ = images.shape
    if k == 1 or not isinstance(tr._grid(lo, hi, images.device, images.dtype), tuple):
        # no rotation to sample, or nearest-neighbour sampling (exact on any path): all of them
        return tr.base_rotations(images, window=window).reshape(r_ * k, c, u * u).index_select(0, pairs)
    rows, rot = torch.div(pairs, k, rounding_mode="floor"), torch.remainder(pairs, k)
    out = images.new_empty((len(pairs), c, u * u))
    z = rot == 0
    if z.any():  # the unrotated image, cropped or padded
        out[z] = pad_or_crop(images.index_select(0, rows[z]), tr.neuron_dim)[..., lo:hi, lo:hi].reshape(-1, c, u * u)
    nz = torch.nonzero(~z).flatten()
    if len(nz):
        idx, w = tr._grid(lo, hi, images.device, images.dtype)  # (taps, k-1, u, u) each
        sel = rot[nz] - 1
        src = images.reshape(r_, c, d * d).index_select(0, rows[nz])  # (P, C, d*d)
        taps = torch.stack([torch.gather(src, 2, idx[a].reshape(k - 1, -1).index_select(0, sel).unsqueeze(1)
                                         .expand(-1, c, -1)) for a in range(idx.shape[0])])  # (taps, P, C, u*u)
        wt = w.reshape(w.shape[0], k - 1, -1).index_select(1, sel).unsqueeze(2)  # (taps, P, 1, u*u)
        out[nz] = _combine_taps(wt, taps)
    return out


def _exact_sq(xa: np.ndarray, wa: np.ndarray) -> np.ndarray:
    """PINK-exact squared distances of candidate pairs ``xa, wa (M, F)`` float32 -> ``(M,)``: the
    compiled loop of :mod:`somtorch.engine._native` when available, else :func:`_exact_sq_numpy`
    (bit-identical)."""
    from somtorch.engine._native import pink_sq

    out = pink_sq(xa, wa)
    return out if out is not None else _exact_sq_numpy(xa, wa)


def _exact_sq_numpy(xa: np.ndarray, wa: np.ndarray) -> np.ndarray:
    """:func:`_exact_sq` in numpy: vectorised over the pairs, sequential over the pixels."""
    # float32 difference, squared exactly in double, accumulated as float(double(acc) + d*d)
    d2 = np.ascontiguousarray(np.square((wa - xa).astype(np.float64)).T)
    acc = np.zeros(len(xa), dtype=np.float64)
    acc32 = np.zeros(len(xa), dtype=np.float32)
    for row in d2:  # two calls a pixel: the float32 sum read exactly into double, then rounded
        np.add(acc32, row, out=acc)
        acc32[...] = acc
    return acc32
