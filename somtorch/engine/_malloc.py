"""Keep large CPU work buffers in the heap (glibc) instead of fresh ``mmap`` pages every step.

Online training allocates the same large temporaries for every image (the neuron features, the
selected full-size transforms, the update). glibc serves allocations above its mmap threshold
(at most 32 MiB by default, e.g. the 36 MiB of eight rot90/flip copies of a 10×10 SOM's
150×150-case windows) with a fresh ``mmap`` and returns them with ``munmap`` on free, so every
step pays a page fault per 4 KiB page: measured on a 2-core EPYC, gathering those copies took
19.5 ms with fresh pages and 5.5 ms with reused heap memory. :func:`tune_malloc` raises
glibc's mmap and trim thresholds (``mallopt``) once per process so that such buffers are
recycled. Numbers are unchanged (only where memory comes from); freed memory is kept by the
process for reuse instead of being returned to the system at once.

The setting is process-wide, so library calls leave it alone: the command-line programs
(``somtorch.train``, ``somtorch.map``, ``somtorch.pink``) call it at start, and a notebook or script
training large problems can call ``somtorch.engine.tune_malloc()`` once. Set
``SOMTORCH_MALLOC_TUNING=0`` to leave the allocator alone. Non-glibc platforms are untouched.
"""

from __future__ import annotations

import os
import sys

__all__ = ["tune_malloc"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_DONE: list[bool] = []


def tune_malloc() -> bool:
    """Raise glibc's mmap/trim thresholds once per process; ``True`` if the setting is active."""
    if _DONE:
        return _DONE[0]
    ok = False
    if sys.platform.startswith("linux") and os.environ.get("SOMTORCH_MALLOC_TUNING", "1") != "0":
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # musl or no glibc: nothing to do
            mallopt = None
        if mallopt is not None:
            ok = bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    _DONE.append(ok)
    return ok
