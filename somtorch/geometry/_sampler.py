"""Bilinear sampling at fixed grids in compiled C, bit-identical to torch's CPU ``grid_sample``.

:class:`~somtorch.geometry.PinkTransformer` interpolates every image at the same few hundred
thousand grid points (its base rotations). ``torch.nn.functional.grid_sample`` recomputes each
point's weights on every call and gathers the four neighbours one image plane at a time; with the
batch's planes laid side by side (pixel-major, ``(d*d + 1, planes)``), the four neighbours of a
point are four contiguous rows, and one point costs four vector loads and four multiply-adds per 8
planes. The points' neighbour indices and weights are tabulated once per grid.

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

from somtorch._ccompile import build, native_enabled

__all__ = ["GridSampler", "bilinear_table"]

log = logging.getLogger(__name__)

_SRC = r"""
#include <math.h>
#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__APPLE__) && !defined(SOMTORCH_NO_CLONES)
#define SOMTORCH_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SOMTORCH_CLONES
#endif

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


def _function():
    if "fn" not in _state:
        fn = None
        try:
            dll = build(_SRC, "sampler", fallback_defines=("-DSOMTORCH_NO_CLONES",))
            fn = dll.somtorch_sample_grids
            vp, cl = ctypes.c_void_p, ctypes.c_int64
            fn.argtypes = [vp, cl, vp, vp, cl, vp, cl, vp, cl, cl, cl, cl, cl, cl]
            fn.restype = None
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
        ng, nt = len(grids), torch.get_num_threads()
        # planes split over torch's threads in whole chunks: disjoint outputs, the same arithmetic
        chunks = -(-m // _TM)
        parts = min(nt, chunks) if ng * self.np * m >= PARALLEL_MIN else 1
        bounds = [min(m, _TM * (chunks * i // parts)) for i in range(parts + 1)]
        futs = [_executor().submit(self.fn, *args, bounds[i], bounds[i + 1]) for i in range(1, parts)]
        self.fn(*args, bounds[0], bounds[1])
        for f in futs:
            f.result()
