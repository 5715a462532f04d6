"""Lattice bookkeeping shared by the PYINK-style wrappers (:mod:`somtorch.io.binwrap`,
:mod:`somtorch.io.results`): PYINK keys <-> flat PINK neuron indices (see binwrap's Convention)."""

from __future__ import annotations

import operator

import numpy as np

CHUNK_ELEMENTS = 1 << 24   # distances handled per chunk in Mapping queries
MAX_CHUNK_ROWS = 65536


def _pad3(dims) -> tuple:
    return tuple(dims) + (1,) * (3 - len(dims))


def _pad3_front(shape) -> tuple:
    return (1,) * (3 - len(shape)) + tuple(shape)


class _Lattice:
    """Shared lattice properties of SOM, Mapping and Transform (needs ``self.header``)."""

    header = None

    @property
    def som_rank(self) -> int:
        return len(self.header.som_dims)

    @property
    def som_shape(self) -> tuple:
        """Lattice dims padded to 3: ``(X, Y, Z)``."""
        return _pad3(self.header.som_dims)

    @property
    def layout(self) -> str:
        return self.header.layout

    @property
    def num_neurons(self) -> int:
        return self.header.num_neurons

    @property
    def _grid(self) -> tuple:
        x, y, z = self.som_shape
        return (x, y * z) if self.layout == "cartesian" else (self.num_neurons,)

    def describe_lattice(self) -> str:
        """``"cartesian 10x10 (100 neurons)"`` or ``"hexagonal (37 neurons)"``."""
        if self.layout != "cartesian":
            return f"{self.layout} ({self.num_neurons} neurons)"
        return f"cartesian {'x'.join(str(int(d)) for d in self.header.som_dims)} ({self.num_neurons} neurons)"

    def key_to_index(self, key) -> int:
        """Flat PINK neuron index of a key ``(i, j)`` (cartesian), ``(k,)`` or an int ``k``."""
        grid = self._grid
        if isinstance(key, (int, np.integer)):
            key = (int(key),) if len(grid) == 1 else divmod(int(key), grid[1])
        key = tuple(operator.index(v) for v in key)
        if len(key) != len(grid) or not all(0 <= k < g for k, g in zip(key, grid)):
            raise IndexError(f"neuron key {key} outside lattice {grid}")
        return key[0] if len(grid) == 1 else key[0] * grid[1] + key[1]

    def index_to_key(self, index: int) -> tuple:
        """Key ``(i, j)`` (cartesian) or ``(k,)`` (hexagonal) of flat neuron index ``index``."""
        grid = self._grid
        return (int(index),) if len(grid) == 1 else tuple(int(v) for v in divmod(int(index), grid[1]))


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------
