"""PYINK's ``SOMSampler``: pick well-separated neurons (random or k-means), on
:class:`somtorch.analysis.SOMSampler`.

Numbers: both methods follow PYINK's rules (random: a candidate is kept when its Euclidean
lattice distance to every chosen point is greater than ``min_dist``; k-means: optionally weighted
by ``mapping.bmu_counts()``). **PYINK bugs corrected**: no ``(y, x)`` transposition on
non-square SOMs; k-means is seeded (``seed=0``, reproducible), needs no scikit-learn and gives
distinct neurons; hitting ``max_attempts`` warns (``RuntimeWarning``) instead of printing.
"""

from __future__ import annotations

import numpy as np

from somtorch.analysis import sampler as _sampler

__all__ = ["SOMSampler"]


class SOMSampler(_sampler.SOMSampler):
    """``SOMSampler(som, N, method="kmeans", **kwargs)``; ``points`` is the sorted list of
    ``(row, col)`` keys, ``num_points`` its length. ``kwargs``: ``min_dist=2``,
    ``max_attempts=100`` (random), ``mapping=None`` (k-means), ``seed=0``. An unknown method
    raises ``KeyError`` (as PYINK)."""

    def __init__(self, som, N, method="kmeans", **kwargs):
        if method not in ("kmeans", "random"):
            raise KeyError(f"unknown SOMSampler method {method!r}; use 'kmeans' or 'random'")
        super().__init__(som, N, method, **kwargs)

    def min_distance(self, ind, chosen=None):
        """Smallest lattice distance from key ``ind`` to the chosen points (inf if none)."""
        i = ind if isinstance(ind, (int, np.integer)) else self._key_index(ind)
        return super().min_distance(int(i), self.indices if chosen is None else chosen)

    def _key_index(self, key) -> int:
        if self.lattice.layout == "hexagonal":
            return int(key[0])
        _, yz = self.lattice.grid_shape_2d()
        return int(key[0]) * yz + int(key[1])

    def add_point(self, p):
        """Add key ``p`` to ``points`` (kept sorted, no duplicates)."""
        i = self._key_index(p)
        if i not in self.indices:
            self.indices = sorted(self.indices + [i])
            self.points = sorted(self.index_to_key(k) for k in self.indices)

    def random_neuron(self):
        """A uniformly drawn ``(row, col)`` key (seeded generator)."""
        rng = getattr(self, "_rng", None)
        if rng is None:
            rng = self._rng = np.random.default_rng(self.seed)
        return self.index_to_key(int(rng.integers(self.lattice.num_neurons)))
