"""Atomic output files: write to a temporary name in the same directory, then rename.

A reader never sees a half-written file: output goes to ``.<name>.tmp-p<pid>-<random>`` next to
the target, is flushed and ``fsync``-ed, and is moved into place with :func:`os.replace` only when
the writer finishes without error. On an exception the temporary file is removed and the
target is left untouched (or absent). A process killed outright (SIGKILL, power cut) cannot
clean up: :func:`sweep_temp_files` removes the temporary files of writers that are no longer
running (the CLIs call it when they start in a run folder).

Disk space: :func:`check_free_space` refuses, before any work, an output whose final size is
known and larger than the free space; a write that fails with ``ENOSPC``/``EFBIG``/``EDQUOT``
becomes :class:`~somtorch.errors.OutOfSpaceError` naming the path and the size
(:func:`space_error`).

Examples
--------
>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> with atomic_output(os.path.join(d, "a.bin")) as f:
...     _ = f.write(b"abc")
>>> sorted(os.listdir(d))
['a.bin']
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import weakref
from collections.abc import Iterator
from typing import IO

from somtorch.errors import OutOfSpaceError, OutputExistsError

__all__ = ["AtomicFile", "PreallocatedOutput", "atomic_output", "check_output_path", "check_free_space",
           "space_error", "sweep_temp_files", "temp_name"]

_SPACE_ERRNOS = (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", -1))
_TEMP_RE = re.compile(r"^\..+\.tmp-(?:p(\d+)-)?[0-9a-f]{12}$")


def temp_name(path: str | os.PathLike) -> str:
    """``dir/.<name>.tmp-p<pid>-<random>``: the temporary name of an atomic write of ``path``."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(directory, f".{name}.tmp-p{os.getpid()}-{secrets.token_hex(6)}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def sweep_temp_files(folder, depth: int = 2, min_age_s: float = 600.0) -> list[str]:
    """Remove temporary files of atomic writes that can never complete; returns their paths.

    A temporary file whose writer process (the ``p<pid>`` in its name) is no longer running on
    this host is removed; one without a pid (older writers) only when older than ``min_age_s``.
    Searches ``folder`` and ``depth`` levels of subfolders. Partial outputs of resumable writers
    (``.<name>.partial``) are *not* touched: a resume continues them."""
    import time

    removed: list[str] = []
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return removed
    now = time.time()
    for root, dirs, files in os.walk(folder):
        if root[len(folder):].count(os.sep) >= depth:
            dirs[:] = []
        for f in files:
            m = _TEMP_RE.match(f)
            if not m:
                continue
            p = os.path.join(root, f)
            with contextlib.suppress(OSError):
                stale = (not _pid_alive(int(m.group(1)))) if m.group(1) else now - os.path.getmtime(p) > min_age_s
                if stale:
                    os.remove(p)
                    removed.append(p)
    return removed


def check_free_space(path, needed: int, what: str = "output", margin: int = 16 << 20) -> None:
    """Raise :class:`OutOfSpaceError` unless the file system of ``path`` has ``needed`` bytes free
    (plus a small margin); ``path`` may not exist yet (its folder is checked)."""
    p = os.path.abspath(os.fspath(path))
    d = p if os.path.isdir(p) else os.path.dirname(p)
    while d and not os.path.exists(d):
        d = os.path.dirname(d)
    try:
        free = shutil.disk_usage(d or ".").free
    except OSError:
        return
    if int(needed) + margin > free:
        raise OutOfSpaceError(p, int(needed), free, detail=f"checked before writing the {what}; free space "
                              "or choose another folder")


def space_error(e: BaseException, path, needed: int | None = None, detail: str | None = None) -> BaseException:
    """``e`` as :class:`OutOfSpaceError` naming ``path`` when it is a full disk / file-size / quota
    error (also torch's ``RuntimeError`` from a failed ``torch.save``); other errors unchanged."""
    if isinstance(e, OutOfSpaceError):
        if needed is None and detail is None:
            return e
        return OutOfSpaceError(e.path, e.needed if needed is None else needed, e.free, e.errno,
                               detail if detail is not None else e.detail)
    code = getattr(e, "errno", None)
    if code is None and isinstance(e, RuntimeError):
        text = str(e).lower()
        if "file too large" in text:
            code = errno.EFBIG
        elif "no space left" in text or "failed writing" in text or "unexpected pos" in text:
            code = errno.ENOSPC
    if code not in _SPACE_ERRNOS:
        return e
    free = None
    with contextlib.suppress(OSError):
        if code != errno.EFBIG:  # a file-size limit, not the disk: free space says nothing
            free = shutil.disk_usage(os.path.dirname(os.path.abspath(os.fspath(path))) or ".").free
    return OutOfSpaceError(path, needed, free, errno.EFBIG if code == errno.EFBIG else errno.ENOSPC, detail)


def check_output_path(path: str | os.PathLike, overwrite: bool) -> str:
    """Return ``path`` as a string; raise :class:`OutputExistsError` if it exists and not ``overwrite``."""
    p = os.fspath(path)
    if os.path.exists(p) and not overwrite:
        raise OutputExistsError(f"{p}: output exists; pass overwrite=True to replace it")
    return p


class AtomicFile:
    """A temporary file that becomes ``path`` on :meth:`commit` and disappears on :meth:`abort`.

    Parameters
    ----------
    path : target file name.
    overwrite : replace an existing target (else :class:`OutputExistsError`, raised at once).
    mode : ``open`` mode of the temporary file (``"wb"``, ``"w+b"``, ``"r+b"``...).
    temp_path : fixed temporary name (used by resumable writers); default ``.<name>.tmp-<random>``.
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False, mode: str = "wb",
                 temp_path: str | os.PathLike | None = None):
        self.path = check_output_path(path, overwrite)
        self.overwrite = overwrite
        if temp_path is None:
            temp_path = temp_name(self.path)
        self.temp_path = os.fspath(temp_path)
        try:
            self.file: IO = open(self.temp_path, mode)  # noqa: SIM115 - closed in commit/abort
        except OSError as e:
            raise space_error(e, self.path) from e
        self.done = False

    def commit(self) -> None:
        """Flush, fsync, close and move the temporary file to ``path``."""
        if self.done:
            return
        try:
            check_output_path(self.path, self.overwrite)
            try:
                self.file.flush()
                os.fsync(self.file.fileno())
                self.file.close()
            except OSError as e:
                raise space_error(e, self.path, self._written()) from e
            if self.overwrite:
                os.replace(self.temp_path, self.path)
            else:
                self._link_no_clobber()
        except BaseException:
            self.abort()
            raise
        self.done = True
        with contextlib.suppress(OSError):  # make the rename durable where supported
            dfd = os.open(os.path.dirname(os.path.abspath(self.path)) or ".", os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _written(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int(self.file.tell())
        return None

    def _link_no_clobber(self) -> None:
        """Move into place without ever replacing a file created meanwhile by someone else."""
        try:
            os.link(self.temp_path, self.path)
        except FileExistsError:
            raise OutputExistsError(f"{self.path}: output appeared while writing; not replaced") from None
        except OSError:  # file system without hard links: best effort
            check_output_path(self.path, False)
            os.replace(self.temp_path, self.path)
            return
        os.remove(self.temp_path)

    def abort(self, remove: bool = True) -> None:
        """Close the temporary file and (by default) remove it; the target is not touched."""
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            self.file.close()
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.temp_path)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False, mode: str = "wb") -> Iterator[IO]:
    """Context manager yielding a file object whose content becomes ``path`` on success.

    Raises :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is False. The data is
    written to ``.<name>.tmp-<random>`` in the same directory, fsync-ed and renamed over ``path``
    with :func:`os.replace`; an exception inside the block removes the temporary file.
    """
    af = AtomicFile(path, overwrite=overwrite, mode=mode)
    try:
        yield af.file
    except OSError as e:
        n = af._written()
        af.abort()
        err = space_error(e, af.path, n)
        if err is e:
            raise
        raise err from e
    except BaseException:
        af.abort()
        raise
    af.commit()


def _pwrite(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        if hasattr(os, "pwrite"):
            k = os.pwrite(fd, view, offset)
        else:  # pragma: no cover - non-POSIX
            os.lseek(fd, offset, os.SEEK_SET)
            k = os.write(fd, view)
        view, offset = view[k:], offset + k


_LIVE_OUTPUTS: weakref.WeakSet = weakref.WeakSet()  # open PreallocatedOutput writers of this process


class PreallocatedOutput:
    """A preallocated file of ``header`` + ``n_rows`` fixed-size records, written row by row.

    The file is created at ``.<name>.partial`` next to the target with its full final size
    (sparse where supported), plus a journal ``.<name>.partial.rows`` holding one byte per row
    (1 = written). :meth:`write_rows_bytes` may be called at any row offset, in any order.
    :meth:`commit` (called on a clean ``with`` exit) checks that every row was written, fsyncs
    and renames into place; an exception inside ``with`` (or a failed commit at its end) removes
    both partial files unless ``keep_partial=True``. A failed direct :meth:`commit` call keeps the
    writer open so the missing rows can still be written.

    ``resume=True`` reopens an existing partial file (its header and size must match) so that a
    crashed run can fill in :meth:`missing_rows`. Because records have a fixed size, several
    processes can each open the partial file with ``resume=True``, write disjoint row ranges and
    :meth:`close` without committing; one process commits at the end.

    A new output whose final size does not fit the free disk space is refused at once
    (:class:`~somtorch.errors.OutOfSpaceError` naming the path and the size).
    """

    def __init__(self, path, header: bytes, n_rows: int, row_bytes: int, overwrite: bool = False, *,
                 resume: bool = False, keep_partial: bool = False):
        from somtorch.errors import ConfigError, GeometryMismatchError, TruncatedFileError

        self.path = check_output_path(path, overwrite)
        if n_rows < 0 or row_bytes <= 0:
            raise ConfigError(f"n_rows must be >= 0 and row_bytes > 0, got {n_rows}, {row_bytes}")
        self.n_rows, self.row_bytes, self.offset = int(n_rows), int(row_bytes), len(header)
        self.keep_partial = keep_partial
        total = self.offset + self.n_rows * self.row_bytes
        d, name = os.path.split(os.path.abspath(self.path))
        self.temp_path = os.path.join(d, f".{name}.partial")
        self.rows_path = self.temp_path + ".rows"
        self._check_not_shared(header, resume)
        reuse = resume and os.path.exists(self.temp_path)
        if reuse:
            with open(self.temp_path, "rb") as f:
                found = f.read(len(header))
            if found != header or os.path.getsize(self.temp_path) != total:
                raise GeometryMismatchError(self.temp_path, "header", "a different header or size",
                                            "the header of this writer", "cannot resume")
            if not os.path.exists(self.rows_path) or os.path.getsize(self.rows_path) != self.n_rows:
                raise TruncatedFileError(self.rows_path, "row journal", None, None,
                                         "missing or of the wrong size; cannot resume")
        if not reuse:  # the final size is known: refuse at once rather than fail hours later
            check_free_space(self.path, total + self.n_rows, "output")
        self._af = AtomicFile(self.path, overwrite, "r+b" if reuse else "w+b", self.temp_path)
        self._rows = open(self.rows_path, "r+b" if reuse else "w+b")  # noqa: SIM115
        if not reuse:
            self._af.file.write(header)
            self._af.file.truncate(total)
            self._rows.truncate(self.n_rows)
        self._af.file.flush()
        self._header, self._resumed = header, bool(resume)
        _LIVE_OUTPUTS.add(self)

    def _check_not_shared(self, header: bytes, resume: bool) -> None:
        """Refuse a second, different output to the same file in this process (e.g. the mapping
        and the rotation/flip file given the same path), before any work.

        Writers of the same header opened with ``resume=True`` may share a file (shards). An
        untouched, freshly created writer of the other output is aborted (it cannot complete)."""
        from somtorch.errors import ConfigError

        for other in list(_LIVE_OUTPUTS):
            if other is self or other._af.done or other.temp_path != self.temp_path:
                continue
            if other._header == header and resume and other._resumed:
                continue
            if not other._resumed and other.missing_rows().size == other.n_rows:
                other.abort()
            raise ConfigError(self.path, "output path", self.path,
                              "a file that no other output of this run writes",
                              f"the same file is already open for a {type(other).__name__}; give each output "
                              "(e.g. the mapping and the rotation/flip file) its own path")

    def write_rows_bytes(self, start: int, k: int, data: bytes) -> None:
        """Write ``k`` records (``data``, exactly ``k * row_bytes`` bytes) at row ``start``."""
        from somtorch.errors import ShapeError

        if start < 0 or k < 0 or start + k > self.n_rows:
            raise ShapeError(f"rows {start}..{start + k} outside 0..{self.n_rows}")
        if len(data) != k * self.row_bytes:
            raise ShapeError(f"{len(data)} bytes given for {k} rows of {self.row_bytes} bytes")
        _pwrite(self._af.file.fileno(), data, self.offset + start * self.row_bytes)
        _pwrite(self._rows.fileno(), b"\x01" * k, start)

    def missing_rows(self):
        """Indices (numpy int64) of the rows not yet written, according to the journal."""
        import numpy as np

        done = np.fromfile(self.rows_path, dtype=np.uint8, count=self.n_rows)
        return np.flatnonzero(done == 0)

    def close(self) -> None:
        """Close the handles but keep the partial file (for another process or a later resume)."""
        if not self._af.done:
            self._af.abort(remove=False)
            self._rows.close()

    def commit(self) -> None:
        """Check that every row was written, fsync and rename the output into place."""
        from somtorch.errors import TruncatedFileError

        if self._af.done:
            return
        missing = self.missing_rows()
        if missing.size:
            raise TruncatedFileError(self.path, "rows written", self.n_rows - missing.size, self.n_rows,
                                     f"rows never written (first: {int(missing[0])}); see missing_rows()")
        self._af.commit()
        self._rows.close()
        os.remove(self.rows_path)

    def finish(self) -> bool:
        """Commit if every row is written (True); else close and keep the partial file (False).

        Convenient for sharded runs: each shard calls ``finish()`` and the last one commits.
        """
        if self._af.done:
            return os.path.exists(self.path) and not os.path.exists(self.temp_path)
        if self.missing_rows().size:
            self.close()
            return False
        self.commit()
        return True

    def __del__(self):  # never leak handles (kept partial files can be resumed)
        with contextlib.suppress(Exception):
            self.close()

    def abort(self) -> None:
        """Close and remove the partial file and its journal."""
        if not self._af.done:
            self._af.abort(remove=True)
            self._rows.close()
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.rows_path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.close() if self.keep_partial else self.abort()
                raise
        elif self.keep_partial:
            self.close()
        else:
            self.abort()
        return False
