"""Pixel-geometry utilities of PYINK's ``utils``: pixel separations and label-region masks.

Convention
----------
Masks are boolean ``(H, W)`` arrays indexed ``[row][col]``; pixel coordinates are integer
``(row, col)`` and distances are Euclidean in pixels. Label filters use PYINK's prime encoding
(0 = unselected, 1 = a region without a label, else a product of label primes); the encoding and
the region functions live in :mod:`somtorch.annotation.encoding` and are re-exported here under
PYINK's ``utils`` names.

PYINK bugs fixed
----------------
* :func:`distances_between_valid_pixels` on an empty mask returns ``(-1.0, (-1, -1), (0, 0)
  matrix)`` instead of raising ``ValueError``;
* :func:`valid_region` never counts unselected (0) pixels as included (PYINK: ``0 % p == 0``).
"""

from __future__ import annotations

import numpy as np

from somtorch.errors import ShapeError

__all__ = ["valid_pixel_coords", "compute_distances_between_valid_pixels", "distances_between_valid_pixels",
           "valid_region", "area_ratio"]


def valid_pixel_coords(mask) -> np.ndarray:
    """``(k, 2)`` int64 ``(row, col)`` of the True pixels, row-major order."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ShapeError(f"mask must be 2-D (H, W); got shape {m.shape}")
    return np.argwhere(m.astype(bool))


def compute_distances_between_valid_pixels(mask) -> np.ndarray:
    """Euclidean distance matrix ``(k, k)`` between all True pixels (row-major order)."""
    p = valid_pixel_coords(mask).astype(np.float64)
    diff = p[:, None, :] - p[None, :, :]
    return np.sqrt((diff ** 2).sum(axis=-1))


def distances_between_valid_pixels(mask):
    """Largest separation between True pixels: ``(max_distance, (a, b), distance_matrix)``.

    ``a, b`` index the pixels in :func:`valid_pixel_coords` order (first maximum in row-major
    order of the matrix). An empty mask gives ``(-1.0, (-1, -1), zeros((0, 0)))``; a single
    pixel gives ``(0.0, (0, 0), [[0.0]])``.
    """
    dist = compute_distances_between_valid_pixels(mask)
    if dist.size == 0:
        return -1.0, (-1, -1), dist
    a, b = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(dist[a, b]), (int(a), int(b)), dist


def valid_region(filt, filter_includes=None, filter_excludes=None) -> np.ndarray:
    """Pixels carrying any ``filter_includes`` prime and no ``filter_excludes`` prime (see
    :func:`somtorch.annotation.encoding.valid_region`); ``None`` includes every selected pixel."""
    from somtorch.annotation.encoding import valid_region as _valid_region

    return _valid_region(filt, filter_includes, filter_excludes)


def area_ratio(filter1, filter2, filter_includes=None, filter_excludes=None, empty_check: bool = True) -> float:
    """Valid-pixel count of ``filter1`` over that of ``filter2`` (see
    :func:`somtorch.annotation.encoding.area_ratio` for the empty cases)."""
    from somtorch.annotation.encoding import area_ratio as _area_ratio

    return _area_ratio(filter1, filter2, filter_includes, filter_excludes, empty_check)
