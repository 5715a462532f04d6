"""An allow-list unpickler for the pickles somtorch reads on request (PYINK sidecars and results).

Pickles are read only with ``allow_pickle=True``, and even then :func:`safe_load` cannot build
arbitrary objects: every global a pickle names is replaced by a stand-in that checks its
arguments, and the result may hold only plain values (``None``, bools, numbers, strings, bytes,
lists, tuples, dicts, sets) and NumPy arrays and scalars of plain dtypes (bool, integer, float,
complex) whose shape and byte count agree. NumPy's own reconstruction functions are never called
with the file's values, so a crafted shape, dtype or buffer cannot crash the interpreter or make
it allocate more than the file holds. Anything else raises :class:`~somtorch.errors.FileFormatError`
naming the file.

The pure-Python unpickler is used (its memo is a dict, so a crafted memo index cannot make it
allocate), reading from the file's bytes in memory (so a crafted length cannot either).
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import os
import pickle
import struct

import numpy as np

from somtorch.errors import FileFormatError, SomtorchError

__all__ = ["StateHolder", "safe_load", "MAX_DEPTH"]

#: Deepest nesting of containers accepted in an unpickled value.
MAX_DEPTH = 100
_MAX_NDIM = 32
_PLAIN_KINDS = "biufc"


class _Refused(Exception):
    """Internal: the pickle asked for something not on the allow-list."""


class StateHolder:
    """Stand-in for an allowed class: instances keep the state the pickle gives them (``.state``)."""

    def __setstate__(self, state):
        self.__dict__["state"] = state


class _Dtype:
    """Stand-in for ``numpy.dtype(code, align, copy)``; ``BUILD`` may set the byte order."""

    def __init__(self, code, align=False, copy=False):
        if not isinstance(code, str) or len(code) > 4:
            raise _Refused(f"dtype {code!r}")
        try:
            dt = np.dtype(code)
        except TypeError as e:
            raise _Refused(f"dtype {code!r}") from e
        if dt.kind not in _PLAIN_KINDS or dt.fields is not None or dt.subdtype is not None:
            raise _Refused(f"dtype {code!r} (only bool, integer, float and complex dtypes)")
        self.dtype = dt

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
            raise _Refused("dtype state")
        order = state[1]
        if order not in ("<", ">", "|", "="):
            raise _Refused(f"dtype byte order {order!r}")
        if any(s is not None for s in state[2:5]) or (len(state) == 9 and state[8] is not None):
            raise _Refused("structured or annotated dtype")
        if order in ("<", ">") and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(order)


def _dtype(d) -> np.dtype:
    if not isinstance(d, _Dtype):
        raise _Refused(f"dtype argument of type {type(d).__name__}")
    return d.dtype


def _shape(shape) -> tuple:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if (not isinstance(shape, tuple) or len(shape) > _MAX_NDIM
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
        raise _Refused(f"array shape {shape!r}")
    return shape


def _array(raw, dt: np.dtype, shape: tuple, fortran: bool) -> np.ndarray:
    if isinstance(raw, str):  # protocol 0-2 may give the bytes as a latin-1 string
        raw = raw.encode("latin-1")
    if not isinstance(raw, (bytes, bytearray)):
        raise _Refused(f"array data of type {type(raw).__name__}")
    need = math.prod(shape) * dt.itemsize
    if len(raw) != need:
        raise _Refused(f"array of shape {shape} and dtype {dt} needs {need} bytes, the pickle has {len(raw)}")
    flat = np.frombuffer(bytes(raw), dtype=dt)
    return flat.reshape(shape, order="F" if fortran else "C").copy(order="K")


class _Array:
    """Stand-in for ``numpy._core.multiarray._reconstruct``; ``BUILD`` gives shape, dtype, data."""

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise _Refused("array state")
        _, shape, dt, fortran, raw = state
        if not isinstance(fortran, bool):
            raise _Refused(f"array order flag {fortran!r}")
        self.array = _array(raw, _dtype(dt), _shape(shape), fortran)


def _reconstruct(cls, shape, typecode):
    if cls is not _NDARRAY:
        raise _Refused("array subclass")
    return _Array()


def _frombuffer(buf, dt, shape, order):
    if order not in ("C", "F"):
        raise _Refused(f"array order {order!r}")
    return _array(buf, _dtype(dt), _shape(shape), order == "F")


def _scalar(dt, raw=None):
    dt = _dtype(dt)
    if isinstance(raw, str):
        raw = raw.encode("latin-1")
    if not isinstance(raw, bytes) or len(raw) != dt.itemsize:
        raise _Refused(f"scalar of dtype {dt}")
    return np.frombuffer(raw, dtype=dt)[0]


def _encode(s, encoding="utf-8"):
    if not isinstance(s, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode other than latin-1 string to bytes")
    return s.encode("latin-1")


def _plain_args(*args):
    for a in args:
        if not isinstance(a, (type(None), bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)):
            raise _Refused(f"argument of type {type(a).__name__}")
    return args


def _builtin(fn):
    def call(*args):
        return fn(*_plain_args(*args))
    return call


def _bytes(*args):
    # bytes() / bytes(b'..') / bytes(str, encoding); never bytes(n) (n zero bytes: an allocation)
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    if len(args) == 2 and isinstance(args[0], str) and isinstance(args[1], str):
        return _encode(*args)
    raise _Refused("bytes() other than from bytes or a latin-1 string")


def _dict_like(*args):
    # collections.OrderedDict / defaultdict come back as plain dicts
    if args and not isinstance(args[0], (list, dict)) and args[0] is not None and not callable(args[0]):
        raise _Refused("mapping arguments")
    out = {}
    if args and isinstance(args[0], (list, dict)):
        out.update(args[0])
    return out


_NDARRAY = object()  # marker returned for numpy.ndarray (only usable as _reconstruct's first argument)

_GLOBALS = {
    ("builtins", "list"): _builtin(list), ("builtins", "tuple"): _builtin(tuple),
    ("builtins", "dict"): _builtin(dict), ("builtins", "set"): _builtin(set),
    ("builtins", "frozenset"): _builtin(frozenset), ("builtins", "int"): _builtin(int),
    ("builtins", "float"): _builtin(float), ("builtins", "complex"): _builtin(complex),
    ("builtins", "str"): _builtin(str), ("builtins", "bool"): _builtin(bool),
    ("builtins", "bytes"): _bytes, ("builtins", "bytearray"): _bytes,
    ("_codecs", "encode"): _encode,
    ("collections", "OrderedDict"): _dict_like, ("collections", "defaultdict"): _dict_like,
    ("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): _Dtype,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
}


class _Exact(io.BytesIO):
    """The pickle's bytes; a read past the end is an error (not a short result)."""

    def read(self, n=-1):
        data = super().read(n)
        if n is not None and n > 0 and len(data) < n:
            raise pickle.UnpicklingError(f"pickle data truncated (an opcode asks for {n} bytes, {len(data)} left)")
        return data

    def readinto(self, b):
        n = super().readinto(b)
        if n < len(b):
            raise pickle.UnpicklingError("pickle data truncated")
        return n


class _AllowListUnpickler(pickle._Unpickler):
    def __init__(self, file, classes):
        super().__init__(file)
        self._classes = classes
        self._src = file

    def _load_bytearray8(self):
        """BYTEARRAY8 allocates its announced length before reading: check the bytes exist first
        (a 500-byte pickle announcing 4 GB would otherwise allocate and zero 4 GB)."""
        (n,) = struct.unpack("<Q", self.read(8))
        left = len(self._src.getbuffer()) - self._src.tell()
        frame = getattr(getattr(self, "_unframer", None), "current_frame", None)
        if frame is not None:  # protocol 4+: the current frame is already read from the file
            left += len(frame.getbuffer()) - frame.tell()
        if n > left:
            raise pickle.UnpicklingError(f"pickle data truncated (BYTEARRAY8 announces {n} bytes, {left} left)")
        b = bytearray(n)
        self.readinto(b)
        self.append(b)

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8

    def find_class(self, module, name):
        if self.proto < 3:  # Python 2 names, as pickle.Unpickler(fix_imports=True) maps them
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        if module.startswith("numpy.core"):  # pickles written by NumPy 1.x
            module = "numpy._core" + module[len("numpy.core"):]
        key = (module, name)
        if key in self._classes:
            return self._classes[key]
        if key in _GLOBALS:
            return _GLOBALS[key]
        raise _Refused(f"global {module}.{name} is not allowed")

    def persistent_load(self, pid):
        raise _Refused("persistent ids")


def _plain(obj, memo: dict, depth: int):
    """Check ``obj`` holds only allowed values; replace array stand-ins by arrays."""
    if depth > MAX_DEPTH:
        raise _Refused(f"values nested deeper than {MAX_DEPTH} levels")
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, np.generic, np.ndarray)):
        if isinstance(obj, np.generic) and obj.dtype.kind not in _PLAIN_KINDS:
            raise _Refused(f"scalar of dtype {obj.dtype}")
        return obj
    if isinstance(obj, bytearray):
        return bytes(obj)
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, _Array):
        if obj.array is None:
            raise _Refused("array without data")
        return obj.array
    if isinstance(obj, StateHolder):
        memo[id(obj)] = obj
        if "state" in obj.__dict__:
            obj.__dict__["state"] = _plain(obj.__dict__["state"], memo, depth + 1)
        return obj
    if type(obj) is list:
        out = memo[id(obj)] = []
        out.extend(_plain(v, memo, depth + 1) for v in obj)
        return out
    if type(obj) is dict:
        out = memo[id(obj)] = {}
        for k, v in obj.items():
            out[_plain(k, memo, depth + 1)] = _plain(v, memo, depth + 1)
        return out
    if type(obj) in (tuple, set, frozenset):  # memoised too: shared sub-tuples are walked once
        out = memo[id(obj)] = type(obj)(_plain(v, memo, depth + 1) for v in obj)
        return out
    raise _Refused(f"value of type {type(obj).__name__}")


def safe_load(path, what: str = "pickle", classes: dict | None = None):
    """Unpickle the file ``path`` through the allow-list; raise :class:`FileFormatError` otherwise.

    ``classes`` maps extra ``(module, name)`` globals to :class:`StateHolder` subclasses (for
    example PYINK's ``Annotation``); ``what`` names the field in error messages.
    """
    from somtorch.io.files import open_regular

    path = os.fspath(path)
    with open_regular(path, "rb", what=what) as f:
        data = f.read()
    for cls in (classes or {}).values():
        if not (isinstance(cls, type) and issubclass(cls, StateHolder)):
            raise TypeError("classes must map to StateHolder subclasses")
    try:
        obj = _AllowListUnpickler(_Exact(data), dict(classes or {})).load()
        return _plain(obj, {}, 0)
    except SomtorchError:
        raise
    except _Refused as e:
        raise FileFormatError(path, what, None, None,
                              f"pickle refused: {e} (only plain lists, dicts, tuples, strings, numbers and "
                              "NumPy arrays of plain dtypes can be read)") from None
    except (Exception, RecursionError) as e:  # noqa: BLE001 - anything a hostile pickle raises
        raise FileFormatError(path, what, None, None,
                              f"not a readable pickle ({type(e).__name__}: {e})") from None
