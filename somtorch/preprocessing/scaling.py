"""Intensity scaling: min-max, transfer functions, SNR clipping, island normalisation, channel weights.

Every function accepts a numpy array or a torch tensor and returns the same kind (a tensor stays on
its device, so the batched paths run on the GPU when the input lives there). Inputs are never
modified in place. Integer inputs are promoted to float32.

Functions come with ``torch.nn.Module`` wrappers (kornia style: ``minmax`` / :class:`MinMax`,
``log_transfer`` / :class:`LogTransfer`, ...), so a preprocessing chain can be an
``nn.Sequential``.

PYINK bugs fixed (each pinned by a test named after it)
-------------------------------------------------------
* ``minmax`` of constant data divided by zero (NaN/inf); here the selected pixels become 0.
* ``minmax`` asserted that the mask has the data's shape; here it only has to broadcast.
* ``ImageReader.reweight`` needed a records sidecar, counted progress with record values and failed
  on single-channel (rank-2) files; :func:`reweight` has none of these limits.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from somtorch.errors import ConfigError, NonFiniteError, OutputExistsError, ShapeError
from somtorch.preprocessing._common import as_numpy, as_tensor, restore

__all__ = [
    "minmax",
    "log_transfer",
    "asinh_transfer",
    "sqrt_transfer",
    "power_transfer",
    "TRANSFER_FUNCTIONS",
    "snr_mask",
    "snr_clip",
    "normalise_islands",
    "channel_weights",
    "apply_channel_weights",
    "reweight",
    "MinMax",
    "LogTransfer",
    "AsinhTransfer",
    "SqrtTransfer",
    "PowerTransfer",
    "SNRClip",
    "ChannelWeighting",
]

_EMPTY = ("raise", "nan", "zero")


def _dims(t: torch.Tensor, dim: int | Sequence[int] | None) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(t.ndim))
    if isinstance(dim, int):
        return (dim,)
    return tuple(dim)


def minmax(data: Any, mask: Any = None, *, dim: int | Sequence[int] | None = None,
           fill: float | None = None, on_empty: str = "raise") -> Any:
    """Scale data to [0, 1]: ``(x - min) / (max - min)``, min/max over the selected finite pixels.

    Parameters
    ----------
    data : array or tensor
        Any shape. ``dim=None`` uses one min/max for the whole array (PYINK); ``dim=(-2, -1)``
        normalises each image of a stack on its own (batched).
    mask : bool array or tensor, optional
        Pixels that define min and max; must broadcast against ``data``.
    dim : int or tuple of int, optional
        Reduction dims for min/max.
    fill : float, optional
        Value for the pixels outside ``mask``. ``None`` (default, PYINK) scales them with the same
        affine map, so they may fall outside [0, 1].
    on_empty : {'raise', 'nan', 'zero'}
        What to do when a reduction has no finite selected pixel: raise
        :class:`~somtorch.errors.NonFiniteError`, or fill that slice with NaN or 0.

    Returns
    -------
    Same kind, shape and (float) dtype as ``data``.

    Convention
    ----------
    NaN and inf pixels are ignored for min/max and stay non-finite in the output (NaN-aware, like
    ``nanmin``/``nanmax``). Where max == min (constant selection) the output is 0 rather than
    PYINK's NaN/inf.
    """
    if on_empty not in _EMPTY:
        raise ConfigError(f"minmax: on_empty {on_empty!r} is not one of {_EMPTY}")
    x, was_np = as_tensor(data)
    valid = torch.isfinite(x)
    if mask is not None:
        m = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(np.asarray(mask))
        m = m.to(device=x.device, dtype=torch.bool)
        try:
            m = torch.broadcast_to(m, x.shape)
        except RuntimeError as exc:
            raise ShapeError(f"minmax: mask shape {tuple(m.shape)} does not broadcast to data "
                             f"shape {tuple(x.shape)}") from exc
        valid = valid & m
    dims = _dims(x, dim)
    inf = torch.tensor(float("inf"), dtype=x.dtype, device=x.device)
    lo = torch.where(valid, x, inf).amin(dim=dims, keepdim=True) if x.numel() else inf
    hi = torch.where(valid, x, -inf).amax(dim=dims, keepdim=True) if x.numel() else -inf
    empty = ~valid.any(dim=dims, keepdim=True) if x.numel() else torch.tensor(True)
    if bool(empty.any()) and on_empty == "raise":
        raise NonFiniteError(f"minmax: {int(empty.sum())} slice(s) have no finite selected pixel")
    span = hi - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    out = torch.where(span > 0, (x - lo) / safe, torch.zeros_like(x))
    out = torch.where(torch.isfinite(x), out, x)  # NaN/inf stay as they were
    if bool(empty.any()):
        val = float("nan") if on_empty == "nan" else 0.0
        out = torch.where(empty, torch.full_like(out, val), out)
    if mask is not None and fill is not None:
        out = torch.where(m, out, torch.full_like(out, float(fill)))
    return restore(out, was_np)


# ------------------------------------------------------------------------------------------------
# Transfer functions
# ------------------------------------------------------------------------------------------------

def _nonpos(out: torch.Tensor, bad: torch.Tensor, value: float) -> torch.Tensor:
    return torch.where(bad, torch.full_like(out, value), out)


def log_transfer(data: Any, base: float = 10.0, *, offset: float = 0.0,
                 nonpositive: float = float("nan")) -> Any:
    """Logarithmic transfer ``log_base(x + offset)``.

    Convention
    ----------
    ``base=10`` matches the cookbook/PYINK notebooks (``np.log10``). Pixels with
    ``x + offset <= 0`` become ``nonpositive`` (NaN by default; numpy would give -inf for 0 and NaN
    with a warning for negatives). NaN stays NaN.
    """
    if not (base > 0 and base != 1):
        raise ConfigError(f"log_transfer: base must be > 0 and != 1, got {base}")
    x, was_np = as_tensor(data)
    y = x + offset
    bad = y <= 0
    out = torch.log(torch.where(bad, torch.ones_like(y), y)) / math.log(base)
    return restore(_nonpos(out, bad, nonpositive), was_np)


def asinh_transfer(data: Any, softening: float = 1.0) -> Any:
    """Inverse hyperbolic sine transfer ``asinh(x / softening)``.

    Convention
    ----------
    Linear for ``|x| << softening``, logarithmic above; defined for negative values too.
    """
    if not softening > 0:
        raise ConfigError(f"asinh_transfer: softening must be > 0, got {softening}")
    x, was_np = as_tensor(data)
    return restore(torch.asinh(x / softening), was_np)


def sqrt_transfer(data: Any, *, negative: float = float("nan")) -> Any:
    """Square-root transfer ``sqrt(x)``; negative pixels become ``negative`` (NaN by default)."""
    x, was_np = as_tensor(data)
    bad = x < 0
    out = torch.sqrt(torch.where(bad, torch.zeros_like(x), x))
    return restore(_nonpos(out, bad, negative), was_np)


def power_transfer(data: Any, gamma: float, *, negative: float = float("nan")) -> Any:
    """Power-law transfer ``x ** gamma``; negative pixels become ``negative`` (NaN by default)."""
    x, was_np = as_tensor(data)
    bad = x < 0
    out = torch.pow(torch.where(bad, torch.zeros_like(x), x), gamma)
    return restore(_nonpos(out, bad, negative), was_np)


#: Transfer functions by name (used by the pipeline registry and configs).
TRANSFER_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "log": log_transfer,
    "asinh": asinh_transfer,
    "sqrt": sqrt_transfer,
    "power": power_transfer,
    "linear": lambda data, **_: data,
}


# ------------------------------------------------------------------------------------------------
# Signal-to-noise clipping
# ------------------------------------------------------------------------------------------------

def _per_image(rms: Any, x: torch.Tensor, image_dims: int) -> torch.Tensor:
    r = torch.as_tensor(as_numpy(rms) if not isinstance(rms, torch.Tensor) else rms,
                        dtype=x.dtype, device=x.device)
    lead = x.ndim - image_dims
    if r.ndim > lead:
        raise ShapeError(f"rms of shape {tuple(r.shape)} does not match the {lead} leading "
                         f"dim(s) of data shape {tuple(x.shape)}")
    return r.reshape(*r.shape, *([1] * (x.ndim - r.ndim)))


def _resolve_rms(data: Any, rms: Any, rms_kwargs: dict | None) -> Any:
    if rms is not None:
        return rms
    from somtorch.preprocessing.noise import rms_estimate, rms_estimate_batch

    kw = rms_kwargs or {}
    if data.ndim == 2:
        return rms_estimate(data, **kw)
    return rms_estimate_batch(data, **kw)


def snr_mask(data: Any, rms: Any = None, snr: float = 2.0, *,
             rms_kwargs: dict | None = None) -> Any:
    """Boolean mask of the pixels at or above ``snr * rms`` (the cookbook's ``data >= minsnr*noise``).

    Parameters
    ----------
    data : array or tensor, (H, W) or a stack (..., H, W)
    rms : float or array/tensor of shape ``data.shape[:-2]``, optional
        Noise per image. ``None`` estimates it with :func:`~somtorch.preprocessing.rms_estimate`
        (per image for stacks, with ``rms_kwargs``).
    snr : float
        Signal-to-noise threshold.

    Convention
    ----------
    The threshold is absolute (``x >= snr * rms``); no background level is subtracted, as in the
    cookbook. NaN never passes.
    """
    x, was_np = as_tensor(data)
    r = _per_image(_resolve_rms(data, rms, rms_kwargs), x, 2)
    return restore(x >= snr * r, was_np)


def snr_clip(data: Any, rms: Any = None, snr: float = 2.0, fill: float = 0.0, *,
             rms_kwargs: dict | None = None) -> Any:
    """Set the pixels below ``snr * rms`` (and NaN) to ``fill``; see :func:`snr_mask`."""
    x, was_np = as_tensor(data)
    m = snr_mask(x, _resolve_rms(data, rms, rms_kwargs), snr)
    return restore(torch.where(m, x, torch.full_like(x, fill)), was_np)


# ------------------------------------------------------------------------------------------------
# Per-island normalisation
# ------------------------------------------------------------------------------------------------

def normalise_islands(data: Any, threshold: float, *, transfer: str | Callable | None = "log",
                      minimum_island_size: int = 5, fill: float = 0.0,
                      transfer_kwargs: dict | None = None) -> Any:
    """Normalise every island of an image to [0, 1] on its own (the PYINK notebooks' recipe).

    For each island mask ``m`` of :func:`~somtorch.preprocessing.island_segmentation`:
    ``out[m] = minmax(transfer(data[m]))``; everything else is ``fill``.

    Parameters
    ----------
    data : array or tensor, (H, W) or a stack (..., H, W) (planes are processed one by one)
    threshold : float
        Island threshold (``data > threshold``), e.g. ``3 * rms``.
    transfer : str, callable or None
        Name in :data:`TRANSFER_FUNCTIONS` or a function of a 1-D array; ``None`` = linear.
    minimum_island_size : int
        Smaller islands are dropped (set to ``fill``).

    Convention
    ----------
    Island masks include the pixels filled by the morphological closing; those may lie below
    ``threshold`` (even <= 0, where ``log`` gives NaN). Non-finite transferred pixels are set to 0
    (the island minimum) so the output is always finite where the input island was.
    """
    from somtorch.preprocessing.masks import label_islands

    x, was_np = as_tensor(data)
    if isinstance(transfer, str):
        if transfer not in TRANSFER_FUNCTIONS:
            raise ConfigError(f"unknown transfer {transfer!r}; known: {sorted(TRANSFER_FUNCTIONS)}")
        transfer = TRANSFER_FUNCTIONS[transfer]
    tkw = transfer_kwargs or {}
    labels, _ = label_islands(x, threshold, minimum_island_size)
    out = torch.full_like(x, float(fill))
    flat_x = x.reshape(-1, *x.shape[-2:])
    flat_l = labels.reshape(-1, *x.shape[-2:])
    flat_o = out.reshape(-1, *x.shape[-2:])
    for p in range(flat_x.shape[0]):
        n = int(flat_l[p].max()) if flat_l[p].numel() else 0
        for i in range(1, n + 1):
            m = flat_l[p] == i
            vals = flat_x[p][m]
            if transfer is not None:
                vals = transfer(vals, **tkw)
            vals = minmax(vals, on_empty="zero")
            flat_o[p][m] = torch.nan_to_num(vals, nan=0.0, posinf=1.0, neginf=0.0)
    return restore(flat_o.reshape(x.shape), was_np)


# ------------------------------------------------------------------------------------------------
# Channel weights
# ------------------------------------------------------------------------------------------------

def _median(v: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """numpy-style median (mean of the two middle values for an even count)."""
    s, _ = torch.sort(v, dim=dim)
    n = s.shape[dim]
    lo = s.narrow(dim, (n - 1) // 2, 1)
    hi = s.narrow(dim, n // 2, 1)
    return ((lo + hi) / 2).squeeze(dim)


def channel_weights(images: Any, old_weights: Sequence[float] | None = None, *,
                    normalise: str = "sum") -> Any:
    """Channel weights that equalise the median per-image pixel sum of every channel.

    Cookbook §9.2: "set the weights such that the sum of all pixels in each image has the same
    median. First process each image with a weight of 1, sum all of the pixels in each image, and
    measure the median for the ensemble of images."

    Parameters
    ----------
    images : array or tensor, shape (N, C, H, W)
    old_weights : sequence of C floats, optional
        Weights already applied to ``images`` (e.g. read back from a binary); they are divided out
        first so the result applies to unweighted images.
    normalise : {'sum', 'first', 'none'}
        Scale of the result: weights summing to 1 (like PYINK's 0.95/0.05), channel 0 weighted 1,
        or the raw ``1 / S_c``.

    Returns
    -------
    weights : float64 numpy array or tensor (same kind, device of ``images``), shape (C,)

    Convention
    ----------
    With ``S_c = median_n sum_{h,w} x[n, c, h, w]`` (NaN pixels count as 0) the weights are
    ``w_c = k / S_c``; after weighting every channel's median per-image sum equals ``k``. A channel
    whose median sum is not positive raises :class:`~somtorch.errors.NonFiniteError`.
    """
    if normalise not in ("sum", "first", "none"):
        raise ConfigError(f"channel_weights: normalise {normalise!r} not in sum/first/none")
    x, was_np = as_tensor(images)
    if x.ndim != 4:
        raise ShapeError(f"channel_weights: expected (N, C, H, W), got shape {tuple(x.shape)}")
    sums = torch.nan_to_num(x.to(torch.float64)).sum(dim=(-2, -1))  # (N, C)
    if old_weights is not None:
        ow = torch.as_tensor(np.asarray(old_weights, dtype=np.float64), device=x.device)
        if ow.shape != (x.shape[1],) or bool((ow == 0).any()):
            raise ShapeError(f"old_weights must be {x.shape[1]} non-zero values, got "
                             f"{list(np.asarray(old_weights))}")
        sums = sums / ow
    med = _median(sums, 0)
    if not bool((med > 0).all()):
        raise NonFiniteError(f"channel_weights: median per-image pixel sums {med.tolist()} must "
                             "all be > 0")
    w = 1.0 / med
    if normalise == "sum":
        w = w / w.sum()
    elif normalise == "first":
        w = w / w[0]
    return restore(w, was_np)


def apply_channel_weights(images: Any, weights: Sequence[float] | Any) -> Any:
    """Multiply each channel by its weight: (C, H, W) or (N, C, H, W), batched, device-agnostic."""
    x, was_np = as_tensor(images)
    w = torch.as_tensor(as_numpy(weights) if not isinstance(weights, torch.Tensor) else weights,
                        dtype=x.dtype, device=x.device).reshape(-1)
    if x.ndim not in (3, 4) or w.numel() != x.shape[-3]:
        raise ShapeError(f"apply_channel_weights: {w.numel()} weights for images of shape "
                         f"{tuple(x.shape)} (expected (C, H, W) or (N, C, H, W))")
    return restore(x * w.reshape(-1, 1, 1), was_np)


def reweight(reader_or_path: Any, out_path: str | os.PathLike, old_weights: Sequence[float],
             new_weights: Sequence[float], overwrite: bool = False) -> str:
    """Write a copy of a PINK image binary with channel ``c`` scaled by ``new[c] / old[c]``.

    Parameters
    ----------
    reader_or_path : path, object with a ``path`` attribute, or (N, C, H, W) array/tensor
        The source images.
    out_path : path
        Output binary. An existing file raises :class:`~somtorch.errors.OutputExistsError` unless
        ``overwrite``.
    old_weights, new_weights : sequences of C floats
        The weights the images carry and the ones they should carry.

    Returns
    -------
    str : ``out_path``.

    Convention
    ----------
    Reading and writing go through ``somtorch.io.read_images`` / ``write_images`` (imported
    lazily). Single-channel (rank-2) binaries work (PYINK failed on them) and are written back with
    rank 2 (``write_images`` stores ``(N, 1, H, W)`` as rank 2); no records sidecar is
    required (PYINK required one), and the records sidecars of the source
    (``<source>.records.json`` and PYINK's ``<source>.records.pkl``) are copied next to
    ``out_path`` unchanged, so every record is kept.
    """
    try:
        from somtorch.io import read_images, write_images
    except ImportError as exc:  # pragma: no cover - depends on the io layer being present
        raise ImportError("reweight needs somtorch.io.read_images and write_images") from exc

    src_path = None
    if isinstance(reader_or_path, (str, os.PathLike)):
        src_path = os.fspath(reader_or_path)
    elif hasattr(reader_or_path, "path") and not hasattr(reader_or_path, "shape"):
        src_path = os.fspath(reader_or_path.path)
    if src_path is not None:
        images = read_images(src_path)
    else:
        images = reader_or_path
    x, _ = as_tensor(images)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise ShapeError(f"reweight: expected images (N, C, H, W), got shape {tuple(x.shape)}")
    old = np.asarray(old_weights, dtype=np.float64).reshape(-1)
    new = np.asarray(new_weights, dtype=np.float64).reshape(-1)
    c = x.shape[1]
    if old.size != c or new.size != c:
        raise ShapeError(f"reweight: {old.size} old and {new.size} new weights for {c} channel(s)")
    if np.any(old == 0):
        raise ConfigError(f"reweight: old weights must be non-zero, got {old.tolist()}")
    out_path = os.fspath(out_path)
    # every records sidecar is carried over byte for byte (PYINK's .records.pkl too: copying a
    # pickle never unpickles it)
    sides = [] if src_path is None else [
        (src_path + suffix, out_path + suffix) for suffix in (".records.json", ".records.pkl")
        if os.path.exists(src_path + suffix)]
    if not overwrite:
        for p in [out_path] + [o for _, o in sides]:
            if os.path.exists(p):
                raise OutputExistsError(f"{p}: exists; pass overwrite=True to replace it")
    scaled = apply_channel_weights(x, new / old)
    write_images(out_path, scaled.to(torch.float32), overwrite=overwrite)
    for side_in, side_out in sides:
        shutil.copyfile(side_in, side_out)
    return out_path


# ------------------------------------------------------------------------------------------------
# nn.Module wrappers
# ------------------------------------------------------------------------------------------------

class MinMax(nn.Module):
    """Module form of :func:`minmax` (default ``dim=(-2, -1)``: each image on its own)."""

    def __init__(self, dim: int | Sequence[int] | None = (-2, -1), on_empty: str = "zero"):
        super().__init__()
        self.dim, self.on_empty = dim, on_empty

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return minmax(x, mask, dim=self.dim, on_empty=self.on_empty)


class LogTransfer(nn.Module):
    """Module form of :func:`log_transfer`."""

    def __init__(self, base: float = 10.0, offset: float = 0.0, nonpositive: float = float("nan")):
        super().__init__()
        self.base, self.offset, self.nonpositive = base, offset, nonpositive

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return log_transfer(x, self.base, offset=self.offset, nonpositive=self.nonpositive)


class AsinhTransfer(nn.Module):
    """Module form of :func:`asinh_transfer`."""

    def __init__(self, softening: float = 1.0):
        super().__init__()
        self.softening = softening

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return asinh_transfer(x, self.softening)


class SqrtTransfer(nn.Module):
    """Module form of :func:`sqrt_transfer`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sqrt_transfer(x)


class PowerTransfer(nn.Module):
    """Module form of :func:`power_transfer`."""

    def __init__(self, gamma: float):
        super().__init__()
        self.gamma = gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return power_transfer(x, self.gamma)


class SNRClip(nn.Module):
    """Module form of :func:`snr_clip` (rms estimated per image when not given)."""

    def __init__(self, snr: float = 2.0, fill: float = 0.0, rms_kwargs: dict | None = None):
        super().__init__()
        self.snr, self.fill, self.rms_kwargs = snr, fill, rms_kwargs

    def forward(self, x: torch.Tensor, rms: Any = None) -> torch.Tensor:
        return snr_clip(x, rms, self.snr, self.fill, rms_kwargs=self.rms_kwargs)


class ChannelWeighting(nn.Module):
    """Module form of :func:`apply_channel_weights`; the weights are a buffer (moves with .to())."""

    def __init__(self, weights: Sequence[float]):
        super().__init__()
        self.register_buffer("weights", torch.as_tensor(np.asarray(weights, dtype=np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_channel_weights(x, self.weights)
