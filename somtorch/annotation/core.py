"""Neuron annotations: regions (flood-fill clicks, lassos, masks), their filters, and storage.

Convention
----------
* A neuron is a float array ``(C, H, W)``: channel, row, column (row 0 first; ``imshow`` with
  ``origin='upper'`` draws it at the top). Points are ``(y, x) = (row, col)`` in pixel units, the
  centre of pixel ``(r, c)`` being at ``(r, c)``.
* An :class:`Annotation` is a stack of :class:`Region` s per channel in creation order. A region
  has a boolean mask and a value (product of label primes, :mod:`.encoding`). The channel's
  filter is the least common multiple of the values of all regions covering a pixel, so
  overlapping regions with different labels keep *both* labels (PYINK overwrote them);
  :meth:`Annotation.overlap` marks the pixels where regions with different values meet.
* Flood fill (a left click): threshold ``t = sigma * std(channel)`` over all pixels of the
  channel (PYINK's rule: sigma times the standard deviation, not mean + sigma std); the region
  is the 8-connected component of ``channel > t`` containing the seed pixel
  ``(round(y), round(x))``. A click on a pixel at or below ``t`` selects nothing (PYINK flooded
  the background instead).
* Lasso: pixels whose centres lie inside the polygon (vertices as ``(x, y)`` = ``(col, row)``,
  as matplotlib gives them), on the channel the lasso was drawn on.
* Every region can be undone, newest first (PYINK could not undo a lasso).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from scipy import ndimage

from somtorch.errors import ShapeError

__all__ = ["Region", "Annotation", "seed_fill", "lasso_mask"]

_EIGHT = np.ones((3, 3), dtype=bool)


def seed_fill(channel_image, y: float, x: float, sigma: float) -> np.ndarray:
    """Boolean mask of the 8-connected component above ``sigma * std(image)`` containing the
    seed ``(round(y), round(x))`` (empty if the seed is below threshold or outside)."""
    img = np.asarray(channel_image)
    if img.ndim != 2:
        raise ShapeError(f"seed_fill needs a 2-D channel image, got shape {img.shape}")
    r, c = int(round(float(y))), int(round(float(x)))
    out = np.zeros(img.shape, dtype=bool)
    if not (0 <= r < img.shape[0] and 0 <= c < img.shape[1]):
        return out
    binary = img > float(sigma) * float(np.std(img))
    if not binary[r, c]:
        return out
    lab, _ = ndimage.label(binary, structure=_EIGHT)
    return lab == lab[r, c]


def lasso_mask(shape, vertices) -> np.ndarray:
    """Boolean mask of the pixel centres inside the polygon ``vertices`` (``[(x, y), ...]``)."""
    from matplotlib.path import Path

    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 2 or len(v) < 3:
        return np.zeros(shape, dtype=bool)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    pts = np.column_stack([cols.ravel(), rows.ravel()])
    return Path(v).contains_points(pts).reshape(shape)


@dataclass
class Region:
    """One annotated region of a neuron channel.

    ``kind`` is ``"click"`` (flood fill from ``(y, x)`` at ``sigma``), ``"lasso"`` (polygon
    ``vertices``) or ``"mask"`` (given programmatically); ``value`` the product of its labels'
    primes (1: no label).
    """

    kind: str
    channel: int
    value: int
    mask: np.ndarray
    y: float | None = None
    x: float | None = None
    sigma: float | None = None
    vertices: list | None = field(default=None)

    def meta(self) -> dict:
        d = {"kind": self.kind, "channel": int(self.channel), "value": int(self.value)}
        if self.kind == "click":
            d.update(y=float(self.y), x=float(self.x), sigma=float(self.sigma))
        if self.vertices is not None:
            d["vertices"] = [[float(a), float(b)] for a, b in self.vertices]
        return d


_LOG_INT64_MAX = float(np.log(np.iinfo(np.int64).max))


def _combine(base: np.ndarray, mask: np.ndarray, value: int) -> None:
    sel = base[mask]
    if sel.size and value > 1:
        g = np.gcd(sel, value)
        if np.any(np.log(np.maximum(sel, 1)) + np.log(value) - np.log(g) > _LOG_INT64_MAX):
            raise ShapeError("a pixel would carry more labels than an int64 prime product can hold "
                             "(at most the 15 smallest primes together)")
    base[mask] = np.where(sel == 0, value, np.lcm(sel, value))


class Annotation:
    """Annotation of one neuron (PYINK ``annotator.Annotation``), with undoable regions.

    Parameters
    ----------
    neuron : array ``(C, H, W)`` or ``(H, W)`` (copied as float32).
    regions : optional list of :class:`Region`.
    base : optional ``{channel: int filter}`` imported from elsewhere (e.g. PYINK), combined with
        the regions; :meth:`clear` removes it too.
    """

    def __init__(self, neuron, regions=None, base=None):
        n = np.array(neuron, dtype=np.float32)
        if n.ndim == 2:
            n = n[None]
        if n.ndim != 3:
            raise ShapeError(f"neuron must be (C, H, W) or (H, W), got shape {n.shape}")
        self.neuron = n
        self.regions: list[Region] = list(regions or [])
        self.base: dict[int, np.ndarray] = {int(c): np.asarray(f, dtype=np.int64) for c, f in (base or {}).items()}

    @property
    def channels(self) -> int:
        return self.neuron.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        return self.neuron.shape[1:]

    def _check_channel(self, channel: int) -> int:
        channel = int(channel)
        if not 0 <= channel < self.channels:
            raise ShapeError(f"channel {channel} outside [0, {self.channels})")
        return channel

    # ---------------------------------------------------------------- editing
    def add_click(self, channel: int, y: float, x: float, value: int = 1, sigma: float = 2.0) -> Region | None:
        """Flood-fill region from a click; ``None`` (nothing added) if it selects no pixel."""
        channel = self._check_channel(channel)
        m = seed_fill(self.neuron[channel], y, x, sigma)
        if not m.any():
            return None
        r = Region("click", channel, int(value), m, float(y), float(x), float(sigma))
        self.regions.append(r)
        return r

    def add_lasso(self, channel: int, vertices, value: int = 1) -> Region | None:
        """Region inside a lasso polygon; ``None`` if it contains no pixel centre."""
        channel = self._check_channel(channel)
        m = lasso_mask(self.shape, vertices)
        if not m.any():
            return None
        r = Region("lasso", channel, int(value), m, vertices=[tuple(map(float, v)) for v in vertices])
        self.regions.append(r)
        return r

    def add_mask(self, channel: int, mask, value: int = 1) -> Region | None:
        """Region from a boolean mask (programmatic annotation, same storage as the GUI's)."""
        channel = self._check_channel(channel)
        m = np.asarray(mask, dtype=bool)
        if m.shape != self.shape:
            raise ShapeError(f"mask shape {m.shape}, expected {self.shape}")
        if not m.any():
            return None
        r = Region("mask", channel, int(value), m.copy())
        self.regions.append(r)
        return r

    def undo(self, channel: int | None = None) -> Region | None:
        """Remove and return the newest region (of ``channel`` if given); ``None`` if none."""
        for k in range(len(self.regions) - 1, -1, -1):
            if channel is None or self.regions[k].channel == channel:
                return self.regions.pop(k)
        return None

    def clear(self) -> None:
        """Remove every region and imported filter."""
        self.regions.clear()
        self.base.clear()

    def resigma_last_click(self, channel: int, sigma: float) -> Region | None:
        """Redo the newest click of ``channel`` at threshold ``sigma``; other regions are kept.

        Returns the updated region, or ``None`` if the channel has no click or the new
        threshold selects nothing (then the click is left unchanged).
        """
        for r in reversed(self.regions):
            if r.kind == "click" and r.channel == channel:
                m = seed_fill(self.neuron[channel], r.y, r.x, sigma)
                if not m.any():
                    return None
                r.mask, r.sigma = m, float(sigma)
                return r
        return None

    # ---------------------------------------------------------------- reading
    def filter(self, channel: int = 0) -> np.ndarray:
        """Integer filter ``(H, W)`` of ``channel`` (prime products, see module convention)."""
        channel = self._check_channel(channel)
        f = self.base.get(channel, np.zeros(self.shape, dtype=np.int64)).copy()
        for r in self.regions:
            if r.channel == channel:
                _combine(f, r.mask, r.value)
        return f

    @property
    def filters(self) -> Mapping[int, np.ndarray]:
        """``{channel: filter}`` for every channel (PYINK ``Annotation.filters``), read-only.

        The filters are computed from the regions, so assigning to the mapping or editing an
        array in place raises instead of being silently lost; add regions with
        :meth:`add_mask` (or use :class:`somtorch.pyink.Annotation`, whose filters are stored).
        """
        out = {}
        for c in range(self.channels):
            f = self.filter(c)
            f.flags.writeable = False
            out[c] = f
        return MappingProxyType(out)

    def filter_stack(self) -> np.ndarray:
        return np.stack([self.filter(c) for c in range(self.channels)])

    def overlap(self, channel: int = 0) -> np.ndarray:
        """Pixels covered by at least two regions (or imported values) with different values."""
        channel = self._check_channel(channel)
        first = self.base.get(channel, np.zeros(self.shape, dtype=np.int64)).copy()
        clash = np.zeros(self.shape, dtype=bool)
        for r in self.regions:
            if r.channel != channel:
                continue
            prev = first[r.mask]
            clash[r.mask] |= (prev != 0) & (prev != r.value)
            first[r.mask] = np.where(prev == 0, r.value, prev)
        return clash

    @property
    def clicks(self) -> dict[int, list]:
        """``{channel: [[y, x, value, sigma], ...]}`` (PYINK ``Annotation.clicks``)."""
        out: dict[int, list] = {c: [] for c in range(self.channels)}
        for r in self.regions:
            if r.kind == "click":
                out[r.channel].append([r.y, r.x, r.value, r.sigma])
        return out

    @property
    def annotated(self) -> bool:
        return bool(self.regions) or any(np.any(f) for f in self.base.values())

    def filter_contains(self, labels, channel: int = 0) -> tuple[str, ...]:
        """Label names present anywhere in ``channel``'s filter (``labels``: a LabelSet)."""
        vals = np.unique(self.filter(channel))
        found: set[str] = set()
        for v in vals:
            found.update(labels.decode(int(v)))
        return tuple(n for n in labels if n in found)

    def __repr__(self) -> str:
        return f"Annotation(neuron shape={self.neuron.shape}, regions={len(self.regions)})"
