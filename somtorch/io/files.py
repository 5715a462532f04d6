"""Opening input files safely: missing paths and special files raise typed errors.

:func:`open_regular` refuses anything but a regular file before reading (a FIFO or device in
place of an input would otherwise block or stream forever) and turns a missing path into
:class:`~somtorch.errors.MissingFileError` (also a :class:`FileNotFoundError`).
"""

from __future__ import annotations

import os
import stat

from somtorch.errors import MissingFileError, NotRegularFileError

__all__ = ["check_regular_file", "check_folder", "open_regular"]


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def _stat(path: str, what: str | None) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise MissingFileError(path, field=what) from None


def check_regular_file(path, what: str | None = None) -> int:
    """Raise unless ``path`` is an existing regular file (symlinks followed); return its size."""
    path = os.fspath(path)
    st = _stat(path, what)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFileError(path, what, _kind(st.st_mode), "a regular file")
    return st.st_size


def check_folder(path, what: str | None = None) -> str:
    """Raise unless ``path`` is an existing folder; return it."""
    path = os.fspath(path)
    st = _stat(path, what)
    if not stat.S_ISDIR(st.st_mode):
        raise NotRegularFileError(path, what, _kind(st.st_mode) if not stat.S_ISREG(st.st_mode) else "a file",
                                  "a folder")
    return path


def open_regular(path, mode: str = "rb", what: str | None = None, **kwargs):
    """Open an existing regular file for reading (never blocks on a FIFO); typed errors otherwise."""
    if any(c in mode for c in "wax+"):
        raise ValueError("open_regular only opens files for reading")
    path = os.fspath(path)
    check_regular_file(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise MissingFileError(path, field=what) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped after the first check
            raise NotRegularFileError(path, what, _kind(st.st_mode), "a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise
