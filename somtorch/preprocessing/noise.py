"""Background-noise (rms) estimation for image cutouts: PYINK's ``rms_estimate``, bugs fixed.

Algorithm (PYINK ``pyink.preprocessing.rms_estimate``, spec §5.1)
-----------------------------------------------------------------
1. ``bin_perc > 1`` is read as a percentage and divided by 100.
2. Keep the finite pixels (``nan_check``), flattened; optionally drop exact zeros (``ignore_zeros``,
   what the cookbook's ``scale_data`` does by hand with ``data[data != 0]``).
3. ``clip_rounds`` times: keep the pixels with ``|x - median(x)| < outlier_thres * spread(x)``
   (strict), median and spread recomputed every round. ``spread`` is ``std(x)`` (``mode='std'``) or
   the **unscaled** median absolute deviation ``median(|x - median(x)|)`` (``mode='mad'``, no 1.4826
   factor, so the default cut is at about 2.02 sigma).
4. Histogram the survivors into 50·k equal bins (k = 1..4) until at least 5 bins hold at least
   ``bin_perc`` of the peak count.
5. Fit a parabola ``a x^2 + b x + c`` to ``log10(count / peak)`` over those bins.
6. Return the sigma of the Gaussian core that parabola describes.

Bugs fixed (each pinned by a test named after it)
-------------------------------------------------
* **Half maximum taken relative to the noisy peak bin** (PYINK solves ``a x^2 + b x + c = log10(0.5)``
  where ``c`` carries the normalisation by the *largest observed* bin count). The largest count of a
  noisy histogram over-estimates the peak, so PYINK measured the width at ~0.54 of the true peak and
  under-estimated sigma by about 3% on 150x150 pure noise. Here the width is taken relative to the
  *fitted* peak, which is the same as ``sigma = sqrt(-1 / (2 a ln 10))``; the bias is gone.
* The least-squares fit is weighted by ``sqrt(count)`` (the inverse Poisson error of a log count;
  ``weighted_fit=False`` restores PYINK's unweighted fit).
* Empty bins are never fitted (PYINK took ``log10(0)`` with ``bin_perc=0``).
* A zero spread (for example a cutout that is mostly exact zeros) stops the clipping instead of
  emptying the data (PYINK then crashed on an empty array); constant data returns ``0.0``.
* Data with no finite pixel raises :class:`~somtorch.errors.NonFiniteError` (PYINK: a NumPy error).
* A fit that does not describe a peak (``a >= 0``, fewer than 3 usable bins) falls back to
  ``1.4826 * MAD`` of the (unclipped) finite data instead of returning NaN or raising.
* The constant is the exact ``2 sqrt(2 ln 2) = 2.35482...`` (PYINK: 2.355, a 0.008% difference).

``estimator="pyink"`` keeps PYINK's numbers (what :func:`somtorch.pyink.rms_estimate` uses): the
unweighted fit, the half maximum relative to the largest observed bin (roots of
``a x^2 + b x + c = log10(0.5)``) and FWHM / 2.355. Size of the difference (measured with
``python -m somtorch.pyink.differences``, 200 simulated 150x150 radio cutouts and 200 pure-noise
images): the default (``"unbiased"``) is +3.2 % (median) above PYINK on the source cutouts
and +2.9 % on pure noise, where it recovers the true sigma (median bias +0.3 %; PYINK's
estimator -2.6 %).

``refine=True`` adds an optional final step that is statistically more efficient: two rounds of a
truncated-Gaussian corrected standard deviation of the pixels within ``refine_thres`` sigma of the
fitted centre. It halves the scatter on pure noise and adds a little bias when sources are present.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from somtorch.errors import ConfigError, NonFiniteError, ShapeError
from somtorch.preprocessing._common import as_numpy

__all__ = ["rms_estimate", "rms_estimate_batch", "FWHM_TO_SIGMA", "MAD_TO_SIGMA"]

#: 2 sqrt(2 ln 2): full width at half maximum of a Gaussian in units of its sigma.
FWHM_TO_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: 1 / Phi^-1(3/4): the factor that turns a median absolute deviation into a Gaussian sigma.
MAD_TO_SIGMA = 1.482602218505602

_MODES = ("mad", "std")
_ESTIMATORS = ("unbiased", "pyink")
#: PYINK's rounded FWHM / sigma constant (``estimator="pyink"``).
PYINK_FWHM_TO_SIGMA = 2.355


def _spread(x: np.ndarray, med: float, mode: str) -> float:
    if mode == "std":
        return float(np.std(x))
    return float(np.median(np.abs(x - med)))


def _fallback(finite: np.ndarray) -> float:
    med = np.median(finite)
    return float(MAD_TO_SIGMA * np.median(np.abs(finite - med)))


def _truncation_factor(k: float) -> float:
    """Variance of a unit Gaussian truncated to ``|x| < k`` (symmetric)."""
    phi = math.exp(-0.5 * k * k) / math.sqrt(2.0 * math.pi)
    big_phi = math.erf(k / math.sqrt(2.0))  # = 2 Phi(k) - 1
    return 1.0 - 2.0 * k * phi / big_phi


def _refine(finite: np.ndarray, mu: float, sigma: float, k: float, rounds: int = 2) -> float:
    factor = _truncation_factor(k)
    for _ in range(rounds):
        sel = finite[np.abs(finite - mu) < k * sigma]
        if sel.size < 3:
            break
        mu = float(sel.mean())
        sigma = float(math.sqrt(sel.var() / factor))
    return sigma


def rms_estimate(data: Any, mode: str = "mad", clip_rounds: int = 2, bin_perc: float = 0.25,
                 outlier_thres: float = 3.0, nan_check: bool = True, *, ignore_zeros: bool = False,
                 weighted_fit: bool | None = None, refine: bool = False,
                 refine_thres: float = 2.5, estimator: str = "unbiased") -> float:
    """Estimate the Gaussian background noise (sigma) of an image.

    Parameters
    ----------
    data : array-like or torch.Tensor
        Pixels of any shape (flattened); numpy arrays and tensors on any device are accepted.
    mode : {'mad', 'std'}
        Spread statistic of the clipping rounds: unscaled median absolute deviation or standard
        deviation. Anything else raises :class:`~somtorch.errors.ConfigError`.
    clip_rounds : int
        Number of clipping rounds (0 disables clipping).
    bin_perc : float
        Fraction of the peak bin count a bin needs to enter the fit; values > 1 are percentages.
    outlier_thres : float
        A pixel survives a round when ``|x - median| < outlier_thres * spread`` (strict).
    nan_check : bool
        Drop non-finite pixels first. With ``False`` the caller guarantees finite data.
    ignore_zeros : bool
        Also drop pixels that are exactly 0 (blanked regions of survey cutouts).
    weighted_fit : bool, optional
        Weight the parabola fit by ``sqrt(count)``. Default: True for ``estimator="unbiased"``,
        False (PYINK's unweighted fit) for ``estimator="pyink"``.
    refine : bool
        Follow the histogram fit by a truncated-Gaussian corrected standard deviation within
        ``refine_thres`` sigma of the fitted centre (see the module docstring).
    refine_thres : float
        Half-width, in sigma, of the refinement window.
    estimator : {'unbiased', 'pyink'}
        ``'unbiased'`` (default): sigma from the fitted curvature. ``'pyink'``: PYINK's
        half-maximum roots relative to the largest observed bin and FWHM / 2.355, which reads
        about 3 % low (median -3.1 % against the default on source cutouts, -2.8 % on pure
        noise); see the module docstring.

    Returns
    -------
    float
        The estimated sigma, in the units of ``data``. ``0.0`` for constant data.

    Raises
    ------
    NonFiniteError
        No finite (and, with ``ignore_zeros``, non-zero) pixel is left.
    ConfigError
        Unknown ``mode`` or a negative ``clip_rounds``/``bin_perc``/``outlier_thres``.

    Convention
    ----------
    The estimate is the sigma of a Gaussian fitted to the histogram core after clipping; the fitted
    centre is free, so a non-zero background level is allowed. NaN and inf pixels are ignored
    (``nan_check=True``). Typical accuracy (measured, 300 random seeds, sigma in [0.5, 5]):
    150x150 pure noise bias +0.4%, scatter 1.1% (``refine=True``: 0.0%, 0.6%); 300x300 pure noise
    bias +0.2%, scatter 0.55%.
    """
    if mode not in _MODES:
        raise ConfigError(f"rms_estimate: mode {mode!r} is not one of {_MODES}")
    if estimator not in _ESTIMATORS:
        raise ConfigError(f"rms_estimate: estimator {estimator!r} is not one of {_ESTIMATORS}")
    if weighted_fit is None:
        weighted_fit = estimator == "unbiased"
    if clip_rounds < 0 or bin_perc < 0 or outlier_thres <= 0:
        raise ConfigError("rms_estimate: clip_rounds and bin_perc must be >= 0 and "
                          f"outlier_thres > 0 (got {clip_rounds}, {bin_perc}, {outlier_thres})")
    if bin_perc > 1:
        bin_perc = bin_perc / 100.0

    x = np.asarray(as_numpy(data), dtype=np.float64).ravel()
    if nan_check:
        x = x[np.isfinite(x)]
    if ignore_zeros:
        x = x[x != 0]
    if x.size == 0:
        raise NonFiniteError("rms_estimate: no finite" + (" non-zero" if ignore_zeros else "")
                             + " pixel to estimate the noise from")
    finite = x

    for _ in range(int(clip_rounds)):
        med = float(np.median(x))
        spread = _spread(x, med, mode)
        if spread <= 0:  # PYINK bug: |x - med| < 0 empties the data
            break
        keep = np.abs(x - med) < outlier_thres * spread
        if not keep.any():
            break
        x = x[keep]

    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        return 0.0

    counts = centres = mark = None
    for k in range(1, 5):
        counts, edges = np.histogram(x, bins=50 * k, range=(lo, hi))
        centres = 0.5 * (edges[1:] + edges[:-1])
        mark = (counts >= bin_perc * counts.max()) & (counts > 0)
        if mark.sum() >= 5:
            break
    if mark.sum() < 3:
        return _fallback(finite)

    c = counts[mark].astype(np.float64)
    xc = centres[mark]
    # Centre and scale the abscissa for a well-conditioned fit (does not change the curvature
    # in data units once rescaled below).
    x0, xs = float(xc.mean()), float(xc.std()) or 1.0
    u = (xc - x0) / xs
    y = np.log10(c / c.max())
    w = np.sqrt(c) if weighted_fit else None
    a_u, b_u, c_u = np.polyfit(u, y, 2, w=w)
    a = a_u / (xs * xs)
    if not np.isfinite(a) or a >= 0:
        return _fallback(finite)
    if estimator == "pyink":
        # half maximum relative to the largest observed bin: roots of a u^2 + b u + c = log10(1/2)
        disc = b_u * b_u - 4.0 * a_u * (c_u - math.log10(0.5))
        if not disc > 0:
            return _fallback(finite)
        fwhm = math.sqrt(disc) / abs(a_u) * xs
        return float(fwhm / PYINK_FWHM_TO_SIGMA)
    sigma = math.sqrt(-1.0 / (2.0 * a * math.log(10.0)))
    if refine:
        mu = x0 - xs * b_u / (2.0 * a_u)
        sigma = _refine(finite, mu, sigma, float(refine_thres))
    return float(sigma)


def rms_estimate_batch(images: Any, **kwargs: Any) -> Any:
    """:func:`rms_estimate` of every image of a stack.

    Parameters
    ----------
    images : array-like or torch.Tensor, shape (N, H, W) or (N, C, H, W)
        A stack; each (H, W) plane gets its own estimate.
    **kwargs
        Passed to :func:`rms_estimate`.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (N,) or (N, C)
        Same kind as ``images`` (tensors come back float64 on the input's device).

    Convention
    ----------
    The estimate runs on the CPU (a histogram fit per plane, about 1 ms for 150x150); the result is
    moved to the input's device.
    """
    arr = as_numpy(images)
    if arr.ndim not in (3, 4):
        raise ShapeError(f"rms_estimate_batch: expected (N, H, W) or (N, C, H, W), got shape "
                         f"{tuple(arr.shape)}")
    lead = arr.shape[:-2]
    planes = arr.reshape(-1, *arr.shape[-2:])
    out = np.array([rms_estimate(p, **kwargs) for p in planes], dtype=np.float64).reshape(lead)
    if isinstance(images, torch.Tensor):
        return torch.from_numpy(out).to(images.device)
    return out
