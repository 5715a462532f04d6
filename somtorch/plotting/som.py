"""SOM mosaics, best-match-count maps and training curves.

Figures are built with :class:`matplotlib.figure.Figure` directly (no ``pyplot`` state), so they
work on headless machines with any backend and never accumulate open figures.

Layout conventions
------------------
* cartesian 1-D ``(W,)``: one row, neuron ``i`` in column ``i``;
* cartesian 2-D ``(W, H)``: neuron with lattice coordinate ``(a, b)`` (PINK order, see
  :mod:`somtorch.geometry.lattice`) is drawn in row ``a`` (top to bottom) and column ``b``, i.e.
  PYINK's ``(row, col)``;
* cartesian 3-D: one depth slice (``depth_index``);
* hexagonal: pointy-top hexagons at axial ``(q, r)``, centre ``x = q + r/2``, ``y = r sqrt(3)/2``
  (row ``r`` top to bottom), each neuron image clipped to its hexagon.
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["plot_som_mosaic", "plot_bmu_counts", "plot_training_curves", "neuron_positions"]

_SQ3 = math.sqrt(3.0)


def _figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _save(fig, path, dpi=100):
    if path is not None:
        path = os.fspath(path)
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig


def _as_lattice(lattice):
    from somtorch.geometry import Lattice

    if isinstance(lattice, Lattice):
        return lattice
    if isinstance(lattice, dict):
        return Lattice(lattice.get("layout", "cartesian"), tuple(lattice["shape"]),
                       bool(lattice.get("periodic", False)))
    return Lattice("cartesian", tuple(int(s) for s in lattice))


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def neuron_positions(lattice, depth_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Drawing positions of the neurons: ``(idx, xy)`` with the neuron indices shown (all of them,
    or one depth slice of a 3-D lattice) and their centres ``(n, 2)`` in data units (y grows
    downwards: rows are drawn top to bottom)."""
    lat = _as_lattice(lattice)
    c = lat.coords.numpy()
    idx = np.arange(lat.num_neurons)
    if lat.layout == "hexagonal":
        q, r = c[:, 0].astype(float), c[:, 1].astype(float)
        xy = np.stack([q + r / 2.0, r * _SQ3 / 2.0], axis=1)
        return idx, xy
    if c.shape[1] == 1:
        xy = np.stack([c[:, 0] + 0.5, np.full(len(c), 0.5)], axis=1)
        return idx, xy.astype(float)
    if c.shape[1] == 3:
        keep = c[:, 2] == depth_index
        idx, c = idx[keep], c[keep]
    xy = np.stack([c[:, 1] + 0.5, c[:, 0] + 0.5], axis=1).astype(float)
    return idx, xy


def _hexagon(xy, radius, **kw):
    from matplotlib.patches import RegularPolygon

    return RegularPolygon(tuple(xy), numVertices=6, radius=radius, orientation=0.0, **kw)


def _finish_axes(ax, lat, xy, pad=0.5):
    if lat.layout == "hexagonal":
        rho = 1.0 / _SQ3
        ax.set_xlim(xy[:, 0].min() - 0.5 - 0.05, xy[:, 0].max() + 0.5 + 0.05)
        ax.set_ylim(xy[:, 1].max() + rho + 0.05, xy[:, 1].min() - rho - 0.05)
    else:
        ax.set_xlim(xy[:, 0].min() - pad, xy[:, 0].max() + pad)
        ax.set_ylim(xy[:, 1].max() + pad, xy[:, 1].min() - pad)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_som_mosaic(weights, lattice, channel: int = 0, *, path=None, ax=None, cmap: str = "viridis",
                    normalise: str = "global", depth_index: int = 0, title: str | None = None,
                    grid: bool = True, counts=None, figsize=None, dpi: int = 100):
    """Draw every neuron image at its lattice position.

    Parameters
    ----------
    weights : tensor or array ``(N, C, nd, nd)`` (or ``(N, nd, nd)``)
        SOM weights in PINK neuron order (``som.weight`` or :func:`somtorch.io.read_som`).
    lattice : Lattice, ``{"layout", "shape"}`` dict or a cartesian shape tuple
    channel : int
        Channel to show.
    normalise : {"global", "neuron"}
        One colour scale for all neurons, or each neuron scaled to its own min/max.
    counts : sequence of int, optional
        Per-neuron numbers (e.g. best-match counts) written in the corner of each neuron.
    path : path, optional
        Save the figure there (format from the extension).

    Returns
    -------
    matplotlib.figure.Figure
        One axes with one image per neuron shown (``len(ax.images)``).
    """
    lat = _as_lattice(lattice)
    w = _to_numpy(weights).astype(np.float32, copy=False)
    if w.ndim == 3:
        w = w[:, None]
    if w.ndim != 4 or w.shape[0] != lat.num_neurons:
        from somtorch.errors import ShapeError

        raise ShapeError(f"weights have shape {w.shape}, expected ({lat.num_neurons}, C, nd, nd) "
                         f"for the {lat.describe()} lattice")
    if not 0 <= channel < w.shape[1]:
        from somtorch.errors import ConfigError

        raise ConfigError(None, "channel", channel, f"in [0, {w.shape[1]})")
    imgs = w[:, channel]
    idx, xy = neuron_positions(lat, depth_index)
    if ax is None:
        if figsize is None:
            span_x = np.ptp(xy[:, 0]) + 1
            span_y = np.ptp(xy[:, 1]) + 1
            s = 8.0 / max(span_x, span_y)
            figsize = (max(3.0, span_x * s), max(2.0, span_y * s + (0.4 if title else 0)))
        fig = _figure(figsize)
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    finite = imgs[idx][np.isfinite(imgs[idx])]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    hexagonal = lat.layout == "hexagonal"
    rho = 1.0 / _SQ3
    half = rho * 0.98 if hexagonal else 0.5
    for i, (x, y) in zip(idx, xy):
        img = imgs[i]
        lo, hi = vmin, vmax
        if normalise == "neuron":
            lo, hi = float(np.nanmin(img)), float(np.nanmax(img))
        if hi <= lo:
            hi = lo + 1.0
        im = ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest",
                       extent=(x - half, x + half, y + half, y - half))
        if hexagonal:
            patch = _hexagon((x, y), rho, facecolor="none", edgecolor="white" if grid else "none",
                             linewidth=0.8)
            ax.add_patch(patch)
            im.set_clip_path(patch)
        if counts is not None:
            ax.text(x - half * 0.9, y - half * 0.9, str(int(_to_numpy(counts)[i])), color="white",
                    fontsize=7, ha="left", va="top")
    if grid and not hexagonal:
        x0, x1 = xy[:, 0].min() - 0.5, xy[:, 0].max() + 0.5
        y0, y1 = xy[:, 1].min() - 0.5, xy[:, 1].max() + 0.5
        for gx in np.arange(x0, x1 + 0.5):
            ax.axvline(gx, color="white", linewidth=0.8)
        for gy in np.arange(y0, y1 + 0.5):
            ax.axhline(gy, color="white", linewidth=0.8)
    _finish_axes(ax, lat, xy)
    if hexagonal:
        ax.set_facecolor("black")
    if title:
        ax.set_title(title)
    return _save(fig, path, dpi)


def plot_bmu_counts(counts, lattice, *, path=None, ax=None, cmap: str = "magma",
                    depth_index: int = 0, title: str | None = "best-matching-unit counts",
                    annotate: bool = True, figsize=None, dpi: int = 100):
    """Heat map of per-neuron counts (e.g. how many images have each neuron as best match).

    Returns the Figure; one coloured cell (cartesian) or hexagon (hexagonal) per neuron shown.
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    lat = _as_lattice(lattice)
    cnt = _to_numpy(counts).astype(float).reshape(-1)
    if cnt.shape[0] != lat.num_neurons:
        from somtorch.errors import ShapeError

        raise ShapeError(f"counts have {cnt.shape[0]} entries, the lattice has {lat.num_neurons} neurons")
    idx, xy = neuron_positions(lat, depth_index)
    if ax is None:
        span_x, span_y = np.ptp(xy[:, 0]) + 1, np.ptp(xy[:, 1]) + 1
        s = 6.0 / max(span_x, span_y)
        fig = _figure(figsize or (max(3.5, span_x * s + 1.2), max(2.5, span_y * s + 0.5)))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    rho = 1.0 / _SQ3
    if lat.layout == "hexagonal":
        patches = [_hexagon(p, rho) for p in xy]
    else:
        patches = [Rectangle((x - 0.5, y - 0.5), 1.0, 1.0) for x, y in xy]
    vals = cnt[idx]
    norm = Normalize(vmin=0.0, vmax=max(float(vals.max()) if len(vals) else 1.0, 1.0))
    coll = PatchCollection(patches, cmap=cmap, norm=norm, edgecolor="grey", linewidth=0.5)
    coll.set_array(vals)
    ax.add_collection(coll)
    if annotate:
        for v, (x, y) in zip(vals, xy):
            ax.text(x, y, f"{int(v)}", ha="center", va="center", fontsize=7,
                    color="black" if norm(v) > 0.6 else "white")
    fig.colorbar(coll, ax=ax, label="count")
    _finish_axes(ax, lat, xy)
    if title:
        ax.set_title(title)
    return _save(fig, path, dpi)


def _history_frame(history):
    import pandas as pd

    if hasattr(history, "to_dataframe"):
        return history.to_dataframe()
    if isinstance(history, pd.DataFrame):
        return history.copy()
    return pd.DataFrame(list(history))


def plot_training_curves(history_df, *, path=None, metrics=("qe", "te", "change"),
                         title: str | None = None, figsize=None, dpi: int = 100):
    """Quantization error, topographic error and relative weight change at each progress step.

    ``history_df``: a DataFrame (or :class:`~somtorch.engine.TrainingHistory`, or a list of
    records) with columns ``epoch`` (or ``tick``), the metrics and optionally ``stage``. Several
    stages are drawn one after the other on a cumulative epoch axis with dashed boundaries.
    Returns the Figure with one axes per metric.
    """
    df = _history_frame(history_df)
    fig = _figure(figsize or (4.0 * len(metrics), 3.2))
    axes = [fig.add_subplot(1, len(metrics), k + 1) for k in range(len(metrics))]
    if len(df) == 0:
        for ax, m in zip(axes, metrics):
            ax.set_title(m)
            ax.text(0.5, 0.5, "no progress records", ha="center", va="center", transform=ax.transAxes)
        return _save(fig, path, dpi)
    xcol = "epoch" if "epoch" in df else ("tick" if "tick" in df else None)
    if "stage" not in df:
        df["stage"] = "stage"
    stages = list(dict.fromkeys(df["stage"].tolist()))
    offset, bounds = 0.0, []
    for k, st in enumerate(stages):
        part = df[df["stage"] == st]
        x = (part[xcol].to_numpy(float) if xcol else np.arange(1, len(part) + 1, dtype=float)) + offset
        for ax, m in zip(axes, metrics):
            if m not in part:
                continue
            y = part[m].to_numpy(dtype=float, na_value=np.nan)
            ax.plot(x, y, marker="o", markersize=3, label=str(st), color=f"C{k % 10}")
        offset = float(x.max()) if len(x) else offset
        bounds.append(offset)
    labels = {"qe": "quantization error", "te": "topographic error",
              "change": "relative change since last step"}
    for ax, m in zip(axes, metrics):
        for b in bounds[:-1]:
            ax.axvline(b, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlabel("epoch (cumulative)" if xcol == "epoch" else (xcol or "progress step"))
        ax.set_title(labels.get(m, m))
        if m == "change" and m in df:
            v = df[m].to_numpy(dtype=float, na_value=np.nan)
            if np.all(v[np.isfinite(v)] > 0) and np.isfinite(v).any():
                ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if len(stages) > 1:
        axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)
