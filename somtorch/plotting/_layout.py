"""Where neurons are drawn: shared by the mosaics (:mod:`somtorch.plotting.som`) and the heat
maps (:mod:`somtorch.plotting.maps`); see :mod:`somtorch.plotting.som` for the layout conventions."""

from __future__ import annotations

import numpy as np

from somtorch.plotting._common import SQ3, as_lattice

__all__ = ["neuron_positions", "finish_axes", "label_lattice_axes"]


def neuron_positions(lattice, depth_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Drawing positions of the neurons: ``(idx, xy)`` with the neuron indices shown (all of them,
    or one depth slice of a 3-D lattice) and their centres ``(n, 2)`` in data units (y grows
    downwards: rows are drawn top to bottom)."""
    lat = as_lattice(lattice)
    c = lat.coords.numpy()
    idx = np.arange(lat.num_neurons)
    if lat.layout == "hexagonal":
        q, r = c[:, 0].astype(float), c[:, 1].astype(float)
        xy = np.stack([q + r / 2.0, r * SQ3 / 2.0], axis=1)
        return idx, xy
    if c.shape[1] == 1:
        xy = np.stack([c[:, 0] + 0.5, np.full(len(c), 0.5)], axis=1)
        return idx, xy.astype(float)
    if c.shape[1] == 3:
        keep = c[:, 2] == depth_index
        idx, c = idx[keep], c[keep]
    xy = np.stack([c[:, 1] + 0.5, c[:, 0] + 0.5], axis=1).astype(float)
    return idx, xy


def finish_axes(ax, lat, xy, pad=0.5, ticks: bool = False):
    if lat.layout == "hexagonal":
        rho = 1.0 / SQ3
        ax.set_xlim(xy[:, 0].min() - 0.5 - 0.05, xy[:, 0].max() + 0.5 + 0.05)
        ax.set_ylim(xy[:, 1].max() + rho + 0.05, xy[:, 1].min() - rho - 0.05)
    else:
        ax.set_xlim(xy[:, 0].min() - pad, xy[:, 0].max() + pad)
        ax.set_ylim(xy[:, 1].max() + pad, xy[:, 1].min() - pad)
    ax.set_aspect("equal")
    if ticks and lat.layout == "cartesian":
        label_lattice_axes(ax, lat, xy)
    else:
        ax.set_xticks([])
        ax.set_yticks([])


def label_lattice_axes(ax, lat, xy) -> None:
    """Ticks at the neuron centres labelled with their lattice indices (cartesian heat maps):
    ``col``/``row`` for 2-D and 3-D lattices (PYINK's ``(row, col)`` keys), ``neuron`` for 1-D."""
    xs = np.unique(xy[:, 0])
    ax.set_xticks(xs, [str(int(x - 0.5)) for x in xs])
    if len(lat.shape) == 1:
        ax.set_yticks([])
        ax.set_xlabel("neuron")
        return
    ys = np.unique(xy[:, 1])
    ax.set_yticks(ys, [str(int(y - 0.5)) for y in ys])
    ax.set_xlabel("col")
    ax.set_ylabel("row")
    ax.tick_params(length=2, labelsize=7)
