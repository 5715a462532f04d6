"""Compiled passes over flip-parity coordinates: the images' blocked coordinates, the neurons'
parity rows, and everything after the distance GEMMs (mapping and the parity step).

Each pass is the eager torch code's float32 operations in the same order (tested bit-identical),
compiled once with the system C compiler into the cache folder like :mod:`somtorch.engine._native`
and split over torch's threads (the compiled sampler's process-wide pool) when there is enough
work. Without a compiler, or with ``SOMTORCH_NATIVE=0``, every function returns False and the
caller uses torch: results never depend on it.

* :func:`parity_blocked`: :func:`~somtorch.engine.parity.parity_from_orbits` (``blocked=True``)
  of orbit-ordered base rotations, into rows of ``(B, P)`` or block-major buffers.
* :func:`neuron_parity`: the neurons' parity rows (bit for bit
  :meth:`~somtorch.engine.distance.DistanceEngine.neuron_parity`) and window norms (a fixed-order
  double sum) in one pass, for the neurons an update moved.
* :func:`map_tail`: the flip combinations, norms, clamp, per-neuron first minimum and the
  near-tie test of a batch, one pass per image; only images that may hold a near-tie keep their
  distances.
"""

from __future__ import annotations

import ctypes
import logging

import numpy as np
import torch

from somtorch._ccompile import CLONES_C, build, native_enabled
from somtorch.engine._native import WINDOW_NORM_C
from somtorch.geometry._sampler import run_split

__all__ = ["parity_blocked", "neuron_parity", "map_tail", "near_pairs", "col_first_min"]

log = logging.getLogger(__name__)

_SRC = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
""" + WINDOW_NORM_C + r"""
/* the flip-parity coordinates of one channel's orbit-ordered values x (u*u: quadrants A, B, C, D of
   h*h each, then for odd u the middle column, its mirror, the middle row, its mirror, the centre)
   into ee, oe, eo, oo (somtorch.engine.parity's float32 additions, in its order) */
static inline void parity_of_orbits(const float *restrict x, int64_t h, int64_t odd, float *restrict ee,
                                    float *restrict oe, float *restrict eo, float *restrict oo)
{
    const int64_t hh = h * h;
    const float *A = x, *B = x + hh, *C = x + 2 * hh, *D = x + 3 * hh;
    for (int64_t p = 0; p < hh; ++p) {
        const float s1 = A[p] + B[p], d1 = A[p] - B[p];
        const float s2 = C[p] + D[p], d2 = C[p] - D[p];
        ee[p] = s1 + s2;
        oe[p] = s1 - s2;
        eo[p] = d1 + d2;
        oo[p] = d1 - d2;
    }
    if (odd) {
        const float *m = x + 4 * hh;
        const float *top = m, *bot = m + h, *left = m + 2 * h, *right = m + 3 * h;
        for (int64_t p = 0; p < h; ++p) {
            ee[hh + p] = top[p] + bot[p];
            oe[hh + p] = top[p] - bot[p];
            ee[hh + h + p] = left[p] + right[p];
            eo[hh + p] = left[p] - right[p];
        }
        ee[hh + 2 * h] = m[4 * h];
    }
}

/* somtorch: flip-parity coordinates (somtorch.engine.parity, parity_from_orbits with blocked=True)
   of nk = B * kp orbit-ordered images o (nk, ch, u*u) -- kp base rotations per image, the first
   at base index k0 of kt -- written into out at the four block offsets off[0..3] (ee, oe, eo, oo;
   each a (kt * S, ch * n_ab) matrix per image, image b's at off[q] + b * bstride[q]: bstride = P
   for rows of (B, P), the block's own size for the block-major layout). With S = 2 the transposed
   image's coordinates follow each rotation's own (quadrants transposed, oe and eo swapped, middles
   swapped). The same float32 additions as the torch code, in the same order. */
void somtorch_parity_blocked(const float *o, int64_t bsz, int64_t kp, int64_t k0, int64_t kt, int64_t ch,
                             int64_t u, int64_t S, float *out, const int64_t *bstride, const int64_t *off)
{
    const int64_t h = u / 2, odd = u % 2, hh = h * h, n = u * u;
    const int64_t nab[4] = {hh + 2 * h * odd + odd, hh + h * odd, hh + h * odd, hh};
    for (int64_t b = 0; b < bsz; ++b)
        for (int64_t i = 0; i < kp; ++i)
            for (int64_t c = 0; c < ch; ++c) {
                const float *x = o + ((b * kp + i) * ch + c) * n;
                float *blk[2][4];
                for (int64_t s = 0; s < S; ++s)
                    for (int q = 0; q < 4; ++q)
                        blk[s][q] = out + b * bstride[q] + off[q] + (((k0 + i) * S + s) * ch + c) * nab[q];
                float *ee = blk[0][0], *oe = blk[0][1], *eo = blk[0][2], *oo = blk[0][3];
                parity_of_orbits(x, h, odd, ee, oe, eo, oo);
                if (S == 2) {
                    float *restrict ee1 = blk[1][0], *restrict oe1 = blk[1][1], *restrict eo1 = blk[1][2],
                          *restrict oo1 = blk[1][3];
                    for (int64_t r = 0; r < h; ++r)
                        for (int64_t q = 0; q < h; ++q) {
                            ee1[r * h + q] = ee[q * h + r];
                            oe1[r * h + q] = eo[q * h + r];
                            eo1[r * h + q] = oe[q * h + r];
                            oo1[r * h + q] = oo[q * h + r];
                        }
                    if (odd) {
                        for (int64_t p = 0; p < h; ++p) {
                            ee1[hh + p] = ee[hh + h + p];
                            ee1[hh + h + p] = ee[hh + p];
                            oe1[hh + p] = eo[hh + p];
                            eo1[hh + p] = oe[hh + p];
                        }
                        ee1[hh + 2 * h] = ee[hh + 2 * h];
                    }
                }
            }
}
/* somtorch: the flip-parity rows of neurons i0..i1-1 (those with fac[i] != 0 when fac is given):
   DistanceEngine.neuron_parity's numbers, computed in one pass. The window rows and columns
   lo..lo+u-1 of every channel are read in orbit order (somtorch.engine.parity.orbit_order), times
   mult (orbit order: region mask * -2 / orbit size, exact) as parity coordinates into v[i * ch*u*u ..]
   (blocks ee | oe | eo | oo, each channel-major: the same float32 additions as the parity code),
   and the window times omask (orbit-ordered region mask) gives wnorm[i] by window_norm's
   fixed-order double sum (channel-major, orbit order). */
void somtorch_neuron_parity(const float *w, int64_t i0, int64_t i1, int64_t ch, int64_t nd, int64_t lo,
                            int64_t u, const float *mult, const float *omask, const float *fac, float *v,
                            float *wnorm)
{
    const int64_t h = u / 2, odd = u % 2, hh = h * h, n = u * u, F = ch * n;
    const int64_t nab[4] = {hh + 2 * h * odd + odd, hh + h * odd, hh + h * odd, hh};
    const int64_t off[4] = {0, ch * nab[0], ch * (nab[0] + nab[1]), ch * (nab[0] + nab[1] + nab[2])};
    float *sc = malloc(sizeof(float) * (size_t)(2 * n));  /* one channel's scaled orbit values */
    float *om = malloc(sizeof(float) * (size_t)(F > 0 ? F : 1));  /* masked values, all channels */
    if (!sc || !om) {
        free(sc);
        free(om);
        return;
    }
    for (int64_t i = i0; i < i1; ++i) {
        if (fac && fac[i] == 0.0f)
            continue;
        for (int64_t c = 0; c < ch; ++c) {
            const float *x = w + ((i * ch + c) * nd + lo) * nd + lo;  /* window origin, row stride nd */
            float *m = om + c * n;
            for (int64_t r = 0; r < h; ++r)
                for (int64_t q = 0; q < h; ++q) {
                    const int64_t p = r * h + q;
                    const float a = x[r * nd + q], b = x[r * nd + (u - 1 - q)];
                    const float cc = x[(u - 1 - r) * nd + q], d = x[(u - 1 - r) * nd + (u - 1 - q)];
                    m[p] = a * omask[p];
                    m[hh + p] = b * omask[hh + p];
                    m[2 * hh + p] = cc * omask[2 * hh + p];
                    m[3 * hh + p] = d * omask[3 * hh + p];
                    sc[p] = a * mult[p];
                    sc[hh + p] = b * mult[hh + p];
                    sc[2 * hh + p] = cc * mult[2 * hh + p];
                    sc[3 * hh + p] = d * mult[3 * hh + p];
                }
            if (odd) {
                const int64_t b0 = 4 * hh;
                for (int64_t r = 0; r < h; ++r) {
                    const float top = x[r * nd + h], bot = x[(u - 1 - r) * nd + h];
                    const float left = x[h * nd + r], right = x[h * nd + (u - 1 - r)];
                    m[b0 + r] = top * omask[b0 + r];
                    m[b0 + h + r] = bot * omask[b0 + h + r];
                    m[b0 + 2 * h + r] = left * omask[b0 + 2 * h + r];
                    m[b0 + 3 * h + r] = right * omask[b0 + 3 * h + r];
                    sc[b0 + r] = top * mult[b0 + r];
                    sc[b0 + h + r] = bot * mult[b0 + h + r];
                    sc[b0 + 2 * h + r] = left * mult[b0 + 2 * h + r];
                    sc[b0 + 3 * h + r] = right * mult[b0 + 3 * h + r];
                }
                m[b0 + 4 * h] = x[h * nd + h] * omask[b0 + 4 * h];
                sc[b0 + 4 * h] = x[h * nd + h] * mult[b0 + 4 * h];
            }
            float *vi = v + i * F;
            parity_of_orbits(sc, h, odd, vi + off[0] + c * nab[0], vi + off[1] + c * nab[1], vi + off[2] + c * nab[2],
                             vi + off[3] + c * nab[3]);
        }
        wnorm[i] = window_norm(om, F);
    }
    free(sc);
    free(om);
}

""" + CLONES_C + r"""

/* running first minimum: where row[c] < dm[c] (strict: the first row wins), dm[c] = row[c], tb[c] = t */
static inline void first_min_row(const float *restrict row, int32_t t, float *restrict dm, int32_t *restrict tb,
                                 int64_t n)
{
    for (int64_t c = 0; c < n; ++c) {
        const int lt = row[c] < dm[c];
        dm[c] = lt ? row[c] : dm[c];
        tb[c] = lt ? t : tb[c];
    }
}

/* somtorch: TieResolver._near for ONE image's distances d (T, n): with tol[c] = rtol * (max_t rnorm[t]
   + wnorm[c]), the pairs (t, c) with d[t, c] <= min_t d[., c] + tol[c] of the neurons c involved
   in a near-tie (two such t, or near the best neuron with another), in row-major order (as
   torch.nonzero), at most cap of them into tt, nn; returns their number (more than cap: only cap
   written). The same float32 operations as the torch code. */
SOMTORCH_CLONES
int64_t somtorch_near_pairs(const float *d, int64_t T, int64_t n, const float *rnorm, const float *wnorm, float rtol,
                            int64_t *tt, int64_t *nn, int64_t cap)
{
    float rmax = rnorm[0];
    for (int64_t t = 1; t < T; ++t)
        if (rnorm[t] > rmax)
            rmax = rnorm[t];
    float *tol = malloc(sizeof(float) * (size_t)(3 * n));
    int32_t *cnt = malloc(sizeof(int32_t) * (size_t)n);
    if (!tol || !cnt) {
        free(tol);
        free(cnt);
        return -1;
    }
    float *dmin = tol + n, *band = tol + 2 * n;
    for (int64_t c = 0; c < n; ++c) {
        tol[c] = rtol * (rmax + wnorm[c]);
        dmin[c] = INFINITY;
        cnt[c] = 0;
    }
    for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < n; ++c)
            dmin[c] = d[t * n + c] < dmin[c] ? d[t * n + c] : dmin[c];
    for (int64_t c = 0; c < n; ++c)
        band[c] = dmin[c] + tol[c];
    for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < n; ++c)
            cnt[c] += d[t * n + c] <= band[c];
    float gmin = dmin[0];
    for (int64_t c = 1; c < n; ++c)
        gmin = dmin[c] < gmin ? dmin[c] : gmin;
    int64_t multi = 0;
    for (int64_t c = 0; c < n; ++c)
        multi += dmin[c] <= gmin + tol[c];
    int64_t ni = 0;  /* the involved neurons, ascending (their indices overwrite cnt) */
    for (int64_t c = 0; c < n; ++c)
        if (cnt[c] > 1 || (multi > 1 && dmin[c] <= gmin + tol[c]))
            cnt[ni++] = (int32_t)c;
    int64_t m = 0;
    for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < ni; ++j) {
            const int64_t c = cnt[j];
            if (d[t * n + c] <= band[c]) {
                if (m < cap) {
                    tt[m] = t;
                    nn[m] = c;
                }
                ++m;
            }
        }
    free(tol);
    free(cnt);
    return m;
}

/* somtorch: every column's minimum of d (T, n) and the first row attaining it (first_min) */
SOMTORCH_CLONES
void somtorch_col_first_min(const float *d, int64_t T, int64_t n, float *restrict dmin, int64_t *tb)
{
    int32_t *t32 = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    for (int64_t c = 0; c < n; ++c)
        dmin[c] = d[c];
    if (!t32) {  /* (no scratch: the plain loop) */
        for (int64_t c = 0; c < n; ++c)
            tb[c] = 0;
        for (int64_t t = 1; t < T; ++t)
            for (int64_t c = 0; c < n; ++c)
                if (d[t * n + c] < dmin[c]) {
                    dmin[c] = d[t * n + c];
                    tb[c] = t;
                }
        return;
    }
    for (int64_t c = 0; c < n; ++c)
        t32[c] = 0;
    for (int64_t t = 1; t < T; ++t)
        first_min_row(d + t * n, (int32_t)t, dmin, t32, n);
    for (int64_t c = 0; c < n; ++c)
        tb[c] = t32[c];
    free(t32);
}


/* one row of distances: o = max(((a +- b) +- (e +- f) + r) + wn, 0) for flip g (see below) */
static inline void tail_row(float *restrict o, const float *restrict a, const float *restrict b,
                            const float *restrict e, const float *restrict f, int64_t g, float r,
                            const float *restrict wn, int64_t n)
{
    switch (g) {
    case 0:
        for (int64_t c = 0; c < n; ++c) o[c] = (a[c] + b[c]) + (e[c] + f[c]);
        break;
    case 1:
        for (int64_t c = 0; c < n; ++c) o[c] = (a[c] - b[c]) + (e[c] - f[c]);
        break;
    case 2:
        for (int64_t c = 0; c < n; ++c) o[c] = (a[c] + b[c]) - (e[c] + f[c]);
        break;
    default:
        for (int64_t c = 0; c < n; ++c) o[c] = (a[c] - b[c]) - (e[c] - f[c]);
    }
    for (int64_t c = 0; c < n; ++c) {
        float v = (o[c] + r) + wn[c];
        o[c] = v < 0.0f ? 0.0f : v;
    }
}

/* somtorch: the end of a batch's fast distances (DistanceEngine.sq_distances_fast, then first_min,
   then TieResolver._maybe_rows) in one pass per image, for m images. pe: the four parity products
   ee, oe, eo, oo, each (m * k * S, n) with row (i * k + j) * S + s for base j and side s. Variant q
   (side[q], flip[q]) of base j is transformation t = q * k + j: with s1 = ee + oe, d1 = ee - oe,
   s2 = eo + oo, d2 = eo - oo, flip 0: s1 + s2, 1: d1 + d2, 2: s1 - s2, 3: d1 - d2; then
   (. + rnorm[i, t]) + wnorm[c], clamped at 0 (the same float32 operations in the same order).
   dmin (m, n), tbest (m, n): every neuron's lowest distance and its first transformation. With
   rtol >= 0, flag[i] = 1 when more than n entries lie within tol = rtol * (max_t rnorm[i, t] +
   max wnorm) of their neuron's minimum or a second neuron lies within tol of the best (the images
   whose near-ties PINK's rules must decide); only those images' distances are written to
   dsq[i] (m, T, n) -- the others' stay in a scratch row that remains in cache. */
SOMTORCH_CLONES
void somtorch_map_tail(const float *pee, const float *poe, const float *peo, const float *poo, int64_t m,
                       int64_t k, int64_t S, int64_t n, const int64_t *side, const int64_t *flip, int64_t nq,
                       const float *rnorm, const float *wnorm, float rtol, float *dsq, float *dmin,
                       int64_t *tbest, int64_t *flag)
{
    const int64_t T = nq * k;
    float wmax = wnorm[0];
    for (int64_t c = 1; c < n; ++c)
        if (wnorm[c] > wmax)
            wmax = wnorm[c];
    int32_t tb32[n > 0 ? n : 1];
    /* one image's distances (when malloc fails: straight into dsq) */
    float *scratch = malloc(sizeof(float) * (size_t)(T * n > 0 ? T * n : 1));
    for (int64_t i = 0; i < m; ++i) {
        float *const di = scratch ? scratch : dsq + i * T * n;
        float *restrict dm = dmin + i * n;
        const float *rn = rnorm + i * T;
        for (int64_t c = 0; c < n; ++c) {
            dm[c] = INFINITY;
            tb32[c] = 0;
        }
        for (int64_t q = 0; q < nq; ++q)
            for (int64_t j = 0; j < k; ++j) {
                const int64_t t = q * k + j, row = ((i * k + j) * S + side[q]) * n;
                float *restrict o = di + t * n;
                tail_row(o, pee + row, poe + row, peo + row, poo + row, flip[q], rn[t], wnorm, n);
                first_min_row(o, (int32_t)t, dm, tb32, n);
            }
        for (int64_t c = 0; c < n; ++c)
            tbest[i * n + c] = tb32[c];
        if (rtol < 0.0f) {
            flag[i] = 0;
            continue;
        }
        float rmax = rn[0];
        for (int64_t t = 1; t < T; ++t)
            if (rn[t] > rmax)
                rmax = rn[t];
        const float tol = rtol * (rmax + wmax);
        float gmin = dm[0];
        for (int64_t c = 1; c < n; ++c)
            if (dm[c] < gmin)
                gmin = dm[c];
        float band[n > 0 ? n : 1];
        for (int64_t c = 0; c < n; ++c)
            band[c] = dm[c] + tol;
        int32_t cnt = 0, cnt_n = 0;
        const float *od = di;
        for (int64_t t = 0; t < T; ++t)
            for (int64_t c = 0; c < n; ++c)
                cnt += od[t * n + c] <= band[c];
        const float gband = gmin + tol;
        for (int64_t c = 0; c < n; ++c)
            cnt_n += dm[c] <= gband;
        flag[i] = cnt > n || cnt_n > 1;
        if (flag[i] && scratch)  /* only images PINK's tie rules must decide need their distances */
            memcpy(dsq + i * T * n, scratch, sizeof(float) * (size_t)(T * n));
    }
    free(scratch);
}
"""

_state: dict = {}


def _build() -> ctypes.CDLL:
    dll = build(_SRC, "parityloops", fallback_defines=("-DSOMTORCH_NO_CLONES",))
    vp, cl = ctypes.c_void_p, ctypes.c_int64
    pb = dll.somtorch_parity_blocked
    pb.argtypes = [vp, cl, cl, cl, cl, cl, cl, cl, vp, vp, vp]
    pb.restype = None
    npar = dll.somtorch_neuron_parity
    npar.argtypes = [vp, cl, cl, cl, cl, cl, cl, vp, vp, vp, vp, vp]
    npar.restype = None
    mt = dll.somtorch_map_tail
    mt.argtypes = [vp, vp, vp, vp, cl, cl, cl, cl, vp, vp, cl, vp, vp, ctypes.c_float, vp, vp, vp, vp]
    mt.restype = None
    nr = dll.somtorch_near_pairs
    nr.argtypes = [vp, cl, cl, vp, vp, ctypes.c_float, vp, vp, cl]
    nr.restype = cl
    cm = dll.somtorch_col_first_min
    cm.argtypes = [vp, cl, cl, vp, vp]
    cm.restype = None
    return dll


def _enabled(name: str):
    """The compiled function ``name`` (``parity``, ``nparity``, ``tail``), or None when disabled
    (``SOMTORCH_NATIVE=0``) or unavailable (compiled on first use)."""
    if not native_enabled():
        return None
    if "dll" not in _state:
        try:
            _state["dll"] = _build()
        except Exception as exc:  # noqa: BLE001 - any failure means: use torch
            log.info("somtorch: the compiled parity passes are unavailable, torch is used (%s)", exc)
            _state["dll"] = None
    dll = _state["dll"]
    if dll is None:
        return None
    return getattr(dll, {"parity": "somtorch_parity_blocked", "nparity": "somtorch_neuron_parity",
                         "tail": "somtorch_map_tail", "near": "somtorch_near_pairs",
                         "colmin": "somtorch_col_first_min"}[name])


def parity_blocked(part, k0: int, kt: int, u: int, sides: int, out, offsets, strides) -> bool:
    """:func:`~somtorch.engine.parity.parity_from_orbits` (``blocked=True``) of one piece
    ``part (B, kp, C, u*u)`` (float32, contiguous, orbit order) into rows ``k0 .. k0+kp-1`` of the
    ``kt`` base rotations of the flat float32 buffer ``out``: block ``q`` (ee, oe, eo, oo) of image
    ``b`` starts at ``offsets[q] + b * strides[q]``; False (nothing written) when the compiled
    loops are unavailable. Images are split over torch's threads when there are enough."""
    fn = _enabled("parity")
    if fn is None:
        return False
    b, kp, c, n = part.shape
    st = np.ascontiguousarray(strides, dtype=np.int64)
    src, dst = part.data_ptr(), out.data_ptr()

    def call(i0, i1):
        off = np.ascontiguousarray([o + i0 * s for o, s in zip(offsets, strides)], dtype=np.int64)
        fn(src + 4 * i0 * kp * c * n, i1 - i0, kp, k0, kt, c, u, sides, dst, st.ctypes.data, off.ctypes.data)

    run_split(call, b, b * kp * c * n * sides)
    return True


def neuron_parity(w, lo: int, u: int, mult, omask, v, wnorm, fac=None) -> bool:
    """Flip-parity rows ``v (N, C*u*u)`` and window norms ``wnorm (N,)`` of the neurons ``w (N, C, nd,
    nd)`` (all float32, contiguous, CPU) in one compiled pass: those with ``fac[i] != 0`` when
    ``fac (N,)`` is given, else all. ``mult`` and ``omask`` ``(u*u,)``: the orbit-ordered
    multipliers (region mask * -2 / orbit size) and region mask. The rows are
    :meth:`~somtorch.engine.distance.DistanceEngine.neuron_parity`'s bit for bit; the norms are
    :func:`~somtorch.engine._native.window_norms`' fixed-order double sum (more accurate than a float32 sum, and other
    last bits). Split over torch's threads by neurons when there are enough. False (nothing
    written) when the compiled loops are unavailable."""
    fn = _enabled("nparity")
    if fn is None:
        return False
    n, c, nd, _ = w.shape
    for name, x, shape in (("w", w, tuple(w.shape)), ("mult", mult, (u * u,)), ("omask", omask, (u * u,)),
                           ("v", v, (n, c * u * u)), ("wnorm", wnorm, (n,))):
        if tuple(x.shape) != shape or x.dtype != torch.float32 or not x.is_contiguous() or x.device.type != "cpu":
            raise ValueError(f"neuron_parity: {name} must be a contiguous float32 CPU tensor of shape {shape}")
    if not 0 <= lo <= nd - u:
        raise ValueError(f"neuron_parity: window [{lo}, {lo + u}) outside the neurons' {nd} pixels")
    args = (w.data_ptr(), c, nd, lo, u, mult.data_ptr(), omask.data_ptr(),
            fac.contiguous().data_ptr() if fac is not None else None, v.data_ptr(), wnorm.data_ptr())
    if fac is not None and (fac.shape != (n,) or fac.dtype != torch.float32):
        raise ValueError("neuron_parity: fac must be float32 (N,)")

    run_split(lambda i0, i1: fn(args[0], i0, i1, *args[1:]), n, n * c * u * u)
    return True


def map_tail(products, k: int, sides: int, side, flip, rnorm, wnorm, rtol: float, dsq, dmin, tbest, flag) -> bool:
    """The end of a batch's fast distances in one compiled pass (see ``somtorch_map_tail``):
    ``products`` the four parity products ``(m*k*S, N)``, ``side``/``flip`` int64 ``(nq,)``,
    ``rnorm (m, T)``, ``wnorm (N,)`` (float32, contiguous, CPU); writes ``dmin (m, N)``,
    ``tbest (m, N)``, ``flag (m,)`` (near-tie candidates; all 0 when ``rtol < 0``) and the rows
    ``dsq[i] (T, N)`` of the flagged images only. False (nothing written) when the compiled loops are unavailable. Images are
    split over torch's threads when there are enough."""
    fn = _enabled("tail")
    if fn is None:
        return False
    m, n = dmin.shape
    t = rnorm.shape[1]
    products = [p.contiguous() for p in products]
    rnorm, wnorm = rnorm.contiguous(), wnorm.contiguous()  # (a broadcast rnorm is a strided view)
    side, flip = side.to(torch.int64).contiguous(), flip.to(torch.int64).contiguous()
    for name, x, shape, dtype in (("dsq", dsq, (m, t, n), torch.float32), ("dmin", dmin, (m, n), torch.float32),
                                  ("tbest", tbest, (m, n), torch.int64), ("flag", flag, (m,), torch.int64),
                                  ("rnorm", rnorm, (m, t), torch.float32), ("wnorm", wnorm, (n,), torch.float32)):
        if tuple(x.shape) != shape or x.dtype != dtype or not x.is_contiguous() or x.device.type != "cpu":
            raise ValueError(f"map_tail: {name} must be a contiguous {dtype} CPU tensor of shape {shape}; got "
                             f"{x.dtype} {tuple(x.shape)} on {x.device}")
    for x in products:
        if tuple(x.shape) != (m * k * sides, n) or x.dtype != torch.float32 or x.device.type != "cpu":
            raise ValueError(f"map_tail: products must be float32 ({m * k * sides}, {n}); got {x.dtype} "
                             f"{tuple(x.shape)}")
    if t != len(side) * k:
        raise ValueError(f"map_tail: rnorm has {t} transformations, expected {len(side)} x {k}")
    ee, oe, eo, oo = (p.data_ptr() for p in products)
    rows = k * sides * n  # product elements per image

    def call(i0, i1):
        fn(ee + 4 * i0 * rows, oe + 4 * i0 * rows, eo + 4 * i0 * rows, oo + 4 * i0 * rows, i1 - i0, k, sides, n,
           side.data_ptr(), flip.data_ptr(), len(side), rnorm.data_ptr() + 4 * i0 * t, wnorm.data_ptr(), rtol,
           dsq.data_ptr() + 4 * i0 * t * n, dmin.data_ptr() + 4 * i0 * n, tbest.data_ptr() + 8 * i0 * n,
           flag.data_ptr() + 8 * i0)

    run_split(call, m, m * t * n)
    return True


def _cpu32(*xs) -> bool:
    return all(x.device.type == "cpu" and x.dtype == torch.float32 and x.is_contiguous() for x in xs)


def near_pairs(d: torch.Tensor, rnorm: torch.Tensor, wnorm: torch.Tensor, rtol: float):
    """:meth:`~somtorch.engine.ties.TieResolver._near`'s candidates for ONE image, ``d (T, N)``,
    ``rnorm (T,)``, ``wnorm (N,)``: int64 ``(t, n)`` in ``torch.nonzero`` order, in one compiled
    pass; None when unavailable (or for other than contiguous float32 CPU tensors)."""
    fn = _enabled("near")
    if fn is None or not _cpu32(d, rnorm, wnorm) or d.dim() != 2:
        return None
    t, n = d.shape
    if rnorm.shape != (t,) or wnorm.shape != (n,):
        raise ValueError(f"near_pairs: rnorm ({t},) and wnorm ({n},) expected; got {tuple(rnorm.shape)}, "
                         f"{tuple(wnorm.shape)}")
    cap = 4 * n
    while True:
        tt, nn = torch.empty(cap, dtype=torch.int64), torch.empty(cap, dtype=torch.int64)
        m = fn(d.data_ptr(), t, n, rnorm.data_ptr(), wnorm.data_ptr(), rtol, tt.data_ptr(), nn.data_ptr(), cap)
        if m < 0:
            return None
        if m <= cap:
            return tt[:m], nn[:m]
        cap = m


def col_first_min(d: torch.Tensor):
    """Every column's minimum of ``d (T, N)`` and the first row attaining it (``first_min(d, 0)``)
    in one compiled pass; None when unavailable."""
    fn = _enabled("colmin")
    if fn is None or not _cpu32(d) or d.dim() != 2:
        return None
    t, n = d.shape
    dmin, tb = torch.empty(n), torch.empty(n, dtype=torch.int64)
    fn(d.data_ptr(), t, n, dmin.data_ptr(), tb.data_ptr())
    return dmin, tb
