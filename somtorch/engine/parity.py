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

import torch

__all__ = ["SIGNS", "parity_sizes", "parity_features", "parity_features_blocked", "blocked_layout"]

#: ``SIGNS[g, ab]`` = sign of component ``ab`` (order ee, oe, eo, oo) under flip ``g``
SIGNS = ((1, 1, 1, 1), (1, -1, 1, -1), (1, 1, -1, -1), (1, -1, -1, 1))


def parity_sizes(u: int, channels: int = 1) -> tuple[int, int, int, int]:
    """Feature lengths of the ee, oe, eo and oo blocks (they add up to ``channels * u * u``)."""
    return tuple(channels * n for n in _per_channel(u))


def _per_channel(u: int) -> tuple[int, int, int, int]:
    h, odd = u // 2, u % 2
    return (h * h + 2 * h * odd + odd, h * h + h * odd, h * h + h * odd, h * h)


def parity_features(x: torch.Tensor, scaled: bool = False, transposed: bool = False) -> torch.Tensor:
    """Parity coordinates of ``x (..., C, u, u)`` (see module docstring): ``(..., F)``.

    ``scaled`` divides by the orbit sizes (neuron side). With ``transposed`` the result is
    ``(..., 2, F)``: the coordinates of ``x`` and of its transpose ``x^T`` (rows <-> columns),
    the latter obtained by permuting the former (no second pass over ``x``).
    """
    lead, c, u = x.shape[:-3], x.shape[-3], x.shape[-1]
    sides = 2 if transposed else 1
    out = x.new_empty(lead + (sides, c * u * u))
    blocks, s = [], 0
    for n in _per_channel(u):
        blocks.append(out[..., s:s + c * n].unflatten(-1, (c, n)))
        s += c * n
    _write(x, blocks, scaled, transposed)
    return out if transposed else out.squeeze(-2)


def parity_features_blocked(x: torch.Tensor, transposed: bool = False) -> tuple[torch.Tensor, list]:
    """Parity coordinates of a stack ``x (B, k, C, u, u)``, laid out block by block per image.

    Returns ``(out, blocks)``: ``out (B, P)`` with ``P = 4-block total = k * S * C * u * u``
    (``S = 2`` with ``transposed``) holds, for every image, the ee block as a row-major
    ``(k * S, C * n_ee)`` matrix (rows: base rotation, then side), then the oe, eo and oo blocks;
    ``blocks`` lists ``(offset, rows, cols)`` of the four matrices. One image's block is thus a
    contiguous matrix (no copy before the GEMM of a training step).
    """
    b, k, c, u = x.shape[0], x.shape[1], x.shape[2], x.shape[-1]
    sides = 2 if transposed else 1
    meta = blocked_layout(u, c, k * sides)
    out = x.new_empty((b, k * sides * c * u * u))
    views = [out[:, o:o + r * n].view(b, k, sides, c, n // c) for o, r, n in meta]
    _write(x, views, False, transposed)
    return out, meta


def blocked_layout(u: int, channels: int, rows: int) -> list[tuple[int, int, int]]:
    """``(offset, rows, cols)`` of the four block matrices of :func:`parity_features_blocked`."""
    meta, s = [], 0
    for n in _per_channel(u):
        meta.append((s, rows, channels * n))
        s += rows * channels * n
    return meta


def _write(x: torch.Tensor, blocks: list, scaled: bool, transposed: bool) -> None:
    """Write the parity coordinates of ``x (..., C, u, u)`` into ``blocks`` (``(..., S, C, n_ab)``)."""
    u = x.shape[-1]
    h, odd = u // 2, u % 2
    hh = h * h
    ee, oe, eo, oo = blocks

    def quad(blk, side):
        return blk[..., side, :, :hh].unflatten(-1, (h, h))

    left = x[..., :, :h]
    right = torch.flip(x[..., :, u - h:], dims=(-1,))
    p, m = left + right, left - right  # even / odd in columns, (..., C, u, h)
    pb = torch.flip(p[..., u - h:, :], dims=(-2,))
    mb = torch.flip(m[..., u - h:, :], dims=(-2,))
    pt, mt = p[..., :h, :], m[..., :h, :]
    torch.add(pt, pb, out=quad(ee, 0))
    torch.sub(pt, pb, out=quad(oe, 0))
    torch.add(mt, mb, out=quad(eo, 0))
    torch.sub(mt, mb, out=quad(oo, 0))
    if odd:
        top = x[..., :h, h]
        bot = torch.flip(x[..., u - h:, h], dims=(-1,))
        e0, o0, c0 = ee[..., 0, :, :], oe[..., 0, :, :], eo[..., 0, :, :]
        torch.add(top, bot, out=e0[..., hh:hh + h])  # middle column
        torch.sub(top, bot, out=o0[..., hh:hh + h])
        e0[..., hh + h:hh + 2 * h].copy_(p[..., h, :])  # middle row
        c0[..., hh:hh + h].copy_(m[..., h, :])
        e0[..., hh + 2 * h].copy_(x[..., h, h])  # centre
    if transposed:
        # x^T: quadrant blocks transposed, row and column parities swapped, middles swapped
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
    if scaled:
        for blk in blocks:
            blk[..., :hh].mul_(0.25)  # orbits of four pixels
            if odd and blk.shape[-1] > hh:
                blk[..., hh:hh + 2 * h].mul_(0.5)  # pairs on the middle row / column (centre: 1)
