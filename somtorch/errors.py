"""Typed errors raised by somtorch.

Every error somtorch raises on bad input derives from :class:`SomtorchError`, so callers can
catch one class. Errors about a file name the file, the field, the value found and the value
expected, e.g.::

    FileFormatError: som.bin: field 'version': found 3, expected 2
"""

from __future__ import annotations

import errno
import os
from typing import Any

__all__ = [
    "SomtorchError",
    "FileFormatError",
    "TruncatedFileError",
    "ShapeError",
    "GeometryMismatchError",
    "NonFiniteError",
    "FileExistsError_",
    "OutputExistsError",
    "ConfigError",
    "PickleNotAllowedError",
    "MissingFileError",
    "NotRegularFileError",
    "UnsafePathError",
    "OutOfSpaceError",
    "GeometryWarning",
]


class SomtorchError(Exception):
    """Base class of every error somtorch raises on bad input or bad configuration."""


def _describe(path: str | os.PathLike | None, field: str | None, found: Any, expected: Any,
              detail: str | None) -> str:
    parts = []
    if path is not None:
        parts.append(f"{os.fspath(path)}:")
    if field is not None:
        parts.append(f"field '{field}':")
    if found is not None or expected is not None:
        parts.append(f"found {found!r}, expected {expected}")
    if detail:
        parts.append(("; " if (found is not None or expected is not None) else "") + detail)
    return " ".join(parts).replace(" ;", ";")


class FileFormatError(SomtorchError, ValueError):
    """A file does not follow the expected format (wrong version, file type, data type...).

    Attributes
    ----------
    path, field, found, expected : the file, the header field, what was read, what was expected.
    """

    def __init__(self, path=None, field=None, found=None, expected=None, detail=None):
        self.path = None if path is None else os.fspath(path)
        self.field = field
        self.found = found
        self.expected = expected
        self.detail = detail
        super().__init__(_describe(path, field, found, expected, detail))


class TruncatedFileError(FileFormatError):
    """The payload is shorter (or longer) than the header announces."""


class GeometryMismatchError(FileFormatError):
    """A file's header does not match the geometry requested by the caller."""


class ShapeError(SomtorchError, ValueError):
    """A tensor or array has the wrong shape, rank or dtype."""


class NonFiniteError(SomtorchError, ValueError):
    """NaN or infinite values where finite values are required (PINK cannot handle them)."""


class OutputExistsError(SomtorchError, FileExistsError):
    """An output file exists and ``overwrite=True`` was not given."""


# Backwards-compatible alias
FileExistsError_ = OutputExistsError


class ConfigError(SomtorchError, ValueError):
    """An option or configuration value is invalid.

    Raised either with a ready message, ``ConfigError("...")``, or described like
    :class:`FileFormatError`: ``ConfigError(path, field, found, expected, detail=None)`` where
    ``path`` is the config file or ``None``.

    Attributes
    ----------
    path, field, found, expected, detail : as given (``None`` for a plain message).
    """

    def __init__(self, *args, detail=None):
        if len(args) <= 1 and detail is None:
            self.path = self.field = self.found = self.expected = self.detail = None
            super().__init__(*args)
            return
        if len(args) > 5:
            raise TypeError("ConfigError(path, field, found, expected, detail) takes at most 5 arguments")
        path, field, found, expected, pos_detail = (list(args) + [None] * 5)[:5]
        detail = detail if detail is not None else pos_detail
        self.path = None if path is None else os.fspath(path)
        self.field, self.found, self.expected, self.detail = field, found, expected, detail
        super().__init__(_describe(path, field, found, expected, detail))


class PickleNotAllowedError(SomtorchError, PermissionError):
    """A pickle sidecar would have to be loaded but ``allow_pickle=True`` was not given."""


class MissingFileError(SomtorchError, FileNotFoundError):
    """An input file or folder does not exist (also a :class:`FileNotFoundError`).

    ``MissingFileError(path, detail=None, field=None)``; the message names the path, and the field
    (what the path was meant to be, e.g. ``'records'``) when given.

    Attributes
    ----------
    path, field, detail : as given.
    """

    def __init__(self, path, detail=None, field=None):
        self.path = os.fspath(path)
        self.field, self.detail = field, detail
        msg = f"{self.path}: " + (f"field '{field}': " if field else "") + "file not found"
        if detail:
            msg += f"; {detail}"
        super().__init__(msg)
        self._message = msg
        self.errno = errno.ENOENT
        self.strerror = msg
        self.filename = self.path

    def __str__(self) -> str:
        return self._message


class NotRegularFileError(FileFormatError):
    """An input path is a FIFO, device, socket or folder where a regular file is required."""


class UnsafePathError(SomtorchError, ValueError):
    """A path read from a file (e.g. a catalogue) points outside the folder it must stay in."""


def _size(n) -> str:
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


class OutOfSpaceError(SomtorchError, OSError):
    """Not enough disk space (or a file-size limit) for an output, found before or while writing.

    ``OutOfSpaceError(path, needed=None, free=None, errno_=ENOSPC, detail=None)``; the message names
    the path, the size needed and the space free when known (``errno`` is ``ENOSPC`` or ``EFBIG``).
    """

    def __init__(self, path, needed=None, free=None, errno_=errno.ENOSPC, detail=None):
        self.path = os.fspath(path)
        self.needed, self.free, self.detail = needed, free, detail
        what = "no space left on device" if errno_ != errno.EFBIG else "file size limit exceeded"
        msg = f"{self.path}: {what}"
        if needed is not None:
            msg += f"; needs {_size(needed)} ({int(needed)} bytes)"
        if free is not None:
            msg += f", {_size(free)} free"
        if detail:
            msg += f"; {detail}"
        super().__init__(errno_, msg, self.path)
        self._message = msg

    def __str__(self) -> str:
        return self._message


class GeometryWarning(UserWarning):
    """Sizes set explicitly in the native convention that break exact rotation/flip invariance
    (neuron, image and distance window of different parity; see
    :func:`somtorch.geometry.default_neuron_dim`)."""
