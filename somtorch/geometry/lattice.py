"""SOM lattices: neuron count, neuron ordering, grid coordinates and grid distances.

Convention
----------
Neuron indices follow PINK 2.5 exactly (spec §1.6), so SOM files are interchangeable:

* cartesian 1-D, width ``W``: index ``i`` has coordinate ``(i,)``;
* cartesian 2-D, ``W x H``: ``i -> (i // H, i % H)`` -- a row-major ``[W][H]`` array whose
  *height index varies fastest*. The first coordinate is what PYINK calls the lattice row;
* cartesian 3-D, ``W x H x D``: ``i -> ((i % (W*H)) // H, i % H, i // (W*H))`` -- a ``[D][W][H]`` array;
* hexagonal, side ``d`` (odd), ``R = (d-1)//2``: ``d**2 - R*(R+1)`` neurons numbered row by row
  (``r = 0..d-1``), left to right, with axial coordinates ``(q, r)`` and ``q`` starting at
  ``max(0, R - r)``. The centre neuron has axial coordinate ``(R, R)``.

Grid distances are Euclidean for cartesian lattices (computed in float32 like PINK) and the hex
distance ``(|dq| + |dr| + |dq + dr|) / 2`` for hexagonal lattices. With ``periodic=True`` the lattice
wraps around: per axis for cartesian lattices (minimum image), and for hexagonal lattices the
hexagon tiles the plane with the axial translation ``(dq, dr) = (2R+1, -R-1)`` and its five
60-degree rotations (one of the two mirror-image tilings; this chirality is the convention), which
makes every neuron equivalent. PINK 2.5 refuses ``--pbc``; somtorch
supports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from somtorch.errors import ConfigError

__all__ = ["Lattice", "hex_num_neurons", "hex_axial_coords"]


def hex_num_neurons(d: int) -> int:
    """Number of neurons of a hexagonal PINK lattice of side ``d`` (odd): ``d**2 - R(R+1)``."""
    r = (d - 1) // 2
    return d * d - r * (r + 1)


def hex_axial_coords(d: int) -> np.ndarray:
    """Axial coordinates ``(q, r)`` of the neurons of a hexagonal lattice, in PINK order."""
    big_r = (d - 1) // 2
    out = []
    for r in range(d):
        q0 = max(0, big_r - r)
        for j in range(d - abs(r - big_r)):
            out.append((q0 + j, r))
    return np.asarray(out, dtype=np.int64)


@dataclass(frozen=True)
class Lattice:
    """A SOM lattice.

    Parameters
    ----------
    layout : {"cartesian", "hexagonal"}
    shape : tuple of int
        Cartesian: ``(W,)``, ``(W, H)`` or ``(W, H, D)``. Hexagonal: ``(d,)`` or ``(d, d)`` with odd ``d``.
    periodic : bool
        Periodic boundary conditions (wrap-around grid distances).

    Examples
    --------
    >>> Lattice("cartesian", (3, 2)).coords.tolist()
    [[0, 0], [0, 1], [1, 0], [1, 1], [2, 0], [2, 1]]
    >>> Lattice("hexagonal", (3,)).num_neurons
    7
    """

    layout: str = "cartesian"
    shape: tuple = (10, 10)
    periodic: bool = False

    def __post_init__(self):
        layout = str(self.layout).lower()
        if layout not in ("cartesian", "hexagonal"):
            raise ConfigError(None, "layout", self.layout, "'cartesian' or 'hexagonal'")
        shape = tuple(int(s) for s in np.atleast_1d(self.shape))
        if layout == "hexagonal":
            if len(shape) == 2 and shape[0] != shape[1]:
                raise ConfigError(None, "shape", shape, "(d, d) for a hexagonal lattice")
            if len(shape) not in (1, 2) or shape[0] < 1 or shape[0] % 2 == 0:
                raise ConfigError(None, "shape", shape, "an odd side d for a hexagonal lattice")
            shape = (shape[0],)
        else:
            if not 1 <= len(shape) <= 3 or any(s < 1 for s in shape):
                raise ConfigError(None, "shape", shape, "1 to 3 positive dimensions")
        object.__setattr__(self, "layout", layout)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "periodic", bool(self.periodic))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_pink(cls, width: int = 10, height: int = 10, depth: int = 1,
                  layout: str = "cartesian", periodic: bool = False) -> Lattice:
        """The lattice PINK builds from ``--som-width/--som-height/--som-depth/--layout``.

        Reproduces PINK's rules (spec §7.3): width > 1, height and depth > 0, dimensionality
        ``1 + [height > 1] + [depth > 1]``; the quirk that ``height == 1, depth > 1`` gives the
        2-D lattice ``(W, 1)`` is kept for compatibility. Hexagonal needs odd ``width == height``
        and ``depth == 1``.
        """
        layout = str(layout).lower()
        if width <= 1:
            raise ConfigError(None, "som-width", width, "> 1")
        if height <= 0:
            raise ConfigError(None, "som-height", height, "> 0")
        if depth <= 0:
            raise ConfigError(None, "som-depth", depth, "> 0")
        if layout == "hexagonal":
            if width % 2 == 0:
                raise ConfigError(None, "som-width", width, "an odd value for hexagonal layout")
            if width != height:
                raise ConfigError(None, "som-height", height, f"equal to som-width ({width}) for hexagonal layout")
            if depth != 1:
                raise ConfigError(None, "som-depth", depth, "1 for hexagonal layout")
            return cls("hexagonal", (width,), periodic)
        ndim = 1 + (height > 1) + (depth > 1)
        shape = (width, height, depth)[:ndim]
        return cls("cartesian", shape, periodic)

    @classmethod
    def from_header(cls, som_dims, num_neurons: int | None = None, periodic: bool = False) -> Lattice:
        """Lattice from the dims stored in a PINK file (hexagonal detected from the neuron count)."""
        dims = tuple(int(s) for s in som_dims)
        if (num_neurons is not None and len(dims) == 2 and dims[0] == dims[1] and dims[0] % 2 == 1
                and dims[0] > 1 and num_neurons == hex_num_neurons(dims[0])
                and num_neurons != dims[0] * dims[1]):
            return cls("hexagonal", (dims[0],), periodic)
        return cls("cartesian", dims, periodic)

    # ------------------------------------------------------------------ properties
    @property
    def num_neurons(self) -> int:
        if self.layout == "hexagonal":
            return hex_num_neurons(self.shape[0])
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.num_neurons

    @property
    def som_dims(self) -> tuple:
        """The SOM dims PINK writes in file headers: ``(W,)``, ``(W,H)``, ``(W,H,D)`` or ``(d,d)``."""
        if self.layout == "hexagonal":
            return (self.shape[0], self.shape[0])
        return self.shape

    @cached_property
    def _coords_np(self) -> np.ndarray:
        n = self.num_neurons
        i = np.arange(n, dtype=np.int64)
        if self.layout == "hexagonal":
            return hex_axial_coords(self.shape[0])
        if len(self.shape) == 1:
            return i[:, None]
        if len(self.shape) == 2:
            h = self.shape[1]
            return np.stack([i // h, i % h], axis=1)
        w, h, _ = self.shape
        return np.stack([(i % (w * h)) // h, i % h, i // (w * h)], axis=1)

    @property
    def coords(self) -> torch.Tensor:
        """Integer grid coordinates ``(N, k)`` in neuron-index order (axial ``(q, r)`` for hexagonal)."""
        return torch.from_numpy(self._coords_np.copy())

    def index_of(self, coord) -> int:
        """Neuron index of a grid coordinate (inverse of :attr:`coords`)."""
        coord = tuple(int(c) for c in np.atleast_1d(coord))
        hits = np.nonzero((self._coords_np == np.asarray(coord)).all(axis=1))[0]
        if len(hits) == 0:
            raise ConfigError(None, "coord", coord, f"a position on the {self.layout} lattice {self.shape}")
        return int(hits[0])

    @cached_property
    def _distance_np(self) -> np.ndarray:
        c = self._coords_np
        if self.layout == "cartesian":
            delta = np.abs(c[:, None, :] - c[None, :, :])
            if self.periodic:
                size = np.asarray(self.shape)[None, None, :]
                delta = np.minimum(delta, size - delta)
            sq = (delta.astype(np.float32) ** 2).sum(axis=-1, dtype=np.float32)
            return np.sqrt(sq).astype(np.float32)
        # hexagonal: cube coordinates x=q, z=r, y=-q-r
        cube = np.stack([c[:, 0], -c[:, 0] - c[:, 1], c[:, 1]], axis=1)
        delta = cube[:, None, :] - cube[None, :, :]
        dist = np.abs(delta).max(axis=-1)
        if self.periodic:
            big_r = (self.shape[0] - 1) // 2
            shift = np.array([2 * big_r + 1, -big_r, -big_r - 1])
            for _ in range(6):
                alt = np.abs(delta + shift).max(axis=-1)
                dist = np.minimum(dist, alt)
                shift = np.array([-shift[2], -shift[0], -shift[1]])  # 60-degree rotation
        return dist.astype(np.float32)

    def distances(self) -> torch.Tensor:
        """Grid distance matrix ``(N, N)`` float32 between all neurons."""
        return torch.from_numpy(self._distance_np.copy())

    def neighbours(self, index: int, radius: float = 1.0) -> torch.Tensor:
        """Indices of the neurons within grid distance ``radius`` of ``index`` (itself excluded)."""
        d = self._distance_np[index]
        return torch.from_numpy(np.nonzero((d <= radius + 1e-6) & (d > 0))[0])

    def grid_shape_2d(self) -> tuple[int, int]:
        """PYINK's 2-D view ``(X, Y*Z)`` of a cartesian lattice (hexagonal: ``(1, N)``)."""
        if self.layout == "hexagonal":
            return (1, self.num_neurons)
        s = self.shape + (1,) * (3 - len(self.shape))
        return (s[0], s[1] * s[2])

    def describe(self) -> str:
        p = ", periodic" if self.periodic else ""
        return f"{self.layout} {'x'.join(map(str, self.shape))} ({self.num_neurons} neurons{p})"

    def max_distance(self) -> float:
        return float(self._distance_np.max()) if self.num_neurons > 1 else 0.0

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"Lattice(layout={self.layout!r}, shape={self.shape}, periodic={self.periodic})"

