"""PYINK's ``skypath``: separations, farthest pair, shortest path through a group of
components, and its "curliness".

Numbers: PYINK's (angular separations; the shortest path through every position with fixed
ends; curliness = path length / largest separation, 0 for two or fewer positions).

**PYINK bugs corrected** (spec §14): the shortest path is found exactly by dynamic programming
(Held-Karp, O(n^2 2^n)) for up to 12 intermediate positions -- PYINK's brute force over
permutations stopped after 2e6 and could return a longer path from 10 on; above 12 a
nearest-neighbour + 2-opt path is returned with a warning. The caller's separations dict is
not modified (PYINK converted its values to floats in place). ``SkyPath(positions, idxs)``
labels ``positions[k]`` with ``idxs[k]`` (PYINK indexed ``positions`` with the catalogue
indices). ``curliness`` is a plain number (PYINK mixed a Quantity and ``0 deg``).
"""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np

__all__ = ["SkyPath", "create_separation_set", "maximum_distance", "shortest_path_between"]

_EXACT_MAX = 12


def _pairwise(positions, labels, pos_index):
    seps = positions[pos_index][:, None].separation(positions[pos_index][None, :])
    out = {}
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            if i != j:
                out[(a, b)] = seps[i, j]
    return out


def create_separation_set(positions, idxs_items=None):
    """``{(i, j): separation}`` for both orders of every pair (``{(i, i): 0 arcsec}`` for one).

    ``idxs_items`` selects positions by index (PYINK); labels that are not positions of
    ``positions`` label them in order instead (one per position).
    """
    n = len(positions)
    labels = list(range(n)) if idxs_items is None else [int(v) for v in idxs_items]
    if all(0 <= v < n for v in labels):
        pos_index = np.asarray(labels, np.int64)
    elif len(labels) == n:
        pos_index = np.arange(n)
    else:
        raise ValueError(f"{len(labels)} indices for {n} positions: give positions' indices or one label each")
    if len(labels) == 1:
        return {(labels[0], labels[0]): 0 * u.arcsec}
    return _pairwise(positions, labels, pos_index)


def maximum_distance(separations):
    """``(key, separation)`` of the largest separation."""
    key = max(separations, key=lambda k: u.Quantity(separations[k]).to_value(u.deg))
    return key, separations[key]


def _length(D, path):
    return float(sum(D[a, b] for a, b in zip(path[:-1], path[1:])))


def _held_karp(D, s, e, inter):
    k = len(inter)
    full = (1 << k) - 1
    dp = np.full((1 << k, k), np.inf)
    parent = np.full((1 << k, k), -1, np.int64)
    for j in range(k):
        dp[1 << j, j] = D[s, inter[j]]
    for mask in range(1, full + 1):
        for j in range(k):
            if not (mask >> j) & 1 or mask == 1 << j:
                continue
            prev = mask ^ (1 << j)
            cand = dp[prev] + D[inter, inter[j]]
            cand[[i for i in range(k) if not (prev >> i) & 1]] = np.inf
            i = int(np.argmin(cand))
            dp[mask, j], parent[mask, j] = cand[i], i
    last = dp[full] + D[inter, e]
    j = int(np.argmin(last))
    order, mask = [], full
    while j >= 0:
        order.append(inter[j])
        j, mask = int(parent[mask, j]), mask ^ (1 << j)
    return [s] + order[::-1] + [e]


def _two_opt(D, s, e, inter):
    path, rest = [s], list(inter)
    while rest:  # nearest neighbour
        nxt = min(rest, key=lambda v: D[path[-1], v])
        path.append(nxt)
        rest.remove(nxt)
    path.append(e)
    improved = True
    while improved:
        improved = False
        for i in range(1, len(path) - 2):
            for j in range(i + 1, len(path) - 1):
                new = path[:i] + path[i:j + 1][::-1] + path[j + 1:]
                if _length(D, new) < _length(D, path) - 1e-15:
                    path, improved = new, True
    return path


def shortest_path_between(separations, start_end, max_iterations=2_000_000, progress=False):
    """Shortest path from ``start_end[0]`` to ``start_end[1]`` through every position of
    ``separations``: ``(path tuple, length in degrees)``. Identical ends give
    ``(start_end, 0 arcsec)``; no intermediate positions the direct separation.
    ``max_iterations``/``progress`` are accepted for PYINK compatibility (the search is exact
    up to 12 intermediate positions, see the module docstring)."""
    s, e = start_end
    if s == e:
        return tuple(start_end), 0 * u.arcsec
    nodes = sorted({k for pair in separations for k in pair})
    pos = {v: i for i, v in enumerate(nodes)}
    D = np.zeros((len(nodes), len(nodes)))
    for (a, b), v in separations.items():
        D[pos[a], pos[b]] = u.Quantity(v, u.deg).to_value(u.deg)
    inter = [pos[v] for v in nodes if v not in (s, e)]
    if not inter:
        return (s, e), D[pos[s], pos[e]] * u.deg
    if len(inter) <= _EXACT_MAX:
        path = _held_karp(D, pos[s], pos[e], inter)
    else:
        warnings.warn(f"shortest_path_between: {len(inter)} intermediate positions; returning a 2-opt path "
                      "(exact search up to 12)", RuntimeWarning, stacklevel=2)
        path = _two_opt(D, pos[s], pos[e], inter)
    return tuple(nodes[i] for i in path), _length(D, path) * u.deg


class SkyPath:
    """Geometry of a group of sky positions (PYINK ``SkyPath(positions, idxs=None)``).

    Attributes: ``separations``, ``maximum_distance`` (``(key, separation)``),
    ``maximum_position_angle``, ``shortest_path`` (``(path, length)``), ``curliness``.
    """

    def __init__(self, positions, idxs=None):
        self.positions = positions
        n = len(positions)
        self.idxs = list(range(n)) if idxs is None else [int(v) for v in idxs]
        if len(self.idxs) != n:
            raise ValueError(f"{len(self.idxs)} idxs for {n} positions")
        self._where = {v: k for k, v in enumerate(self.idxs)}
        self.separations = ({(self.idxs[0], self.idxs[0]): 0 * u.arcsec} if n == 1
                            else _pairwise(positions, self.idxs, np.arange(n)))
        self.maximum_distance = maximum_distance(self.separations)
        a, b = self.maximum_distance[0]
        self.maximum_position_angle = positions[self._where[a]].position_angle(positions[self._where[b]])
        self.shortest_path = shortest_path_between(self.separations, self.maximum_distance[0])
        if n <= 2:
            self.curliness = 0.0
        else:
            self.curliness = float((self.shortest_path[1] / self.maximum_distance[1]).decompose())

    @property
    def shortest_path_positions(self):
        return self.positions[[self._where[v] for v in self.shortest_path[0]]]

    @property
    def maximum_distance_positions(self):
        return self.positions[[self._where[v] for v in self.maximum_distance[0]]]

    def _plot(self, ax, pos, *args, **kwargs):
        return ax.plot(pos.ra.deg, pos.dec.deg, *args, transform=ax.get_transform("world"), **kwargs)

    def plot_shortest_path(self, ax, *args, **kwargs):
        """Draw the shortest path on WCS axes (RA/Dec in the ``world`` transform)."""
        return self._plot(ax, self.shortest_path_positions, *args, **kwargs)

    def plot_maximum_distance(self, ax, *args, **kwargs):
        """Draw the farthest pair on WCS axes."""
        return self._plot(ax, self.maximum_distance_positions, *args, **kwargs)

    def __repr__(self) -> str:
        return f"SkyPath({len(self.idxs)} positions, curliness {self.curliness:.3f})"


