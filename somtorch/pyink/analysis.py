"""PYINK's ``analysis``: ``trim_neuron`` and ``plot_image``."""

from __future__ import annotations

import numpy as np

from somtorch.analysis import frames as _frames

__all__ = ["trim_neuron", "plot_image"]

_PYINK_CMAPS = ["viridis", "plasma", "inferno", "cividis"]


def trim_neuron(neuron2d, img_shape=None):
    """Centre crop of a square neuron to ``img_shape`` (start offset ``(n - s) // 2``).

    Without ``img_shape`` the side is the image side PINK's default neuron size came from:
    150 for the usual 213-pixel neuron, as PYINK. **PYINK bug corrected**: PYINK's
    ``floor(n / sqrt 2)`` is one pixel short for some sizes (212 gave 149); here it is
    ``ceil((n - 1) / sqrt 2)`` (:func:`somtorch.analysis.frames.default_trim_side`). The
    native :func:`somtorch.analysis.trim_neuron` uses the same default.
    """
    a = np.asarray(neuron2d)
    if img_shape is None:
        img_shape = _frames.default_trim_side(a.shape[-1])
    return _frames.trim_neuron(a, img_shape)


def plot_image(imbin, idx=None, df=None, somset=None, apply_transform=False, transform_neuron=False, fig=None,
               show_bmu=False, show_index=True, wcs=None, grid=False, cmaps=None):
    """One image, a panel per channel, optionally in its neuron's frame and with its BMU (PYINK).

    ``idx=None`` picks a random image (from ``df.index`` when ``df`` is given). The BMU and
    transform come from ``somset`` (or ``df`` columns ``bmu_tup``, ``flip``, ``angle``);
    transforms use PYINK's cubic rotation. With ``df`` the title is ``df.loc[idx]
    ["Component_name"]`` when that column exists. ``wcs`` gives every panel that projection.
    Returns the Figure. **PYINK bugs corrected**: the colour maps cycle over the channels, ``fig``
    is used, ``grid`` draws on every panel. ``show_bmu`` without a ``somset`` raises
    ``ValueError`` (as PYINK).
    """
    import matplotlib.pyplot as plt

    from somtorch.pyink.utils import pink_spatial_transform

    cmaps = list(cmaps) if cmaps else _PYINK_CMAPS
    data = imbin.data if hasattr(imbin, "data") else np.asarray(imbin)
    if idx is None:
        rng = np.random.default_rng()
        idx = int(rng.choice(np.asarray(df.index))) if df is not None else int(rng.integers(len(data)))
    img = np.asarray(data[idx], np.float32)
    c, d = img.shape[0], img.shape[-1]
    if show_bmu and somset is None:
        raise ValueError("show_bmu needs a somset")
    rec, bmu = None, None
    if somset is not None:
        bmu = tuple(int(v) for v in np.atleast_1d(somset.mapping.bmu(idx)))
        rec = somset.transform.data[(idx,) + bmu]
    elif df is not None and {"bmu_tup", "flip", "angle"} <= set(df.columns):
        bmu = tuple(df.loc[idx]["bmu_tup"])
        rec = (df.loc[idx]["flip"], df.loc[idx]["angle"])
    if (apply_transform or show_bmu) and rec is None:
        raise ValueError("a somset (or df with bmu_tup/flip/angle) is needed to transform the image")
    shown = pink_spatial_transform(img, rec) if apply_transform else img
    rows = [shown]
    if show_bmu:
        neuron = np.asarray(somset.som[bmu], np.float32)
        if transform_neuron:
            neuron = pink_spatial_transform(neuron, rec, reverse=True)
        rows.append(np.stack([trim_neuron(ch, d) for ch in neuron]))
    if fig is None:
        fig = plt.figure(figsize=(4 * c, 4 * len(rows)), layout=None if wcs is not None else "constrained")
    fig.clear()
    kw = {} if wcs is None else {"projection": wcs}
    for r, arr in enumerate(rows):
        for ch in range(c):
            ax = fig.add_subplot(len(rows), c, r * c + ch + 1, **kw)
            ax.imshow(arr[ch], cmap=cmaps[ch % len(cmaps)], origin="upper")
            if grid:
                ax.grid(True, alpha=0.3)
            if r == 0 and ch == 0 and show_index:
                ax.set_title(f"index = {idx}")
    if df is not None and "Component_name" in df.columns:
        fig.suptitle(str(df.loc[idx]["Component_name"]))
    return fig
