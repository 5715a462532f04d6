"""Small C loops, compiled on first use: PINK's exact accumulation, its neuron update, a best match.

The reproduction mode's tie rule (:class:`~somtorch.engine.distance.TieResolver`) recomputes
near-tied distances with PINK's exact arithmetic: for every region pixel in order, the float32
difference squared in double, added to the float32 running sum in double and rounded back to
float32 (pink-semantics.md §4). The sum is sequential, so numpy can only vectorise it across
candidate pairs: two calls per region pixel, ~1 ms per flagged image at 40x40 -- the largest
single cost of a reproduction-mode training step at 8 rotations. This module compiles the loop
once with the system C compiler (``$CC``, else ``cc``) into the cache folder
(``$SOMTORCH_CACHE_DIR`` or ``~/.cache/somtorch``, subfolder ``native``) and calls it through
:mod:`ctypes`: the same IEEE operations in the same order (compiled with ``-ffp-contract=off``
and without unsafe math, so nothing is fused or reassociated), bit-identical to the numpy loop
(tested), ~100x faster.

The second loop, :func:`pink_update`, is one image's online update of every neuron (spec §5.1,
``c <- c - (c - x) * f``: three float32 operations per weight, each rounded, neurons with factor 0
untouched) with each neuron's best transformation read straight from the image's base rotations
(a transpose and row/column reversals are index arithmetic: no transformation bank is built), and
the neurons' distance window (times the region mask) and its norm written in the same pass.
Eagerly that is building the bank, a row gather and four memory passes over all neurons per image
(~300 us at 40x40 / 10x10 SOM / 8 rotations, most of a training step); the loop reads every weight
once. A third loop, :func:`best_match_one`, completes one image's distances and finds its best
match and whether PINK's tie rules could decide it.

Without a working compiler, or with ``SOMTORCH_NATIVE=0``, :func:`pink_sq` and :func:`pink_update`
return None / False and the caller uses numpy or torch (logged once): results never depend on it.
The passes over flip-parity coordinates (mapping's tail, the parity step's neuron rows) are in
:mod:`somtorch.engine._native_parity`.
"""

from __future__ import annotations

import ctypes
import logging

import numpy as np

from somtorch._ccompile import build, native_enabled

__all__ = ["pink_sq", "pink_update", "native_enabled"]

log = logging.getLogger(__name__)

#: the fixed-order double sum of squares shared by the compiled loops (also in _native_parity)
WINDOW_NORM_C = r"""
/* somtorch: the squared norm of v (len floats): 8 double lanes (lane p % 8), summed in lane order,
   rounded once to float. Deterministic and more accurate than a float32 sum. */
static float window_norm(const float *restrict v, int64_t len)
{
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t p = 0;
    for (; p + 8 <= len; p += 8)
        for (int k = 0; k < 8; ++k)
            a[k] += (double)v[p + k] * (double)v[p + k];
    for (; p < len; ++p)
        a[p % 8] += (double)v[p] * (double)v[p];
    return (float)(((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])));
}

"""

_SRC = r"""
#include <math.h>
#include <stdint.h>

/* somtorch: PINK's exact squared distance of candidate pairs (row-major, m rows of f floats). */
void somtorch_pink_sq(const float *x, const float *w, int64_t m, int64_t f, float *out)
{
    for (int64_t i = 0; i < m; ++i) {
        const float *xi = x + i * f, *wi = w + i * f;
        float acc = 0.0f;
        for (int64_t p = 0; p < f; ++p) {
            float d = wi[p] - xi[p];
            double dd = (double)d * (double)d;
            acc = (float)((double)acc + dd);
        }
        out[i] = acc;
    }
}

""" + WINDOW_NORM_C + r"""
/* one row of a neuron's window: o = c (times the mask row m unless m is NULL) */
static void window_row(float *restrict o, const float *restrict c, const float *restrict m, int64_t u)
{
    if (m) {
        for (int64_t p = 0; p < u; ++p)
            o[p] = c[p] * m[p];
    } else {
        for (int64_t p = 0; p < u; ++p)
            o[p] = c[p];
    }
}

void somtorch_window_norms(const float *v, int64_t n, int64_t len, float *out)
{
    for (int64_t i = 0; i < n; ++i)
        out[i] = window_norm(v + i * len, len);
}

/* somtorch: PINK's online update of neurons i0..i1-1 (ch channels of nd x nd floats each) from one
   image's base rotations base (k, ch, nd, nd). Neuron i moves towards its best transformation
   tb[i], the dihedral variant vt[4 tb[i] ..] = (base rotation, transpose, reverse rows, reverse
   columns) -- transposed first, then rows and columns reversed -- by fac[i] (skipped when 0, as
   PINK does): c = c - (c - x) * f, each operation rounded to float. The window rows and columns
   lo..lo+u-1 of every channel of every moved neuron are written to wf (n, ch, u, u), times mask
   (u, u) unless mask is NULL, and their squared norm to wnorm[i] (window_norm). */
void somtorch_pink_update(float *w, const float *base, const int64_t *vt, const int64_t *tb, const float *fac,
                          int64_t i0, int64_t i1, int64_t ch, int64_t nd, float *wf, const float *mask, int64_t lo,
                          int64_t u, float *wnorm)
{
    float xrow[nd > 0 ? nd : 1];
    for (int64_t i = i0; i < i1; ++i) {
        const float f = fac[i];
        if (f == 0.0f)
            continue;
        const int64_t *v = vt + 4 * tb[i];
        const int64_t side = v[1], rrev = v[2], crev = v[3];
        for (int64_t c = 0; c < ch; ++c) {
            const float *b = base + (v[0] * ch + c) * nd * nd;
            for (int64_t r = 0; r < nd; ++r) {
                const int64_t rr = rrev ? nd - 1 - r : r;
                const float *restrict x;
                if (!side && crev) {  /* a reversed row, read backwards in the update itself */
                    const float *restrict s = b + rr * nd + (nd - 1);
                    float *restrict cw = w + ((i * ch + c) * nd + r) * nd;
                    for (int64_t p = 0; p < nd; ++p) {
                        float d = cw[p] - s[-p];
                        float e = d * f;
                        cw[p] = cw[p] - e;
                    }
                    if (wf && r >= lo && r < lo + u)
                        window_row(wf + ((i * ch + c) * u + (r - lo)) * u, cw + lo, mask ? mask + (r - lo) * u : 0, u);
                    continue;
                }
                if (!side) {
                    x = b + rr * nd;
                } else {
                    if (crev) {
                        for (int64_t p = 0; p < nd; ++p)
                            xrow[p] = b[(nd - 1 - p) * nd + rr];
                    } else {
                        for (int64_t p = 0; p < nd; ++p)
                            xrow[p] = b[p * nd + rr];
                    }
                    x = xrow;
                }
                float *restrict cw = w + ((i * ch + c) * nd + r) * nd;
                for (int64_t p = 0; p < nd; ++p) {
                    float d = cw[p] - x[p];
                    float e = d * f;
                    cw[p] = cw[p] - e;
                }
                if (wf && r >= lo && r < lo + u)
                    window_row(wf + ((i * ch + c) * u + (r - lo)) * u, cw + lo, mask ? mask + (r - lo) * u : 0, u);
            }
        }
        if (wf && wnorm)
            wnorm[i] = window_norm(wf + i * ch * u * u, ch * u * u);
    }
}

/* somtorch: the best match of one image from its distances d (t rows of n neurons) without the
   neuron norms: d[k, i] = max(d[k, i] + wnorm[i], 0) in place (float32, as torch's add_ and
   clamp_min_), every neuron's lowest distance dmin[i] and its first transformation tb[i], and the
   first neuron with the lowest; returns it. With rtol >= 0, *near is 1 when more than n + 1
   entries lie within tol = (rmax + max wnorm) * rtol of their neuron's minimum or neurons within
   tol of the best (PINK's tie rules could pick differently:
   somtorch.engine.online.OnlineStep._near_ties, the same float32 operations). */
int64_t somtorch_best(float *d, int64_t t, int64_t n, const float *wnorm, float rmax, float rtol, float *dmin,
                      int64_t *tb, int64_t *near)
{
    for (int64_t i = 0; i < n; ++i) {
        dmin[i] = INFINITY;
        tb[i] = 0;
    }
    for (int64_t k = 0; k < t; ++k) {
        float *restrict row = d + k * n;
        for (int64_t i = 0; i < n; ++i) {
            float v = row[i] + wnorm[i];
            if (v < 0.0f)
                v = 0.0f;
            row[i] = v;
            if (v < dmin[i]) {
                dmin[i] = v;
                tb[i] = k;
            }
        }
    }
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i)
        if (dmin[i] < dmin[best])
            best = i;
    *near = 0;
    if (rtol >= 0.0f) {
        float wmax = wnorm[0];
        for (int64_t i = 1; i < n; ++i)
            if (wnorm[i] > wmax)
                wmax = wnorm[i];
        const float tol = (rmax + wmax) * rtol;
        int64_t cnt = 0;
        for (int64_t k = 0; k < t; ++k)
            for (int64_t i = 0; i < n; ++i)
                cnt += d[k * n + i] <= dmin[i] + tol;
        for (int64_t i = 0; i < n; ++i)
            cnt += dmin[i] <= dmin[best] + tol;
        *near = cnt > n + 1;
    }
    return best;
}

"""
_state: dict = {}


def _build() -> ctypes.CDLL:
    dll = build(_SRC, "pinksq")
    fn = dll.somtorch_pink_sq
    fp = ctypes.POINTER(ctypes.c_float)
    fn.argtypes = [fp, fp, ctypes.c_int64, ctypes.c_int64, fp]
    fn.restype = None
    vp, cl = ctypes.c_void_p, ctypes.c_int64
    up = dll.somtorch_pink_update
    up.argtypes = [vp, vp, vp, vp, vp, cl, cl, cl, cl, vp, vp, cl, cl, vp]
    up.restype = None
    bm = dll.somtorch_best
    bm.argtypes = [vp, cl, cl, vp, ctypes.c_float, ctypes.c_float, vp, vp, vp]
    bm.restype = cl
    nm = dll.somtorch_window_norms
    nm.argtypes = [vp, cl, cl, vp]
    nm.restype = None
    return dll


def _function(name: str = "fn"):
    if "dll" not in _state:
        try:
            _state["dll"] = _build()
        except Exception as exc:  # noqa: BLE001 - any failure means: use numpy / torch
            log.info("somtorch: the compiled loops are unavailable, numpy/torch is used (compiling failed: %s)", exc)
            _state["dll"] = None
    dll = _state["dll"]
    if dll is None:
        return None
    return getattr(dll, {"fn": "somtorch_pink_sq", "update": "somtorch_pink_update", "best": "somtorch_best",
                         "norms": "somtorch_window_norms"}[name])


def _enabled(name: str):
    """The compiled function ``name``, or None when disabled (``SOMTORCH_NATIVE=0``) or unavailable."""
    return _function(name) if native_enabled() else None


def pink_sq(xa: np.ndarray, wa: np.ndarray) -> np.ndarray | None:
    """PINK-exact squared distances of candidate pairs ``xa, wa (M, F)`` -> float32 ``(M,)``, or
    None when the compiled loop is unavailable (disabled or no compiler)."""
    fn = _enabled("fn")
    if fn is None:
        return None
    x = np.ascontiguousarray(xa, dtype=np.float32)
    w = np.ascontiguousarray(wa, dtype=np.float32)
    m, f = x.shape
    out = np.empty(m, dtype=np.float32)
    fp = ctypes.POINTER(ctypes.c_float)
    fn(x.ctypes.data_as(fp), w.ctypes.data_as(fp), m, f, out.ctypes.data_as(fp))
    return out


def update_available() -> bool:
    """Whether :func:`pink_update` will run (enabled and compiled; compiles on first call)."""
    return _enabled("update") is not None


def pink_update(w, base, variants, tb, fac, wf=None, mask=None, lo: int = 0, wnorm=None,
                neurons: tuple[int, int] | None = None) -> bool:
    """PINK's online update of every neuron in one pass (see module); False when unavailable.

    Parameters
    ----------
    w : Tensor ``(N, C, nd, nd)`` float32, contiguous (CPU)
        The neurons, updated in place.
    base : Tensor ``(k, C, nd, nd)`` float32, contiguous
        One image's base rotations (:meth:`~somtorch.geometry.PinkTransformer.base_rotations`).
    variants : Tensor ``(T, 4)`` int64, contiguous
        Transformation ``t`` is base rotation ``variants[t, 0]``, transposed if ``variants[t, 1]``,
        then rows reversed if ``variants[t, 2]`` and columns reversed if ``variants[t, 3]``.
    tb : Tensor ``(N,)`` int64
        Every neuron's best transformation.
    fac : Tensor ``(N,)`` float32
        Every neuron's update factor (0: not moved).
    wf : Tensor ``(N, C, u, u)`` float32, optional
        Receives the moved neurons' window ``[lo:lo+u, lo:lo+u]``, times ``mask (u, u)`` if given,
    wnorm : Tensor ``(N,)`` float32, optional
        and their squared norms (:func:`window_norms`' arithmetic).
    neurons : (int, int), optional
        Only neurons ``i0 <= i < i1`` (default all): two calls on disjoint ranges may run in
        parallel threads (ctypes releases the GIL).
    """
    fn = _enabled("update")
    if fn is None:
        return False
    n, c, nd, _ = w.shape
    i0, i1 = neurons if neurons is not None else (0, n)
    u = wf.shape[-1] if wf is not None else 0
    fn(w.data_ptr(), base.data_ptr(), variants.data_ptr(), tb.data_ptr(), fac.data_ptr(), i0, i1, c, nd,
       wf.data_ptr() if wf is not None else None, mask.data_ptr() if mask is not None else None, lo, u,
       wnorm.data_ptr() if wnorm is not None else None)
    return True


def window_norms(wf, out) -> None:
    """``out[i] = |wf[i]|^2`` for ``wf (N, ...)`` float32 contiguous: eight double lanes (element
    ``p`` in lane ``p % 8``) summed in a fixed order and rounded once -- deterministic, and the
    arithmetic :func:`pink_update` uses. Requires :func:`update_available`."""
    n = wf.shape[0]
    _function("norms")(wf.data_ptr(), n, wf.numel() // max(n, 1), out.data_ptr())


def best_match_one(d, wnorm, rmax: float, rtol: float, dmin, tb, near) -> int:
    """One image's best match from ``d (T, N)`` float32 (the GEMM's part, without the neuron norms;
    completed in place: ``max(d + wnorm, 0)``), filling ``dmin (N,)``, ``tb (N,)`` int64 and
    ``near (1,)`` int64 (PINK's tie rules could decide: the band ``(rmax + max(wnorm)) * rtol``,
    tested only when ``rtol >= 0``; see the C source); returns the best neuron. Requires
    :func:`update_available`."""
    t, n = d.shape
    return _function("best")(d.data_ptr(), t, n, wnorm.data_ptr(), rmax, rtol, dmin.data_ptr(), tb.data_ptr(),
                             near.data_ptr())


def functions() -> dict | None:
    """The compiled functions by name (``update``, ``best``, ``norms``; see the C source), for
    callers that bind their pointer arguments once; None when unavailable."""
    if not update_available():
        return None
    return {name: _function(name) for name in ("update", "best", "norms")}
