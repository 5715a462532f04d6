"""Test helpers shipped with the package (importable by downstream projects too).

``run_if`` follows Lightning's ``RunIf``: one marker that skips a test with a readable reason.
"""

from __future__ import annotations

import pytest
import torch

__all__ = ["run_if", "available_devices"]


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
