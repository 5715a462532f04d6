"""Images with their best-matching neurons, and the images a neuron collects (cookbook Figs 8-9).

Convention
----------
Images are ``(C, H, W)`` arrays drawn with row 0 at the top (``origin='upper'``), the frame in
which PINK's ``(flip, angle)`` is defined (:mod:`somtorch.analysis.frames`). Transforms are
PINK's exact ones for angles of a ``numrot`` run. Neurons shown in the image frame are
transformed back with the inverse transform and sampled onto the image grid (no extra crop
step); neurons shown untransformed are centre-cropped to the image size (PINK's margin).
"""

from __future__ import annotations

import numpy as np

from somtorch.errors import ConfigError
from somtorch.plotting._common import (
    RADIO_CMAP,
    image_norm,
    new_figure,
    save_figure,
    strip_ticks,
    to_numpy,
)

__all__ = ["plot_image", "plot_neuron_matches"]

_CMAPS = (RADIO_CMAP, "viridis", "magma", "cividis")


def _image_array(images):
    """``(N, C, H, W)`` array-like (ImageReader data memmap, tensor or array)."""
    if hasattr(images, "data") and not isinstance(images, np.ndarray) and not hasattr(images, "detach"):
        images = images.data
    a = images if isinstance(images, np.ndarray) else to_numpy(images)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise ConfigError(None, "images", f"shape {a.shape}", "(N, C, H, W) images")
    return a


def _record(transform, i: int, k: int):
    flat = transform.flat.reshape(len(transform), -1) if hasattr(transform, "flat") else np.asarray(transform)
    return flat[i, k]


def _som_weights(som):
    from somtorch.plotting._common import weights_and_lattice

    return weights_and_lattice(som)


def plot_image(images, idx=None, *, somset=None, som=None, mapping=None, transform=None,
               apply_transform: bool = False, show_bmu: bool | None = None, transform_neuron: bool = True,
               numrot: int | None = 360, cmaps=_CMAPS, stretch: str = "linear", show_index: bool = True,
               mark=None, seed: int | None = None, panel_size: float = 3.2, path=None, dpi: int = 100,
               overwrite: bool = False):
    """One image (one panel per channel) above its best-matching neuron (PYINK ``plot_image``).

    Parameters
    ----------
    images : ImageReader, tensor or array ``(N, C, H, W)``
    idx : int, optional
        Image index; a seeded random one if None.
    somset : :class:`~somtorch.io.SOMSet`, optional
        Or give ``som``, ``mapping`` and ``transform`` separately.
    apply_transform : bool
        Show the image in its neuron's frame (forward transform, neuron-sized).
    show_bmu : bool
        Add a row with the best-matching neuron (default: when a SOM and mapping are known).
    transform_neuron : bool
        Show the neuron in the image frame (inverse transform) -- unless ``apply_transform``,
        when both are shown in the neuron frame.
    mark : ``(row, col)`` in image pixels, optional
        A position to mark (e.g. the catalogue component); mapped into the neuron frame when
        ``apply_transform``. Drawn as a red cross-hair on every panel.

    Returns
    -------
    Figure with ``C`` (or ``2 C``) image axes.
    """
    from somtorch.analysis.frames import image_to_neuron_coords, pink_spatial_transform

    imgs = _image_array(images)
    if somset is not None:
        som, mapping, transform = somset.som, somset.mapping, somset.transform
    if idx is None:
        idx = int(np.random.default_rng(seed).integers(len(imgs)))
    idx = int(idx)
    img = np.asarray(imgs[idx], np.float32)
    c, d = img.shape[0], img.shape[-1]
    show_bmu = (som is not None and mapping is not None) if show_bmu is None else show_bmu
    if (show_bmu or apply_transform) and (mapping is None or (som is None and show_bmu)):
        raise ConfigError(None, "somset", None, "a SOM and a mapping (somset=...) to show or use the BMU")
    if apply_transform and transform is None:
        raise ConfigError(None, "transform", None, "a Transform to bring the image into its neuron's frame")
    rec, bmu, neuron, nd = None, None, None, d
    if mapping is not None:
        bmu = int(mapping.key_to_index(tuple(np.atleast_1d(mapping.bmu(idx))))) if hasattr(mapping, "key_to_index") \
            else int(np.argmin(to_numpy(mapping)[idx]))
    if som is not None and bmu is not None:
        w, lat = _som_weights(som)
        neuron, nd = w[bmu], w.shape[-1]
    if transform is not None and bmu is not None:
        rec = _record(transform, idx, bmu)
    shown = img
    mk = None if mark is None else np.asarray(mark, float)
    if apply_transform:
        shown = pink_spatial_transform(img, rec, numrot=numrot, neuron_dim=nd)
        if mk is not None:
            mk = image_to_neuron_coords(mk, rec, d, nd, numrot)
    rows = [("image" + (" (neuron frame)" if apply_transform else ""), shown)]
    if show_bmu:
        if apply_transform:
            nshow = neuron
        elif transform_neuron and rec is not None:
            nshow = pink_spatial_transform(neuron, rec, reverse=True, numrot=numrot, image_dim=d)
        else:
            m = (nd - d) // 2
            nshow = neuron[:, m:m + d, m:m + d] if nd >= d else neuron
        key = mapping.index_to_key(bmu) if hasattr(mapping, "index_to_key") else (bmu,)
        rows.append((f"BMU {tuple(int(v) for v in key)}" + (" (image frame)" if transform_neuron and rec is not None
                                                             and not apply_transform else ""), nshow))
    fig = new_figure((panel_size * c, panel_size * len(rows) + 0.3))
    for r, (name, arr) in enumerate(rows):
        for ch in range(c):
            ax = fig.add_subplot(len(rows), c, r * c + ch + 1)
            im = ax.imshow(arr[ch], cmap=cmaps[ch % len(cmaps)], norm=image_norm(arr[ch], stretch),
                           interpolation="nearest")
            fig.colorbar(im, ax=ax, shrink=0.75)
            strip_ticks(ax)
            t = f"{name} ch {ch}"
            if r == 0 and ch == 0 and show_index:
                t = f"index = {idx}\n" + t
            ax.set_title(t, fontsize=8)
            if mk is not None:
                _crosshair(ax, mk[0], mk[1], arr.shape[-1])
    if rec is not None:
        fig.suptitle(f"flip={int(rec[0])}, angle={np.degrees(float(rec[1])):.1f} deg", fontsize=9)
    return save_figure(fig, path, overwrite=overwrite, dpi=dpi)


def _crosshair(ax, r, c, size, color="red"):
    """Red cross-hair with a gap around ``(r, c)`` (cookbook Figs 8-9)."""
    gap, arm = 0.06 * size, 0.16 * size
    kw = dict(color=color, linewidth=1.2)
    ax.plot([c - gap - arm, c - gap], [r, r], **kw)
    ax.plot([c + gap, c + gap + arm], [r, r], **kw)
    ax.plot([c, c], [r - gap - arm, r - gap], **kw)
    ax.plot([c, c], [r + gap, r + gap + arm], **kw)


def plot_neuron_matches(images, mapping, neuron, *, transform=None, n: int = 100, order: str = "best",
                        ncols: int = 10, channel: int = 0, to_neuron_frame: bool = True, positions=None,
                        mark: bool = True, numrot: int | None = 360, cmap: str = RADIO_CMAP,
                        stretch: str = "linear", seed: int = 0, panel_size: float = 1.3, title: str | None = None,
                        path=None, dpi: int = 100, overwrite: bool = False):
    """A grid of the images whose best-matching neuron is ``neuron``, component marked.

    Parameters
    ----------
    images : ImageReader, tensor or array ``(N, C, H, W)``
    mapping : :class:`~somtorch.io.Mapping` (``bmu_mask`` honoured)
    neuron : PYINK key ``(row, col)`` / ``(k,)`` or flat index
    transform : :class:`~somtorch.io.Transform`, optional
        With ``to_neuron_frame``, each image is turned into the neuron's frame (same size as the
        image), so the grid shows aligned morphologies.
    n, order : at most ``n`` images, ``"best"`` (smallest distance first), ``"worst"`` or
        ``"random"`` (seeded).
    positions : ``(N_images, 2)`` image pixel ``(row, col)`` of each image's component; default
        the image centre ``((H-1)/2, (W-1)/2)`` (cutouts centred on the component).
    mark : draw the red cross-hair at the (transformed) component position.

    Returns
    -------
    Figure with one image axes per image shown (``fig.axes``), titled with the image index.
    """
    from somtorch.analysis.frames import image_to_neuron_coords, pink_spatial_transform

    imgs = _image_array(images)
    k = mapping.key_to_index(neuron)
    sel = mapping.images_with_bmu(neuron)
    if len(sel):
        dist = mapping.flat[sel, k].astype(np.float64)
        if order == "best":
            sel = sel[np.argsort(dist, kind="stable")]
        elif order == "worst":
            sel = sel[np.argsort(-dist, kind="stable")]
        elif order == "random":
            sel = np.random.default_rng(seed).permutation(sel)
        else:
            raise ConfigError(None, "order", order, "'best', 'worst' or 'random'")
    sel = sel[:int(n)]
    ncols = max(1, min(ncols, len(sel) or 1))
    nrows = max(1, -(-len(sel) // ncols))
    fig = new_figure((panel_size * ncols, panel_size * nrows + 0.4), layout="compressed")
    d = imgs.shape[-1]
    cen = (d - 1) / 2.0
    for j, i in enumerate(sel):
        ax = fig.add_subplot(nrows, ncols, j + 1)
        img = np.asarray(imgs[i], np.float32)
        pos = np.array([cen, cen]) if positions is None else np.asarray(positions, float)[i]
        if transform is not None and to_neuron_frame:
            rec = _record(transform, int(i), k)
            img = pink_spatial_transform(img, rec, numrot=numrot, neuron_dim=d)
            pos = image_to_neuron_coords(pos, rec, d, d, numrot)
        ax.imshow(img[channel], cmap=cmap, norm=image_norm(img[channel], stretch), interpolation="nearest")
        if mark:
            _crosshair(ax, pos[0], pos[1], d)
            ax.set_xlim(-0.5, d - 0.5)
            ax.set_ylim(d - 0.5, -0.5)
        strip_ticks(ax)
        ax.set_title(str(int(i)), fontsize=6, pad=1)
    if not len(sel):
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no image has this best-matching neuron", ha="center", va="center")
        ax.set_axis_off()
    key = mapping.index_to_key(k)
    fig.suptitle(title or f"{len(sel)} images of neuron {tuple(int(v) for v in key)} ({order} matches first)",
                 fontsize=9)
    return save_figure(fig, path, overwrite=overwrite, dpi=dpi)
