"""Neighbourhood (distribution) functions and the update-factor matrix.

Convention
----------
``x`` is the grid distance between the best-matching neuron and the neuron being updated
(:meth:`somtorch.geometry.Lattice.distances`). Formulas are PINK 2.5's (spec §5.4), evaluated in
float32:

* ``gaussian``:      ``damping / (sigma * sqrt(2 pi)) * exp(-0.5 (x / sigma)**2)``
* ``unitygaussian``: ``damping * exp(-0.5 (x / sigma)**2)``
* ``mexicanhat``:    ``2 damping / (sqrt(3 sigma) pi**(1/4)) * (1 - x**2/sigma**2) * exp(-x**2 / (2 sigma**2))``
  (note ``sqrt(3 sigma)``, not ``sqrt(3) sigma``; negative beyond ``sigma``, pushing neurons away).

With ``max_update_distance = r`` a neuron is updated only if ``x < r`` (strictly), as in PINK.
The update of neuron ``i`` towards its best transformation ``X_i`` of the image is
``w_i <- w_i - (w_i - X_i) * factor[best, i]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from somtorch.errors import ConfigError

__all__ = ["Neighbourhood", "neighbourhood_function", "update_factors"]

_NAMES = {"gaussian": "gaussian", "unitygaussian": "unitygaussian", "mexicanhat": "mexicanhat"}


def _expf(a: np.ndarray) -> np.ndarray:
    """Correctly rounded float32 ``exp`` (as glibc's ``expf``): evaluate in float64, round once.

    numpy's float32 ``exp`` uses SIMD kernels that may be 1 ulp off on some CPUs (AVX-512), which
    would break bit-exact reproduction of PINK's update factors.
    """
    return np.exp(np.asarray(a, dtype=np.float32).astype(np.float64)).astype(np.float32)


def neighbourhood_function(x, name: str = "gaussian", sigma: float = 1.1, damping: float = 0.2) -> np.ndarray:
    """Evaluate a PINK distribution function on grid distances ``x`` (float32).

    >>> [round(float(v), 7) for v in neighbourhood_function([0, 1, 2], "gaussian", 1.1, 0.2)]
    [0.072535, 0.0479829, 0.0138901]
    """
    key = str(name).lower().replace("_", "").replace("-", "")
    if key not in _NAMES:
        raise ConfigError(None, "dist_func", name, "one of gaussian, unitygaussian, mexicanHat")
    x = np.asarray(x, dtype=np.float32)
    s = np.float32(sigma)
    dmp = np.float32(damping)
    if key == "mexicanhat" and not sigma > 0:
        raise ConfigError(None, "sigma", sigma, "> 0 for mexicanHat (MexicanHatFunctor: sigma <= 0 not defined)")
    if not sigma > 0:
        raise ConfigError(None, "sigma", sigma, "> 0")
    with np.errstate(over="ignore", under="ignore"):
        if key == "gaussian":
            norm = dmp / (s * np.float32(math.sqrt(2.0 * math.pi)))
            return (norm * _expf(np.float32(-0.5) * (x / s) * (x / s))).astype(np.float32)
        if key == "unitygaussian":
            return (dmp * _expf(np.float32(-0.5) * (x / s) * (x / s))).astype(np.float32)
        x2 = x * x
        s2 = s * s
        norm = np.float32(2.0) * dmp / (np.sqrt(np.float32(3.0) * s) * np.float32(float(np.float32(math.pi)) ** 0.25))
        return (norm * (np.float32(1.0) - x2 / s2) * _expf(-x2 / (np.float32(2.0) * s2))).astype(np.float32)


@dataclass(frozen=True)
class Neighbourhood:
    """A neighbourhood function with its parameters (PINK's ``--dist-func name sigma damping``)."""

    name: str = "gaussian"
    sigma: float = 1.1
    damping: float = 0.2
    max_update_distance: float | None = None

    def __post_init__(self):
        neighbourhood_function([0.0], self.name, self.sigma, self.damping)  # validates
        if self.max_update_distance is not None and not self.max_update_distance > 0:
            raise ConfigError(None, "max_update_distance", self.max_update_distance, "> 0 (max-update-distance must be positive.)")

    def __call__(self, x) -> np.ndarray:
        return neighbourhood_function(x, self.name, self.sigma, self.damping)

    def factors(self, grid_distances: torch.Tensor) -> torch.Tensor:
        """Update-factor matrix ``factor[best, i]`` (float32) from the lattice distance matrix."""
        return update_factors(grid_distances, self)


def update_factors(grid_distances: torch.Tensor, nb: Neighbourhood) -> torch.Tensor:
    d = grid_distances.detach().cpu().numpy().astype(np.float32)
    f = nb(d)
    if nb.max_update_distance is not None:
        f = np.where(d < np.float32(nb.max_update_distance), f, np.float32(0)).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(f))
