"""SOM mosaics and training curves (best-match counts and other heat maps: :mod:`somtorch.plotting.maps`).

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

import os

import numpy as np

from somtorch.plotting._common import (
    RADIO_CMAP,
    SQ3,
    as_lattice,
    hexagon,
    image_norm,
    neuron_label,
    new_figure,
    save_figure,
    strip_ticks,
    to_numpy,
    weights_and_lattice,
)
from somtorch.plotting._layout import finish_axes as _finish_axes
from somtorch.plotting._layout import neuron_positions

__all__ = ["plot_som_mosaic", "plot_som", "plot_neuron", "plot_training_curves", "neuron_positions"]

_SQ3 = SQ3


def _figure(figsize):
    return new_figure(figsize)


def _save(fig, path, dpi=100, overwrite: bool = False):
    return save_figure(fig, path, overwrite=overwrite, dpi=dpi)


_as_lattice = as_lattice
_to_numpy = to_numpy


_hexagon = hexagon


def plot_som_mosaic(weights, lattice=None, channel: int = 0, *, path=None, ax=None, cmap: str = RADIO_CMAP,
                    normalise: str = "global", depth_index: int = 0, title: str | None = None,
                    grid: bool = True, counts=None, show_index: bool = False, stretch: str = "linear",
                    trim: int | None = None, figsize=None, dpi: int = 100, overwrite: bool = False):
    """Draw every neuron image of one channel at its lattice position.

    Parameters
    ----------
    weights : tensor or array ``(N, C, nd, nd)`` (or ``(N, nd, nd)``), or a SOM object
        SOM weights in PINK neuron order (``som.weight``, :func:`somtorch.io.read_som`, or a
        :class:`~somtorch.io.SOM` / :class:`~somtorch.engine.RotationInvariantSOM`, whose
        lattice is then used when ``lattice`` is None).
    lattice : Lattice, ``{"layout", "shape"}`` dict or a cartesian shape tuple
    channel : int
        Channel to show.
    normalise : {"global", "neuron"}
        One colour scale for all neurons, or each neuron scaled to its own min/max.
    counts : sequence of int, optional
        Per-neuron numbers (e.g. best-match counts) written in the corner of each neuron.
    show_index : bool
        Write each neuron's key (``row,col``; hexagonal: flat index) in its top-left corner.
    stretch : {"linear", "sqrt", "asinh", "log"}
    trim : int, optional
        Show only the central ``trim x trim`` pixels of each neuron (e.g. the image size).
    grid : bool
        Lines between neurons (cartesian) or hexagon outlines (hexagonal).
    path : path, optional
        Save the figure there (format from the extension; atomic, refuses to replace an
        existing file unless ``overwrite``).

    Returns
    -------
    matplotlib.figure.Figure
        One axes with one image per neuron shown (``len(ax.images)``); hexagonal lattices also
        carry one hexagon patch per neuron.
    """
    w, lat = weights_and_lattice(weights, lattice)
    if not 0 <= channel < w.shape[1]:
        from somtorch.errors import ConfigError

        raise ConfigError(None, "channel", channel, f"in [0, {w.shape[1]})")
    imgs = w[:, channel]
    if trim is not None and trim < imgs.shape[-1]:
        m = (imgs.shape[-1] - int(trim)) // 2
        imgs = imgs[:, m:m + int(trim), m:m + int(trim)]
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
    gnorm = image_norm(imgs[idx], stretch)
    hexagonal = lat.layout == "hexagonal"
    rho = 1.0 / _SQ3
    half = rho * 0.98 if hexagonal else 0.5
    line = "white" if cmap in (RADIO_CMAP, "magma", "viridis", "cividis", "gray", "plasma") else "black"
    cnt = None if counts is None else _to_numpy(counts).reshape(-1)
    for i, (x, y) in zip(idx, xy):
        img = imgs[i]
        norm = image_norm(img, stretch) if normalise == "neuron" else gnorm
        im = ax.imshow(img, cmap=cmap, norm=norm, interpolation="nearest",
                       extent=(x - half, x + half, y + half, y - half))
        if hexagonal:
            patch = _hexagon((x, y), rho, facecolor="none", edgecolor=line if grid else "none",
                             linewidth=0.8)
            ax.add_patch(patch)
            im.set_clip_path(patch)
        if cnt is not None:
            ax.text(x + half * 0.9, y + half * 0.9, str(int(cnt[i])), color=line,
                    fontsize=7, ha="right", va="bottom")
        if show_index:
            ax.text(x - half * 0.9 + (0.25 if hexagonal else 0), y - half * 0.9 + (0.1 if hexagonal else 0),
                    neuron_label(lat, i), color=line, fontsize=6, ha="left", va="top")
    if grid and not hexagonal:
        x0, x1 = xy[:, 0].min() - 0.5, xy[:, 0].max() + 0.5
        y0, y1 = xy[:, 1].min() - 0.5, xy[:, 1].max() + 0.5
        for gx in np.arange(x0, x1 + 0.5):
            ax.axvline(gx, color=line, linewidth=0.8)
        for gy in np.arange(y0, y1 + 0.5):
            ax.axhline(gy, color=line, linewidth=0.8)
    _finish_axes(ax, lat, xy)
    if hexagonal:
        ax.set_facecolor("black")
    if title:
        ax.set_title(title)
    return _save(fig, path, dpi, overwrite)


def plot_som(weights, lattice=None, channels=None, *, path=None, titles=None, cmaps=None, figsize=None,
             dpi: int = 100, overwrite: bool = False, **mosaic_kwargs):
    """One mosaic panel per channel (all channels by default); see :func:`plot_som_mosaic`.

    ``cmaps`` cycles over the channels (default: the radio colour map for every channel).
    Returns the Figure with one axes per channel.
    """
    w, lat = weights_and_lattice(weights, lattice)
    channels = list(range(w.shape[1])) if channels is None else list(np.atleast_1d(channels))
    idx, xy = neuron_positions(lat, mosaic_kwargs.get("depth_index", 0))
    span_x, span_y = np.ptp(xy[:, 0]) + 1, np.ptp(xy[:, 1]) + 1
    s = 6.0 / max(span_x, span_y)
    fig = _figure(figsize or (max(3.0, span_x * s) * len(channels), max(2.0, span_y * s) + 0.4))
    cmaps = list(cmaps) if cmaps else [mosaic_kwargs.pop("cmap", RADIO_CMAP)]
    for k, c in enumerate(channels):
        ax = fig.add_subplot(1, len(channels), k + 1)
        title = titles[k] if titles is not None else f"channel {c}"
        plot_som_mosaic(w, lat, int(c), ax=ax, cmap=cmaps[k % len(cmaps)], title=title, **mosaic_kwargs)
    return _save(fig, path, dpi, overwrite)


def plot_neuron(weights, key=0, lattice=None, *, channels=None, trim: int | None = None, path=None,
                cmaps=None, stretch: str = "linear", colorbar: bool = True, show_ticks: bool = False,
                fig=None, figsize=None, dpi: int = 100, overwrite: bool = False):
    """One neuron, one panel per channel (PYINK ``SOM.plot_neuron``).

    ``key``: flat neuron index, a PYINK key ``(row, col)`` or ``(k,)``; ``trim`` crops the neuron
    to its central ``trim x trim`` pixels (PINK's crop margin). Colour maps cycle over
    ``cmaps`` per channel (default inferno, viridis, magma, cividis). ``fig`` redraws into an
    existing figure (its axes are reused, images replaced -- used by the explorer).
    Returns the Figure (one axes per channel, plus colour bars).
    """
    w, lat = weights_and_lattice(weights, lattice)
    i = _key_index(lat, key)
    chans = list(range(w.shape[1])) if channels is None else list(np.atleast_1d(channels))
    cmaps = list(cmaps) if cmaps else [RADIO_CMAP, "viridis", "magma", "cividis"]
    if fig is None:
        fig = _figure(figsize or (3.6 * len(chans), 3.4))
    fig.clear()
    for k, c in enumerate(chans):
        ax = fig.add_subplot(1, len(chans), k + 1)
        img = w[i, int(c)]
        if trim is not None and trim < img.shape[-1]:
            m = (img.shape[-1] - int(trim)) // 2
            img = img[m:m + int(trim), m:m + int(trim)]
        im = ax.imshow(img, cmap=cmaps[k % len(cmaps)], norm=image_norm(img, stretch), interpolation="nearest")
        ax.set_title(f"neuron {neuron_label(lat, i)} ch {c}", fontsize=9)
        if not show_ticks:
            strip_ticks(ax)
        if colorbar:
            fig.colorbar(im, ax=ax, shrink=0.8)
    return _save(fig, path, dpi, overwrite)


def _key_index(lat, key) -> int:
    if isinstance(key, (int, np.integer)):
        i = int(key)
    else:
        key = tuple(int(v) for v in key)
        if lat.layout == "hexagonal" or len(key) == 1:
            i = key[0]
        else:
            _, yz = lat.grid_shape_2d()
            i = key[0] * yz + key[1]
    if not 0 <= i < lat.num_neurons:
        raise IndexError(f"neuron {key} outside the {lat.describe()} lattice")
    return i


def _history_frame(history):
    import pandas as pd

    if isinstance(history, (str, os.PathLike)):
        p = os.fspath(history)
        return pd.read_json(p) if p.endswith(".json") else pd.read_csv(p)
    if hasattr(history, "to_dataframe"):
        return history.to_dataframe()
    if isinstance(history, pd.DataFrame):
        return history.copy()
    return pd.DataFrame(list(history))


def plot_training_curves(history_df, *, path=None, metrics=("qe", "te", "change"),
                         title: str | None = None, figsize=None, dpi: int = 100, overwrite: bool = False):
    """Quantization error, topographic error and relative weight change at each progress step.

    ``history_df``: a DataFrame, a :class:`~somtorch.engine.TrainingHistory`, a list of
    records, or the path of the ``metrics.csv`` / ``metrics.json`` the trainer writes, with
    columns ``epoch`` (or ``tick``, or ``step`` for :func:`somtorch.analysis.convergence_curve`),
    the metrics and optionally ``stage``. Several
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
        return _save(fig, path, dpi, overwrite)
    xcol = next((c for c in ("epoch", "tick", "step") if c in df), None)
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
    return _save(fig, path, dpi, overwrite)
