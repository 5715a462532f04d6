"""Named preprocessing steps and a small recipe runner.

A recipe is a list of steps; each step is a name from :data:`STEPS` (optionally with parameters),
so recipes can live in a config file::

    steps = [
        ("rms", {"mode": "mad", "clip_rounds": 2, "ignore_zeros": True}),
        ("snr_clip", {"snr": 2.0}),        # drop pixels below 2 rms
        "log",                              # log10 of what is left
        ("circular_mask", {"radius": 70}),  # keep a central disc
        "minmax",                           # 0..1 over the kept pixels
    ]
    out = preprocess_image(img, steps)      # dropped pixels are 0 in the output

Accepted step forms: ``"name"``, ``("name", {params})``, ``{"name": "log", **params}`` and any
callable ``state -> state``. :func:`register_step` adds names.

The state carried between steps is a :class:`PreprocessState`: the image (float64 tensor), a
boolean ``mask`` of the pixels still in play (dropped pixels are ignored by later steps and set to
``fill`` at the end), the noise ``rms`` once estimated, and an ``info`` dict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from somtorch.errors import ConfigError, ShapeError
from somtorch.preprocessing import masks as _masks
from somtorch.preprocessing import scaling as _scaling
from somtorch.preprocessing._common import as_tensor, restore
from somtorch.preprocessing.noise import rms_estimate

__all__ = [
    "PreprocessState",
    "STEPS",
    "register_step",
    "preprocess_image",
    "Recipe",
    "COOKBOOK_VLASS_RECIPE",
    "PYINK_ISLAND_RECIPE",
]


@dataclass
class PreprocessState:
    """What flows between steps: image (H, W), mask of pixels in play, noise estimate, notes."""

    image: torch.Tensor
    mask: torch.Tensor
    rms: float | None = None
    info: dict = field(default_factory=dict)


#: Registry of named steps: name -> function(state, **params) -> state.
STEPS: dict[str, Callable[..., PreprocessState]] = {}


def register_step(name: str) -> Callable[[Callable], Callable]:
    """Decorator registering ``fn(state, **params) -> state`` under ``name``."""

    def deco(fn: Callable) -> Callable:
        STEPS[name] = fn
        return fn

    return deco


def _need_rms(state: PreprocessState) -> float:
    if state.rms is None:
        state.rms = rms_estimate(state.image[state.mask])
    return state.rms


@register_step("rms")
def _step_rms(state: PreprocessState, **kw: Any) -> PreprocessState:
    """Estimate the noise of the pixels in play (parameters of :func:`rms_estimate`)."""
    state.rms = rms_estimate(state.image[state.mask], **kw)
    state.info["rms"] = state.rms
    return state


@register_step("snr_clip")
def _step_snr_clip(state: PreprocessState, snr: float = 2.0, mode: str = "drop",
                   fill: float = 0.0) -> PreprocessState:
    """Pixels below ``snr * rms``: ``mode='drop'`` removes them, ``'zero'`` sets them to ``fill``."""
    keep = state.image >= snr * _need_rms(state)
    if mode == "drop":
        state.mask = state.mask & keep
    elif mode == "zero":
        state.image = torch.where(keep, state.image, torch.full_like(state.image, fill))
    else:
        raise ConfigError(f"snr_clip: mode {mode!r} not in ('drop', 'zero')")
    return state


@register_step("threshold")
def _step_threshold(state: PreprocessState, value: float) -> PreprocessState:
    """Drop the pixels below an absolute ``value``."""
    state.mask = state.mask & (state.image >= value)
    return state


@register_step("circular_mask")
def _step_circular(state: PreprocessState, radius: float | None = None,
                   scale: float | None = None) -> PreprocessState:
    """Drop the pixels outside a centred disc (see :func:`circular_mask`)."""
    state.mask = state.mask & _masks.circular_mask(state.image, radius=radius, scale=scale)
    return state


@register_step("square_mask")
def _step_square(state: PreprocessState, size: int | None = None,
                 scale: float | None = None) -> PreprocessState:
    """Drop the pixels outside a centred square (see :func:`square_mask`)."""
    state.mask = state.mask & _masks.square_mask(state.image, size=size, scale=scale)
    return state


def _transfer_step(name: str) -> Callable[..., PreprocessState]:
    fn = _scaling.TRANSFER_FUNCTIONS[name]

    def step(state: PreprocessState, **kw: Any) -> PreprocessState:
        vals = fn(state.image, **kw)
        state.mask = state.mask & torch.isfinite(vals)  # e.g. log of a pixel <= 0
        state.image = torch.where(state.mask, vals, torch.zeros_like(vals))
        return state

    step.__doc__ = f"Apply the {name!r} transfer function to the pixels in play."
    return step


for _name in ("log", "asinh", "sqrt", "power"):
    register_step(_name)(_transfer_step(_name))


@register_step("minmax")
def _step_minmax(state: PreprocessState) -> PreprocessState:
    """Scale the pixels in play to [0, 1]."""
    if bool(state.mask.any()):
        state.image = _scaling.minmax(state.image, state.mask, fill=0.0)
    return state


@register_step("islands")
def _step_islands(state: PreprocessState, snr: float | None = 3.0, threshold: float | None = None,
                  transfer: str | None = "log", minimum_island_size: int = 5) -> PreprocessState:
    """Per-island ``minmax(transfer(.))`` above ``threshold`` (or ``snr * rms``); rest dropped."""
    if threshold is None:
        if snr is None:
            raise ConfigError("islands: give snr or threshold")
        threshold = snr * _need_rms(state)
    img = torch.where(state.mask, state.image, torch.full_like(state.image, float("-inf")))
    labels, _ = _masks.label_islands(img, threshold, minimum_island_size)
    state.image = _scaling.normalise_islands(img, threshold, transfer=transfer,
                                             minimum_island_size=minimum_island_size)
    state.mask = labels > 0
    return state


def _parse(step: Any) -> tuple[Callable[..., PreprocessState], dict]:
    if callable(step) and not isinstance(step, str):
        return step, {}
    if isinstance(step, str):
        name, params = step, {}
    elif isinstance(step, dict):
        params = dict(step)
        name = params.pop("name", None) or params.pop("step", None)
    elif isinstance(step, (tuple, list)) and len(step) in (1, 2):
        name, params = step[0], dict(step[1]) if len(step) == 2 else {}
    else:
        raise ConfigError(f"cannot read preprocessing step {step!r}")
    if name not in STEPS:
        raise ConfigError(f"unknown preprocessing step {name!r}; known: {sorted(STEPS)}")
    return STEPS[name], params


def preprocess_image(img: Any, steps: Sequence[Any], *, fill: float = 0.0,
                     return_state: bool = False) -> Any:
    """Run ``steps`` on one image (H, W); pixels dropped on the way become ``fill``.

    Returns the kind of ``img`` (float32 numpy array or a tensor on the input's device), or the
    final :class:`PreprocessState` with ``return_state=True``.

    Convention
    ----------
    NaN/inf pixels are dropped before the first step. The computation is float64.
    """
    x, was_np = as_tensor(img)
    if x.ndim != 2:
        raise ShapeError(f"preprocess_image: expected one image (H, W), got shape {tuple(x.shape)}")
    dtype = x.dtype
    x = x.to(torch.float64)
    state = PreprocessState(image=x, mask=torch.isfinite(x))
    state.image = torch.where(state.mask, x, torch.zeros_like(x))
    for step in steps:
        fn, params = _parse(step)
        state = fn(state, **params)
    out = torch.where(state.mask, state.image, torch.full_like(state.image, fill))
    if return_state:
        state.image = out
        return state
    out = out.to(torch.float32 if was_np else dtype)
    return restore(out, was_np)


class Recipe(torch.nn.Module):
    """A named-step recipe as a module; applies to (H, W), (N, H, W) or (N, C, H, W) inputs.

    Every (H, W) plane is processed on its own. ``Recipe(steps)(x)`` returns the kind of ``x``.
    """

    def __init__(self, steps: Sequence[Any], fill: float = 0.0):
        super().__init__()
        for s in steps:
            _parse(s)  # validate early
        self.steps, self.fill = list(steps), fill

    def forward(self, x: Any) -> Any:
        t, was_np = as_tensor(x)
        if t.ndim < 2:
            raise ShapeError(f"Recipe: expected (..., H, W), got shape {tuple(t.shape)}")
        planes = t.reshape(-1, *t.shape[-2:])
        out = torch.stack([preprocess_image(p, self.steps, fill=self.fill) for p in planes])
        return restore(out.reshape(t.shape).to(torch.float32 if was_np else t.dtype), was_np)


#: The cookbook's VLASS sidelobe recipe (§8.1): rms of the non-zero pixels, drop below 2 rms,
#: log10, min-max.
COOKBOOK_VLASS_RECIPE = [
    ("rms", {"mode": "mad", "clip_rounds": 2, "ignore_zeros": True}),
    ("snr_clip", {"snr": 2.0, "mode": "drop"}),
    "log",
    "minmax",
]

#: PYINK's preprocessing notebook (radio channel): islands above 3 rms, each ``minmax(log10)``;
#: PYINK kept islands with more than 5 pixels, i.e. ``minimum_island_size=6`` here.
PYINK_ISLAND_RECIPE = [
    ("rms", {"mode": "mad", "clip_rounds": 2}),
    ("islands", {"snr": 3.0, "transfer": "log", "minimum_island_size": 6}),
]
