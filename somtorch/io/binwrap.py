"""PYINK-style wrappers of PINK binaries: ImageWriter, ImageReader, SOM, SOMWriter, Mapping,
Transform and SOMSet (names and semantics of ``pyink.binwrap``, with its bugs fixed).

Convention
----------
* ``ImageReader.data`` is ``(N, C, H, W)`` (``C = 1`` for rank-2 files), channels slowest.
* Lattice keys: PYINK memory-maps the SOM payload as ``(X, Y, Z, C, H, W)`` with ``X`` the
  first header dim and folds depth into columns, so key ``(i, j)`` (lattice row ``i``, column
  ``j``, ``j = y*Z + z``) is flat PINK neuron index ``i * (Y*Z) + j``. For 2-D PINK SOMs (dims
  ``(W, H)``) this is exactly PINK's grid position ``(i // H, i % H)`` (spec §1.6). For 3-D SOMs
  the key is PYINK's folding of the file order, not PINK's ``[D][W][H]`` geometry.
* Hexagonal SOMs (detected as in :mod:`somtorch.io.pink`) have keys ``(k,)`` = flat index.
* ``Mapping.data`` is ``(N_images, X, Y*Z)`` (hexagonal: ``(N_images, N_neurons)``); smaller
  distances are better. ``Transform.data[i, r, c]`` is the ``(flip, angle)`` record: neuron
  ``(r, c)`` best matches ``flipud**flip(rotate_cw(image_i, angle))``, angle in radians.

PYINK bugs fixed here
---------------------
* comment headers are written correctly (with newline) and read back;
* ``ImageWriter``: non-cartesian layout gives :class:`ConfigError` (not ``TypeError``); the
  shape check raises :class:`ShapeError` (no ``assert``, lists accepted as ``data_header``,
  ``(1, H, W)`` accepted for a ``(H, W)`` header); output is atomic; records are JSON and are
  written whenever any image had attributes (``null`` for images without);
* ``ImageReader.records`` is ``None`` without a sidecar (PYINK: attribute missing); pickles
  need ``allow_pickle=True``;
* ``SOM.__getitem__``: a slice step counts neurons, not pixels;
* ``SOMWriter``: writes the real lattice rank (1-3, or hexagonal), honours ``comment``, checks
  neuron shapes and count, is a context manager;
* ``Mapping``: ``bmu_mask`` has the shape of ``data.shape[1:]`` (PYINK: transposed) and works on
  current numpy (+inf on excluded neurons); ``images_with_bmu(idx=...)`` and
  ``worst_matches(neuron=...)`` return image indices; ``worst_matches()`` with neither ``N`` nor
  ``frac`` returns all images, worst first; ``bmu(return_tuples=True)`` works for one image;
  queries are vectorised and chunked (no ``np.int``);
* ``Transform.__iter__`` iterates over images (PYINK: over the layout field);
* ``SOMSet`` checks that lattice dims agree.
"""

from __future__ import annotations

import operator
import os
from functools import cached_property

import numpy as np
import torch

from somtorch.errors import (
    ConfigError,
    GeometryMismatchError,
    NonFiniteError,
    OutputExistsError,
    ShapeError,
    SomtorchError,
)
from somtorch.io.atomic import AtomicFile, check_output_path
from somtorch.io.pink import (
    _as_f32,
    _field,
    _ihdr,
    _images_array,
    _mapping_array,
    _norm_som_dims,
    _som_array,
    _som_header_bytes,
    _transform_array,
    comment_bytes,
    hex_num_neurons,
)
from somtorch.io.records import read_records, records_path, to_jsonable, write_records

__all__ = ["ImageWriter", "ImageReader", "SOM", "SOMWriter", "Mapping", "Transform", "SOMSet"]

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

class ImageWriter:
    """Stream images into a PINK image file (PYINK ``ImageWriter``), atomically.

    Parameters
    ----------
    binary_path : output file; refused if it (or its ``.records.json``) exists unless
        ``overwrite`` (``clobber`` is PYINK's name for it).
    data_layout : must be 0 (cartesian).
    data_header : per-image shape ``(H, W)`` or ``(C, H, W)`` (channels slowest); ``None`` takes
        the shape of the first image.
    comment : comment line(s) written as a ``#`` header (PYINK cannot read those back).

    Convention
    ----------
    The image count in the header is kept correct after every :meth:`add`. The file is written
    at a temporary name and renamed into place by :meth:`close` (or a clean ``with`` exit); an
    exception inside ``with`` leaves no file. If any image had ``attributes``, ``close`` writes
    ``<binary>.records.json``, a JSON list with one entry per image (``null`` for images
    added without attributes; numpy scalars converted). With ``overwrite``, stale sidecars
    of the replaced file are removed.
    """

    def __init__(self, binary_path, data_layout: int = 0, data_header=None, comment=None,
                 overwrite: bool = False, clobber=None):
        if clobber is not None:
            overwrite = overwrite or bool(clobber)
        if data_layout != 0:
            raise ConfigError(f"data_layout {data_layout!r}: only cartesian layout 0 is supported")
        self.binary_path = check_output_path(binary_path, overwrite)
        self.records_path = records_path(self.binary_path)
        if os.path.exists(self.records_path) and not overwrite:
            raise OutputExistsError(f"{self.records_path}: records sidecar exists; pass overwrite=True")
        self.overwrite, self.data_layout = overwrite, 0
        self.data_header = None if data_header is None else self._check_header(data_header)
        self._comment = comment_bytes(comment)
        self.count, self.records, self._any_attr = 0, [], False
        self._af = AtomicFile(self.binary_path, overwrite, "w+b")
        if self.data_header is not None:
            self._write_header()

    @staticmethod
    def _check_header(h) -> tuple:
        try:
            h = tuple(operator.index(v) for v in h)
        except TypeError as exc:
            raise ShapeError(f"data_header must be a tuple of ints, got {h!r}") from exc
        if len(h) not in (2, 3) or any(v <= 0 for v in h):
            raise ShapeError(f"data_header must be (H, W) or (C, H, W) of positive ints, got {h}")
        return h

    @property
    def no_dimensions(self) -> int:
        return len(self.data_header) if self.data_header else 0

    def _write_header(self):
        f = self._af.file
        f.seek(0)
        f.write(self._comment + _ihdr(2, 0, 0, self.count, 0, len(self.data_header), *self.data_header))
        f.seek(0, os.SEEK_END)

    def add(self, img, nonfinite_check: bool = True, attributes=None) -> None:
        """Append one image of shape ``data_header`` as float32 (C order)."""
        if self._af.done:
            raise SomtorchError(f"{self.binary_path}: writer is closed")
        a = _as_f32(img, "image")
        if self.data_header is None:
            self.data_header = self._check_header(a.shape)
            self._write_header()
        h = self.data_header
        if a.shape != h and not (len(h) == 2 and a.shape == (1,) + h):
            raise ShapeError(f"{self.binary_path}: image {self.count} has shape {a.shape}, expected {h}")
        if nonfinite_check and not np.isfinite(a).all():
            raise NonFiniteError(f"{self.binary_path}: image {self.count} holds NaN or infinite "
                                 "values, which will cause PINK to fail")
        rec = to_jsonable(attributes)
        self._af.file.write(a.tobytes())
        self.records.append(rec)
        self._any_attr = self._any_attr or attributes is not None
        self.count += 1
        f = self._af.file
        f.seek(len(self._comment) + 12)
        f.write(_ihdr(self.count))
        f.seek(0, os.SEEK_END)

    def close(self) -> None:
        """Finish: rename the file into place and write the records sidecar."""
        if self._af.done:
            return
        if self.data_header is None:
            self._af.abort()
            raise ShapeError(f"{self.binary_path}: no image added and no data_header given; nothing written")
        self._write_header()
        self._af.commit()
        if self._any_attr:
            write_records(self.records_path, self.records, overwrite=True)
        elif self.overwrite:
            for p in (self.records_path, records_path(self.binary_path, "pkl")):
                if os.path.exists(p):
                    os.remove(p)

    def abort(self) -> None:
        """Discard everything written (no output file is left)."""
        self._af.abort()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


class ImageReader:
    """Memory-mapped PINK image file (PYINK ``ImageReader``).

    Attributes
    ----------
    data : numpy ``(N, C, H, W)`` copy-on-write memmap in the stored dtype (file never changed).
    tensor : torch view of ``data`` (float32; converted copy for other stored types).
    header : :class:`~somtorch.io.pink.ImageHeader`.
    img_rank, img_shape : stored rank; ``(1, H, W)`` for rank 2 else ``(C, H, W)``.
    records : list from the records sidecar (JSON preferred; PYINK pickle only with
        ``allow_pickle=True``), or ``None`` if there is none.
    """

    def __init__(self, path, record_path=None, allow_pickle: bool = False):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"{self.path}: no such image file")
        self.data, self.header = _images_array(self.path, mmap=True)
        self.records = read_records(self.path, record_path, allow_pickle, expected_len=len(self.data))

    @property
    def img_rank(self) -> int:
        return len(self.header.img_shape)

    @property
    def img_shape(self) -> tuple:
        return tuple(self.data.shape[1:])

    @cached_property
    def tensor(self) -> torch.Tensor:
        a = self.data if self.data.dtype == np.float32 else self.data.astype(np.float32)
        return torch.from_numpy(a)

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, idx):
        return self.data[idx]

    def transform(self, idx, transform, numrot: int = 360, neuron_dim: int | None = None) -> np.ndarray:
        """Image ``idx`` in its neuron's frame, ``flipud**flip(rotate_cw(image, angle))``.

        ``transform`` is a ``(flip, angle)`` record (e.g. ``Transform.data[i, r, c]``); the output
        is ``(C, nd, nd)`` with ``nd = neuron_dim`` (default: the image side). PINK's exact
        transformation for angles of a ``numrot`` run (see :mod:`somtorch.analysis.frames`).
        """
        if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
            raise TypeError(f"idx must be an integer, got {type(idx).__name__}")
        return self.transform_images([idx], [tuple(transform)], numrot, neuron_dim)[0]

    def transform_images(self, idxs, transforms, numrot: int = 360, neuron_dim: int | None = None) -> np.ndarray:
        """Images ``idxs`` each in its own neuron frame: ``(K, C, nd, nd)`` float32."""
        from somtorch.geometry.transforms import PinkTransformer, flip_angle_to_index

        idxs = np.asarray(idxs, dtype=np.int64).reshape(-1)
        tf = transforms if getattr(getattr(transforms, "dtype", None), "names", None) else \
            np.array([tuple(t) for t in transforms], dtype=[("flip", "i1"), ("angle", "<f4")])
        if len(tf) != len(idxs):
            raise ShapeError(f"{len(idxs)} image indices but {len(tf)} transforms")
        tr = PinkTransformer(self.data.shape[-1], neuron_dim or self.data.shape[-1], numrot, flip=True, exact=True)
        t = flip_angle_to_index(np.asarray(tf["flip"]) == 1, np.asarray(tf["angle"], np.float64), numrot)
        out = np.zeros((len(idxs), self.data.shape[1], tr.neuron_dim, tr.neuron_dim), np.float32)
        for k, i in enumerate(idxs):
            out[k] = tr.select(torch.from_numpy(np.array(self.data[i], np.float32)), t[k:k + 1])[0].numpy()
        return out

    def __str__(self) -> str:
        return self.path


# --------------------------------------------------------------------------------------------
# SOMs
# --------------------------------------------------------------------------------------------

class SOM(_Lattice):
    """A PINK SOM file (PYINK ``SOM``).

    Attributes
    ----------
    weights : torch float32 ``(N, C, nd, nd)`` in PINK neuron order.
    data : numpy mosaic ``(C, X*H, (Y*Z)*W)`` (cartesian only): neuron ``(i, j)`` occupies rows
        ``[i*H, (i+1)*H)`` and columns ``[j*W, (j+1)*W)``.
    som_shape, neuron_shape : padded to 3, ``(X, Y, Z)`` and ``(C, H, W)``.

    Indexing: ``som[i, j]`` is the ``(C, H, W)`` neuron (a view of ``data``); ints, slices and
    ``None`` work per lattice axis and give sub-mosaics (a slice step counts neurons). For
    hexagonal SOMs ``som[k]`` / ``som[(k,)]`` index ``weights`` as numpy.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"{self.path}: no such SOM file")
        arr, self.header = _som_array(self.path, mmap=False)
        self._w = arr if arr.dtype == np.float32 else arr.astype(np.float32)

    @property
    def weights(self) -> torch.Tensor:
        return torch.from_numpy(self._w)

    @property
    def neuron_rank(self) -> int:
        return len(self.header.neuron_shape)

    @property
    def neuron_shape(self) -> tuple:
        return _pad3_front(self.header.neuron_shape)

    @property
    def neuron_size(self) -> int:
        return int(np.prod(self.neuron_shape))

    @cached_property
    def data(self) -> np.ndarray:
        if self.layout != "cartesian":
            raise SomtorchError(f"{self.path}: hexagonal SOM has no rectangular mosaic; use .weights "
                                "(hexagonal mosaics are drawn by the plotting functions)")
        x, yz = self._grid
        c, h, w = self.neuron_shape
        return np.ascontiguousarray(
            self._w.reshape(x, yz, c, h, w).transpose(2, 0, 3, 1, 4).reshape(c, x * h, yz * w))

    @staticmethod
    def _axis(k, n: int, s: int):
        if k is None:
            return slice(None)
        if isinstance(k, slice):
            start, stop, step = k.indices(n)
            if step == 1:
                return slice(start * s, max(start, stop) * s)
            idx = np.arange(start, stop, step)
            return (idx[:, None] * s + np.arange(s)).reshape(-1)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"SOM index must be int, slice or None, got {type(k).__name__}")
        k = int(k) + (n if k < 0 else 0)
        if not 0 <= k < n:
            raise IndexError(f"neuron index {k} out of range 0..{n - 1}")
        return slice(k * s, (k + 1) * s)

    def __getitem__(self, key):
        if self.layout != "cartesian":
            if isinstance(key, tuple):
                if len(key) != 1:
                    raise IndexError("hexagonal SOM keys are (k,)")
                key = key[0]
            return self._w[key]
        key = key if isinstance(key, tuple) else (key,)
        if len(key) > 2:
            raise IndexError(f"too many indices for a SOM lattice: {key}")
        key = key + (None,) * (2 - len(key))
        _, h, w = self.neuron_shape
        rows, cols = (self._axis(k, n, s) for k, n, s in zip(key, self._grid, (h, w)))
        if isinstance(rows, slice) and isinstance(cols, slice):
            return self.data[:, rows, cols]
        return self.data[:, rows][:, :, cols]

    def __iter__(self):
        if self.layout != "cartesian":
            yield from ((k,) for k in range(self.num_neurons))
            return
        x, yz = self._grid
        for i in range(x):
            for j in range(yz):
                yield (i, j)

    def __len__(self) -> int:
        return self.num_neurons

    def __str__(self) -> str:
        return self.path


class SOMWriter:
    """Write a SOM neuron by neuron (PYINK ``SOMWriter``), atomically.

    Parameters
    ----------
    som_shape : lattice dims written as given (PINK: ``(W,)``, ``(W, H)``, ``(W, H, D)``;
        hexagonal ``(d, d)``).
    neuron_shape : ``(H, W)`` or ``(C, H, W)``.
    comment : comment line(s) for the ``#`` header.
    layout : ``"cartesian"`` or ``"hexagonal"`` (the layout field is written 0, as PINK does).

    Convention
    ----------
    Neurons must be added in PINK neuron order (first lattice axis slowest). :meth:`close`
    raises :class:`ShapeError` (and leaves no file) if the count is not the lattice size.
    """

    def __init__(self, binary_path, som_shape, neuron_shape, comment=None, overwrite: bool = False,
                 layout: str = "cartesian", clobber=None):
        if clobber is not None:
            overwrite = overwrite or bool(clobber)
        self.binary_path = check_output_path(binary_path, overwrite)
        self.som_shape = _norm_som_dims(som_shape, layout)
        self.neuron_shape = ImageWriter._check_header(neuron_shape)
        self.layout = layout
        self.expected = (hex_num_neurons(self.som_shape[0]) if layout == "hexagonal"
                         else int(np.prod(self.som_shape)))
        self.count = 0
        self._af = AtomicFile(self.binary_path, overwrite, "wb")
        self._af.file.write(comment_bytes(comment) + _som_header_bytes(self.som_shape, self.neuron_shape))

    def add(self, neuron) -> None:
        """Append one neuron of shape ``neuron_shape`` (finite values only)."""
        a = _as_f32(neuron, "neuron")
        h = self.neuron_shape
        if a.shape != h and not (len(h) == 2 and a.shape == (1,) + h):
            raise ShapeError(f"{self.binary_path}: neuron {self.count} has shape {a.shape}, expected {h}")
        if self.count >= self.expected:
            raise ShapeError(f"{self.binary_path}: lattice {self.som_shape} holds only {self.expected} neurons")
        if not np.isfinite(a).all():
            raise NonFiniteError(f"{self.binary_path}: neuron {self.count} holds NaN or infinite values")
        self._af.file.write(a.tobytes())
        self.count += 1

    def close(self) -> None:
        if self._af.done:
            return
        if self.count != self.expected:
            self._af.abort()
            raise ShapeError(f"{self.binary_path}: {self.count} neurons added, lattice "
                             f"{self.som_shape} ({self.layout}) needs {self.expected}; nothing written")
        self._af.commit()

    def abort(self) -> None:
        self._af.abort()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


# --------------------------------------------------------------------------------------------
# mappings and transforms
# --------------------------------------------------------------------------------------------

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
            raise FileNotFoundError(f"{self.path}: no such mapping file")
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
            raise FileNotFoundError(f"{self.path}: no such transform file")
        self.flat, self.header = _transform_array(self.path, mmap=True)
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


class SOMSet:
    """A SOM with its mapping and transform file (objects or paths); checks they agree.

    Raises :class:`GeometryMismatchError` if the lattice dims or neuron counts differ, and
    :class:`ShapeError` if mapping and transform hold different numbers of images.
    ``mapping`` and ``transform`` may be ``None``.
    """

    def __init__(self, som, mapping=None, transform=None):
        self.som = som if isinstance(som, SOM) else SOM(som)
        self.mapping = mapping if mapping is None or isinstance(mapping, Mapping) else Mapping(mapping)
        self.transform = (transform if transform is None or isinstance(transform, Transform)
                          else Transform(transform))
        for other in (self.mapping, self.transform):
            if other is None:
                continue
            if other.som_shape != self.som.som_shape:
                raise GeometryMismatchError(other.path, "som_dims", other.header.som_dims,
                                            self.som.header.som_dims, f"SOM is {self.som.path}")
            if other.num_neurons != self.som.num_neurons:
                raise GeometryMismatchError(other.path, "num_neurons", other.num_neurons,
                                            self.som.num_neurons, f"SOM is {self.som.path}")
        if self.mapping is not None and self.transform is not None and len(self.mapping) != len(self.transform):
            raise ShapeError(f"mapping {self.mapping.path} has {len(self.mapping)} images, transform "
                             f"{self.transform.path} has {len(self.transform)}")
