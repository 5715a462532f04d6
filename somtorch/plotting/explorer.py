"""Interactive SOM explorer: step through the neurons with the arrow keys (PYINK ``SOM.explore``).

Works with any interactive matplotlib backend (Qt, Tk, macOS, ``%matplotlib widget`` / ipympl in
Jupyter): the figure listens to ``key_press_event``. Where no key events arrive (static inline
notebooks), call :meth:`SOMExplorer.move` / :meth:`SOMExplorer.goto` from code -- the same
handler runs. Images are updated in place (``set_data``), so zoom and pan are kept and nothing
is drawn on top of the old neuron (PYINK's bug).

Keys: ``up``/``down`` change the lattice row, ``left``/``right`` the column (cartesian, clamped at
the edges, wrapped on periodic lattices); on hexagonal lattices ``left``/``right`` step along the
row ``r`` and ``up``/``down`` go to the nearest neuron of the previous/next row; ``home`` returns
to the start neuron.
"""

from __future__ import annotations

import numpy as np

from somtorch.plotting._common import (
    RADIO_CMAP,
    image_norm,
    neuron_label,
    new_figure,
    strip_ticks,
    weights_and_lattice,
)

__all__ = ["SOMExplorer", "explore"]


class SOMExplorer:
    """Arrow-key browser of the neurons of a SOM (one panel per channel).

    Parameters
    ----------
    weights, lattice : as in :func:`somtorch.plotting.plot_som_mosaic` (or a SOM object).
    start : flat index or PYINK key.
    trim : crop neurons to their central ``trim`` pixels.
    interactive : create the figure through pyplot (a window / notebook widget); False gives a
        plain Figure (tests, headless use).
    counts : optional per-neuron numbers shown in the title (e.g. best-match counts).
    """

    def __init__(self, weights, lattice=None, start=0, *, trim: int | None = None, cmaps=None,
                 stretch: str = "linear", interactive: bool = True, counts=None, figsize=None):
        from somtorch.plotting.som import _key_index

        self.w, self.lat = weights_and_lattice(weights, lattice)
        self.trim, self.stretch = trim, stretch
        self.cmaps = list(cmaps) if cmaps else [RADIO_CMAP, "viridis", "magma", "cividis"]
        self.counts = None if counts is None else np.asarray(counts).reshape(-1)
        self.start = self.index = _key_index(self.lat, start)
        self.coords = self.lat.coords.numpy()
        c = self.w.shape[1]
        size = figsize or (3.6 * c, 3.6)
        if interactive:
            import matplotlib.pyplot as plt

            self.fig = plt.figure(figsize=size, layout="constrained")
        else:
            self.fig = new_figure(size)
        self.axes, self.images = [], []
        for ch in range(c):
            ax = self.fig.add_subplot(1, c, ch + 1)
            img = self._neuron(ch)
            im = ax.imshow(img, cmap=self.cmaps[ch % len(self.cmaps)], norm=image_norm(img, stretch),
                           interpolation="nearest")
            strip_ticks(ax)
            self.axes.append(ax)
            self.images.append(im)
        self.history = [self.index]
        self.cid = self.fig.canvas.mpl_connect("key_press_event", self.on_key)
        self._update()

    # ------------------------------------------------------------------ state
    def _neuron(self, ch: int) -> np.ndarray:
        img = self.w[self.index, ch]
        if self.trim is not None and self.trim < img.shape[-1]:
            m = (img.shape[-1] - int(self.trim)) // 2
            img = img[m:m + int(self.trim), m:m + int(self.trim)]
        return img

    @property
    def key(self) -> tuple:
        """PYINK key of the current neuron."""
        if self.lat.layout == "hexagonal":
            return (self.index,)
        return tuple(int(v) for v in divmod(self.index, self.lat.grid_shape_2d()[1]))

    def _update(self):
        for ch, (ax, im) in enumerate(zip(self.axes, self.images)):
            img = self._neuron(ch)
            im.set_data(img)
            im.set_norm(image_norm(img, self.stretch))
            ax.set_title(f"neuron {neuron_label(self.lat, self.index)}  ch {ch}", fontsize=9)
        extra = "" if self.counts is None else f"  ({int(self.counts[self.index])} images)"
        self.fig.suptitle(f"{self.lat.describe()}: neuron {self.key}{extra}  [arrow keys]", fontsize=9)
        self.fig.canvas.draw_idle()

    # ------------------------------------------------------------------ navigation
    def _step(self, direction: str) -> int:
        lat, c = self.lat, self.coords
        i = self.index
        if lat.layout == "hexagonal":
            q, r = c[i]
            if direction in ("left", "right"):
                cand = (q + (1 if direction == "right" else -1), r)
                hit = np.flatnonzero((c[:, 0] == cand[0]) & (c[:, 1] == cand[1]))
                return int(hit[0]) if len(hit) else i
            r2 = r + (1 if direction == "down" else -1)
            row = np.flatnonzero(c[:, 1] == r2)
            if not len(row):
                return i
            x = q + r / 2.0
            return int(row[np.argmin(np.abs(c[row, 0] + r2 / 2.0 - x))])
        x, yz = lat.grid_shape_2d()
        a, b = divmod(i, yz)
        da, db = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}[direction]
        if lat.periodic:
            a, b = (a + da) % x, (b + db) % yz
        else:
            a, b = min(max(a + da, 0), x - 1), min(max(b + db, 0), yz - 1)
        return a * yz + b

    def move(self, direction: str) -> tuple:
        """Move ``"up"``, ``"down"``, ``"left"`` or ``"right"``; returns the new key."""
        if direction not in ("up", "down", "left", "right"):
            raise ValueError(f"direction must be up/down/left/right, got {direction!r}")
        self.index = self._step(direction)
        self.history.append(self.index)
        self._update()
        return self.key

    def goto(self, key) -> tuple:
        from somtorch.plotting.som import _key_index

        self.index = _key_index(self.lat, key)
        self.history.append(self.index)
        self._update()
        return self.key

    def on_key(self, event) -> None:
        if event.key in ("up", "down", "left", "right"):
            self.move(event.key)
        elif event.key == "home":
            self.goto(self.start)

    def disconnect(self) -> None:
        self.fig.canvas.mpl_disconnect(self.cid)


def explore(weights, lattice=None, start=0, **kwargs) -> SOMExplorer:
    """Open a :class:`SOMExplorer` (keep the returned object alive while browsing)."""
    return SOMExplorer(weights, lattice, start, **kwargs)
