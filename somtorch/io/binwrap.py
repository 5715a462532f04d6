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
from somtorch.io._lattice import CHUNK_ELEMENTS, MAX_CHUNK_ROWS, _Lattice, _pad3, _pad3_front  # noqa: F401
from somtorch.io.atomic import AtomicFile, check_output_path
from somtorch.io.pink import (
    _as_f32,
    _ihdr,
    _images_array,
    _norm_som_dims,
    _som_array,
    _som_header_bytes,
    comment_bytes,
    hex_num_neurons,
)
from somtorch.io.records import read_records, records_path, to_jsonable, write_records
from somtorch.io.results import Mapping, Transform

__all__ = ["ImageWriter", "ImageReader", "SOM", "SOMWriter", "Mapping", "Transform", "SOMSet"]


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

    def transform(self, idx, transform, numrot: int = 360, neuron_dim: int | None = None, *,
                  interpolation: str = "bilinear") -> np.ndarray:
        """Image ``idx`` in its neuron's frame, ``flipud**flip(rotate_cw(image, angle))``.

        ``transform`` is a ``(flip, angle)`` record (e.g. ``Transform.data[i, r, c]``); the output
        is ``(C, nd, nd)`` with ``nd = neuron_dim`` (default: the image side). PINK's exact
        transformation for angles of a ``numrot`` run (see :mod:`somtorch.analysis.frames`);
        ``interpolation="cubic"`` is PYINK's scipy cubic-spline rotation instead (see
        :func:`somtorch.analysis.pink_spatial_transform` for the size of the difference).
        """
        if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
            raise TypeError(f"idx must be an integer, got {type(idx).__name__}")
        return self.transform_images([idx], [tuple(transform)], numrot, neuron_dim, interpolation=interpolation)[0]

    def transform_images(self, idxs, transforms, numrot: int = 360, neuron_dim: int | None = None, *,
                         interpolation: str = "bilinear") -> np.ndarray:
        """Images ``idxs`` each in its own neuron frame: ``(K, C, nd, nd)`` float32."""
        from somtorch.geometry.transforms import PinkTransformer, flip_angle_to_index

        idxs = np.asarray(idxs, dtype=np.int64).reshape(-1)
        tf = transforms if getattr(getattr(transforms, "dtype", None), "names", None) else \
            np.array([tuple(t) for t in transforms], dtype=[("flip", "i1"), ("angle", "<f4")])
        if len(tf) != len(idxs):
            raise ShapeError(f"{len(idxs)} image indices but {len(tf)} transforms")
        if interpolation != "bilinear":
            from somtorch.analysis.frames import transform_images as _transform_images

            imgs = np.stack([np.asarray(self.data[i], np.float32) for i in idxs]) if len(idxs) else \
                np.zeros((0,) + self.data.shape[1:], np.float32)
            return _transform_images(imgs, (np.asarray(tf["flip"]), np.asarray(tf["angle"], np.float64)),
                                     neuron_dim=neuron_dim, interpolation=interpolation)
        tr = PinkTransformer(self.data.shape[-1], neuron_dim or self.data.shape[-1], numrot, flip=True, exact=True)
        t = flip_angle_to_index(np.asarray(tf["flip"]) == 1, np.asarray(tf["angle"], np.float64), numrot)
        out = np.zeros((len(idxs), self.data.shape[1], tr.neuron_dim, tr.neuron_dim), np.float32)
        for k, i in enumerate(idxs):
            out[k] = tr.select(torch.from_numpy(np.array(self.data[i], np.float32)), t[k:k + 1])[0].numpy()
        return out

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        c, h, w = self.data.shape[1:]
        rec = "no records" if self.records is None else f"{len(self.records)} records"
        return f"ImageReader({self.path!r}: {len(self)} images of {c}x{h}x{w} {self.data.dtype}, {rec})"


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

    Indexing: ``som[i, j]`` is the neuron as an image, ``(H, W)`` for a single-channel SOM (what
    ``plt.imshow`` takes) and ``(C, H, W)`` for several channels (a view of ``data``); ints,
    slices and ``None`` work per lattice axis and give sub-mosaics, likewise ``(rows, cols)`` or
    ``(C, rows, cols)`` (a slice step counts neurons). For hexagonal SOMs ``som[k]`` /
    ``som[(k,)]`` index ``weights`` as numpy (the channel axis dropped for one channel).
    PYINK's ``som[i, j]`` kept the channel axis, ``(1, H, W)``.
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
        out = self._select(key)
        return out[..., 0, :, :] if (self.neuron_shape[0] == 1 and self.layout != "cartesian") else \
            (out[0] if self.neuron_shape[0] == 1 else out)

    def _select(self, key):
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

    def __repr__(self) -> str:
        c, h, w = self.neuron_shape
        return f"SOM({self.path!r}: {self.describe_lattice()}, neurons {c}x{h}x{w})"


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


class SOMSet:
    """A SOM with its mapping and transform file (objects or paths); checks they agree.

    Raises :class:`GeometryMismatchError` if the lattice dims or neuron counts differ, and
    :class:`ShapeError` if mapping and transform hold different numbers of images.
    ``mapping`` and ``transform`` may be ``None``.
    """

    def __repr__(self) -> str:
        return f"SOMSet(som={self.som!r}, mapping={self.mapping!r}, transform={self.transform!r})"

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
