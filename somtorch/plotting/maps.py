"""Per-neuron heat maps on the SOM lattice: counts, label fractions, distance statistics, U-matrix.

Cartesian neurons are unit squares at ``(col, row)``; hexagonal neurons are pointy-top hexagons
at axial ``(q, r)`` (see :func:`somtorch.plotting.som.neuron_positions`), so hexagonal SOMs are
drawn as a hex grid. Neurons with no value (NaN, e.g. a median over no images) are hatched grey.
"""

from __future__ import annotations

import numpy as np

from somtorch.errors import ShapeError
from somtorch.plotting._common import (
    COUNT_CMAP,
    SQ3,
    as_lattice,
    hexagon,
    new_figure,
    save_figure,
    to_numpy,
    weights_and_lattice,
)
from somtorch.plotting._layout import finish_axes, neuron_positions

__all__ = ["plot_neuron_map", "plot_bmu_counts", "plot_label_fractions", "plot_distance_stats", "plot_u_matrix"]


def _panel_size(xy, width: float = 5.0):
    span_x, span_y = np.ptp(xy[:, 0]) + 1, np.ptp(xy[:, 1]) + 1
    s = width / max(span_x, span_y)
    return span_x * s + 1.2, span_y * s + 0.6


def plot_neuron_map(values, lattice, *, path=None, ax=None, cmap: str = COUNT_CMAP, depth_index: int = 0,
                    title: str | None = None, annotate: bool = True, fmt: str = "{:.3g}", vmin=None, vmax=None,
                    label: str | None = None, colorbar: bool = True, highlight=None, figsize=None,
                    dpi: int = 100, overwrite: bool = False):
    """Colour each neuron by ``values`` (``N`` numbers in PINK neuron order, any shape).

    ``highlight``: neuron indices outlined in red. Returns the Figure (one patch per neuron in
    ``ax.collections[0]``).
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    lat = as_lattice(lattice)
    vals_all = to_numpy(values).astype(float).reshape(-1)
    if vals_all.shape[0] != lat.num_neurons:
        raise ShapeError(f"{vals_all.shape[0]} values for the {lat.describe()} lattice ({lat.num_neurons} neurons)")
    idx, xy = neuron_positions(lat, depth_index)
    if ax is None:
        fig = new_figure(figsize or _panel_size(xy))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    rho = 1.0 / SQ3
    hexagonal = lat.layout == "hexagonal"
    patches = [hexagon(p, rho) if hexagonal else Rectangle((p[0] - 0.5, p[1] - 0.5), 1.0, 1.0) for p in xy]
    vals = vals_all[idx]
    fin = vals[np.isfinite(vals)]
    lo = float(fin.min()) if vmin is None and fin.size else (0.0 if vmin is None else float(vmin))
    hi = float(fin.max()) if vmax is None and fin.size else (1.0 if vmax is None else float(vmax))
    norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1.0)
    import matplotlib

    cm = (matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap).with_extremes(bad="lightgrey")
    coll = PatchCollection(patches, cmap=cm, norm=norm, edgecolor="grey", linewidth=0.5)
    coll.set_array(np.ma.masked_invalid(vals))
    ax.add_collection(coll)
    if annotate:
        for v, (x, y) in zip(vals, xy):
            txt = "–" if not np.isfinite(v) else fmt.format(v)
            rgb = cm(norm(v))[:3] if np.isfinite(v) else (0.8, 0.8, 0.8)
            lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]  # text readable on the cell colour
            colour = "dimgrey" if not np.isfinite(v) else ("black" if lum > 0.5 else "white")
            ax.text(x, y, txt, ha="center", va="center", fontsize=7, color=colour)
    if highlight is not None:
        pos = {int(i): k for k, i in enumerate(idx)}
        for i in np.atleast_1d(highlight):
            if int(i) in pos:
                p = xy[pos[int(i)]]
                ax.add_patch(hexagon(p, rho, facecolor="none", edgecolor="red", linewidth=2) if hexagonal else
                             Rectangle((p[0] - 0.5, p[1] - 0.5), 1, 1, facecolor="none", edgecolor="red", linewidth=2))
    if colorbar:
        fig.colorbar(coll, ax=ax, label=label)
    finish_axes(ax, lat, xy, ticks=True)
    if title:
        ax.set_title(title)
    return save_figure(fig, path, overwrite=overwrite, dpi=dpi)


def plot_label_fractions(fractions, lattice, *, labels=None, from_counts: bool = False, balanced: bool = False,
                         path=None, cmap: str = "magma", ncols: int = 3, title: str | None = None,
                         annotate: bool = True, figsize=None, dpi: int = 100, overwrite: bool = False):
    """One panel per label: the fraction of each neuron's images carrying that label.

    ``fractions``: a dict ``label -> N values`` (e.g. :meth:`~somtorch.io.Mapping.map_labels`
    counts normalised per neuron), a pandas DataFrame with one column per label and one row
    per neuron, an ``(N, L)`` array with ``labels``, or a
    :class:`~somtorch.analysis.KnowledgeTransfer` (its raw or ``balanced`` fractions).
    ``from_counts``: the values are counts (e.g. ``Mapping.map_labels``), normalised here per
    neuron (neurons without labelled images: NaN). Colour scale 0..1. Returns the Figure with
    one map axes per label.
    """
    lat = as_lattice(lattice)
    if hasattr(fractions, "fractions") and callable(fractions.fractions):
        fractions = fractions.fractions(balanced=balanced)
    if isinstance(fractions, dict):
        labels = list(fractions) if labels is None else list(labels)
        cols = [to_numpy(fractions[k]).astype(float).reshape(-1) for k in labels]
    elif hasattr(fractions, "columns"):
        labels = list(fractions.columns) if labels is None else list(labels)
        cols = [fractions[k].to_numpy(dtype=float) for k in labels]
    else:
        arr = to_numpy(fractions).astype(float).reshape(lat.num_neurons, -1)
        labels = list(range(arr.shape[1])) if labels is None else list(labels)
        cols = [arr[:, k] for k in range(arr.shape[1])]
    if from_counts:
        tot = np.sum(cols, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            cols = [np.where(tot > 0, c / tot, np.nan) for c in cols]
    _, xy = neuron_positions(lat)
    w, h = _panel_size(xy, 3.5)
    ncols = max(1, min(ncols, len(cols)))
    nrows = -(-len(cols) // ncols)
    fig = new_figure(figsize or (w * ncols, h * nrows + (0.4 if title else 0)))
    for k, (lab, v) in enumerate(zip(labels, cols)):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        plot_neuron_map(v, lat, ax=ax, cmap=cmap, vmin=0.0, vmax=1.0, title=str(lab), annotate=annotate,
                        fmt="{:.2f}", label="fraction")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, overwrite=overwrite, dpi=dpi)


def plot_distance_stats(stats, lattice, *, columns=("median", "spread", "count"), path=None,
                        cmaps=("viridis", "plasma", COUNT_CMAP), title: str | None = None, annotate: bool = True,
                        figsize=None, dpi: int = 100, overwrite: bool = False):
    """Per-neuron distance statistics side by side (cookbook §4.1).

    ``stats`` is the DataFrame of :func:`somtorch.analysis.neuron_distance_stats` (or a
    :class:`~somtorch.io.Mapping`, from which it is computed). Returns the Figure with one map
    axes per column.
    """
    if hasattr(stats, "bmu_counts"):
        from somtorch.analysis.quality import neuron_distance_stats

        lattice = stats if lattice is None else lattice
        stats = neuron_distance_stats(stats)
    lat = as_lattice(lattice)
    _, xy = neuron_positions(lat)
    w, h = _panel_size(xy, 3.5)
    fig = new_figure(figsize or (w * len(columns), h + (0.4 if title else 0)))
    names = {"median": "median distance", "spread": "spread (q84-q16)/2", "count": "best-match count",
             "mean": "mean distance", "std": "std of distances", "mad": "MAD of distances"}
    for k, col in enumerate(columns):
        ax = fig.add_subplot(1, len(columns), k + 1)
        plot_neuron_map(stats[col].to_numpy(dtype=float), lat, ax=ax, cmap=cmaps[k % len(cmaps)],
                        title=names.get(col, col), annotate=annotate,
                        fmt="{:.0f}" if col == "count" else "{:.3g}", vmin=0.0 if col == "count" else None)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, overwrite=overwrite, dpi=dpi)


def plot_u_matrix(weights, lattice=None, *, reduce: str = "mean", path=None, cmap: str = "bone_r",
                  title: str | None = "U-matrix (distance to neighbours)", annotate: bool = True, figsize=None,
                  dpi: int = 100, overwrite: bool = False):
    """U-matrix: each neuron coloured by its weight distance to its lattice neighbours
    (:func:`somtorch.analysis.u_matrix`); dark = far from its neighbours (cluster borders)."""
    from somtorch.analysis.quality import u_matrix

    w, lat = weights_and_lattice(weights, lattice)
    u = u_matrix(w, lat, reduce=reduce)
    return plot_neuron_map(u, lat, path=path, cmap=cmap, title=title, annotate=annotate, label=f"{reduce} distance",
                           figsize=figsize, dpi=dpi, overwrite=overwrite)


def plot_bmu_counts(counts, lattice=None, *, path=None, ax=None, cmap: str = COUNT_CMAP,
                    depth_index: int = 0, title: str | None = "best-matching-unit counts",
                    annotate: bool = True, figsize=None, dpi: int = 100, overwrite: bool = False):
    """Heat map of per-neuron counts (e.g. how many images have each neuron as best match).

    ``counts`` may also be a :class:`~somtorch.io.Mapping` (its ``bmu_counts()``, ``bmu_mask``
    honoured; lattice from the file). Returns the Figure; one coloured cell (cartesian) or
    hexagon (hexagonal) per neuron shown.
    """
    if hasattr(counts, "bmu_counts"):
        lattice = counts if lattice is None else lattice
        counts = counts.bmu_counts()
    return plot_neuron_map(counts, lattice, path=path, ax=ax, cmap=cmap, depth_index=depth_index, title=title,
                           annotate=annotate, fmt="{:.0f}", vmin=0.0, label="count", figsize=figsize, dpi=dpi,
                           overwrite=overwrite)
