"""PINK version-2 binary files: images, SOMs, mappings and best rotation/flip ("transform") files.

Byte layouts follow ``pink-semantics.md`` §1 exactly. Every header integer is a little-endian
int32; payloads are little-endian and row-major (C order).

=============  ===========================================================================
file type      header fields (after an optional ``#`` comment header)
=============  ===========================================================================
0 images       2, 0, dtype, n, layout=0, k, dims[k]                    + n x prod(dims)
1 SOM          2, 1, dtype, som_layout, k, dims[k], 0, nk, ndims[nk]    + N x prod(ndims)
2 mapping      2, 2, dtype, n, som_layout, k, dims[k]                   + n x N float32
3 transform    2, 3, n, som_layout, k, dims[k]   (no dtype field)       + n x N x 5 bytes
=============  ===========================================================================

Convention
----------
* Images are stored ``(H, W)`` (rank 2) or ``(C, H, W)`` (rank 3, **channels slowest**).
  Readers return tensors ``(N, C, H, W)`` with ``C = 1`` for rank-2 files.
* Neurons are stored in PINK's neuron-index order (spec §1.6), which is the flat order of the
  file; SOM readers return ``(N, C, nd, nd)`` in that order. Cartesian 2-D SOMs written by
  PINK have dims ``(W, H)`` and neuron ``i`` sits at grid position ``(i // H, i % H)``.
* PINK always writes ``som_layout = 0``, even for hexagonal SOMs. Readers detect a hexagonal
  lattice from the payload size: dims ``(d, d)`` with ``d`` odd and ``d**2 - R(R+1)`` neurons,
  ``R = (d-1)/2``. A layout code of 1 is honoured as well. Writers always write 0.
* Transform records are 5 packed bytes: ``flip`` (int8, 0/1) then ``angle`` (float32, radians).
  The neuron matches ``flipud**flip(rotate_cw(image, angle))``: rotate clockwise first (row 0
  at the top), then reverse the rows if ``flip == 1``.

Notes: all data-type codes 0..9 are read (converted to float32 by the tensor readers); writers
write float32 (code 0) only. ``n_images = 0`` is accepted on read and write (PINK refuses such
input). A mapping/transform file with 0 images cannot reveal a hexagonal lattice (empty payload)
and reads as cartesian unless its layout code is 1.

Every reader checks version, file type, data-type code, layout code, ranks, dims, counts and the
exact payload size before touching the payload; malformed files raise
:class:`~somtorch.errors.FileFormatError` or :class:`~somtorch.errors.TruncatedFileError`
(never ``struct.error``, ``IndexError`` or numpy errors); the header records and the parser live
in :mod:`somtorch.io._pink_header`.
"""

from __future__ import annotations

import math
import os
import struct

import numpy as np
import torch

from somtorch.errors import (
    ConfigError,
    FileFormatError,
    GeometryMismatchError,
    NonFiniteError,
    ShapeError,
)
from somtorch.io._pink_header import (
    DATA_TYPES,
    LAYOUTS,
    TRANSFORM_DTYPE,
    ImageHeader,
    MappingHeader,
    SOMHeader,
    TransformHeader,
    _parse,
    comment_bytes,
    hex_num_neurons,
    pink_som_dims,
    read_header,
    read_images_header,
)
from somtorch.io.atomic import PreallocatedOutput, atomic_output

__all__ = [
    "DATA_TYPES", "TRANSFORM_DTYPE", "ImageHeader", "SOMHeader", "MappingHeader", "TransformHeader",
    "hex_num_neurons", "pink_som_dims", "comment_bytes", "read_header", "read_images_header",
    "read_images", "write_images", "read_som", "write_som", "read_mapping", "write_mapping",
    "read_transforms", "write_transforms", "MappingWriter", "TransformWriter",
]


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _check_memory(path, nbytes: int, what: str = "payload") -> None:
    """Refuse to allocate more than the machine's physical memory for a file's contents."""
    mem = _physical_memory()
    if mem is not None and nbytes > mem:
        raise FileFormatError(path, what, f"{nbytes} bytes to hold in memory",
                              f"at most the machine's {mem} bytes", "the file is too large to load at once "
                              "(read it memory-mapped or in chunks)")


def _load(path, dtype, offset, shape, mmap):
    """Array of ``shape`` at ``offset``: copy-on-write memmap (writable, file unchanged) or read."""
    if math.prod(shape) == 0:
        return np.zeros(shape, dtype)
    if mmap:
        return np.memmap(os.fspath(path), dtype=dtype, mode="c", offset=offset, shape=shape)
    _check_memory(path, math.prod(shape) * np.dtype(dtype).itemsize)
    return np.fromfile(os.fspath(path), dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape)


def _to_numpy(x, name="array") -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ShapeError(f"{name}: cannot convert to an array ({exc})") from exc


def _as_f32(x, name="array") -> np.ndarray:
    a = _to_numpy(x, name)
    if a.dtype.kind not in "biuf":
        raise ShapeError(f"{name}: numeric data required, got dtype {a.dtype}")
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(a, dtype="<f4")


def _first_nonfinite(a: np.ndarray, chunk: int = 4096):
    """Index along axis 0 of the first item holding NaN/inf, or None."""
    for s in range(0, a.shape[0], chunk):
        ok = np.isfinite(a[s:s + chunk].reshape(min(chunk, a.shape[0] - s), -1)).all(axis=1)
        if not ok.all():
            return s + int(np.argmin(ok))
    return None


def _write_payload(f, a: np.ndarray, chunk_bytes: int = 1 << 26):
    flat = a.reshape(-1)
    step = max(1, chunk_bytes // max(1, a.itemsize))
    for s in range(0, flat.size, step):
        f.write(flat[s:s + step].tobytes())


def _ihdr(*vals) -> bytes:
    return struct.pack(f"<{len(vals)}i", *vals)


def _norm_som_dims(som_dims, layout) -> tuple:
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be 'cartesian' or 'hexagonal', got {layout!r}")
    dims = (som_dims,) if isinstance(som_dims, (int, np.integer)) else tuple(som_dims)
    try:
        dims = tuple(int(d) for d in dims)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"som_dims must be integers, got {som_dims!r}") from exc
    if layout == "hexagonal":
        if len(dims) == 1:
            dims = dims * 2
        if len(dims) != 2 or dims[0] != dims[1] or dims[0] % 2 != 1 or dims[0] < 1:
            raise ConfigError(f"hexagonal som_dims must be (d, d) with d odd, got {som_dims!r}")
    elif not 1 <= len(dims) <= 3 or any(d <= 0 for d in dims):
        raise ConfigError(f"cartesian som_dims must be 1 to 3 positive integers, got {som_dims!r}")
    return dims


def _infer_num_neurons(som_dims, n, what="distances"):
    """Layout of a mapping/transform lattice from its neuron count ``n``."""
    dims = _norm_som_dims(som_dims, "cartesian")
    if n == math.prod(dims):
        return dims
    if len(dims) == 2 and dims[0] == dims[1] and dims[0] % 2 == 1 and n == hex_num_neurons(dims[0]):
        return dims
    raise ShapeError(f"{what}: {n} neurons per image do not match som_dims {dims} "
                     f"(cartesian {math.prod(dims)}"
                     + (f", hexagonal {hex_num_neurons(dims[0])})" if len(dims) == 2 else ")"))


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------

def _images_array(path, mmap=True):
    h = read_images_header(path)
    if len(h.img_shape) not in (2, 3):
        raise FileFormatError(path, "data_rank", len(h.img_shape), "2 (H, W) or 3 (C, H, W)")
    shape = (h.n_images, h.channels) + tuple(h.img_shape[-2:])
    return _load(path, h.dtype, h.offset, shape, mmap), h


def read_images(path, mmap: bool = True) -> torch.Tensor:
    """Read an image file as a float32 tensor of shape ``(N, C, H, W)``.

    Rank-2 files give ``C = 1``. With ``mmap=True`` (default) the tensor is a zero-copy view of a
    copy-on-write memory map (writing to it never changes the file); non-float32 stored types
    are converted (a copy).
    """
    a, h = _images_array(path, mmap)
    if h.dtype != np.float32:
        _check_memory(path, a.size * 4)
        a = a.astype(np.float32)
    return torch.from_numpy(a)


def _image_dims(shape) -> tuple:
    if len(shape) == 3:
        return tuple(shape[1:])
    if len(shape) == 4:
        return tuple(shape[2:]) if shape[1] == 1 else tuple(shape[1:])
    raise ShapeError(f"images must be (N, H, W) or (N, C, H, W), got shape {tuple(shape)}")


def write_images(path, images, comments=None, overwrite: bool = False) -> ImageHeader:
    """Write images ``(N, H, W)`` or ``(N, C, H, W)`` as a PINK float32 image file.

    Convention
    ----------
    ``(N, H, W)`` is stored with rank 2; ``(N, C, H, W)`` with rank 3 dims ``(C, H, W)``,
    channels slowest (what PINK reads). A single channel given as ``(N, 1, H, W)`` is stored
    with rank 2, like PINK's own single-channel files. Non-finite values raise
    :class:`NonFiniteError` (PINK cannot handle them). The output is written atomically.
    """
    a = _as_f32(images, "images")
    dims = _image_dims(a.shape)
    bad = _first_nonfinite(a)
    if bad is not None:
        raise NonFiniteError(f"{os.fspath(path)}: image {bad} holds NaN or infinite values")
    head = comment_bytes(comments)
    with atomic_output(path, overwrite) as f:
        f.write(head + _ihdr(2, 0, 0, a.shape[0], 0, len(dims), *dims))
        _write_payload(f, a)
    return ImageHeader(a.shape[0], dims, DATA_TYPES[0], len(head) + 24 + 4 * len(dims),
                       _parse_comment_texts(comments))


def _parse_comment_texts(comments) -> tuple:
    if comments is None:
        return ()
    return tuple(comments.splitlines() if isinstance(comments, str) else comments)


# --------------------------------------------------------------------------------------------
# SOMs
# --------------------------------------------------------------------------------------------

def _check_expected(path, h: SOMHeader, som_dims, layout, neuron_shape):
    if layout is not None and layout != h.layout:
        raise GeometryMismatchError(path, "layout", h.layout, repr(layout))
    if som_dims is not None:
        exp = _norm_som_dims(som_dims, layout or h.layout)
        if exp + (1,) * (3 - len(exp)) != h.som_dims + (1,) * (3 - len(h.som_dims)):
            raise GeometryMismatchError(path, "som_dims", h.som_dims, exp)
    if neuron_shape is not None:
        exp = tuple(int(v) for v in neuron_shape)
        exp3 = (1,) * (3 - len(exp)) + exp
        got3 = (1,) * (3 - len(h.neuron_shape)) + h.neuron_shape
        if exp3 != got3:
            raise GeometryMismatchError(path, "neuron_shape", h.neuron_shape, exp)


def _som_array(path, mmap=False):
    h = _parse(path, 1)
    if len(h.neuron_shape) not in (2, 3):
        raise FileFormatError(path, "neuron_rank", len(h.neuron_shape), "2 (nd, nd) or 3 (C, nd, nd)")
    shape = (h.num_neurons, h.channels) + tuple(h.neuron_shape[-2:])
    return _load(path, h.dtype, h.offset, shape, mmap), h


def read_som(path, *, som_dims=None, layout=None, neuron_shape=None, mmap: bool = False):
    """Read a SOM file: ``(weights, header)`` with weights float32 ``(N, C, nd, nd)``.

    Convention
    ----------
    Neurons come in PINK's neuron-index order (spec §1.6), the flat order of the file. Expected
    ``som_dims`` (compared after padding with 1s to rank 3), ``layout`` and ``neuron_shape``
    (``(nd, nd)`` or ``(C, nd, nd)``) may be given; a mismatch raises
    :class:`GeometryMismatchError` naming field, found and expected value.
    """
    a, h = _som_array(path, mmap)
    _check_expected(path, h, som_dims, layout, neuron_shape)
    if h.dtype != np.float32:
        _check_memory(path, a.size * 4)
        a = a.astype(np.float32)
    return torch.from_numpy(a), h


def _som_header_bytes(som_dims, neuron_dims) -> bytes:
    return _ihdr(2, 1, 0, 0, len(som_dims), *som_dims, 0, len(neuron_dims), *neuron_dims)


def write_som(path, weights, som_dims, *, layout: str = "cartesian", comments=None,
              overwrite: bool = False) -> SOMHeader:
    """Write a SOM file from weights ``(N, C, nd, nd)`` or ``(N, nd, nd)``.

    Convention
    ----------
    ``som_dims`` is written as given; PINK writes cartesian ``(W,)``, ``(W, H)``, ``(W, H, D)``
    and hexagonal ``(d, d)`` (see :func:`pink_som_dims`). The ``som_layout`` field is always 0,
    as PINK writes it, also for hexagonal SOMs (readers detect them from the neuron count).
    Neuron dims are ``(nd, nd)`` when ``C == 1``, else ``(C, nd, nd)``. Neurons are written in
    the given order, which must be PINK's neuron-index order.
    """
    dims = _norm_som_dims(som_dims, layout)
    a = _as_f32(weights, "weights")
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise ShapeError(f"weights must be (N, C, nd, nd) or (N, nd, nd), got shape {a.shape}")
    n = hex_num_neurons(dims[0]) if layout == "hexagonal" else math.prod(dims)
    if a.shape[0] != n:
        raise ShapeError(f"weights hold {a.shape[0]} neurons, {layout} som_dims {dims} need {n}")
    bad = _first_nonfinite(a)
    if bad is not None:
        raise NonFiniteError(f"{os.fspath(path)}: neuron {bad} holds NaN or infinite values")
    ndims = tuple(a.shape[2:]) if a.shape[1] == 1 else tuple(a.shape[1:])
    head = comment_bytes(comments)
    hb = _som_header_bytes(dims, ndims)
    with atomic_output(path, overwrite) as f:
        f.write(head + hb)
        _write_payload(f, a)
    return SOMHeader(dims, ndims, DATA_TYPES[0], len(head) + len(hb), _parse_comment_texts(comments),
                     n, layout)


# --------------------------------------------------------------------------------------------
# mappings and transforms
# --------------------------------------------------------------------------------------------

def _mapping_array(path, mmap=True):
    h = _parse(path, 2)
    return _load(path, h.dtype, h.offset, (h.n_images, h.num_neurons), mmap), h


def read_mapping(path, mmap: bool = True):
    """Read a mapping file: ``(distances, header)``, distances float32 ``(n_images, N)``.

    ``distances[i, j]`` is PINK's Euclidean distance between image ``i`` (best transformed) and
    neuron ``j`` (PINK neuron order); smaller is better. Zero-copy copy-on-write view by default.
    """
    a, h = _mapping_array(path, mmap)
    if h.dtype != np.float32:
        _check_memory(path, a.size * 4)
        a = a.astype(np.float32)
    return torch.from_numpy(a), h


def _mapping_header_bytes(n, dims) -> bytes:
    return _ihdr(2, 2, 0, n, 0, len(dims), *dims)


def _transform_header_bytes(n, dims) -> bytes:
    return _ihdr(2, 3, n, 0, len(dims), *dims)


def write_mapping(path, distances, som_dims, overwrite: bool = False) -> MappingHeader:
    """Write distances ``(n_images, N)`` as a PINK mapping file (float32, som_layout 0).

    ``N`` must equal ``prod(som_dims)`` or, for dims ``(d, d)`` with ``d`` odd, the hexagonal
    neuron count.
    """
    a = _as_f32(distances, "distances")
    if a.ndim != 2:
        raise ShapeError(f"distances must be (n_images, N), got shape {a.shape}")
    dims = _infer_num_neurons(som_dims, a.shape[1])
    hb = _mapping_header_bytes(a.shape[0], dims)
    with atomic_output(path, overwrite) as f:
        f.write(hb)
        _write_payload(f, a)
    return MappingHeader(a.shape[0], dims, DATA_TYPES[0], len(hb), a.shape[1])


def _transform_array(path, mmap=True):
    h = _parse(path, 3)
    return _load(path, TRANSFORM_DTYPE, h.offset, (h.n_images, h.num_neurons), mmap), h


def read_transforms(path):
    """Read a transform file: ``(flip int8 (n, N), angle float32 (n, N), header)``.

    Convention
    ----------
    Angles are in radians; neuron ``j`` best matches ``flipud**flip(rotate_cw(image, angle))``
    (rotate clockwise first, then reverse the rows when ``flip == 1``). The packed 5-byte
    records cannot be viewed as tensors, so both outputs are copies.
    """
    a, h = _transform_array(path, mmap=True)
    _check_memory(path, a.size * 5)
    check_transform_records(path, a)
    return torch.from_numpy(_field(a, "flip")), torch.from_numpy(_field(a, "angle")), h


def _field(rec: np.ndarray, name: str) -> np.ndarray:
    """Fresh C-contiguous copy of one field of packed records (tensors need itemsize strides)."""
    out = np.empty(rec.shape, np.int8 if name == "flip" else np.float32)
    out[...] = rec[name]
    return out


def check_transform_records(path, rec: np.ndarray, chunk_rows: int = 4096) -> None:
    """Raise :class:`FileFormatError` naming the first record ``[image, neuron]`` whose flip is
    not 0 or 1 or whose angle is not finite (``rec``: packed records ``(n_images, N)``)."""
    rows = max(1, int(chunk_rows))
    for start in range(0, rec.shape[0], rows):
        part = rec[start:start + rows]
        flip = _field(part, "flip")
        bad = (flip != 0) & (flip != 1)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise FileFormatError(path, f"record [{start + i}, {j}] flip", int(flip[i, j]), "0 or 1")
        angle = _field(part, "angle")
        bad = ~np.isfinite(angle)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise FileFormatError(path, f"record [{start + i}, {j}] angle", float(angle[i, j]),
                                  "a finite angle in radians")


def _records(flip, angle) -> np.ndarray:
    f = _to_numpy(flip, "flip")
    if angle is None:
        if f.dtype.names is None or set(f.dtype.names) != {"flip", "angle"}:
            raise ShapeError("give flip and angle, or one structured array with fields flip/angle")
        f, angle = f["flip"], f["angle"]
    g = _to_numpy(angle, "angle")
    if f.shape != g.shape or f.ndim != 2:
        raise ShapeError(f"flip {f.shape} and angle {g.shape} must both be (n_images, N)")
    if f.dtype.kind not in "biu":
        raise ShapeError(f"flip must be integer or bool, got dtype {f.dtype}")
    if f.size and (f.min() < 0 or f.max() > 1):
        raise ShapeError("flip values must be 0 or 1")
    rec = np.empty(f.shape, TRANSFORM_DTYPE)
    rec["flip"] = f
    rec["angle"] = _as_f32(g, "angle")
    return rec


def write_transforms(path, flip, angle, som_dims, overwrite: bool = False) -> TransformHeader:
    """Write flips and angles (radians), each ``(n_images, N)``, as a PINK transform file."""
    rec = _records(flip, angle)
    dims = _infer_num_neurons(som_dims, rec.shape[1], "transforms")
    hb = _transform_header_bytes(rec.shape[0], dims)
    with atomic_output(path, overwrite) as f:
        f.write(hb)
        _write_payload(f, rec)
    return TransformHeader(rec.shape[0], dims, len(hb), rec.shape[1])


# --------------------------------------------------------------------------------------------
# streaming writers
# --------------------------------------------------------------------------------------------

class MappingWriter(PreallocatedOutput):
    """Streaming writer of a mapping file: ``write_rows(start, rows)`` with rows ``(k, N)`` float32.

    The file is preallocated at a temporary name and renamed into place on :meth:`commit` (a
    clean ``with`` exit); see :class:`~somtorch.io.atomic.PreallocatedOutput` for the commit,
    abort, resume (``resume=True``) and multi-process rules.
    """

    def __init__(self, path, n_images: int, som_dims, overwrite: bool = False, *,
                 layout: str = "cartesian", resume: bool = False, keep_partial: bool = False):
        self.som_dims = _norm_som_dims(som_dims, layout)
        self.num_neurons = (hex_num_neurons(self.som_dims[0]) if layout == "hexagonal"
                            else math.prod(self.som_dims))
        self.n_images = int(n_images)
        super().__init__(path, self._header_bytes(self.n_images, self.som_dims), self.n_images,
                         self.num_neurons * self._dtype.itemsize, overwrite, resume=resume,
                         keep_partial=keep_partial)

    _dtype = DATA_TYPES[0]

    @staticmethod
    def _header_bytes(n, dims):
        return _mapping_header_bytes(n, dims)

    def _put(self, start, rec):
        if rec.ndim != 2 or rec.shape[1] != self.num_neurons:
            raise ShapeError(f"rows must be (k, {self.num_neurons}), got shape {rec.shape}")
        self.write_rows_bytes(int(start), rec.shape[0], np.ascontiguousarray(rec).tobytes())

    def write_rows(self, start: int, rows):
        """Write distance rows ``(k, N)`` for images ``start .. start+k-1``."""
        self._put(start, _as_f32(rows, "rows"))


class TransformWriter(MappingWriter):
    """Streaming writer of a transform file: ``write_rows(start, flip, angle)``, each ``(k, N)``.

    ``angle`` may be omitted when ``flip`` is a structured array with fields flip/angle. Same
    preallocation and commit rules as :class:`MappingWriter`.
    """

    _dtype = TRANSFORM_DTYPE

    @staticmethod
    def _header_bytes(n, dims):
        return _transform_header_bytes(n, dims)

    def write_rows(self, start: int, flip, angle=None):
        """Write flips (0/1) and angles (radians) for images ``start .. start+k-1``."""
        self._put(start, _records(flip, angle))
