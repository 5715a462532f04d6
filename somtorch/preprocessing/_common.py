"""Small helpers shared by the preprocessing modules (array kind in, same kind out)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["as_tensor", "restore", "as_numpy", "is_torch"]


def is_torch(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def as_tensor(x: Any, *, float_only: bool = True) -> tuple[torch.Tensor, bool]:
    """Return ``(tensor, was_numpy)``. Numpy input is wrapped without copying where possible.

    Integer and boolean inputs are promoted to float32 when ``float_only`` (float64 stays float64).
    """
    if isinstance(x, torch.Tensor):
        t, was_numpy = x, False
    else:
        arr = np.asarray(x)
        if arr.dtype.byteorder not in ("=", "|"):
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if not arr.flags.writeable:
            arr = arr.copy()
        t, was_numpy = torch.from_numpy(np.ascontiguousarray(arr)), True
    if float_only and not torch.is_floating_point(t):
        t = t.to(torch.float32)
    return t, was_numpy


def restore(t: torch.Tensor, was_numpy: bool) -> Any:
    """Inverse of :func:`as_tensor`: numpy in -> numpy out, torch in -> torch out."""
    if was_numpy:
        return t.detach().cpu().numpy()
    return t


def as_numpy(x: Any) -> np.ndarray:
    """Any array-like (torch on any device included) as a numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)
