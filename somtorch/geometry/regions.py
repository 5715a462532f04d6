"""Distance regions: which neuron pixels enter the image-to-neuron distance.

Convention
----------
Regions live in the ``nd x nd`` neuron grid, indexed ``[row][col]``.

* ``quadratic`` (PINK default): rows and columns ``[b, b + ed)`` with ``b = floor((nd - ed) / 2)``.
* ``circular`` (PINK's CPU mask, spec §4.2): with ``c = floor(nd / 2)`` and ``rho = floor(ed / 2)``,
  window row ``i = 0 .. ed-1`` covers neuron row ``b + i`` and columns
  ``[round(c - delta_i), round(c + delta_i))`` with
  ``delta_i = sqrt(2 rho (i + 1/2) - (i + 1/2)**2)`` (double precision, ``round`` half away from zero;
  a negative radicand gives an empty row). Odd ``ed`` therefore has the pixel count of ``ed - 1``.

* ``circular`` in the native convention (``convention="native"``): the pixels whose centres lie
  within ``ed / 2`` of the neuron centre ``((nd-1)/2, (nd-1)/2)``:
  ``(r - ctr)**2 + (c - ctr)**2 <= (ed / 2)**2``. Mapped onto itself by every quarter turn and
  flip for any ``nd``; identical to PINK's mask whenever ``nd`` and ``ed`` are both even (PINK's
  mask is half a pixel off-centre for odd ``nd``).

Pixels are listed row-major, which is PINK's summation order.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from somtorch.errors import ConfigError

__all__ = ["region_mask", "region_indices", "dihedral_window"]


def _round_half_away(x: float) -> int:
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def region_mask(neuron_dim: int, euclidean_dim: int, shape: str = "quadratic",
                convention: str = "pink") -> torch.Tensor:
    """Boolean ``(nd, nd)`` mask of the distance region (see the module docstring; ``convention``
    only changes the circular shape).

    >>> int(region_mask(29, 20, "circular").sum()), int(region_mask(91, 64, "circular").sum())
    (316, 3228)
    >>> int(region_mask(91, 45).sum())
    2025
    """
    nd, ed = int(neuron_dim), int(euclidean_dim)
    if ed > nd:
        raise ConfigError(None, "euclidean_dim", ed, f"<= neuron_dim ({nd})")
    if ed < 1:
        raise ConfigError(None, "euclidean_dim", ed, ">= 1")
    b = (nd - ed) // 2
    mask = np.zeros((nd, nd), dtype=bool)
    shape = str(shape).lower()
    if shape == "quadratic":
        mask[b:b + ed, b:b + ed] = True
    elif shape == "circular" and str(convention).lower() == "native":
        off = np.arange(nd) - (nd - 1) / 2.0
        mask = (off[:, None] ** 2 + off[None, :] ** 2) <= (ed / 2.0) ** 2
    elif shape == "circular":
        c = nd // 2
        rho = ed // 2
        for i in range(ed):
            x = i + 0.5
            rad = 2.0 * rho * x - x * x
            if rad < 0:
                continue
            delta = math.sqrt(rad)
            lo, hi = _round_half_away(c - delta), _round_half_away(c + delta)
            mask[b + i, max(lo, 0):max(min(hi, nd), 0)] = True
    else:
        raise ConfigError(None, "euclidean_distance_shape", shape, "'quadratic' or 'circular'")
    return torch.from_numpy(mask)


def dihedral_window(mask: torch.Tensor) -> tuple[int, int]:
    """Smallest centred square ``[lo, nd - lo)`` containing the region and all its rot90/flip images."""
    nd = mask.shape[-1]
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    if len(rows) == 0:
        raise ConfigError(None, "region", "empty", "at least one pixel")
    lo = int(min(rows.min(), cols.min(), nd - 1 - rows.max(), nd - 1 - cols.max()))
    return lo, nd - lo


def region_indices(mask: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """Row-major flat indices of the region's pixels inside the ``window`` crop."""
    lo, hi = window
    sub = mask[lo:hi, lo:hi]
    return torch.nonzero(sub.reshape(-1)).flatten()
