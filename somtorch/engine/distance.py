"""Image-to-neuron distances under all rotations/flips, and best matches.

Convention
----------
``Dsq[b, t, n]`` is the **squared** L2 distance, summed over the distance region (all channels),
between neuron ``n`` and transformation ``t`` of image ``b``. Best matches follow PINK (spec §5.3):
the best transformation of a neuron is the *lowest* index among equal minima, and the best-matching
neuron is the lowest neuron index among equal minima. Mapping files store ``sqrt(Dsq)`` (§1.4).

Arithmetic
----------
* ``"gemm"`` (default): ``|x|^2 + |w|^2 - 2 x.w`` with matrix products (BLAS / cuBLAS). Only the
  ``numrot/4`` base rotations of an image are interpolated; the eight rot90/flip variants of
  each come from four products in flip-parity coordinates (:mod:`somtorch.engine.parity`) of
  the rotation and of its transpose (:meth:`DistanceEngine.pairing`), i.e. ``2 * numrot/4``
  inner products of ``C*u*u`` values per neuron instead of ``2 * numrot``. Results do not depend
  on the batch size (every GEMM operand is contiguous; short ones are padded). Float32 rounding
  differs from PINK in the last bits (~1e-6 relative); negative round-off is clamped to 0. ``precision`` selects the matmul precision: ``"float32"`` (default, TF32 disabled),
  ``"tf32"`` or ``"bf16"`` (GPU speed-ups; see :func:`somtorch.engine.mapping.precision_agreement`),
  ``"float64"``.
* ``"pink"``: PINK's CPU arithmetic reproduced exactly -- float differences squared in double and
  accumulated ``acc = float(double(acc) + d*d)`` in row-major region order. Bit-exact, so exact
  ties are broken as PINK breaks them (zero-initialised SOMs tie constantly). Slow: for tests and
  reproduction only.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from somtorch.engine.parity import (
    blocked_layout,
    orbit_order,
    orbit_scale,
    parity_from_orbits,
    parity_sizes,
)
from somtorch.engine.ties import TIE_RTOL, TieResolver, _exact_sq, _exact_sq_numpy, _exact_windows  # noqa: F401
from somtorch.errors import ConfigError, ShapeError
from somtorch.geometry.regions import dihedral_window, region_indices
from somtorch.geometry.transforms import PinkTransformer, dihedral_split

__all__ = ["DistanceEngine", "TieResolver", "best_match", "first_min", "PRECISIONS", "TIE_RTOL"]

PRECISIONS = ("float32", "tf32", "bf16", "float64")


@contextlib.contextmanager
def _matmul_precision(device: torch.device, precision: str):
    if device.type == "cuda":
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old
    else:
        yield


#: working-set target of CPU batches (features of a batch of images; see DistanceEngine.cache_batch)
CPU_CACHE_BYTES = 12 << 20

#: BLAS picks other kernels (other rounding) for very short matrices; padding the rows to at
#: least this many makes every row's result independent of how many images share the batch
_MIN_GEMM_ROWS = 16


def _matmul_rows(a: torch.Tensor, bt: torch.Tensor) -> torch.Tensor:
    """``a @ bt`` whose rows do not depend on the number of rows of ``a`` (batch-size invariance).

    MKL uses different code paths, with different rounding, for fewer than ~12 rows; short inputs
    are zero-padded to :data:`_MIN_GEMM_ROWS` rows, which costs nothing measurable.
    """
    m = a.shape[-2]
    if m >= _MIN_GEMM_ROWS:
        return torch.matmul(a, bt)
    pad = a.new_zeros(a.shape[:-2] + (_MIN_GEMM_ROWS - m, a.shape[-1]))
    return torch.matmul(torch.cat([a, pad], dim=-2), bt)[..., :m, :]


def _dihedral_sigmas(u: int, tr: PinkTransformer) -> torch.Tensor:
    """``sigma_q`` for every dihedral variant ``q`` in PINK order: ``<Q_q(x), w> = <x, w[sigma_q]>``."""
    a = torch.arange(u * u).reshape(u, u)
    js = range(4) if tr.numrot != 1 else range(1)
    fs = (0, 1) if tr.flip else (0,)
    sig = []
    for f in fs:
        for j in js:
            q = torch.rot90(a, -j)
            if f:
                q = torch.flip(q, dims=(0,))
            sig.append(torch.argsort(q.reshape(-1)))
    return torch.stack(sig)


def _pairing_for(tr: PinkTransformer) -> dict:
    """:meth:`DistanceEngine.pairing` from :func:`~somtorch.geometry.transforms.dihedral_split`:
    ``Q_q(R) = G_g(X_side)`` and flips are self-inverse permutations, so
    ``<Q_q(R), w> = <X_side, G_g(w)>``."""
    split = dihedral_split()
    js = range(4) if tr.numrot != 1 else range(1)
    fs = (0, 1) if tr.flip else (0,)
    need = [split[4 * f + j] for f in fs for j in js]
    return {"sides": 1 + max(s for s, _ in need), "pairs": need}


class DistanceEngine:
    """Computes region features of transformed images and neurons, and their distances.

    Parameters
    ----------
    transformer : PinkTransformer
    mask : torch.Tensor
        Boolean ``(nd, nd)`` distance region (:func:`somtorch.geometry.regions.region_mask`).
    arithmetic : {"gemm", "pink"}
    precision : {"float32", "tf32", "bf16", "float64"}
    tie_break : {"pink", "none"}
        ``"pink"`` (default) re-evaluates near-ties of the GEMM path with PINK's exact arithmetic
        (:class:`TieResolver`), so exact ties resolve to PINK's lowest index.
    """

    def __init__(self, transformer: PinkTransformer, mask: torch.Tensor, arithmetic: str = "gemm",
                 precision: str = "float32", tie_break: str = "pink"):
        if tie_break not in ("pink", "none"):
            raise ConfigError(None, "tie_break", tie_break, "'pink' or 'none'")
        self.tie_break = tie_break
        self._resolver = None
        if arithmetic not in ("gemm", "pink"):
            raise ConfigError(None, "arithmetic", arithmetic, "'gemm' or 'pink'")
        if precision not in PRECISIONS:
            raise ConfigError(None, "precision", precision, f"one of {PRECISIONS}")
        nd = transformer.neuron_dim
        if tuple(mask.shape) != (nd, nd):
            raise ShapeError(f"region mask has shape {tuple(mask.shape)}, expected ({nd}, {nd})")
        self.transformer = transformer
        self.mask = mask.bool()
        self.arithmetic = arithmetic
        self.precision = precision
        self.window = dihedral_window(self.mask)
        self._idx_cpu = region_indices(self.mask, self.window)
        u = self.window[1] - self.window[0]
        self.full_window = len(self._idx_cpu) == u * u
        self._idx_cache: dict = {}
        self._pairing: dict | None = None
        self._symmetric: bool | None = None

    @property
    def num_region_pixels(self) -> int:
        return len(self._idx_cpu)

    def _idx(self, device):
        key = str(device)
        if key not in self._idx_cache:
            self._idx_cache[key] = self._idx_cpu.to(device)
        return self._idx_cache[key]

    def _select_region(self, x: torch.Tensor) -> torch.Tensor:
        # x: (..., C, u, u) -> (..., C * P)
        lead = x.shape[:-3]
        c, u = x.shape[-3], x.shape[-1]
        flat = x.reshape(*lead, c, u * u)
        if not self.full_window:
            flat = flat.index_select(-1, self._idx(x.device))
        return flat.reshape(*lead, -1)

    # ------------------------------------------------------------------ features
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Region pixels of all transformations: ``(B, C, d, d) -> (B, T, C*P)``."""
        x = self.transformer(images, window=self.window)
        return self._select_region(x)

    def neuron_features(self, weights: torch.Tensor) -> torch.Tensor:
        """Region pixels of neurons: ``(N, C, nd, nd) -> (N, C*P)``."""
        lo, hi = self.window
        return self._select_region(weights[..., lo:hi, lo:hi])

    # ------------------------------------------------------------------ fast path
    def _variant_tables(self, device):
        """Region mask of the window and per-variant masks for the norms (cached per device)."""
        key = ("var", str(device))
        tab = self._idx_cache.get(key)
        if tab is None:
            lo, hi = self.window
            u = hi - lo
            mask_u = self.mask[lo:hi, lo:hi].reshape(-1).float()
            sigma = _dihedral_sigmas(u, self.transformer)  # (nq, u*u): V_q[s] = wm[sigma_q[s]]
            m = mask_u[sigma].T.contiguous()  # (u*u, nq): region mask seen by every variant
            tab = (mask_u.to(device), m.to(device))
            self._idx_cache[key] = tab
        return tab

    def _orbit_tables(self, device):
        """Region mask in orbit order ``(u*u,)`` and the per-variant masks ``(u*u, nq)`` in orbit order."""
        key = ("orbit", str(device))
        tab = self._idx_cache.get(key)
        if tab is None:
            mask_u, m = self._variant_tables(device)
            o = torch.tensor(orbit_order(self.window[1] - self.window[0])).to(device)
            tab = self._idx_cache[key] = (mask_u[o], m[o].contiguous())
        return tab

    def _neuron_gather(self, device, channels: int, dtype):
        """Flat indices of the window pixels of a ``(C, nd, nd)`` neuron in orbit order, channel-major,
        and the multiplier (region mask * -2 / orbit size) applied to them."""
        key = ("ngather", str(device), channels, dtype)
        tab = self._idx_cache.get(key)
        if tab is None:
            lo, hi = self.window
            u, nd = hi - lo, self.transformer.neuron_dim
            order = torch.tensor(orbit_order(u))
            pix = (order // u + lo) * nd + (order % u + lo)
            idx = (torch.arange(channels)[:, None] * (nd * nd) + pix[None, :]).reshape(1, -1)
            mult = -2.0 * orbit_scale(u, dtype=dtype) * self._orbit_tables("cpu")[0].to(dtype)
            tab = self._idx_cache[key] = (idx.to(device), mult.to(device))
        return tab

    def _mask_symmetric(self) -> bool:
        """Is the region mask unchanged by every dihedral variant (square and circular regions)?"""
        if self._symmetric is None:
            _, m = self._variant_tables("cpu")
            self._symmetric = bool((m == m[:, :1]).all())
        return self._symmetric

    def pairing(self) -> dict:
        """How the fast path obtains every dihedral product (layout of its tensors).

        Convention
        ----------
        For a dihedral variant ``Q_q`` (``q = 4 f + j``: rotate clockwise by ``j`` quarter turns,
        then flip rows if ``f``), ``<Q_q(R), w>`` over the region equals ``<X_s, G_g(w_m)>`` over the
        window, where ``X_0 = R`` (a base rotation), ``X_1 = R^T`` (its transpose, rows <-> columns),
        ``w_m`` is the neuron masked by the region and ``G_g`` one of the four flips (0: none,
        1: rows reversed, 2: columns reversed, 3: both). All four flips of one product come from
        one inner product in flip-parity coordinates (:mod:`somtorch.engine.parity`), so the
        distance GEMM costs ``S * k * N * C * u * u`` multiply-adds per image (``S`` sides) instead
        of ``8 * k * N * C * u * u``, and nothing is transposed per neuron update.

        Returns a dict with ``sides`` (1 without rotations, else 2) and ``pairs``: ``(side, g)`` for
        every dihedral variant ``q``, in PINK order.
        """
        if self._pairing is None:
            self._pairing = _pairing_for(self.transformer)
        return self._pairing

    def base_features(self, images: torch.Tensor, split: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Base rotations of images in parity coordinates, and their region norms.

        Returns ``R (B, k*S*C*u*u)`` (``k = numrot/4`` or 1; for each base rotation its ``S`` sides
        of :meth:`pairing`, the rotation then its transpose, in parity coordinates laid out block
        by block, :func:`~somtorch.engine.parity.parity_from_orbits`) and ``rnorm (B, T)`` =
        squared norm of every transformation over the distance region, in transformation-index
        order. With ``split`` ``R`` is the list of the four blocks ``(B, k*S*C*n_ab)`` (the same
        numbers; a batch's block is one contiguous matrix, so :meth:`sq_distances_fast` copies
        nothing).
        """
        lo, hi = self.window
        u = hi - lo
        order = orbit_order(u)
        parts = self.transformer.base_rotations_ordered(images, order, window=self.window, parts=True)
        b = parts[0].shape[0]
        k = sum(p.shape[1] for p in parts)
        mask_o, m = self._orbit_tables(images.device)
        nq = m.shape[1]
        if self._mask_symmetric():  # every variant sees the same region: one norm per rotation
            rks = [p if self.full_window else p * mask_o for p in parts]
            rnorm = torch.cat([(rk * rk).sum((2, 3)) for rk in rks], 1).unsqueeze(1).expand(b, nq, k).reshape(b, -1)
        else:
            if parts[0].shape[2] == 1:  # one channel: the squares are the sums (one pass, no cat)
                r2 = parts[0].new_empty((b, k, u * u))
                k0 = 0
                for p in parts:
                    torch.mul(p[:, :, 0], p[:, :, 0], out=r2[:, k0:k0 + p.shape[1]])
                    k0 += p.shape[1]
            else:
                r2 = torch.cat([(p * p).sum(2) for p in parts], 1)  # (B, k, u*u)
            rnorm = _matmul_rows(r2.reshape(b * k, u * u), m).reshape(b, k, -1)
            rnorm = rnorm.permute(0, 2, 1).reshape(b, -1)  # (B, nq*k) = (B, T)
        feats, _ = parity_from_orbits(parts, u, transposed=self.pairing()["sides"] == 2, blocked=True, split=split)
        return feats, rnorm

    def feature_bytes(self, channels: int = 1) -> int:
        """Bytes of one image's fast-path features (:meth:`base_features`, float32)."""
        u = self.window[1] - self.window[0]
        return self.pairing()["sides"] * max(self.transformer.numrot // 4, 1) * channels * u * u * 4

    def cache_batch(self, channels: int = 1) -> int:
        """Images per CPU batch whose features stay cache-resident (:data:`CPU_CACHE_BYTES`).

        Measured on a 2-core EPYC (32 MiB L3), 64x64 mapping: 6-8 images 600 img/s, 64 images
        ~350 img/s; 150x150: 1-4 images ~103 img/s, 11 images 72 img/s.
        """
        return max(1, CPU_CACHE_BYTES // max(self.feature_bytes(channels), 1))

    def neuron_parity(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Neurons masked by the region in parity coordinates times ``-2 / orbit size``
        ``(N, C*u*u)``, and their region norms ``(N,)`` (the neuron side of
        :meth:`sq_distances_fast`; powers of two, so the scaling is exact)."""
        n, c, nd, _ = weights.shape
        u = self.window[1] - self.window[0]
        idx, mult = self._neuron_gather(weights.device, c, weights.dtype)
        o = torch.gather(weights.reshape(n, c * nd * nd), 1, idx.expand(n, -1)).view(n, c, u * u)
        if self.full_window:
            wnorm = (o * o).sum((1, 2))
        else:
            om = o * self._orbit_tables(weights.device)[0]
            wnorm = (om * om).sum((1, 2))
        o.mul_(mult)  # region mask and -2 / orbit size (exact)
        return parity_from_orbits(o, u), wnorm

    def update_neuron_parity(self, v: torch.Tensor, wnorm: torch.Tensor, sel: torch.Tensor,
                             weights: torch.Tensor) -> None:
        """Refresh the parity features and norms of neurons ``sel`` (in place) from their new ``weights``."""
        vs, ns = self.neuron_parity(weights)
        v[sel] = vs
        wnorm[sel] = ns

    def _mm(self, a: torch.Tensor, bt: torch.Tensor) -> torch.Tensor:
        """``a @ bt`` in the configured precision (float32 result, float64 for ``"float64"``)."""
        prec = self.precision
        if prec == "bf16":
            with torch.autocast(device_type=a.device.type, dtype=torch.bfloat16):
                return torch.matmul(a.to(torch.bfloat16), bt.to(torch.bfloat16)).float()
        if prec == "float64":
            return _matmul_rows(a.double(), bt.double())
        if a.device.type != "cuda":
            return _matmul_rows(a, bt)
        with _matmul_precision(a.device, prec):
            return _matmul_rows(a, bt)

    def _blocks(self, u: int, f: int, ks: int) -> list:
        """``((offset, rows, cols) in R, (first, last) column in v)`` of every parity block."""
        key = ("blocks", u, f, ks)
        blocks = self._idx_cache.get(key)
        if blocks is None:
            cb = np.cumsum((0,) + parity_sizes(u, f // (u * u))).tolist()
            blocks = self._idx_cache[key] = list(zip(blocked_layout(u, f // (u * u), ks), cb[:-1], cb[1:]))
        return blocks

    def _products(self, r, i0: int, i1: int, v: torch.Tensor, blocks: list) -> list:
        """The four parity products ``(m * k * S, N)`` of images ``i0 .. i1-1``: one GEMM per
        block; an image's block is a contiguous ``(k*S, cols)`` matrix (and a batch's, when ``r``
        is split), so every operand is contiguous and BLAS rounds alike for any batch size."""
        m = i1 - i0
        if isinstance(r, (list, tuple)):
            return [self._mm(rq[i0:i1].view(m * rows, cols), v[:, c0:c1].T)
                    for rq, ((_, rows, cols), c0, c1) in zip(r, blocks)]
        rb = r[i0:i1]
        return [self._mm(rb[:, o:o + rows * cols].reshape(m * rows, cols), v[:, c0:c1].T)
                for (o, rows, cols), c0, c1 in blocks]

    def _chunk(self, b: int, device, nq: int, k: int, n: int, aligned: bool = False) -> int:
        """Images per chunk. CPU: chunks whose products and sums stay in cache (_CHUNK_BYTES of output
        each); every row of every product is the same computation in any chunk, so the result is
        too. ``aligned`` (block-major features): a multiple of 16 images, so that every chunk's
        operand starts 64-byte aligned, as a fresh tensor does (MKL rounds short products
        differently at other alignments)."""
        if device.type != "cpu":
            return b
        step = max(1, min(b, _CHUNK_BYTES // max(nq * k * n * 4, 1)))
        return max(16, step - step % 16) if aligned and step < b else step

    def sq_distances_fast(self, r, rnorm: torch.Tensor, v: torch.Tensor,
                          wnorm: torch.Tensor) -> torch.Tensor:
        """Squared distances ``(B, T, N)`` from :meth:`base_features` (rows or split) and
        :meth:`neuron_parity`."""
        sides = self.pairing()["sides"]
        lo, hi = self.window
        u = hi - lo
        n, f = v.shape
        split = isinstance(r, (list, tuple))
        b = r[0].shape[0] if split else r.shape[0]
        ks = (sum(x.shape[1] for x in r) if split else r.shape[1]) // f
        k = ks // sides
        blocks = self._blocks(u, f, ks)
        nq = len(self.pairing()["pairs"])
        out = None
        step = self._chunk(b, rnorm.device, nq, k, n, aligned=split)
        for i0 in range(0, b, step):
            i1 = min(b, i0 + step)
            m = i1 - i0
            ee, oe, eo, oo = self._products(r, i0, i1, v, blocks)
            if out is None:
                out = ee.new_empty((b, nq, k, n))
            # (the neuron side carries the factor -2: exact, so the products are -2 <x, w>)
            s1, d1, s2, d2 = (x.view(m, k, sides, n) for x in (ee + oe, ee - oe, eo + oo, eo - oo))
            # flip g = signed sum of the parity products (SIGNS); written straight into (B, q, k, N)
            combine = ((torch.add, s1, s2), (torch.add, d1, d2), (torch.sub, s1, s2), (torch.sub, d1, d2))
            d = out[i0:i1]
            for q, (side, g) in enumerate(self.pairing()["pairs"]):
                op, x, y = combine[g]
                op(x[:, :, side], y[:, :, side], out=d[:, q])
            d = d.view(m, -1, n).add_(rnorm[i0:i1].unsqueeze(-1).to(d.dtype)).add_(wnorm.to(d.dtype))
            d.clamp_min_(0)
        return out.view(b, -1, n).float()

    def match_fast(self, images: torch.Tensor, v: torch.Tensor, wnorm: torch.Tensor,
                   weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every neuron's lowest squared distance and its first transformation ``(B, N)`` for a
        batch (PINK's tie rules with ``tie_break="pink"``): :func:`best_match` of
        :meth:`resolve_ties` of :meth:`sq_distances_fast`, the same numbers.

        On CPU with the compiled loops (:mod:`somtorch.engine._native_parity`) the batch's parity blocks
        are laid out block-major (no copies before the GEMMs) and everything after the GEMMs --
        flip combinations, norms, clamp, minima and the near-tie test -- is one pass per image;
        only images that may hold a near-tie go through :class:`TieResolver`. Elsewhere the
        eager path.
        """
        cpu32 = images.device.type == "cpu" and v.dtype == torch.float32 and self.precision == "float32"
        # one row per image and block (no rotations): the rows layout's operands are strided views,
        # not copies, and MKL rounds those differently from contiguous ones, so keep that layout
        split = cpu32 and max(self.transformer.numrot // 4, 1) * self.pairing()["sides"] > 1
        r, rnorm = self.base_features(images, split=split)
        found = self._tail_pass(r, rnorm, v, wnorm, self._tie_rtol(), aligned=split) if cpu32 else None
        if found is not None:
            dsq, dmin, tbest, flag = found
            rows = torch.nonzero(flag).flatten()
            if len(rows):
                self._resolver.resolve(images, dsq, weights, rnorm, wnorm, rows=rows)
                dm, tb = first_min(dsq.index_select(0, rows), dim=1)
                dmin[rows], tbest[rows] = dm, tb
            return dmin, tbest
        dsq = self.resolve_ties(images, self.sq_distances_fast(r, rnorm, v, wnorm), weights, rnorm, wnorm)
        dmin, tbest, _ = best_match(dsq)
        return dmin, tbest

    def _tail_pass(self, r, rnorm: torch.Tensor, v: torch.Tensor, wnorm: torch.Tensor, rtol: float,
                   aligned: bool = False):
        """The GEMMs of :meth:`sq_distances_fast` chunk by chunk, each chunk's products finished by the
        compiled tail (:func:`~somtorch.engine._native_parity.map_tail`): ``(dsq, dmin, tbest,
        flag)`` with ``dsq (B, T, N)`` written only for flagged images (none when ``rtol < 0``);
        None when the compiled loops are unavailable."""
        from somtorch.engine._native_parity import map_tail

        side, flip = self._tail_pairs()
        sides, nq, (n, f) = self.pairing()["sides"], len(side), v.shape
        split = isinstance(r, (list, tuple))
        b, ks = (r[0].shape[0], sum(x.shape[1] for x in r) // f) if split else (r.shape[0], r.shape[1] // f)
        k = ks // sides
        blocks = self._blocks(self.window[1] - self.window[0], f, ks)
        dsq = torch.empty((b, nq * k, n))
        dmin, tbest = torch.empty((b, n)), torch.empty((b, n), dtype=torch.int64)
        flag = torch.empty(b, dtype=torch.int64)
        rnorm = rnorm.contiguous()
        step = self._chunk(b, rnorm.device, nq, k, n, aligned=aligned)
        for i0 in range(0, b, step):
            i1 = min(b, i0 + step)
            if not map_tail(self._products(r, i0, i1, v, blocks), k, sides, side, flip, rnorm[i0:i1], wnorm, rtol,
                            dsq[i0:i1], dmin[i0:i1], tbest[i0:i1], flag[i0:i1]):
                return None
        return dsq, dmin, tbest, flag

    def _tail_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`pairing`'s side and flip of every dihedral variant, int64 CPU tensors (the
        compiled tail's arguments)."""
        if "tail_pairs" not in self._idx_cache:
            pairs = self.pairing()["pairs"]
            self._idx_cache["tail_pairs"] = (torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs]))
        return self._idx_cache["tail_pairs"]

    def _tie_rtol(self) -> float:
        """The near-tie band of :class:`TieResolver` (creating it), or -1 without PINK's tie rules."""
        if self.tie_break != "pink" or self.arithmetic == "pink":
            return -1.0
        if self._resolver is None:
            self._resolver = TieResolver(self)
        return self._resolver.rtol

    def _pair_index(self, device) -> torch.Tensor:
        key = ("pairs", str(device))
        idx = self._idx_cache.get(key)
        if idx is None:
            idx = torch.tensor([s * 4 + g for s, g in self.pairing()["pairs"]], dtype=torch.int64, device=device)
            self._idx_cache[key] = idx
        return idx

    def distances_for(self, images: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Squared distances ``(B, T, N)`` of images to neurons with the configured arithmetic."""
        if self.arithmetic == "pink":
            return self.sq_distances(self.image_features(images), self.neuron_features(weights))
        r, rnorm = self.base_features(images)
        v, wnorm = self.neuron_parity(weights)
        return self.resolve_ties(images, self.sq_distances_fast(r, rnorm, v, wnorm), weights, rnorm, wnorm)

    def resolve_ties(self, images, dsq, weights, rnorm, wnorm) -> torch.Tensor:
        """Apply PINK's exact tie-breaking to GEMM distances (no-op when ``tie_break="none"``)."""
        if self.tie_break != "pink" or self.arithmetic == "pink":
            return dsq
        if self._resolver is None:
            self._resolver = TieResolver(self)
        return self._resolver.resolve(images, dsq, weights, rnorm, wnorm)

    # ------------------------------------------------------------------ distances
    def sq_distances(self, xf: torch.Tensor, wf: torch.Tensor, xnorm: torch.Tensor | None = None,
                     wnorm: torch.Tensor | None = None) -> torch.Tensor:
        """Squared distances ``(B, T, N)`` from features ``xf (B, T, F)`` and ``wf (N, F)``."""
        if self.arithmetic == "pink":
            return torch.stack([_pink_sq_distances(x, wf) for x in xf])
        prec = self.precision
        if prec == "float64":
            xf64, wf64 = xf.double(), wf.double()
            d = (xf64 * xf64).sum(-1, keepdim=True) + (wf64 * wf64).sum(-1) - 2.0 * torch.matmul(xf64, wf64.T)
            return d.clamp_min_(0).float()
        if xnorm is None:
            xnorm = (xf * xf).sum(-1)
        if wnorm is None:
            wnorm = (wf * wf).sum(-1)
        if prec == "bf16":
            dev_type = xf.device.type
            with torch.autocast(device_type=dev_type, dtype=torch.bfloat16):
                cross = torch.matmul(xf.to(torch.bfloat16), wf.to(torch.bfloat16).T).float()
        else:
            with _matmul_precision(xf.device, prec):
                cross = torch.matmul(xf, wf.T)
        d = cross.mul_(-2.0).add_(xnorm.unsqueeze(-1)).add_(wnorm)
        return d.clamp_min_(0)


#: CPU: output bytes per image chunk of :meth:`DistanceEngine.sq_distances_fast` (products and
#: sums of a chunk stay in cache; measured on a 2-core EPYC)
_CHUNK_BYTES = 2 << 20


def _pink_sq_distances(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """PINK's exact CPU accumulation for one image: ``x (T, F)``, ``w (N, F)`` -> ``(T, N)`` float32."""
    t, f = x.shape
    acc = torch.zeros((w.shape[0], t), dtype=torch.float32, device=x.device)
    xt = x.T.contiguous()
    for p in range(f):
        diff = (w[:, p, None] - xt[p][None, :]).double()
        acc = (acc.double() + diff * diff).float()
    return acc.T


def best_match(dsq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best transformation per neuron and best-matching neuron (PINK tie rules).

    Parameters
    ----------
    dsq : ``(B, T, N)`` squared distances.

    Returns
    -------
    dmin : ``(B, N)`` minimum squared distance per neuron,
    tbest : ``(B, N)`` lowest transformation index attaining it,
    bmu : ``(B,)`` lowest neuron index attaining the overall minimum.
    """
    dmin, tbest = first_min(dsq, dim=1)
    bmu = torch.argmin(dmin, dim=1)
    return dmin, tbest, bmu


def first_min(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum along ``dim`` and the *lowest* index attaining it (``torch.min``'s values and
    ``torch.argmin``'s tie rule), for finite ``x``.

    ``torch.argmin`` over a middle dimension is a slow strided kernel on CPU (38 us per image for
    ``(16, 400)`` distances, most of a small mapping's time); ``amin`` is vectorised, and the
    first index attaining it is ``n - max((x == min) * (n, n-1, ..., 1))``: three more vectorised
    passes, 2-5x faster overall on a 2-core EPYC. Exact (indices up to 2**24 are exact in float32).
    """
    n = x.shape[dim]
    if x.device.type != "cpu" or n > (1 << 24) or x.dtype not in (torch.float32, torch.float64):
        vals, idx = torch.min(x, dim=dim)
        return vals, idx
    m = x.amin(dim=dim, keepdim=True)
    shape = [1] * x.dim()
    shape[dim] = n
    rev = torch.arange(n, 0, -1, dtype=x.dtype, device=x.device).view(shape)
    w = (x == m).to(x.dtype).mul_(rev)
    idx = w.amax(dim=dim).neg_().add_(n).to(torch.int64)
    return m.squeeze(dim), idx
