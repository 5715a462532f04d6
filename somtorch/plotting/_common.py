"""Shared plotting helpers: figures without pyplot state, atomic saving, lattices, colour scales.

Convention
----------
* Figures are :class:`matplotlib.figure.Figure` objects built directly (no ``pyplot`` state), so
  they work headless with any backend and never pile up as open figures; only the interactive
  explorer asks pyplot for a window.
* ``path=`` saves the figure atomically (temporary file + rename, format from the extension);
  an existing file raises :class:`~somtorch.errors.OutputExistsError` unless ``overwrite=True``.
* Radio images default to the ``inferno`` colour map (perceptually uniform, dark background for
  faint emission) with an optional ``stretch`` (``"linear"``, ``"sqrt"``, ``"asinh"``, ``"log"``)
  that lifts faint structure; signed maps (residuals) use ``"RdBu_r"`` centred on zero.
"""

from __future__ import annotations

import math
import os

import numpy as np

from somtorch.errors import ConfigError, ShapeError

RADIO_CMAP = "inferno"
COUNT_CMAP = "viridis"
DIVERGING_CMAP = "RdBu_r"
SQ3 = math.sqrt(3.0)


def new_figure(figsize, layout: str | None = "constrained"):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout=layout)


def save_figure(fig, path=None, *, overwrite: bool = False, dpi: int = 100):
    """Write ``fig`` to ``path`` atomically (no silent overwrite); return ``fig``."""
    if path is None:
        return fig
    from somtorch.io.atomic import atomic_output

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if not ext:
        raise ConfigError(path, "path", path, "a file name with an image extension (.png, .pdf, .svg...)")
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with atomic_output(path, overwrite=overwrite, mode="wb") as f:
        fig.savefig(f, format=ext, dpi=dpi)
    return fig


def as_lattice(lattice):
    from somtorch.geometry import Lattice

    if isinstance(lattice, Lattice):
        return lattice
    if isinstance(lattice, dict):
        return Lattice(lattice.get("layout", "cartesian"), tuple(lattice["shape"]),
                       bool(lattice.get("periodic", False)))
    header = getattr(lattice, "header", None)
    if header is not None and hasattr(header, "som_dims"):
        return Lattice.from_header(header.som_dims, header.num_neurons)
    if isinstance(getattr(lattice, "lattice", None), Lattice):
        return lattice.lattice
    return Lattice("cartesian", tuple(int(s) for s in lattice))


def to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def weights_and_lattice(weights, lattice=None):
    """``(N, C, nd, nd)`` float32 weights and the Lattice, from a tensor/array (+ lattice), a
    :class:`~somtorch.io.SOM` or a :class:`~somtorch.engine.RotationInvariantSOM`."""
    if lattice is None:
        if hasattr(weights, "header") or hasattr(weights, "lattice"):
            lattice = weights
        else:
            raise ConfigError(None, "lattice", None, "a Lattice (or pass a SOM object)")
    lat = as_lattice(lattice)
    w = weights
    if hasattr(w, "weights") and not isinstance(w, np.ndarray):
        w = w.weights
    elif hasattr(w, "weight") and not isinstance(w, np.ndarray):
        w = w.weight
    w = to_numpy(w).astype(np.float32, copy=False)
    if w.ndim == 3:
        w = w[:, None]
    if w.ndim != 4 or w.shape[0] != lat.num_neurons:
        raise ShapeError(f"weights have shape {w.shape}, expected ({lat.num_neurons}, C, nd, nd) "
                         f"for the {lat.describe()} lattice")
    return w, lat


def neuron_label(lat, i: int) -> str:
    """Text label of neuron ``i``: PYINK key ``(row, col)`` (cartesian), ``k`` (hexagonal)."""
    if lat.layout == "hexagonal":
        return str(int(i))
    _, yz = lat.grid_shape_2d()
    r, c = divmod(int(i), yz)
    return f"{r},{c}"


def image_norm(data, stretch: str = "linear", vmin=None, vmax=None):
    """A matplotlib ``Normalize`` for ``data`` with the given stretch (finite min/max by default)."""
    from matplotlib import colors

    a = np.asarray(data)
    fin = a[np.isfinite(a)]
    lo = float(fin.min()) if vmin is None and fin.size else (0.0 if vmin is None else float(vmin))
    hi = float(fin.max()) if vmax is None and fin.size else (1.0 if vmax is None else float(vmax))
    if hi <= lo:
        hi = lo + 1.0
    if stretch == "linear":
        return colors.Normalize(lo, hi)
    if stretch == "sqrt":
        return colors.PowerNorm(0.5, lo, hi)
    if stretch == "asinh":
        return colors.AsinhNorm(linear_width=max((hi - lo) * 0.05, 1e-12), vmin=lo, vmax=hi)
    if stretch == "log":
        pos = fin[fin > 0]
        return colors.LogNorm(max(float(pos.min()) if pos.size else 1e-6, lo, 1e-12), hi)
    raise ConfigError(None, "stretch", stretch, "'linear', 'sqrt', 'asinh' or 'log'")


def hexagon(xy, radius, **kw):
    from matplotlib.patches import RegularPolygon

    return RegularPolygon(tuple(xy), numVertices=6, radius=radius, orientation=0.0, **kw)


def strip_ticks(ax):
    ax.set_xticks([])
    ax.set_yticks([])
