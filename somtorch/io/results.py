"""PYINK-style wrappers of PINK mapping results: Mapping, Transform and SOMSet.

Part of :mod:`somtorch.io.binwrap` (split out for size); conventions and the PYINK bugs fixed
are listed in that module's docstring.
"""

from __future__ import annotations

import operator
import os
from functools import cached_property

import numpy as np
import torch

from somtorch.errors import (
    ConfigError,
    MissingFileError,
    ShapeError,
)
from somtorch.io._lattice import CHUNK_ELEMENTS, MAX_CHUNK_ROWS, _Lattice
from somtorch.io.pink import (
    _field,
    _mapping_array,
    _transform_array,
    check_transform_records,
)

__all__ = ["Mapping", "Transform"]


class Mapping(_Lattice):
    """A PINK mapping file with best-matching-unit queries (PYINK ``Mapping``).

    Attributes
    ----------
    flat : numpy ``(N_images, N_neurons)`` float32 copy-on-write memmap (PINK neuron order).
    data : ``flat`` viewed as ``(N_images, X, Y*Z)`` (cartesian) or ``flat`` (hexagonal).
    tensor : torch view of ``flat``.
    bmu_mask : boolean array of shape ``data.shape[1:]`` (or a ``.npy`` path, or ``None``);
        True = the neuron may be chosen. Excluded neurons get distance +inf in every query.

    Convention
    ----------
    ``idx`` selects images: ``None`` (all), an int, a slice, a boolean mask or an index array.
    BMU coordinates are ``(row, col)`` over ``(X, Y*Z)``, i.e. flat index ``row*(Y*Z)+col``
    (hexagonal: the flat index ``(k,)``). ``N=0`` is the best match, ``N=1`` the second best;
    ties go to the lower neuron index. Queries run in chunks of rows, so they work on
    memory-mapped files with millions of images.
    """

    def __init__(self, path, bmu_mask=None):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise MissingFileError(self.path, field="mapping")
        a, self.header = _mapping_array(self.path, mmap=True)
        self.flat = a if a.dtype == np.float32 else a.astype(np.float32)
        self.data = self.flat.reshape((len(self.flat),) + self._grid)
        self.bmu_mask = bmu_mask

    @property
    def tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.flat)

    @property
    def bmu_mask(self):
        return None if self._mask is None else self._mask.reshape(self._grid)

    @bmu_mask.setter
    def bmu_mask(self, mask):
        if mask is None:
            self._mask = None
            return
        if isinstance(mask, (str, os.PathLike)):
            mask = np.load(mask, allow_pickle=False)
        m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if m.shape not in (self._grid, (self.num_neurons,)):
            raise ShapeError(f"bmu_mask shape {m.shape}, expected {self._grid} (data.shape[1:])")
        if m.dtype != bool:
            if m.dtype.kind not in "iu" or not np.isin(m, (0, 1)).all():
                raise ShapeError(f"bmu_mask must be boolean (True = include), got dtype {m.dtype}")
            m = m.astype(bool)
        if not m.any():
            raise ConfigError("bmu_mask excludes every neuron")
        self._mask = m.reshape(-1).copy()

    def __len__(self) -> int:
        return self.flat.shape[0]

    def __iter__(self):
        return iter(range(len(self)))

    @property
    def srcrange(self) -> np.ndarray:
        return np.arange(len(self))

    def _indices(self, idx) -> np.ndarray:
        n = len(self)
        if idx is None:
            return np.arange(n)
        if isinstance(idx, slice):
            return np.arange(n)[idx]
        if isinstance(idx, (int, np.integer)) and not isinstance(idx, (bool, np.bool_)):
            idx = [idx]
        a = idx.detach().cpu().numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx)
        if a.dtype == bool:
            if a.shape != (n,):
                raise ShapeError(f"boolean idx has shape {a.shape}, expected ({n},)")
            return np.flatnonzero(a)
        if a.size == 0:
            return np.zeros(0, np.int64)
        if a.dtype.kind not in "iu":
            raise ShapeError(f"idx must be integers or booleans, got dtype {a.dtype}")
        a = a.reshape(-1).astype(np.int64)
        a = np.where(a < 0, a + n, a)
        if a.min() < 0 or a.max() >= n:
            raise IndexError(f"image index out of range 0..{n - 1}")
        return a

    def _best(self, ind: np.ndarray, N: int = 0):
        """Flat neuron index and distance of the N-th best neuron of images ``ind``."""
        allowed = self.num_neurons if self._mask is None else int(self._mask.sum())
        N = operator.index(N)
        if not 0 <= N < allowed:
            raise ConfigError(f"N={N} outside 0..{allowed - 1} (number of eligible neurons)")
        k = np.empty(len(ind), np.int64)
        d = np.empty(len(ind), np.float32)
        contiguous = len(ind) > 0 and ind[-1] - ind[0] == len(ind) - 1 and bool(np.all(np.diff(ind) == 1))
        step = max(1, min(MAX_CHUNK_ROWS, CHUNK_ELEMENTS // max(1, self.num_neurons)))
        for s in range(0, len(ind), step):
            rows = ind[s:s + step]
            block = self.flat[rows[0]:rows[-1] + 1] if contiguous else self.flat[rows]
            block = np.array(block, dtype=np.float32)
            if self._mask is not None:
                block[:, ~self._mask] = np.inf
            kk = block.argmin(axis=1) if N == 0 else np.argsort(block, axis=1, kind="stable")[:, N]
            k[s:s + step] = kk
            d[s:s + step] = np.take_along_axis(block, kk[:, None], 1)[:, 0]
        return k, d

    def _coords(self, k: np.ndarray) -> np.ndarray:
        if len(self._grid) == 1:
            return k[:, None]
        return np.stack(np.divmod(k, self._grid[1]), axis=1)

    def bmu(self, idx=None, N: int = 0, squeeze: bool = True, return_idx: bool = False,
            return_tuples: bool = False):
        """Lattice coordinates of the N-th best neuron per image: ``(n, 2)`` (hex ``(n, 1)``).

        ``return_idx`` prepends the image index column; ``squeeze`` drops length-1 axes (one
        image gives shape ``(2,)``); ``return_tuples`` gives a list of tuples (always a list).
        """
        ind = self._indices(idx)
        out = self._coords(self._best(ind, N)[0])
        if return_idx:
            out = np.column_stack([ind, out])
        if return_tuples:
            return [tuple(int(v) for v in row) for row in out]
        return np.squeeze(out) if squeeze else out

    def bmu_counts(self, idx=None, N: int = 0) -> np.ndarray:
        """How often each neuron is the N-th best match: float array of shape ``data.shape[1:]``."""
        k = self._best(self._indices(idx), N)[0]
        return np.bincount(k, minlength=self.num_neurons).astype(np.float64).reshape(self._grid)

    def bmu_ed(self, idx=None, N: int = 0) -> np.ndarray:
        """Distance of each selected image to its N-th best neuron (1-D float32)."""
        return self._best(self._indices(idx), N)[1]

    def images_with_bmu(self, key, idx=None, N: int = 0) -> np.ndarray:
        """Image indices (true file indices, also with ``idx``) whose N-th best neuron is ``key``."""
        target = self.key_to_index(key)
        ind = self._indices(idx)
        return ind[self._best(ind, N)[0] == target]

    def map_labels(self, labels, idx=None) -> dict:
        """Dict ``label -> bmu_counts`` of the images with that label (labels sorted).

        ``labels`` has one entry per selected image (all images when ``idx`` is None).
        """
        ind = self._indices(idx)
        labels = np.asarray(labels)
        if labels.shape[:1] != ind.shape:
            raise ShapeError(f"{len(labels)} labels for {len(ind)} images")
        k = self._best(ind, 0)[0]
        out = {}
        for lab in np.unique(labels):
            counts = np.bincount(k[labels == lab], minlength=self.num_neurons)
            key = lab.item() if isinstance(lab, np.generic) else lab
            out[key] = counts.astype(np.float64).reshape(self._grid)
        return out

    def coherence(self, idx=None, cyclic: bool = False, fraction: bool = False):
        """Number (or ``fraction``) of images whose second-best neuron neighbours the best one.

        Neighbour (PYINK semantics): Chebyshev lattice distance <= 1 (cartesian, diagonals count,
        all PINK lattice axes), hex distance 1 (hexagonal); ``cyclic`` wraps the lattice around
        (:class:`~somtorch.geometry.Lattice` ``periodic``). ``bmu_mask`` applies to both picks.
        """
        from somtorch.geometry.lattice import Lattice

        ind = self._indices(idx)
        k0, k1 = self._best(ind, 0)[0], self._best(ind, 1)[0]
        lat = Lattice.from_header(self.header.som_dims, self.num_neurons, periodic=cyclic)
        c = lat.coords.numpy()
        delta = np.abs(c[k0] - c[k1])
        if cyclic and lat.layout == "cartesian":
            delta = np.minimum(delta, np.asarray(lat.shape) - delta)
        near = (lat.distances().numpy()[k0, k1] <= 1.0 + 1e-6 if lat.layout == "hexagonal"
                else delta.max(axis=1, initial=0) <= 1)
        n = int(near.sum())
        return n / max(len(ind), 1) if fraction else n

    def worst_matches(self, N=None, frac=None, neuron=None, return_ed: bool = False):
        """Image indices ordered by BMU distance, worst first.

        ``N`` keeps the N worst, ``frac`` keeps ``max(1, int(frac * n))`` where ``n`` is the
        number of candidates (all images, or those whose BMU is ``neuron`` -- so ``frac`` is a
        fraction of that subset); with neither, all candidates are returned. Indices are image
        indices in the file (PYINK returned subset positions).
        """
        if N is not None and frac is not None:
            raise ConfigError("give N or frac, not both")
        k, d = self._best(np.arange(len(self)), 0)
        cand = np.arange(len(self)) if neuron is None else np.flatnonzero(k == self.key_to_index(neuron))
        ed = d[cand]
        order = np.argsort(-ed, kind="stable")
        if N is not None:
            if N < 0:
                raise ConfigError(f"N must be >= 0, got {N}")
            order = order[:int(N)]
        elif frac is not None:
            if not 0 < frac <= 1:
                raise ConfigError(f"frac must be in (0, 1], got {frac}")
            order = order[:max(1, int(frac * len(cand)))] if len(cand) else order
        return (cand[order], ed[order]) if return_ed else cand[order]

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"Mapping({self.path!r}: {len(self)} images, {self.describe_lattice()})"


class Transform(_Lattice):
    """A PINK best rotation/flip file (PYINK ``Transform``).

    Attributes
    ----------
    data : structured numpy ``(N_images, X, Y*Z)`` (hexagonal ``(N_images, N_neurons)``) with
        fields ``flip`` (int8) and ``angle`` (float32, radians); packed 5-byte records.
    flip, angle : torch ``(N_images, N_neurons)`` int8 / float32 (copies: the packed records
        cannot be viewed as tensors).

    Convention
    ----------
    Neuron ``(r, c)`` best matches ``flipud**flip(rotate_cw(image, angle))``: rotate clockwise
    by ``angle`` (row 0 at the top), then reverse the rows if ``flip == 1``.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise MissingFileError(self.path, field="transform")
        self.flat, self.header = _transform_array(self.path, mmap=True)
        check_transform_records(self.path, self.flat)
        self.data = self.flat.reshape((len(self.flat),) + self._grid)

    @cached_property
    def flip(self) -> torch.Tensor:
        return torch.from_numpy(_field(self.flat, "flip"))

    @cached_property
    def angle(self) -> torch.Tensor:
        return torch.from_numpy(_field(self.flat, "angle"))

    def __len__(self) -> int:
        return self.flat.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self.data[i]

    def __getitem__(self, idx):
        return self.data[idx]

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"Transform({self.path!r}: {len(self)} images, {self.describe_lattice()})"
