"""PINK version-2 file headers: data-type codes, header records, comment blocks and the validating
parser (see :mod:`somtorch.io.pink` for the byte layouts and conventions).

Every check happens here, before a payload is touched: version, file type, data-type code,
layout code, ranks, dims, counts and the exact payload size; malformed files raise
:class:`~somtorch.errors.FileFormatError` or :class:`~somtorch.errors.TruncatedFileError`.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass

import numpy as np

from somtorch.errors import (
    ConfigError,
    FileFormatError,
    TruncatedFileError,
)
from somtorch.io.files import check_regular_file, open_regular

#: Data-type codes of PINK's ``FILE_FORMATS.md`` (all little-endian).
DATA_TYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"), 1: np.dtype("<f8"), 2: np.dtype("i1"), 3: np.dtype("<i2"),
    4: np.dtype("<i4"), 5: np.dtype("<i8"), 6: np.dtype("u1"), 7: np.dtype("<u2"),
    8: np.dtype("<u4"), 9: np.dtype("<u8"),
}
#: Packed record of a transform file: int8 flip then float32 angle in radians (itemsize 5).
TRANSFORM_DTYPE = np.dtype([("flip", "i1"), ("angle", "<f4")])
FILE_TYPE_NAMES = {0: "images", 1: "SOM", 2: "mapping", 3: "transform"}
END_OF_HEADER = b"# END OF HEADER"
MAX_RANK = 8                     # sanity cap on header ranks (PINK uses 1..3)
MAX_ELEMENTS = 1 << 40         # cap on the product of header dims
MAX_PAYLOAD_BYTES = 1 << 44     # 16 TiB: a header announcing more is refused as absurd
MAX_COMMENT_LINE = 1 << 20       # a comment line longer than 1 MiB is treated as garbage
LAYOUTS = ("cartesian", "hexagonal")


def hex_num_neurons(d: int) -> int:
    """Neurons of a hexagonal PINK lattice of side ``d`` (odd): ``d**2 - R(R+1)``, ``R=(d-1)//2``.

    >>> [hex_num_neurons(d) for d in (1, 3, 5, 21)]
    [1, 7, 19, 331]
    """
    r = (int(d) - 1) // 2
    return int(d) * int(d) - r * (r + 1)


def pink_som_dims(width: int, height: int = 1, depth: int = 1, layout: str = "cartesian") -> tuple:
    """SOM dims exactly as PINK writes them for ``--som-width/--som-height/--som-depth``.

    Cartesian: ``(W,)`` when height = depth = 1, ``(W, H)`` when depth = 1 (and, PINK quirk
    §7.3, also when height = 1 with depth > 1), else ``(W, H, D)``. Hexagonal: ``(d, d)``.

    >>> pink_som_dims(3, 3), pink_som_dims(4), pink_som_dims(2, 3, 4), pink_som_dims(5, 5, layout="hexagonal")
    ((3, 3), (4,), (2, 3, 4), (5, 5))
    """
    if layout == "hexagonal":
        return (int(width), int(width))
    if height == 1:
        return (int(width),) if depth == 1 else (int(width), 1)
    return (int(width), int(height)) if depth == 1 else (int(width), int(height), int(depth))


# --------------------------------------------------------------------------------------------
# headers
# --------------------------------------------------------------------------------------------

def _layout_of(num_neurons: int, som_dims: tuple) -> str:
    return "cartesian" if num_neurons == math.prod(som_dims) else "hexagonal"


@dataclass(frozen=True)
class ImageHeader:
    """Header of an image (data) file. ``img_shape`` is the dims tuple as stored."""

    n_images: int
    img_shape: tuple
    dtype: np.dtype
    offset: int
    comments: tuple = ()

    @property
    def channels(self) -> int:
        return self.img_shape[0] if len(self.img_shape) == 3 else 1

    @property
    def image_size(self) -> int:
        return math.prod(self.img_shape)


@dataclass(frozen=True)
class SOMHeader:
    """Header of a SOM file. ``som_dims`` and ``neuron_shape`` are as stored."""

    som_dims: tuple
    neuron_shape: tuple
    dtype: np.dtype
    offset: int
    comments: tuple
    num_neurons: int
    layout: str

    @property
    def channels(self) -> int:
        return self.neuron_shape[0] if len(self.neuron_shape) == 3 else 1

    @property
    def neuron_size(self) -> int:
        return math.prod(self.neuron_shape)


@dataclass(frozen=True)
class MappingHeader:
    """Header of a mapping file; ``layout`` is derived from ``num_neurons``."""

    n_images: int
    som_dims: tuple
    dtype: np.dtype
    offset: int
    num_neurons: int

    @property
    def layout(self) -> str:
        return _layout_of(self.num_neurons, self.som_dims)


@dataclass(frozen=True)
class TransformHeader:
    """Header of a best rotation/flip file (no dtype field: records are TRANSFORM_DTYPE)."""

    n_images: int
    som_dims: tuple
    offset: int
    num_neurons: int

    @property
    def layout(self) -> str:
        return _layout_of(self.num_neurons, self.som_dims)


def _decode_comment(body: bytes) -> str:
    text = body[1:]
    if text.startswith(b" "):
        text = text[1:]
    return text.decode("utf-8", "surrogateescape")


def _read_comments(f, path: str) -> tuple:
    """Consume the comment header as PINK does (§1.1); return the comment texts."""
    comments = []
    while True:
        pos = f.tell()
        if f.read(1) != b"#":
            f.seek(pos)
            return tuple(comments)
        line = b"#" + f.readline(MAX_COMMENT_LINE)
        if not line.endswith(b"\n"):
            raise TruncatedFileError(path, "comment header", found=f"line of {len(line)} bytes without newline",
                                     expected="'#' lines ending in '\\n' followed by the binary header")
        body = line[:-1]
        if body == END_OF_HEADER:
            return tuple(comments)
        comments.append(_decode_comment(body))


def comment_bytes(comments) -> bytes:
    """Encode comments as ``# text\\n`` lines plus ``# END OF HEADER\\n`` (empty for no comments).

    ``comments`` is a string (split into lines) or a sequence of strings; a line may not
    contain a newline or be exactly ``END OF HEADER``. Reading strips ``#`` and one space, so
    ``read_header(...).comments`` gives the texts back.
    """
    if comments is None:
        return b""
    if isinstance(comments, str):
        comments = comments.splitlines()
    out = []
    for c in comments:
        if not isinstance(c, str) or "\n" in c or c == "END OF HEADER":
            raise ConfigError(f"invalid comment line {c!r}: must be a str without newline, not 'END OF HEADER'")
        out.append(b"# " + c.encode("utf-8", "surrogateescape") + b"\n")
    return b"".join(out) + END_OF_HEADER + b"\n" if out else b""


class _Ints:
    def __init__(self, f, path):
        self.f, self.path = f, path

    def take(self, n: int, what: str) -> tuple:
        data = self.f.read(4 * n)
        if len(data) < 4 * n:
            raise TruncatedFileError(self.path, what, found=f"{len(data)} bytes", expected=f"{4 * n} bytes",
                                     detail="file ends inside the header")
        return struct.unpack(f"<{n}i", data)


def _dtype(path, code):
    if code not in DATA_TYPES:
        raise FileFormatError(path, "data_type", code, "a data-type code 0..9")
    return DATA_TYPES[code]


def _count(path, field, n):
    if n < 0:
        raise FileFormatError(path, field, n, ">= 0")
    return n


def _layout_block(r: _Ints, path, name, max_rank=MAX_RANK):
    layout, k = r.take(2, f"{name} layout and rank")
    if layout not in (0, 1):
        raise FileFormatError(path, f"{name}_layout", layout, "0 (cartesian) or 1 (hexagonal)")
    if not 1 <= k <= max_rank:
        raise FileFormatError(path, f"{name}_rank", k, f"1..{max_rank}")
    dims = r.take(k, f"{name} dims")
    if any(v <= 0 for v in dims):
        raise FileFormatError(path, f"{name}_dims", dims, "positive integers")
    if math.prod(dims) > MAX_ELEMENTS:
        raise FileFormatError(path, f"{name}_dims", dims, f"a product of at most {MAX_ELEMENTS}")
    return layout, tuple(dims)


def _resolve_layout(path, code, dims, payload, unit_bytes):
    """Neuron count and layout of a lattice block, detecting hexagonal SOMs from the payload."""
    is_hex_shape = len(dims) == 2 and dims[0] == dims[1] and dims[0] % 2 == 1
    if code == 1:
        if not is_hex_shape:
            raise FileFormatError(path, "som_dims", dims, "(d, d) with d odd for a hexagonal layout")
        return hex_num_neurons(dims[0]), "hexagonal"
    ncart = math.prod(dims)
    if is_hex_shape and dims[0] > 1 and unit_bytes > 0 and payload == hex_num_neurons(dims[0]) * unit_bytes:
        return hex_num_neurons(dims[0]), "hexagonal"
    return ncart, "cartesian"


def _check_payload(path, payload, expected):
    if expected > MAX_PAYLOAD_BYTES:
        raise TruncatedFileError(path, "payload", f"{payload} bytes", f"{expected} bytes",
                                 f"the header dims and counts are absurd (more than {MAX_PAYLOAD_BYTES} bytes)")
    if payload < expected:
        raise TruncatedFileError(path, "payload", f"{payload} bytes", f"{expected} bytes",
                                 "file is truncated")
    if payload > expected:
        raise TruncatedFileError(path, "payload", f"{payload} bytes", f"{expected} bytes",
                                 "extra trailing bytes after the payload")


def _parse(path, want=None):
    p = os.fspath(path)
    size = check_regular_file(p)
    with open_regular(p, "rb") as f:
        comments = _read_comments(f, p)
        r = _Ints(f, p)
        version, ftype = r.take(2, "version and file_type")
        if version != 2:
            raise FileFormatError(p, "version", version, 2)
        if ftype not in FILE_TYPE_NAMES:
            raise FileFormatError(p, "file_type", ftype, "0, 1, 2 or 3")
        if want is not None and ftype != want:
            raise FileFormatError(p, "file_type", ftype, want,
                                  f"this is a {FILE_TYPE_NAMES[ftype]} file, not a {FILE_TYPE_NAMES[want]} file")
        if ftype == 0:
            code, n = r.take(2, "data_type and n_images")
            dtype, n = _dtype(p, code), _count(p, "n_images", n)
            layout, dims = _layout_block(r, p, "data")
            if layout != 0:
                raise FileFormatError(p, "data_layout", layout, 0, "image files are cartesian")
            off = f.tell()
            _check_payload(p, size - off, n * math.prod(dims) * dtype.itemsize)
            return ImageHeader(n, dims, dtype, off, comments)
        if ftype == 1:
            dtype = _dtype(p, r.take(1, "data_type")[0])
            som_code, som_dims = _layout_block(r, p, "som", 3)
            ncode, ndims = _layout_block(r, p, "neuron")
            if ncode != 0:
                raise FileFormatError(p, "neuron_layout", ncode, 0)
            off = f.tell()
            unit = math.prod(ndims) * dtype.itemsize
            n, layout = _resolve_layout(p, som_code, som_dims, size - off, unit)
            _check_payload(p, size - off, n * unit)
            return SOMHeader(som_dims, ndims, dtype, off, comments, n, layout)
        if ftype == 2:
            code, n = r.take(2, "data_type and n_images")
            dtype, n = _dtype(p, code), _count(p, "n_images", n)
            som_code, som_dims = _layout_block(r, p, "som", 3)
            off = f.tell()
            nn, _ = _resolve_layout(p, som_code, som_dims, size - off, n * dtype.itemsize)
            _check_payload(p, size - off, n * nn * dtype.itemsize)
            return MappingHeader(n, som_dims, dtype, off, nn)
        n = _count(p, "n_images", r.take(1, "n_images")[0])
        som_code, som_dims = _layout_block(r, p, "som", 3)
        off = f.tell()
        nn, _ = _resolve_layout(p, som_code, som_dims, size - off, n * TRANSFORM_DTYPE.itemsize)
        _check_payload(p, size - off, n * nn * TRANSFORM_DTYPE.itemsize)
        return TransformHeader(n, som_dims, off, nn)


def read_header(path):
    """Parse and validate the header of any PINK v2 file (dispatching on its file type).

    Returns an :class:`ImageHeader`, :class:`SOMHeader`, :class:`MappingHeader` or
    :class:`TransformHeader`. The payload size is checked against the header.
    """
    return _parse(path)


def read_images_header(path) -> ImageHeader:
    """Header of an image file (file type 0)."""
    return _parse(path, 0)


# --------------------------------------------------------------------------------------------
# array helpers
# --------------------------------------------------------------------------------------------
