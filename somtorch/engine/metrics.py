"""SOM quality metrics computed from a mapping (image-to-neuron distances).

Convention
----------
``dist`` is the ``(n_images, N)`` Euclidean distance matrix a mapping writes (spec §1.4).

* quantization error (QE): mean over images of the distance to the best-matching neuron;
* topographic error (TE): fraction of images whose best and second-best neurons are not
  lattice neighbours, i.e. their grid distance exceeds 1 (4-neighbourhood on cartesian grids,
  6-neighbourhood on hexagonal grids, wrap-around on periodic lattices);
* coherence (PYINK): fraction whose second-best neuron is within Chebyshev distance 1 of the best
  (cartesian 8-neighbourhood) -- see :mod:`somtorch.analysis`.
"""

from __future__ import annotations

import torch

from somtorch.geometry.lattice import Lattice

__all__ = ["quality_metrics", "quantization_error", "topographic_error", "topographic_flags",
           "metrics_from_parts"]


def quantization_error(dist: torch.Tensor) -> float:
    return float(dist.min(dim=1).values.double().mean())


def topographic_flags(dist: torch.Tensor, lattice: Lattice) -> torch.Tensor:
    """Per image: True where the best and second-best neurons are not lattice neighbours."""
    if dist.shape[1] < 2:
        return torch.zeros(dist.shape[0], dtype=torch.bool, device=dist.device)
    two = torch.topk(dist, 2, dim=1, largest=False).indices
    gd = lattice.distances().to(dist.device)
    sep = gd[two[:, 0], two[:, 1]]
    return sep > 1.0 + 1e-6


def topographic_error(dist: torch.Tensor, lattice: Lattice) -> float:
    if dist.shape[1] < 2:
        return 0.0
    return float(topographic_flags(dist, lattice).double().mean())


def quality_metrics(dist: torch.Tensor, lattice: Lattice) -> dict:
    """QE, TE and the spread of best-match distances for a distance matrix ``(n, N)``."""
    return metrics_from_parts(dist.min(dim=1).values, topographic_flags(dist, lattice))


def metrics_from_parts(dmin: torch.Tensor, te_flags: torch.Tensor) -> dict:
    """:func:`quality_metrics` from per-image best distances and topographic flags (so that a
    large mapping can be reduced chunk by chunk and the metrics taken once at the end)."""
    dmin = dmin.double()
    return {
        "qe": float(dmin.mean()),
        "qe_median": float(dmin.median()),
        "qe_std": float(dmin.std()) if len(dmin) > 1 else 0.0,
        "te": float(te_flags.double().mean()) if len(te_flags) else 0.0,
    }
