"""Search a sample for look-alikes of chosen images (cookbook §5.5, "SOMWriter" use case).

Convention
----------
Each template image (``d x d``) becomes a neuron exactly as PINK would see the image itself:
centre-padded (or cropped) to the neuron side ``nd`` with PINK's margin (transform index 0,
:mod:`somtorch.analysis.frames`). The templates form a 1-D cartesian lattice ``(K,)``; PINK needs
a width of at least 2, so a single template is written next to an all-zero neuron (the zero
neuron is never reported as a match). Every image is compared with every template under all
rotations/flips, so a rotated or mirrored copy of a template has distance ~0. Distances are
PINK's (Euclidean over the distance region, spec §1.4).

:func:`find_lookalikes` defaults to PINK's neuron side plus one when ``nd - d`` would be odd:
with an odd margin, padding and quarter turns disagree by a pixel (PINK's half-pixel
inconsistency, spec §2.4), so an exact rotated copy would not reach distance 0.
"""

from __future__ import annotations

import numpy as np
import torch

from somtorch.errors import ShapeError

__all__ = ["template_neurons", "write_template_som", "find_lookalikes"]


def _templates(templates) -> np.ndarray:
    a = templates.detach().cpu().numpy() if isinstance(templates, torch.Tensor) else np.asarray(templates)
    a = a.astype(np.float32)
    if a.ndim == 2:
        a = a[None, None]
    elif a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
        raise ShapeError(f"templates must be (H, W), (C, H, W) or (K, C, H, W) square images; got {a.shape}")
    return a


def template_neurons(templates, neuron_dim: int | None = None, numrot: int = 360) -> np.ndarray:
    """Templates ``(K, C, d, d)`` -> neurons ``(max(K, 2), C, nd, nd)`` (zero neuron appended if K = 1)."""
    from somtorch.analysis.frames import transform_images
    from somtorch.geometry import default_neuron_dim

    t = _templates(templates)
    nd = int(neuron_dim or default_neuron_dim(t.shape[-1], numrot))  # native: exactly invariant
    neurons = transform_images(t, (np.zeros(len(t), np.int64), np.zeros(len(t))), numrot=None, neuron_dim=nd)
    if len(neurons) == 1:
        neurons = np.concatenate([neurons, np.zeros_like(neurons)])
    return neurons


def write_template_som(path, templates, neuron_dim: int | None = None, numrot: int = 360,
                       overwrite: bool = False) -> np.ndarray:
    """Write the template neurons as a PINK SOM file (lattice ``(K,)``) with
    :class:`~somtorch.io.SOMWriter`; returns the neurons. Map a sample onto it with PINK or
    ``somtorch.map`` and sort by distance."""
    from somtorch.io import SOMWriter

    neurons = template_neurons(templates, neuron_dim, numrot)
    with SOMWriter(path, (len(neurons),), neurons.shape[1:], overwrite=overwrite,
                   comment="somtorch template SOM (look-alike search)") as w:
        for n in neurons:
            w.add(n)
    return neurons


def find_lookalikes(templates, images, *, numrot: int = 360, flip: bool = True, top: int | None = None,
                    neuron_dim: int | None = None, euclidean_dim: int | None = None,
                    distance_shape: str = "quadratic", batch_size: int | None = None, progress: bool = False):
    """Images ranked by their distance to the closest template (best first).

    Parameters
    ----------
    templates : one image ``(H, W)`` / ``(C, H, W)`` or several ``(K, C, H, W)``
    images : anything :func:`somtorch.engine.as_image_source` accepts (tensor, PINK file...)
    numrot, flip, neuron_dim, euclidean_dim, distance_shape : the comparison geometry (the native
        defaults for the image size when None: exactly invariant under quarter turns and flips).
    top : keep only the ``top`` best images.

    Returns
    -------
    pandas.DataFrame with columns ``image``, ``template``, ``distance``, ``flip``, ``angle``
    (the image's best transform onto that template: ``template ~ flipud**flip(rotate_cw(image,
    angle))``).
    """
    import pandas as pd

    from somtorch.engine import Mapper, RotationInvariantSOM, SOMGeometry
    from somtorch.geometry import Lattice

    t = _templates(templates)
    k = len(t)
    geom = SOMGeometry(t.shape[-1], channels=t.shape[1], numrot=numrot, flip=flip, neuron_dim=neuron_dim,
                       euclidean_dim=euclidean_dim, distance_shape=distance_shape)
    neurons = template_neurons(t, geom.nd, numrot)
    som = RotationInvariantSOM(Lattice("cartesian", (len(neurons),)), geom, init=torch.from_numpy(neurons))
    res = Mapper(som, batch_size=batch_size, progress=progress).map(images)
    d = res.distances[:, :k]
    best = torch.argmin(d, dim=1)
    rows = torch.arange(len(best))
    df = pd.DataFrame({
        "image": rows.numpy(),
        "template": best.numpy(),
        "distance": d[rows, best].numpy().astype(np.float64),
        "flip": res.flip[rows, best].numpy().astype(int),
        "angle": res.angle[rows, best].numpy().astype(np.float64),
    }).sort_values(["distance", "image"], kind="stable").reset_index(drop=True)
    return df.head(int(top)) if top is not None else df
