"""Choose a few neurons spread over a SOM lattice (PYINK ``SOMSampler``), reproducibly.

Convention
----------
Neurons are identified by their flat PINK index (``indices``) and by their PYINK key
(``points``): ``(row, col)`` over the ``(X, Y*Z)`` view of a cartesian lattice, ``(k,)`` on a
hexagonal one (:mod:`somtorch.io.binwrap`). Lattice separations are the grid distances of
:class:`~somtorch.geometry.Lattice` (Euclidean on cartesian lattices, hex steps on hexagonal
ones, wrapped when periodic).

* ``"random"``: draw neurons uniformly (seeded); accept a candidate when its separation from every
  neuron already chosen is **greater than** ``min_dist``; stop after ``max_attempts``
  consecutive rejections with fewer points (a :class:`RuntimeWarning` says so).
* ``"kmeans"``: weighted k-means (k-means++ start, Lloyd iterations, seeded) on the neurons'
  drawing positions (cartesian ``(row, col)``; hexagonal ``(r sqrt(3)/2, q + r/2)``), weights
  = best-match counts of ``mapping`` (or uniform); each centre is snapped to the nearest neuron
  not yet taken, so the points are distinct.

PYINK bugs fixed: no ``(y, x)`` transposition on non-square lattices; k-means is seeded, works
without scikit-learn and gives distinct neurons; hexagonal lattices work.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from somtorch.errors import ConfigError
from somtorch.geometry.lattice import Lattice

__all__ = ["SOMSampler", "weighted_kmeans"]


def _lattice_of(som, periodic: bool = False) -> Lattice:
    if isinstance(som, Lattice):
        return som
    header = getattr(som, "header", None)
    if header is not None:
        return Lattice.from_header(header.som_dims, header.num_neurons, periodic)
    lat = getattr(som, "lattice", None)
    if isinstance(lat, Lattice):
        return lat
    return Lattice("cartesian", tuple(int(s) for s in som), periodic)


def _positions(lat: Lattice) -> np.ndarray:
    c = lat.coords.numpy().astype(np.float64)
    if lat.layout == "hexagonal":
        q, r = c[:, 0], c[:, 1]
        return np.stack([r * math.sqrt(3.0) / 2.0, q + r / 2.0], axis=1)
    return c


def weighted_kmeans(x: np.ndarray, k: int, weights=None, seed: int = 0, n_iter: int = 100,
                    n_init: int = 4) -> np.ndarray:
    """Weighted k-means centres ``(k, D)`` of points ``x (n, D)`` (k-means++ start, Lloyd steps;
    best of ``n_init`` seeded runs by weighted inertia)."""
    x = np.asarray(x, np.float64)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w.shape[0] != len(x) or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(None, "weights", "invalid", f"{len(x)} non-negative weights with a positive sum")
    if not 1 <= k <= int((w > 0).sum()):
        raise ConfigError(None, "N", k, f"between 1 and the number of points with weight > 0 ({int((w > 0).sum())})")
    rng = np.random.default_rng(seed)
    best, best_inertia = None, np.inf
    for _ in range(n_init):
        cen = [x[rng.choice(len(x), p=w / w.sum())]]
        for _ in range(1, k):
            d2 = ((x[:, None, :] - np.asarray(cen)[None]) ** 2).sum(-1).min(1) * w
            cen.append(x[rng.choice(len(x), p=d2 / d2.sum())] if d2.sum() > 0 else x[rng.integers(len(x))])
        cen = np.asarray(cen)
        for _ in range(n_iter):
            lab = ((x[:, None, :] - cen[None]) ** 2).sum(-1).argmin(1)
            new = cen.copy()
            for j in range(k):
                sel = (lab == j) & (w > 0)
                if sel.any():
                    new[j] = (x[sel] * w[sel, None]).sum(0) / w[sel].sum()
            if np.allclose(new, cen):
                break
            cen = new
        inertia = float((((x[:, None, :] - cen[None]) ** 2).sum(-1).min(1) * w).sum())
        if inertia < best_inertia:
            best, best_inertia = cen, inertia
    return best


class SOMSampler:
    """Pick ``N`` well-separated neurons of a SOM (see module docstring).

    Parameters
    ----------
    som : :class:`~somtorch.io.SOM`, :class:`~somtorch.geometry.Lattice`, a
        :class:`~somtorch.engine.RotationInvariantSOM` or a cartesian shape tuple
    N : int
        Number of neurons wanted.
    method : {"kmeans", "random"}
    seed : int
    min_dist, max_attempts : random method (PYINK defaults 2 and 100).
    mapping : :class:`~somtorch.io.Mapping`, optional
        k-means weights from its best-match counts (``bmu_mask`` honoured).
    periodic : bool
        Wrap-around separations (random method) for lattices read from files.

    Attributes
    ----------
    indices : list of flat neuron indices (sorted); ``points``: their keys (sorted);
    num_points : ``len(points)``; ``lattice``.
    """

    def __init__(self, som, N: int, method: str = "kmeans", seed: int = 0, *, min_dist: float = 2.0,
                 max_attempts: int = 100, mapping=None, periodic: bool = False):
        self.som = som
        self.lattice = _lattice_of(som, periodic)
        self.N = int(N)
        self.method = method
        self.seed = int(seed)
        if self.N < 1:
            raise ConfigError(None, "N", N, ">= 1")
        if method == "random":
            idx = self.random_sampler(self.N, min_dist, max_attempts)
        elif method == "kmeans":
            idx = self.kmeans_sampler(self.N, mapping)
        else:
            raise ConfigError(None, "method", method, "'kmeans' or 'random'")
        self.indices = sorted(int(i) for i in idx)
        self.points = sorted(self.index_to_key(i) for i in self.indices)

    @property
    def num_points(self) -> int:
        return len(self.points)

    def index_to_key(self, i: int) -> tuple:
        lat = self.lattice
        if lat.layout == "hexagonal":
            return (int(i),)
        x, yz = lat.grid_shape_2d()
        return tuple(int(v) for v in divmod(int(i), yz))

    def min_distance(self, i: int, chosen) -> float:
        """Smallest lattice separation between neuron ``i`` and the neurons ``chosen``."""
        if len(chosen) == 0:
            return math.inf
        return float(self.lattice.distances().numpy()[i, list(chosen)].min())

    def random_sampler(self, N: int, min_dist: float = 2.0, max_attempts: int = 100) -> list[int]:
        rng = np.random.default_rng(self.seed)
        gd = self.lattice.distances().numpy()
        chosen: list[int] = []
        fails = 0
        while len(chosen) < N:
            i = int(rng.integers(self.lattice.num_neurons))
            if not chosen or gd[i, chosen].min() > min_dist:
                chosen.append(i)
                fails = 0
            else:
                fails += 1
                if fails > max_attempts:
                    warnings.warn(f"SOMSampler: only {len(chosen)} of {N} neurons found with separation > "
                                  f"{min_dist} after {max_attempts} consecutive rejections", RuntimeWarning,
                                  stacklevel=3)
                    break
        return chosen

    def kmeans_sampler(self, N: int, mapping=None) -> list[int]:
        lat = self.lattice
        pos = _positions(lat)
        w = None
        if mapping is not None:
            w = np.asarray(mapping.bmu_counts(), np.float64).reshape(-1)
            if w.shape[0] != lat.num_neurons:
                raise ConfigError(None, "mapping", f"{w.shape[0]} neurons", f"{lat.num_neurons} neurons")
        if N > lat.num_neurons:
            raise ConfigError(None, "N", N, f"<= {lat.num_neurons} neurons")
        cen = weighted_kmeans(pos, N, w, seed=self.seed)
        taken: list[int] = []
        for c in cen:
            d = ((pos - c) ** 2).sum(1)
            d[taken] = np.inf
            taken.append(int(np.argmin(d)))
        return taken

    def visualize(self, path=None, ax=None):
        """Lattice with the chosen neurons marked; returns the Figure (see :mod:`somtorch.plotting`)."""
        from somtorch.plotting.maps import plot_neuron_map

        vals = np.zeros(self.lattice.num_neurons)
        vals[self.indices] = 1.0
        return plot_neuron_map(vals, self.lattice, path=path, ax=ax, cmap="Greys", annotate=False,
                               title=f"SOMSampler ({self.method}, {self.num_points} neurons)", colorbar=False)
