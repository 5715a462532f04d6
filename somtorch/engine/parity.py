"""Flip-parity coordinates: four flipped inner products for the price of one.

The four flips ``G_g`` of a ``u x u`` image (``g`` = 0: none, 1: rows reversed, 2: columns
reversed, 3: both) form a group, and every image splits into four *parity components*
``x = x_ee + x_oe + x_eo + x_oo`` that are even (``e``) or odd (``o``) under reversing the rows
(first letter) and the columns (second letter). A flip only changes signs:
``G_g(x)_ab = chi_ab(g) x_ab``, so

    <R, G_g(w)> = sum_ab chi_ab(g) <R_ab, w_ab>,

and each component lives on about a quarter of the pixels (one per orbit ``{(r, c), (u-1-r, c),
(r, u-1-c), (u-1-r, u-1-c)}``). The four products ``<R, G_g(w)>`` thus cost one full-size inner
product instead of four: the distance GEMM does 4x less work.

Convention
----------
Coordinates of a ``(..., C, u, u)`` stack, ``h = u // 2``, per channel:

* ``ee``: orbit sums of the ``h x h`` top-left quadrant (row ``r``, column ``c``), then, for odd
  ``u``, the middle-column pairs ``x[r, h] + x[u-1-r, h]``, the middle-row pairs
  ``x[h, c] + x[h, u-1-c]`` and the centre ``x[h, h]``;
* ``oe`` (odd in rows): ``(x[r,c] + x[r,u-1-c]) - (x[u-1-r,c] + x[u-1-r,u-1-c])``, then the
  middle-column differences ``x[r, h] - x[u-1-r, h]``;
* ``eo`` (odd in columns): ``(x[r,c] + x[u-1-r,c]) - (x[r,u-1-c] + x[u-1-r,u-1-c])``, then the
  middle-row differences;
* ``oo``: ``(x[r,c] - x[r,u-1-c]) - (x[u-1-r,c] - x[u-1-r,u-1-c])``.

Features are the blocks ``[ee | oe | eo | oo]``, each channel-major. Images use these plain signed
sums; neurons use them divided by the orbit size (4, 2 or 1: exact in floating point), so that
``<R, G_g(w)> = sum_ab chi_ab(g) <P(R)_ab, P_scaled(w)_ab>`` (:data:`SIGNS` holds ``chi``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

__all__ = ["SIGNS", "parity_sizes", "orbit_order", "orbit_scale", "parity_features", "parity_from_orbits",
           "blocked_layout"]

#: ``SIGNS[g, ab]`` = sign of component ``ab`` (order ee, oe, eo, oo) under flip ``g``
SIGNS = ((1, 1, 1, 1), (1, -1, 1, -1), (1, 1, -1, -1), (1, -1, -1, 1))


def parity_sizes(u: int, channels: int = 1) -> tuple[int, int, int, int]:
    """Feature lengths of the ee, oe, eo and oo blocks (they add up to ``channels * u * u``)."""
    return tuple(channels * n for n in _per_channel(u))


def _per_channel(u: int) -> tuple[int, int, int, int]:
    h, odd = u // 2, u % 2
    return (h * h + 2 * h * odd + odd, h * h + h * odd, h * h + h * odd, h * h)


@lru_cache(maxsize=32)
def orbit_order(u: int) -> np.ndarray:
    """Pixel indices (row-major in ``u x u``) listing the pixels orbit by orbit.

    Order: the top-left ``h x h`` quadrant ``A[r, c] = x[r, c]``, then its mirror images
    ``B[r, c] = x[r, u-1-c]``, ``C[r, c] = x[u-1-r, c]``, ``D[r, c] = x[u-1-r, u-1-c]`` (each
    row-major), then for odd ``u`` the middle column ``x[r, h]``, its mirror ``x[u-1-r, h]``, the
    middle row ``x[h, c]``, its mirror ``x[h, u-1-c]`` (``r, c < h``) and the centre ``x[h, h]``.
    """
    h, odd = u // 2, u % 2
    r, c = np.meshgrid(np.arange(h), np.arange(h), indexing="ij")
    r, c = r.ravel(), c.ravel()
    parts = [r * u + c, r * u + (u - 1 - c), (u - 1 - r) * u + c, (u - 1 - r) * u + (u - 1 - c)]
    if odd:
        i = np.arange(h)
        parts += [i * u + h, (u - 1 - i) * u + h, h * u + i, h * u + (u - 1 - i), np.array([h * u + h])]
    out = np.concatenate(parts).astype(np.int64)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=32)
def _orbit_scale_np(u: int) -> np.ndarray:
    h, odd = u // 2, u % 2
    out = np.concatenate([np.full(4 * h * h, 0.25), np.full(4 * h * odd, 0.5), np.ones(odd)]).astype(np.float32)
    out.setflags(write=False)
    return out


def orbit_scale(u: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``1 / orbit size`` of every pixel in :func:`orbit_order` (0.25, 0.5 or 1; exact)."""
    return torch.tensor(_orbit_scale_np(u), device=device, dtype=dtype)


def parity_features(x: torch.Tensor, scaled: bool = False, transposed: bool = False) -> torch.Tensor:
    """Parity coordinates of ``x (..., C, u, u)`` (see module docstring): ``(..., F)``.

    ``scaled`` divides by the orbit sizes (neuron side). With ``transposed`` the result is
    ``(..., 2, F)``: the coordinates of ``x`` and of its transpose ``x^T`` (rows <-> columns),
    the latter obtained by permuting the former (no second pass over ``x``).
    """
    u = x.shape[-1]
    o = x.flatten(-2).index_select(-1, torch.tensor(orbit_order(u)).to(x.device))
    if scaled:
        o = o * orbit_scale(u, x.device, x.dtype)
    return parity_from_orbits(o, u, transposed=transposed)


def parity_from_orbits(o: torch.Tensor, u: int, transposed: bool = False, blocked: bool = False,
                       split: bool = False):
    """Parity coordinates from pixels in :func:`orbit_order`, ``o (..., C, u*u)``.

    Row layout (default): ``(..., F)`` (``(..., 2, F)`` with ``transposed``), blocks
    ``[ee | oe | eo | oo]`` each channel-major. ``blocked=True`` takes ``o (B, k, C, u*u)`` and
    returns ``(out (B, P), layout)``: for every image the ee block as a row-major
    ``(k * S, C * n_ee)`` matrix (rows: base rotation, then side; ``S = 2`` with ``transposed``;
    ``o`` may be a list of such tensors, concatenated along ``k``),
    then the oe, eo and oo blocks, at the ``(offset, rows, cols)`` of :func:`blocked_layout`; one
    image's block is thus a contiguous matrix (no copy before the GEMM of a training step).
    ``split=True`` (with ``blocked``) returns the four blocks as separate contiguous tensors
    ``(B, rows * cols)`` instead of ``out``: the block of several images is then one contiguous
    matrix too (no copy before a batch's GEMM). Each block starts 64-byte aligned, as a fresh
    tensor does: MKL's products of short matrices round differently at other alignments.
    """
    sides = 2 if transposed else 1
    if blocked:
        parts = list(o) if isinstance(o, (list, tuple)) else [o]  # pieces along k
        b, c = parts[0].shape[0], parts[0].shape[2]
        k = sum(p.shape[1] for p in parts)
        layout = blocked_layout(u, c, k * sides)
        size = k * sides * c * u * u
        if split:  # block-major: block q of all images, then block q + 1, each 64-byte aligned
            strides = [r * n for _, r, n in layout]
            offsets = np.cumsum([0] + [-(-b * s // 16) * 16 for s in strides[:-1]]).tolist()
            out = parts[0].new_empty((offsets[-1] + b * strides[-1],))
            blocks = [out[o0:o0 + b * s].view(b, s) for o0, s in zip(offsets, strides)]
            views = [x.view(b, k, sides, c, n // c) for x, (_, _, n) in zip(blocks, layout)]
        else:
            out = parts[0].new_empty((b * size,))
            offsets, strides = [off for off, _, _ in layout], [size] * 4
            views = [out.view(b, size)[:, off:off + r * n].view(b, k, sides, c, n // c) for off, r, n in layout]
        k0 = 0
        for p in parts:
            if not (out.device.type == "cpu" and p.dtype == torch.float32 and out.dtype == torch.float32
                    and p.is_contiguous() and _compiled_blocked(p, k0, k, u, sides, out, offsets, strides)):
                _write(p, u, [v[:, k0:k0 + p.shape[1]] for v in views], transposed)
            k0 += p.shape[1]
        return (blocks if split else out.view(b, size)), layout
    c = o.shape[-2]
    lead = o.shape[:-2]
    if (not transposed and o.device.type == "cpu" and o.dtype == torch.float32 and o.is_contiguous()
            and o.dim() >= 2):
        flat = o.reshape(-1, 1, c, u * u)
        out = o.new_empty((flat.shape[0], c * u * u))
        cb = np.cumsum((0,) + parity_sizes(u, c)).tolist()
        if _compiled_blocked(flat, 0, 1, u, 1, out, cb[:4], [out.shape[1]] * 4):
            return out.view(lead + (c * u * u,))
    out = o.new_empty(lead + (sides, c * u * u))
    views, s = [], 0
    for n in _per_channel(u):
        views.append(out[..., s:s + c * n].unflatten(-1, (c, n)))
        s += c * n
    _write(o, u, views, transposed)
    return out if transposed else out.squeeze(-2)


def _compiled_blocked(p, k0, k, u, sides, out, offsets, strides) -> bool:
    """The blocked coordinates of one piece by the compiled loop (:mod:`somtorch.engine._native`):
    the same float32 additions in the same order as :func:`_write`, one pass instead of ~20 strided
    tensor operations (tested bit-identical); False where unavailable."""
    from somtorch.engine._native_parity import parity_blocked

    return parity_blocked(p, k0, k, u, sides, out, offsets, strides)


def blocked_layout(u: int, channels: int, rows: int) -> list[tuple[int, int, int]]:
    """``(offset, rows, cols)`` of the four block matrices of ``parity_from_orbits(blocked=True)``."""
    meta, s = [], 0
    for n in _per_channel(u):
        meta.append((s, rows, channels * n))
        s += rows * channels * n
    return meta


def _write(o: torch.Tensor, u: int, blocks: list, transposed: bool) -> None:
    """Write the parity coordinates of orbit-ordered ``o (..., C, u*u)`` into ``blocks``
    (``(..., S, C, n_ab)`` views)."""
    h, odd = u // 2, u % 2
    hh = h * h
    ee, oe, eo, oo = blocks
    a, b, c, d = (o[..., i * hh:(i + 1) * hh] for i in range(4))
    s1, d1 = a + b, a - b  # top rows: even / odd in columns
    s2, d2 = c + d, c - d  # bottom rows (mirrored)
    torch.add(s1, s2, out=ee[..., 0, :, :hh])
    torch.sub(s1, s2, out=oe[..., 0, :, :hh])
    torch.add(d1, d2, out=eo[..., 0, :, :hh])
    torch.sub(d1, d2, out=oo[..., 0, :, :hh])
    if odd:
        m = 4 * hh
        top, bot, left, right = (o[..., m + i * h:m + (i + 1) * h] for i in range(4))
        torch.add(top, bot, out=ee[..., 0, :, hh:hh + h])  # middle column
        torch.sub(top, bot, out=oe[..., 0, :, hh:hh + h])
        torch.add(left, right, out=ee[..., 0, :, hh + h:hh + 2 * h])  # middle row
        torch.sub(left, right, out=eo[..., 0, :, hh:hh + h])
        ee[..., 0, :, hh + 2 * h].copy_(o[..., m + 4 * h])  # centre
    if transposed:
        # x^T: quadrant blocks transposed, row and column parities swapped, middles swapped
        def quad(blk, side):
            return blk[..., side, :, :hh].unflatten(-1, (h, h))

        quad(ee, 1).copy_(quad(ee, 0).transpose(-2, -1))
        quad(oe, 1).copy_(quad(eo, 0).transpose(-2, -1))
        quad(eo, 1).copy_(quad(oe, 0).transpose(-2, -1))
        quad(oo, 1).copy_(quad(oo, 0).transpose(-2, -1))
        if odd:
            ee[..., 1, :, hh:hh + h].copy_(ee[..., 0, :, hh + h:hh + 2 * h])
            ee[..., 1, :, hh + h:hh + 2 * h].copy_(ee[..., 0, :, hh:hh + h])
            ee[..., 1, :, hh + 2 * h].copy_(ee[..., 0, :, hh + 2 * h])
            oe[..., 1, :, hh:].copy_(eo[..., 0, :, hh:])
            eo[..., 1, :, hh:].copy_(oe[..., 0, :, hh:])
