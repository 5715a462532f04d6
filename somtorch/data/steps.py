"""Geometry steps for recipes: ``crop`` and ``resize`` (registered in the preprocessing registry).

Importing :mod:`somtorch.data` registers them, so a recipe can read::

    steps = ["rms", {"name": "snr_clip", "snr": 2}, "log", "minmax",
             {"name": "crop", "size": 96}, {"name": "resize", "size": 32}, "minmax"]

Convention
----------
* ``crop`` keeps the central ``size`` x ``size`` pixels, starting at row/col ``(n - size) // 2``;
  when ``n - size`` is even the image centre ``(n-1)/2`` stays the centre ``(size-1)/2``, when
  odd the crop is half a pixel towards the start of each axis. ``size`` may be ``(rows, cols)``.
* ``resize`` resamples to ``size`` x ``size`` with torch ``interpolate``: ``mode='area'`` (block
  mean, the default; for shrinking) or ``'bilinear'`` (``align_corners=False``: pixel edges of
  both grids coincide). Dropped pixels count as ``fill`` = 0 in the average; an output pixel is
  kept when any input pixel it covers was kept (area) or its bilinear mask weight is > 0.
"""

from __future__ import annotations

import torch

from somtorch.errors import ConfigError
from somtorch.preprocessing.pipeline import STEPS, PreprocessState, register_step

__all__ = ["crop_step", "resize_step"]


def _pair(size, name: str) -> tuple[int, int]:
    if isinstance(size, (list, tuple)):
        if len(size) != 2:
            raise ConfigError(None, f"{name}.size", size, "an int or [rows, cols]")
        out = (int(size[0]), int(size[1]))
    else:
        out = (int(size), int(size))
    if min(out) < 1:
        raise ConfigError(None, f"{name}.size", size, "positive")
    return out


def crop_step(state: PreprocessState, size) -> PreprocessState:
    """Keep the central ``size`` pixels (see the module Convention)."""
    h, w = state.image.shape[-2:]
    sh, sw = _pair(size, "crop")
    if sh > h or sw > w:
        raise ConfigError(None, "crop.size", (sh, sw), f"at most the image shape ({h}, {w})")
    r0, c0 = (h - sh) // 2, (w - sw) // 2
    state.image = state.image[r0:r0 + sh, c0:c0 + sw].contiguous()
    state.mask = state.mask[r0:r0 + sh, c0:c0 + sw].contiguous()
    return state


def resize_step(state: PreprocessState, size, mode: str = "area") -> PreprocessState:
    """Resample to ``size`` pixels (``mode`` 'area' or 'bilinear'; see the module Convention)."""
    if mode not in ("area", "bilinear"):
        raise ConfigError(None, "resize.mode", mode, "'area' or 'bilinear'")
    out = _pair(size, "resize")
    if tuple(state.image.shape[-2:]) == out:
        return state
    kw = {"align_corners": False} if mode == "bilinear" else {}
    img = torch.where(state.mask, state.image, torch.zeros_like(state.image))
    img = torch.nn.functional.interpolate(img[None, None], size=out, mode=mode, **kw)[0, 0]
    m = torch.nn.functional.interpolate(state.mask.to(img.dtype)[None, None], size=out,
                                        mode=mode, **kw)[0, 0]
    state.mask = m > 0
    state.image = torch.where(state.mask, img, torch.zeros_like(img))
    return state


if "crop" not in STEPS:
    register_step("crop")(crop_step)
if "resize" not in STEPS:
    register_step("resize")(resize_step)
