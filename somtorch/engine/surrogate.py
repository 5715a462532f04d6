"""Exact region norms of every rotation from one product, and the surrogate that guides approximate search.

The squared distance of neuron ``w`` to transformation ``t`` of an image ``x`` over the region
``M`` splits into three terms::

    D(t, w) = |T_t x|^2_M  -  2 <T_t x, w>_M  +  |w|^2_M

The neuron norm is fixed. The **image norm** ``|T_t x|^2_M`` does not depend on the neuron, and
it is what makes distance-versus-angle curves jagged: bilinear interpolation smooths an image by
an amount that depends on the angle (none at quarter turns, most in between), so a compact source
loses more of its peak at some angles than at others. The **cross term** ``<T_t x, w>`` with a
smooth neuron is smooth in the angle.

:class:`RotationNorms` computes the image norm of *every* base rotation exactly without
interpolating any: a bilinear sample is ``sum_i a_i x_i`` over at most four neighbouring pixels,
so its square is a sum of products ``x_i x_j`` of pixels at most one row and one column apart.
With the five product images ``x^2, x*x(0,+1), x*x(+1,0), x*x(+1,+1), x*x(+1,-1)`` (shifted by one
pixel) every rotation's region norm is a fixed linear function of them, and all ``k`` norms are
one matrix product ``F(x) @ Q`` (``Q``: ``(5 d^2, k)``, precomputed from the transformer's own
sampling taps, restricted to the pixels any window sees). Equal to the interpolated images' norms
up to float32 rounding (relative differences up to a few 1e-6, tested).

:func:`surrogate_bases` uses it in :class:`~somtorch.engine.approx.ApproxMapper`'s
``search="surrogate"``: after an exact pass over evenly spaced base rotations (which gives the
exact cross term of every neuron at those angles), the cross term of the best neurons is
interpolated linearly in angle to every rotation, combined with the exact norms and neuron norms
into an estimated distance for every transformation, and the base rotations with the lowest
estimates are then evaluated exactly.

Convention
----------
As :mod:`somtorch.engine.distance`: base rotation ``b`` (``0 <= b < k = numrot / 4``) is the
clockwise rotation by ``b`` steps sampled over the window; transformation ``t = f * numrot +
j * k + b`` is quarter turn ``j`` and flip ``f`` of it; the region norm of ``t`` is over the
pixels of the window the region mask selects *for that variant* (the same for every variant when
the mask is symmetric, e.g. square and circular regions of the native geometry).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["RotationNorms", "surrogate_bases"]

#: largest dense accumulation of a quadratic form (bytes); larger ones are assembled sparsely
_DENSE_BYTES = 64 << 20
# pixel-product images: (row offset, column offset) of the partner of pixel (r, c)
_OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1), (1, -1))


def _window_taps(som) -> tuple[np.ndarray, np.ndarray]:
    """Sampling taps of all ``k`` base rotations over the window: flat image indices and weights,
    ``(k, u*u, taps)`` each (weight 0 for a tap outside the image), in window row-major order."""
    from somtorch.geometry.transforms import _source_coords, pad_or_crop

    eng = som.engine
    tr = eng.transformer
    d, nd, numrot = tr.image_dim, tr.neuron_dim, tr.numrot
    lo, hi = eng.window
    u = hi - lo
    k = max(numrot // 4, 1)
    # b = 0: the window of the zero-padded / cropped image (no interpolation)
    probe = torch.arange(1, d * d + 1, dtype=torch.float64).reshape(1, 1, d, d)
    w0 = pad_or_crop(probe, nd)[0, 0, lo:hi, lo:hi].reshape(-1).long()
    idx0 = (w0 - 1).clamp_min(0).numpy()
    wt0 = (w0 > 0).numpy().astype(np.float64)
    ntap = 4 if tr.interpolation == "bilinear" else 1
    idx = np.zeros((k, u * u, ntap), np.int64)
    wt = np.zeros((k, u * u, ntap))
    idx[0, :, 0], wt[0, :, 0] = idx0, wt0
    if k == 1:
        return idx, wt
    g = tr._grid(lo, hi, "cpu", torch.float32)
    if isinstance(g, tuple):  # the exact taps the engine itself uses (PINK arithmetic, nearest)
        ti, tw = (a.reshape(a.shape[0], k - 1, u * u).permute(1, 2, 0).numpy() for a in g)
        idx[1:, :, :ti.shape[-1]] = ti
        wt[1:, :, :tw.shape[-1]] = tw
        return idx, wt
    # grid_sample path (bilinear, zero padding, align_corners=True): points outside the image
    # get an out-of-range coordinate in the grid, so all their taps are zero
    sr, sc, inside = _source_coords(d, nd, numrot, lo, hi)
    r0 = np.floor(sr).astype(np.int64)
    c0 = np.floor(sc).astype(np.int64)
    fr = sr.astype(np.float64) - r0
    fc = sc.astype(np.float64) - c0
    for tap, (dr, dc, w) in enumerate(((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                                       (1, 0, fr * (1 - fc)), (1, 1, fr * fc))):
        rr, cc = r0 + dr, c0 + dc
        ok = inside & (rr >= 0) & (rr < d) & (cc >= 0) & (cc < d) & (w > 0)
        idx[1:, :, tap] = np.where(ok, rr * d + cc, 0).reshape(k - 1, -1)
        wt[1:, :, tap] = np.where(ok, w, 0).reshape(k - 1, -1)
    return idx, wt


class RotationNorms:
    """Exact region norms of all base rotations of images, without interpolating them.

    Parameters
    ----------
    som : RotationInvariantSOM
        Its transformer (taps of every base rotation) and region mask define the norms.

    Notes
    -----
    ``__call__(images (B, C, d, d))`` returns ``(B, k, V)``: the squared region norm of base
    rotation ``b`` seen by variant ``v``, where ``V = 1`` when the region mask is symmetric
    (every dihedral variant sees the same pixels) and ``V = nq`` (the variants in PINK order,
    ``q = 4 f + j``) otherwise. Costs one ``(B, S) @ (S, k V)`` product with ``S <= 5 d^2``
    (the pixel products any window sees), instead of interpolating ``k`` rotations.
    """

    def __init__(self, som):
        eng = som.engine
        tr = eng.transformer
        self.d = tr.image_dim
        self.k = max(tr.numrot // 4, 1)
        idx, wt = _window_taps(som)
        _, vmask = eng._variant_tables("cpu")  # (u*u, nq): the region pixels each variant sees
        vm = vmask.double().numpy()
        self.variants = 1 if eng._mask_symmetric() else vm.shape[1]
        # the pixels every variant sees (one form for all), plus, for an asymmetric region, each
        # variant's few extra pixels at the window's edge (a small form per variant)
        core = vm.min(axis=1)
        self._forms = [_quadratic_form(idx, wt, core[:, None], self.d)]
        if self.variants > 1:
            edge = vm - core[:, None]
            pix = np.nonzero(edge.any(axis=1))[0]
            self._forms.append(_quadratic_form(idx[:, pix], wt[:, pix], edge[pix], self.d))
        self._cache: dict = {}

    def _tables(self, device, dtype):
        key = (str(device), dtype)
        tab = self._cache.get(key)
        if tab is None:
            tab = self._cache[key] = [(torch.from_numpy(sup).to(device), torch.from_numpy(q).to(device, dtype))
                                      for sup, q in self._forms]
        return tab

    @staticmethod
    def products(images: torch.Tensor) -> torch.Tensor:
        """The five pixel-product images, summed over channels: ``(B, 5 * d * d)``."""
        b, c, d, _ = images.shape
        x = images
        if c == 1:  # no channel sum: write the products straight into the output
            f = x.new_empty((b, len(_OFFSETS), d, d))
            x = x[:, 0]
            torch.mul(x, x, out=f[:, 0])
            for o, (dr, dc) in enumerate(_OFFSETS[1:], start=1):
                f[:, o].zero_()
                r0, r1 = slice(0, d - dr), slice(dr, d)
                c0, c1 = (slice(0, d - dc), slice(dc, d)) if dc >= 0 else (slice(-dc, d), slice(0, d + dc))
                torch.mul(x[:, r0, c0], x[:, r1, c1], out=f[:, o, r0, c0])
            return f.view(b, -1)
        f = x.new_zeros((b, c, len(_OFFSETS), d, d))
        f[:, :, 0] = x * x
        f[:, :, 1, :, :-1] = x[..., :, :-1] * x[..., :, 1:]
        f[:, :, 2, :-1, :] = x[..., :-1, :] * x[..., 1:, :]
        f[:, :, 3, :-1, :-1] = x[..., :-1, :-1] * x[..., 1:, 1:]
        f[:, :, 4, :-1, 1:] = x[..., :-1, 1:] * x[..., 1:, :-1]
        return f.sum(1).reshape(b, -1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        f = self.products(images)
        b = len(images)
        (sup, q), *edge = self._tables(images.device, images.dtype)
        out = (f.index_select(1, sup) @ q).view(b, self.k, 1)
        if edge:
            sup_e, q_e = edge[0]
            out = out + (f.index_select(1, sup_e) @ q_e).view(b, self.k, self.variants)
        return out


def _quadratic_form(idx: np.ndarray, wt: np.ndarray, weights: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the pixel-product images that matter and the matrix ``(S, k * V)``: the weighted
    sum of squared samples ``sum_p weights[p, v] * (sum_a wt[b, p, a] x[idx[b, p, a]])^2`` of
    base rotation ``b`` is ``F(x)[support] @ Q[:, b * V + v]``.

    Accumulated densely (``5 d^2 x k V`` float64) when that is small, else from sparse entries
    (the per-variant edge forms: few pixels, ``V`` columns per rotation)."""
    k, n, ntap = idx.shape
    nv = weights.shape[1]
    dense = None
    if len(_OFFSETS) * d * d * k * nv * 8 <= _DENSE_BYTES:
        dense = np.zeros((len(_OFFSETS) * d * d, k * nv))
    rows_, cols_ = np.divmod(idx, d)
    kk = np.broadcast_to(np.arange(k)[:, None], (k, n))
    keys, cols, vals = [], [], []
    for a in range(ntap):
        for b in range(a, ntap):
            # x_ia * x_ib: the product image of its offset, anchored at the upper pixel
            coef = wt[..., a] * wt[..., b] * (1.0 if a == b else 2.0)
            nz = coef != 0
            dr = rows_[..., b] - rows_[..., a]
            dc = cols_[..., b] - cols_[..., a]
            for o, (odr, odc) in enumerate(_OFFSETS):
                fwd = nz & (dr == odr) & (dc == odc)
                bwd = nz & (dr == -odr) & (dc == -odc) & ~fwd
                for hit, anchor in ((fwd, idx[..., a]), (bwd, idx[..., b])):
                    if not hit.any():
                        continue
                    p_h = np.nonzero(hit)[1]
                    for v in range(nv):
                        w = coef[hit] * weights[p_h, v]
                        keep = w != 0
                        key, col = (o * d * d + anchor[hit])[keep], (kk[hit] * nv + v)[keep]
                        if dense is not None:
                            np.add.at(dense, (key, col), w[keep])
                        else:
                            keys.append(key)
                            cols.append(col)
                            vals.append(w[keep])
    if dense is not None:
        support = np.nonzero(np.abs(dense).sum(1) > 0)[0]
        return support, dense[support].astype(np.float32)
    if not keys:
        return np.zeros(0, np.int64), np.zeros((0, k * nv), np.float32)
    keys, cols, vals = np.concatenate(keys), np.concatenate(cols), np.concatenate(vals)
    support, row = np.unique(keys, return_inverse=True)
    q = np.zeros((len(support), k * nv))
    np.add.at(q, (row, cols), vals)
    return support, q.astype(np.float32)


def surrogate_bases(norms: torch.Tensor, dsq: torch.Tensor, coarse: torch.Tensor, best: torch.Tensor,
                    numrot: int, count: int, neurons: int = 8) -> torch.Tensor:
    """Base rotations to evaluate next, ranked by an estimated distance.

    Parameters
    ----------
    norms : ``(B, k, V)`` exact region norms (:class:`RotationNorms`).
    dsq : ``(B, nq, m, N)`` exact squared distances at the evenly spaced base rotations
        ``coarse (m,)`` (sorted, ``nq`` dihedral variants in PINK order).
    best : ``(B, N)`` the best distances so far.
    count : how many base rotations to return (not among ``coarse``); ``neurons``: how many of
        the best neurons the estimate considers.

    Returns
    -------
    ``(B, count)`` base rotations, sorted.

    Notes
    -----
    At the coarse angles ``|w|^2 - 2 cross = D - norm`` exactly; for each flip and neuron it is
    interpolated linearly along the angle (circularly, over the ``4 m`` coarse angles the quarter
    turns give) to every rotation, and the estimate adds the exact norm of every rotation. A base rotation's score is its lowest estimate over
    the quarter turns, flips and the ``neurons`` best neurons.
    """
    b, nq, m, n = dsq.shape
    k = norms.shape[1]
    nf = nq // 4
    dev = dsq.device
    r = min(int(neurons), n)
    top = torch.topk(best, r, dim=1, largest=False).indices  # (B, R)
    d_top = torch.gather(dsq, 3, top.view(b, 1, 1, r).expand(b, nq, m, r))  # (B, nq, m, R)
    q_idx = torch.arange(nq, device=dev)
    v = norms.shape[2]
    # norm of variant q at coarse base rotation coarse[i]: norms[:, coarse[i], q or 0]
    nc = norms[:, coarse][:, :, q_idx if v > 1 else torch.zeros_like(q_idx)]  # (B, m, nq)
    # w - 2 * cross = d - norm (exact at the coarse angles), linear in the cross term
    g = (d_top - nc.permute(0, 2, 1).unsqueeze(-1)).reshape(b, nf, 4 * m, r)  # angle order j * k + coarse[i]
    lo_i, slope_i, off = _interp_table(coarse, k, numrot, dev)
    slope = (g.roll(-1, dims=2) - g) * slope_i.to(g.dtype).view(1, 1, -1, 1)  # per coarse interval
    est = g.index_select(2, lo_i).addcmul_(slope.index_select(2, lo_i), off.to(g.dtype).view(1, 1, -1, 1))
    est = est.amin(dim=3)  # (B, nf, numrot): best of the R neurons, before the neuron-free norm
    a = torch.arange(numrot, device=dev)
    if v > 1:
        f = torch.arange(nf, device=dev).view(-1, 1)
        na = norms.reshape(b, k * v)[:, ((a % k) * v).view(1, -1) + f * 4 + a // k]  # (B, nf, numrot)
    else:
        na = norms[:, a % k, 0].unsqueeze(1)  # (B, 1, numrot)
    est = (est + na).amin(dim=1)  # (B, numrot)
    score = est.view(b, 4, k).amin(dim=1)  # (B, k)
    score[:, coarse] = float("inf")
    count = min(int(count), k - m)
    return torch.topk(score, count, dim=1, largest=False).indices.sort(dim=1).values


_INTERP: dict = {}


def _interp_table(coarse: torch.Tensor, k: int, numrot: int, device):
    """For every rotation: its coarse interval (the index of the coarse angle at or before it among
    the ``4 m`` the quarter turns give), ``1 / width`` of every interval, and its offset in it."""
    key = (tuple(coarse.tolist()), k, numrot, str(device))
    tab = _INTERP.get(key)
    if tab is None:
        cb = np.asarray(key[0])
        grid = (np.arange(4)[:, None] * k + cb[None, :]).reshape(-1)  # sorted coarse angles
        a = np.arange(numrot)
        lo = (np.searchsorted(grid, a, side="right") - 1) % len(grid)
        span = (np.roll(grid, -1) - grid) % numrot
        span[span == 0] = numrot
        off = (a - grid[lo]) % numrot
        tab = _INTERP[key] = (torch.from_numpy(lo).to(device), torch.from_numpy(1.0 / span).to(device),
                              torch.from_numpy(off.astype(np.float64)).to(device))
    return tab
