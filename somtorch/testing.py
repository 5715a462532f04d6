"""Test helpers shipped with the package (importable by downstream projects too).

``run_if`` follows Lightning's ``RunIf``: one marker that skips a test with a readable reason.
``run_module`` runs a command-line program in-process, as ``python -m somtorch.<module>`` would;
``random_som`` builds a small randomly initialised cartesian SOM for a geometry.
"""

from __future__ import annotations

import pytest
import torch

__all__ = ["run_if", "available_devices", "run_module", "random_som"]


def run_if(*, cuda: bool = False, min_cuda_gpus: int = 0, bf16_cuda: bool = False):
    """Return a ``pytest.mark.skipif`` marker for hardware requirements.

    Examples
    --------
    >>> @run_if(cuda=True)            # doctest: +SKIP
    ... def test_cuda_path(): ...
    """
    reasons = []
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if (cuda or bf16_cuda) and n == 0:
        reasons.append("a CUDA device (none visible: CPU-only run)")
    if min_cuda_gpus and n < min_cuda_gpus:
        reasons.append(f"at least {min_cuda_gpus} CUDA devices (found {n})")
    if bf16_cuda and n and not torch.cuda.is_bf16_supported():
        reasons.append("bf16 support on the CUDA device")
    return pytest.mark.skipif(bool(reasons), reason="requires " + " and ".join(reasons))


def available_devices() -> list[str]:
    """Devices to parametrise device-agnostic tests over: always 'cpu', plus 'cuda' when present."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def run_module(module: str, argv: list) -> int:
    """Run ``python -m somtorch.<module> argv...`` in this process; returns the exit status.

    ``sys.argv`` is restored afterwards; ``SystemExit`` becomes its status (Hydra's ``main``
    exits through it).

    Examples
    --------
    >>> run_module("map", ["--help"])  # doctest: +SKIP
    0
    """
    import importlib
    import sys

    mod = importlib.import_module(f"somtorch.{module}")
    old = sys.argv[:]
    sys.argv = [f"somtorch.{module}"] + [str(a) for a in argv]
    try:
        return mod.main()
    except SystemExit as e:
        return int(e.code or 0)
    finally:
        sys.argv = old


def random_som(geometry, shape: tuple = (2, 2), seed: int = 0, **kw):
    """A cartesian :class:`~somtorch.engine.RotationInvariantSOM` of ``shape`` with random neurons
    (``init="random"``, ``seed``); ``kw`` go to the SOM (``arithmetic``, ``tie_break``, ...)."""
    from somtorch.engine import RotationInvariantSOM
    from somtorch.geometry import Lattice

    return RotationInvariantSOM(Lattice("cartesian", shape), geometry, init="random", seed=seed, **kw)
