"""Compile a small C source once with the system compiler and load it (the compiled loops' helper).

Used by :mod:`somtorch.engine._native` and :mod:`somtorch.geometry._sampler`. The shared library is
built with ``$CC`` (else ``cc``/``gcc``) into the cache folder (``$SOMTORCH_CACHE_DIR`` or
``~/.cache/somtorch``, subfolder ``native``), named by a hash of the source, flags, compiler and
machine, written under a temporary name and renamed into place (concurrent processes never load a
half-written file). ``SOMTORCH_NATIVE=0`` (or ``off``/``false``/``no``) disables every compiled loop;
callers then use their numpy/torch path, which gives the same results.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile

__all__ = ["native_enabled", "build", "FLAGS", "CLONES_C"]

#: C preprocessor lines defining ``SOMTORCH_CLONES``: an AVX2 (x86-64-v3) clone beside the default
#: build of a function on x86-64 GCC/Clang (``-DSOMTORCH_NO_CLONES``, the fallback build, turns it off)
CLONES_C = r"""
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__APPLE__) && !defined(SOMTORCH_NO_CLONES)
#define SOMTORCH_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SOMTORCH_CLONES
#endif
"""

#: no contraction into fused multiply-adds and no unsafe math: the C operations are exactly the IEEE
#: operations written (an explicit ``fmaf`` where a fused multiply-add is meant)
FLAGS = ["-O3", "-shared", "-fPIC", "-std=c99", "-ffp-contract=off", "-fno-fast-math"]


def native_enabled() -> bool:
    """Whether the compiled loops may be used (``SOMTORCH_NATIVE`` is not ``0``)."""
    return os.environ.get("SOMTORCH_NATIVE", "1").strip() not in ("0", "off", "false", "no")


def cache_dir() -> str:
    root = os.environ.get("SOMTORCH_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "somtorch")
    return os.path.join(root, "native")


def build(source: str, stem: str, fallback_defines: tuple = ()) -> ctypes.CDLL:
    """Compile ``source`` (once; cached) and load it. If compiling fails and ``fallback_defines``
    are given (e.g. ``("-DSOMTORCH_NO_CLONES",)``), it is retried with them. Raises ``OSError`` or
    ``subprocess.CalledProcessError`` when no library can be built."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise OSError("no C compiler (set $CC)")
    tag = hashlib.sha256((source + " ".join(FLAGS) + cc + platform.machine()).encode()).hexdigest()[:16]
    folder = cache_dir()
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        folder = tempfile.gettempdir()
    lib = os.path.join(folder, f"{stem}-{tag}.so")
    if not os.path.exists(lib):
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            src = os.path.join(tmp, f"{stem}.c")
            with open(src, "w") as fh:
                fh.write(source)
            out = os.path.join(tmp, f"{stem}.so")
            try:
                subprocess.run([cc, *FLAGS, src, "-o", out, "-lm"], check=True, capture_output=True, timeout=120)
            except subprocess.CalledProcessError:
                if not fallback_defines:
                    raise
                subprocess.run([cc, *FLAGS, *fallback_defines, src, "-o", out, "-lm"], check=True,
                               capture_output=True, timeout=120)
            os.replace(out, lib)  # atomic
    return ctypes.CDLL(lib)
