"""Preprocessing toolkit: everything PYINK's ``preprocessing`` module offers, with its bugs fixed.

* :mod:`~somtorch.preprocessing.noise`: :func:`rms_estimate`, :func:`rms_estimate_batch`.
* :mod:`~somtorch.preprocessing.masks`: :func:`square_mask`, :func:`circular_mask`,
  :func:`apply_mask`, :func:`island_segmentation`, :func:`label_islands`, :func:`convex_hull`,
  :func:`convex_hull_smoothed`.
* :mod:`~somtorch.preprocessing.scaling`: :func:`minmax`, transfer functions
  (:func:`log_transfer`, :func:`asinh_transfer`, :func:`sqrt_transfer`, :func:`power_transfer`),
  :func:`snr_mask`, :func:`snr_clip`, :func:`normalise_islands`, :func:`channel_weights`,
  :func:`apply_channel_weights`, :func:`reweight`, and ``nn.Module`` wrappers.
* :mod:`~somtorch.preprocessing.pipeline`: :func:`preprocess_image`, :class:`Recipe` and the
  named-step registry :data:`STEPS`.

Functions accept numpy arrays or torch tensors and return the kind they were given (tensors stay
on their device). Each module docstring lists the PYINK bugs it fixes.
"""

from somtorch.preprocessing.masks import (
    apply_mask,
    circular_mask,
    convex_hull,
    convex_hull_smoothed,
    island_segmentation,
    label_islands,
    square_mask,
)
from somtorch.preprocessing.noise import rms_estimate, rms_estimate_batch
from somtorch.preprocessing.pipeline import (
    COOKBOOK_VLASS_RECIPE,
    PYINK_ISLAND_RECIPE,
    STEPS,
    PreprocessState,
    Recipe,
    preprocess_image,
    register_step,
)
from somtorch.preprocessing.scaling import (
    TRANSFER_FUNCTIONS,
    AsinhTransfer,
    ChannelWeighting,
    LogTransfer,
    MinMax,
    PowerTransfer,
    SNRClip,
    SqrtTransfer,
    apply_channel_weights,
    asinh_transfer,
    channel_weights,
    log_transfer,
    minmax,
    normalise_islands,
    power_transfer,
    reweight,
    snr_clip,
    snr_mask,
    sqrt_transfer,
)

__all__ = [
    "rms_estimate", "rms_estimate_batch",
    "square_mask", "circular_mask", "apply_mask", "label_islands", "island_segmentation",
    "convex_hull", "convex_hull_smoothed",
    "minmax", "log_transfer", "asinh_transfer", "sqrt_transfer", "power_transfer",
    "TRANSFER_FUNCTIONS", "snr_mask", "snr_clip", "normalise_islands",
    "channel_weights", "apply_channel_weights", "reweight",
    "MinMax", "LogTransfer", "AsinhTransfer", "SqrtTransfer", "PowerTransfer", "SNRClip",
    "ChannelWeighting",
    "preprocess_image", "Recipe", "PreprocessState", "STEPS", "register_step",
    "COOKBOOK_VLASS_RECIPE", "PYINK_ISLAND_RECIPE",
]
