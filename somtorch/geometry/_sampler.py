"""Bilinear sampling at fixed grids in compiled C, bit-identical to torch's CPU ``grid_sample``.

:class:`~somtorch.geometry.PinkTransformer` interpolates every image at the same few hundred
thousand grid points (its base rotations). ``torch.nn.functional.grid_sample`` recomputes each
point's weights on every call and gathers the four neighbours one image plane at a time; with the
batch's planes laid side by side (pixel-major, ``(d*d + 1, planes)``), the four neighbours of a
point are four contiguous rows, and one point costs four vector loads and four multiply-adds per 8
planes. The points' neighbour indices and weights are tabulated once per grid.

For ONE image (the online steps' update sources: the full-size base rotations an image's best
transformations need) there are no planes to vectorise over: :func:`sample_one` computes the
weights on the fly from the grid bank (no tables), 8 points at a time with masked gathers where the
CPU has AVX2 and FMA, and writes each selected grid straight into its place (about 3 ns a point on
a 2-core EPYC against ~4 for ``grid_sample`` plus the copies of the selected grids and results).

Convention
----------
The arithmetic is torch's CPU kernel for ``mode="bilinear", padding_mode="zeros",
align_corners=True``, operation for operation: ``x = (gx + 1) * ((d - 1) / 2)`` (float32),
``w = x - floor(x)``, ``e = 1 - w`` (likewise ``n``, ``s`` in y), weights ``nw = s*e, ne = s*w,
sw = n*e, se = n*w``, and the value ``fma(se_v, se, fma(sw_v, sw, fma(ne_v, ne, nw_v * nw)))``
(out-of-image neighbours read as 0). torch's vectorised CPU kernel computes exactly this where its
build contracts the sum into fused multiply-adds (AVX2/AVX-512 builds). Because that is a property
of the torch build and the CPU, every :class:`GridSampler` checks itself against ``grid_sample`` on
random images when it is built, and is used only where the two agree bit for bit; otherwise (and
with ``SOMTORCH_NATIVE=0`` or without a C compiler) torch is used. Results never depend on it.
"""

from __future__ import annotations

import ctypes
import logging
import os

import numpy as np
import torch

from somtorch._ccompile import CLONES_C, build, native_enabled

__all__ = ["GridSampler", "bilinear_table"]

log = logging.getLogger(__name__)

_SRC = r"""
#include <math.h>
#include <stdint.h>

""" + CLONES_C + r"""

/* somtorch: bilinear samples of planes j0 <= j < j1 of m planes stored pixel-major (src[pix * m + j],
   pix = d*d reads 0) at the points of grids grids[0..ng-1], each of np points with neighbour pixels
   tab[4 q ..] and weights wt[4 q ..] (q = grid * np + point). Plane j = b * ch + c of grid g, point p
   is written to out[b * sb + g * sg + c * sc + p]. The planes are taken TM at a time (outermost: the
   source rows of a chunk stay in cache for all grids); tiles of TP points x TM planes are computed
   vectorised over the planes, then stored transposed (contiguous along the points). */
#define TP 16
#define TM 64
SOMTORCH_CLONES
void somtorch_sample_grids(const float *src, int64_t m, const int32_t *tab, const float *wt, int64_t np,
                           const int64_t *grids, int64_t ng, float *out, int64_t ch, int64_t sb, int64_t sg,
                           int64_t sc, int64_t j0, int64_t j1)
{
    float tile[TP][TM];
    for (int64_t jc = j0; jc < j1; jc += TM) {
        const int64_t jn = j1 - jc < TM ? j1 - jc : TM;
        for (int64_t g = 0; g < ng; ++g) {
            const int64_t q0 = grids[g] * np;
            for (int64_t p0 = 0; p0 < np; p0 += TP) {
                const int64_t pn = np - p0 < TP ? np - p0 : TP;
                for (int64_t pp = 0; pp < pn; ++pp) {
                    const int64_t q = 4 * (q0 + p0 + pp);
                    const float *restrict a = src + (int64_t)tab[q] * m + jc;
                    const float *restrict b = src + (int64_t)tab[q + 1] * m + jc;
                    const float *restrict c = src + (int64_t)tab[q + 2] * m + jc;
                    const float *restrict d = src + (int64_t)tab[q + 3] * m + jc;
                    const float w0 = wt[q], w1 = wt[q + 1], w2 = wt[q + 2], w3 = wt[q + 3];
                    float *restrict o = tile[pp];
                    for (int64_t jj = 0; jj < jn; ++jj)
                        o[jj] = fmaf(d[jj], w3, fmaf(c[jj], w2, fmaf(b[jj], w1, a[jj] * w0)));
                }
                for (int64_t jj = 0; jj < jn; ++jj) {
                    const int64_t j = jc + jj;
                    float *restrict o = out + (j / ch) * sb + g * sg + (j % ch) * sc + p0;
                    for (int64_t pp = 0; pp < pn; ++pp)
                        o[pp] = tile[pp][jj];
                }
            }
        }
    }
}

/* one plane at one grid (np points, interleaved x, y): the scalar loop (every CPU) */
static void sample_plane(const float *restrict im, int32_t dd, const float *restrict g, int64_t p0, int64_t np,
                         float *restrict o)
{
    const float sc = (float)(dd - 1) / 2.0f, lo = -2.0f, hi = (float)(dd + 1);
    for (int64_t p = p0; p < np; ++p) {
        const float x = (g[2 * p] + 1.0f) * sc, y = (g[2 * p + 1] + 1.0f) * sc;
        const float xw = floorf(x), yn = floorf(y);
        const float w = x - xw, e = 1.0f - w, n = y - yn, sn = 1.0f - n;
        const float wnw = sn * e, wne = sn * w, wsw = n * e, wse = n * w;
        const int32_t ix = (int32_t)(xw < lo ? lo : (xw > hi ? hi : xw));
        const int32_t iy = (int32_t)(yn < lo ? lo : (yn > hi ? hi : yn));
        const int xin0 = ix >= 0 && ix < dd, xin1 = ix + 1 >= 0 && ix + 1 < dd;
        const int yin0 = iy >= 0 && iy < dd, yin1 = iy + 1 >= 0 && iy + 1 < dd;
        const int32_t r0 = iy * dd + ix, r1 = r0 + dd;
        const float vnw = (yin0 && xin0) ? im[r0] : 0.0f, vne = (yin0 && xin1) ? im[r0 + 1] : 0.0f;
        const float vsw = (yin1 && xin0) ? im[r1] : 0.0f, vse = (yin1 && xin1) ? im[r1 + 1] : 0.0f;
        o[p] = fmaf(vse, wse, fmaf(vsw, wsw, fmaf(vne, wne, vnw * wnw)));
    }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__APPLE__) && !defined(SOMTORCH_NO_CLONES)
#include <immintrin.h>
#define SOMTORCH_AVX2 1
/* the same operations, 8 points at a time (AVX2 + FMA: masked gathers read 0 outside the image) */
__attribute__((target("avx2,fma")))
static void sample_plane_avx2(const float *im, int32_t dd, const float *g, int64_t np, float *o)
{
    const __m256 one = _mm256_set1_ps(1.0f), sc = _mm256_set1_ps((float)(dd - 1) / 2.0f);
    const __m256 lo = _mm256_set1_ps(-2.0f), hi = _mm256_set1_ps((float)(dd + 1)), zf = _mm256_setzero_ps();
    const __m256i vd = _mm256_set1_epi32(dd), m1 = _mm256_set1_epi32(-1), i1 = _mm256_set1_epi32(1);
    int64_t p = 0;
    for (; p + 8 <= np; p += 8) {
        const __m256 a = _mm256_loadu_ps(g + 2 * p), b = _mm256_loadu_ps(g + 2 * p + 8);
        __m256 gx = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  /* x0 x1 x4 x5 | x2 x3 x6 x7 */
        __m256 gy = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
        gx = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(gx), _MM_SHUFFLE(3, 1, 2, 0)));
        gy = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(gy), _MM_SHUFFLE(3, 1, 2, 0)));
        const __m256 x = _mm256_mul_ps(_mm256_add_ps(gx, one), sc), y = _mm256_mul_ps(_mm256_add_ps(gy, one), sc);
        const __m256 xw = _mm256_floor_ps(x), yn = _mm256_floor_ps(y);
        const __m256 w = _mm256_sub_ps(x, xw), e = _mm256_sub_ps(one, w);
        const __m256 n = _mm256_sub_ps(y, yn), sn = _mm256_sub_ps(one, n);
        const __m256 wnw = _mm256_mul_ps(sn, e), wne = _mm256_mul_ps(sn, w);
        const __m256 wsw = _mm256_mul_ps(n, e), wse = _mm256_mul_ps(n, w);
        const __m256i ix = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(xw, lo), hi));
        const __m256i iy = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(yn, lo), hi));
        const __m256i ix1 = _mm256_add_epi32(ix, i1), iy1 = _mm256_add_epi32(iy, i1);
        const __m256i xin0 = _mm256_and_si256(_mm256_cmpgt_epi32(ix, m1), _mm256_cmpgt_epi32(vd, ix));
        const __m256i xin1 = _mm256_and_si256(_mm256_cmpgt_epi32(ix1, m1), _mm256_cmpgt_epi32(vd, ix1));
        const __m256i yin0 = _mm256_and_si256(_mm256_cmpgt_epi32(iy, m1), _mm256_cmpgt_epi32(vd, iy));
        const __m256i yin1 = _mm256_and_si256(_mm256_cmpgt_epi32(iy1, m1), _mm256_cmpgt_epi32(vd, iy1));
        const __m256i r0 = _mm256_add_epi32(_mm256_mullo_epi32(iy, vd), ix), r1 = _mm256_add_epi32(r0, vd);
        const __m256 vnw = _mm256_mask_i32gather_ps(zf, im, r0, _mm256_castsi256_ps(_mm256_and_si256(yin0, xin0)), 4);
        const __m256 vne = _mm256_mask_i32gather_ps(zf, im + 1, r0, _mm256_castsi256_ps(_mm256_and_si256(yin0, xin1)), 4);
        const __m256 vsw = _mm256_mask_i32gather_ps(zf, im, r1, _mm256_castsi256_ps(_mm256_and_si256(yin1, xin0)), 4);
        const __m256 vse = _mm256_mask_i32gather_ps(zf, im + 1, r1, _mm256_castsi256_ps(_mm256_and_si256(yin1, xin1)), 4);
        __m256 acc = _mm256_mul_ps(vnw, wnw);
        acc = _mm256_fmadd_ps(vne, wne, acc);
        acc = _mm256_fmadd_ps(vsw, wsw, acc);
        acc = _mm256_fmadd_ps(vse, wse, acc);
        _mm256_storeu_ps(o + p, acc);
    }
    sample_plane(im, dd, g, p, np, o);
}
#endif

/* somtorch: ONE image (ch planes of d x d, plane-major) at grids sel[i0..i1-1] of a grid bank (G, np, 2)
   (normalised x, y; align_corners=True, zeros padding), the weights computed on the fly with the
   same float32 operations as bilinear_table and the value with the same fused multiply-adds as
   somtorch_sample_grids (an out-of-image neighbour reads 0): no tables, 8 bytes a point. Grid
   sel[i], plane c, point p is written to out[dst[i] + c * np + p]. Vectorised over the points
   (AVX2 where the CPU has it). */
void somtorch_sample_one(const float *img, int64_t ch, int64_t d, const float *bank, int64_t np,
                         const int64_t *sel, const int64_t *dst, float *out, int64_t i0, int64_t i1)
{
#ifdef SOMTORCH_AVX2
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    for (int64_t i = i0; i < i1; ++i)
        for (int64_t c = 0; c < ch; ++c) {
            const float *im = img + c * d * d, *g = bank + sel[i] * np * 2;
            float *o = out + dst[i] + c * np;
#ifdef SOMTORCH_AVX2
            if (avx2) {
                sample_plane_avx2(im, (int32_t)d, g, np, o);
                continue;
            }
#endif
            sample_plane(im, (int32_t)d, g, 0, np, o);
        }
}
"""

_state: dict = {}

#: samples (points x planes) from which a call is split over torch's threads, by planes
PARALLEL_MIN = 1 << 17

#: planes per chunk of the C loop (TM there)
_TM = 64

_pool: dict = {}


def _executor():
    """One persistent pool for the whole process (ctypes releases the GIL), never shut down while in
    use: callers in several threads share it safely; more parts than workers simply queue. Rebuilt
    after a fork (a child inherits the pool object but not its threads)."""
    ex = _pool.get("ex")
    if ex is None:
        from concurrent.futures import ThreadPoolExecutor

        ex = _pool["ex"] = ThreadPoolExecutor(max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="somtorch-sampler")
    return ex


if hasattr(os, "register_at_fork"):  # a forked child inherits the pool object but not its threads
    os.register_at_fork(after_in_child=_pool.clear)


def run_split(call, m: int, work: int, granule: int = 1) -> None:
    """``call(i0, i1)`` over ``[0, m)``, split into ranges of whole ``granule``-sized chunks over
    torch's threads when ``work`` (elements) reaches :data:`PARALLEL_MIN` -- one range on the
    calling thread, the others on the process-wide pool (ctypes releases the GIL). For compiled
    loops with disjoint outputs and per-item arithmetic: results do not depend on the split."""
    chunks = -(-m // granule)
    parts = min(torch.get_num_threads(), chunks) if work >= PARALLEL_MIN and chunks else 1
    bounds = [min(m, granule * (chunks * i // parts)) for i in range(parts + 1)]
    futs = [_executor().submit(call, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    call(bounds[0], bounds[1])
    for f in futs:
        f.result()


def _function():
    if "fn" not in _state:
        fn = None
        try:
            dll = build(_SRC, "sampler", fallback_defines=("-DSOMTORCH_NO_CLONES",))
            fn = dll.somtorch_sample_grids
            vp, cl = ctypes.c_void_p, ctypes.c_int64
            fn.argtypes = [vp, cl, vp, vp, cl, vp, cl, vp, cl, cl, cl, cl, cl, cl]
            fn.restype = None
            one = dll.somtorch_sample_one
            one.argtypes = [vp, cl, cl, vp, cl, vp, vp, vp, cl, cl]
            one.restype = None
            _state["one"] = one
        except Exception as exc:  # noqa: BLE001 - any failure means: use torch
            log.info("somtorch: the compiled sampler is unavailable, grid_sample is used (%s)", exc)
        _state["fn"] = fn
    return _state["fn"]


def bilinear_table(grid: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour pixels ``(P, 4)`` int32 (``d*d`` for a neighbour outside the image) and weights
    ``(P, 4)`` float32 of the points ``grid (P, 2)`` (normalised ``x, y``; float32), in torch's
    order nw, ne, sw, se and with its float32 arithmetic (see module)."""
    f32 = np.float32
    g = np.asarray(grid, dtype=f32)
    sc = f32(d - 1) / f32(2)
    x = (g[:, 0] + f32(1)) * sc
    y = (g[:, 1] + f32(1)) * sc
    xw, yn = np.floor(x), np.floor(y)
    w = x - xw
    e = f32(1) - w
    n = y - yn
    s = f32(1) - n
    wt = np.stack([s * e, s * w, n * e, n * w], axis=1).astype(f32)
    ix = np.clip(xw, -2, d + 1).astype(np.int64)  # far-outside points stay outside
    iy = np.clip(yn, -2, d + 1).astype(np.int64)
    tab = np.empty((len(g), 4), dtype=np.int64)
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        cy, cx = iy + dy, ix + dx
        ok = (cx >= 0) & (cx < d) & (cy >= 0) & (cy < d)
        tab[:, k] = np.where(ok, cy * d + cx, d * d)
    return tab.astype(np.int32), wt


class GridSampler:
    """Bilinear samples of ``d x d`` images at ``G`` fixed grids of ``P`` points (see module).

    Parameters
    ----------
    grid : Tensor ``(G, P, 2)``
        Normalised sampling points (``x, y`` last; ``align_corners=True``), as for ``grid_sample``.
    d : int
        Image side.

    Attributes
    ----------
    ok : bool
        The compiled loop is available and agrees with ``grid_sample`` bit for bit on this machine;
        otherwise :meth:`sample` returns None and the caller uses torch.
    """

    def __init__(self, grid: torch.Tensor, d: int):
        self.d = int(d)
        g = grid.detach().to(torch.float32).cpu().reshape(-1, grid.shape[-2], 2)
        self.ngrids, self.np = g.shape[0], g.shape[1]
        self.fn = _function() if native_enabled() else None
        self.ok = False
        if self.fn is None:
            return
        tab, wt = bilinear_table(g.reshape(-1, 2).numpy(), self.d)
        self.tab = torch.from_numpy(np.ascontiguousarray(tab))
        self.wt = torch.from_numpy(np.ascontiguousarray(wt))
        self.ok = self._agrees(g)

    def _agrees(self, g: torch.Tensor) -> bool:
        gen = torch.Generator().manual_seed(12345)
        imgs = torch.rand(3, 2, self.d, self.d, generator=gen) * 3 - 1
        imgs[0, 0, ::3] = 0.0
        which = sorted({0, self.ngrids // 2, self.ngrids - 1})
        got = self.sample(imgs, which, checked=False)  # (3, len(which), 2, P)
        for n, i in enumerate(which):
            ref = torch.nn.functional.grid_sample(imgs, g[i].view(1, 1, -1, 2).expand(3, 1, -1, 2), mode="bilinear",
                                                  padding_mode="zeros", align_corners=True)  # (3, 2, 1, P)
            if not torch.equal(got[:, n], ref[:, :, 0]):
                log.info("somtorch: the compiled sampler differs from this torch build's grid_sample; torch is used")
                return False
        return True

    def sample(self, images: torch.Tensor, which=None, out: torch.Tensor | None = None,
               checked: bool = True) -> torch.Tensor | None:
        """Samples of ``images (B, C, d, d)`` (float32, CPU) at grids ``which`` (default all):
        ``(B, len(which), C, P)``, written into ``out`` if given (any tensor of that shape whose last
        axis is contiguous, e.g. a slice of a larger buffer); None where the compiled loop is not
        used (then nothing is written)."""
        if out is None and self._usable(images, checked):
            out = torch.empty((images.shape[0], len(range(self.ngrids) if which is None else which),
                               images.shape[1], self.np), dtype=torch.float32)
        return out if self.sample_into(images, [(which, out)], checked) else None

    def _usable(self, images: torch.Tensor, checked: bool = True) -> bool:
        return (self.ok or not checked) and images.device.type == "cpu" and images.dtype == torch.float32

    def sample_into(self, images: torch.Tensor, jobs, checked: bool = True) -> bool:
        """:meth:`sample` for several ``(which, out)`` pairs of one batch (its planes are laid out
        once); False where the compiled loop is not used (nothing is written)."""
        if not self._usable(images, checked):
            return False
        b, c, d, d2 = images.shape
        if d != self.d or d2 != self.d:  # the tables index a d x d image: anything else reads out of bounds
            raise ValueError(f"images must be {self.d} x {self.d} (the grids' image size); got {d} x {d2}")
        checked_jobs = []
        for which, out in jobs:
            which = range(self.ngrids) if which is None else which
            grids = torch.as_tensor(list(which), dtype=torch.int64)
            if len(grids) and (int(grids.min()) < 0 or int(grids.max()) >= self.ngrids):
                raise ValueError(f"grid indices must lie in [0, {self.ngrids}); got {which}")
            if tuple(out.shape) != (b, len(grids), c, self.np) or out.stride(-1) != 1 or out.dtype != torch.float32:
                raise ValueError(f"out must be float32 ({b}, {len(grids)}, {c}, {self.np}) with a contiguous "
                                 "last axis")
            checked_jobs.append((grids, out))
        m = b * c
        src = images.new_empty((d * d + 1, m))
        src[:d * d].copy_(images.reshape(m, d * d).T)
        src[d * d].zero_()
        for grids, out in checked_jobs:
            self._run(src, m, c, grids, out)
        return True

    def _run(self, src: torch.Tensor, m: int, c: int, grids: torch.Tensor, out: torch.Tensor) -> None:
        sb, sg, sc = out.stride(0), out.stride(1), out.stride(2)
        args = (src.data_ptr(), m, self.tab.data_ptr(), self.wt.data_ptr(), self.np, grids.data_ptr(), len(grids),
                out.data_ptr(), c, sb, sg, sc)
        # planes split over torch's threads in whole chunks: disjoint outputs, the same arithmetic
        run_split(lambda j0, j1: self.fn(*args, j0, j1), m, len(grids) * self.np * m, granule=_TM)


def _one_agrees(fn) -> bool:
    """Does :func:`sample_one`'s loop equal ``grid_sample`` bit for bit on this machine (random
    images and grids with points inside, on the border and outside the image)?"""
    gen = torch.Generator().manual_seed(54321)
    d, side = 13, 11
    img = torch.rand(2, d, d, generator=gen) * 3 - 1
    img[0, ::3] = 0.0
    bank = (torch.rand(3, side * side, 2, generator=gen) * 2.6 - 1.3).contiguous()
    bank[1, :7] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [0.999, -1.0], [5.0, 0.0], [0.0, -7.0],
                                [1.2, 1.2]])
    sel = torch.tensor([2, 0, 1], dtype=torch.int64)
    out = torch.empty(3, 2, side * side)
    dst = torch.arange(3, dtype=torch.int64) * (2 * side * side)
    fn(img.data_ptr(), 2, d, bank.data_ptr(), side * side, sel.data_ptr(), dst.data_ptr(), out.data_ptr(), 0, 3)
    ref = torch.nn.functional.grid_sample(img.expand(3, 2, d, d), bank[sel].view(3, 1, -1, 2), mode="bilinear",
                                          padding_mode="zeros", align_corners=True)[:, :, 0]
    return torch.equal(out, ref)


def sample_one(image: torch.Tensor, bank: torch.Tensor, sel, out: torch.Tensor, dst) -> bool:
    """Bilinear samples of ONE image ``(C, d, d)`` (float32, CPU, contiguous) at grids ``sel`` of a
    grid bank ``(G, ..., 2)`` (float32, contiguous; normalised ``x, y``, ``align_corners=True``,
    zeros padding): grid ``sel[i]`` goes to the flat float32 buffer ``out`` (contiguous) at offset
    ``dst[i]``, ``(C, P)``. Bit-identical to ``grid_sample`` (checked on this machine once; no
    tables are built, the weights are computed on the fly), with no copy of the selected grids.
    False (nothing written) where the compiled loop is unavailable or disagrees."""
    if not native_enabled() or _function() is None:
        return False
    fn = _state.get("one")
    if fn is None:
        return False
    if "one_ok" not in _state:
        _state["one_ok"] = _one_agrees(fn)
        if not _state["one_ok"]:
            log.info("somtorch: the compiled one-image sampler differs from grid_sample; torch is used")
    if not _state["one_ok"]:
        return False
    c, d, d2 = image.shape
    npts = bank[0].numel() // 2
    if not (image.dtype == bank.dtype == out.dtype == torch.float32 and image.is_contiguous() and bank.is_contiguous()
            and out.is_contiguous() and image.device.type == bank.device.type == out.device.type == "cpu" and d == d2):
        return False
    sel = torch.as_tensor(sel, dtype=torch.int64).contiguous()
    dst = torch.as_tensor(dst, dtype=torch.int64).contiguous()
    if len(sel) and (int(sel.min()) < 0 or int(sel.max()) >= bank.shape[0]):
        raise ValueError(f"grid indices must lie in [0, {bank.shape[0]}); got {sel.tolist()}")
    if len(dst) != len(sel) or (len(dst) and (int(dst.min()) < 0 or int(dst.max()) + c * npts > out.numel())):
        raise ValueError("sample_one: every output (C, P) must lie inside out")
    args = (image.data_ptr(), c, d, bank.data_ptr(), npts, sel.data_ptr(), dst.data_ptr(), out.data_ptr())
    run_split(lambda i0, i1: fn(*args, i0, i1), len(sel), len(sel) * c * npts)
    return True
