"""Test data shared by the approximate-matching tests (not a test module).

``structured_case()`` gives preprocessed 32x32 radio images of structured sources (doubles, FR I/II,
triples, resolved sources, sidelobe artefacts) from the synthetic sky and a 5x5 SOM whose neurons
are 25 of them. ``three_transformed_neurons(ts)`` builds a 1x3 SOM whose neuron ``i`` is exactly transformation
``ts[i]`` of image ``i`` of three blob images (in the distance window; zero outside), so the
exact best match of image ``i`` is neuron ``i`` at transformation ``ts[i]`` with distance ~0.
"""

from __future__ import annotations

import numpy as np
import torch

from somtorch.engine import RotationInvariantSOM, SOMGeometry
from somtorch.geometry import Lattice
from somtorch.geometry.transforms import pad_or_crop
from somtorch.testing import random_som


def blobs(d, centres):
    """Sum of Gaussians ``(row, col, amplitude, sigma)`` (offsets from the centre) on a d x d grid."""
    yy, xx = torch.meshgrid(torch.arange(d) - (d - 1) / 2, torch.arange(d) - (d - 1) / 2, indexing="ij")
    return sum(a * torch.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * s * s)) for r, c, a, s in centres)


def three_transformed_neurons(ts, d: int = 32, numrot: int = 360):
    """``(som, x)``: images ``x (3, 1, d, d)`` and the SOM described in the module docstring."""
    geo = SOMGeometry(d, numrot=numrot)
    eng = random_som(geo, shape=(1, 3)).engine
    lo, hi = eng.window
    x = torch.stack([blobs(d, [(5, 3, 1.0, 1.5), (-4, -6, 0.6, 2.0)]),
                     blobs(d, [(0, 8, 1.0, 2.0), (0, -8, 0.9, 2.0)]),
                     blobs(d, [(2, 0, 1.0, 3.0), (-7, 5, 0.3, 1.0)])])[:, None]
    feats = eng.transformer(x, window=(lo, hi))  # (B, T, C, u, u)
    w = torch.zeros(3, 1, geo.nd, geo.nd)
    for i, t in enumerate(ts):
        w[i, :, lo:hi, lo:hi] = feats[i, t]
    return RotationInvariantSOM(Lattice("cartesian", (1, 3)), geo, init=w), x


def structured_case():
    """``(som, images, classes)``: the 5x5 SOM, the 60 other images to map, and the morphology
    classes of the 85 sources rendered (see the module docstring)."""
    from somtorch.datasets import generate_sky, preprocess_cutouts, render_cutouts

    sky = generate_sky(n_sources=120, seed=3, image_size=96,
                       class_mix={"double": 0.3, "fr2": 0.2, "resolved": 0.2, "triple": 0.15, "fr1": 0.15})
    cube = render_cutouts(sky, indices=np.arange(85), channels=("radio",), size=96)[:, 0]
    imgs = torch.from_numpy(preprocess_cutouts(cube, snr=2.0, log=True, crop=None, image_size=32))[:, None]
    geo = SOMGeometry(32, numrot=360)
    som = RotationInvariantSOM(Lattice("cartesian", (5, 5)), geo, init=pad_or_crop(imgs[:25], geo.nd))
    return som, imgs[25:], set(sky.catalogue.Morph_class.iloc[:85])
