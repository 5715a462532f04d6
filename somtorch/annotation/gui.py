"""Interactive annotator: step through neurons and paint labelled regions (PYINK ``Annotator``).

One matplotlib figure is built once and reused for every neuron (memory stays flat). Top row:
each neuron channel; bottom row: that channel's filter (prime-product values; hover shows the
decoded labels) with pixels where regions of different labels overlap hatched in red; right
column: label checkboxes (top) and a text box to add labels (bottom). Image and filter panels
share zoom and pan.

Mouse: a left click on a channel floods the connected region above ``sigma * std`` (the
threshold starts at 2 sigma); a right-button drag draws a lasso. Both get the value of the
checked labels (1 if none). Keys (only over a neuron or filter panel, cookbook Table 7):

====== ==================================================================================
``n``  store, save and go to the next neuron (single-neuron mode: finish)
``b``  store, save and go back one neuron (single-neuron mode: finish)
``q``  store, save and quit
``c``  clear every region of this neuron
``d``  undo the newest region (click or lasso) of the channel under the pointer
``u``  toggle live update of the flood fill when sigma changes (default on)
up     sigma + 0.5 (live update: redo the newest click of the last-clicked channel)
down   sigma - 0.5 (not below 0.5)
====== ==================================================================================

Checkbox states carry over from one neuron to the next. The text box accepts a new label name,
``help`` or ``commands``. Everything the GUI does is also a public method (:meth:`click`,
:meth:`lasso`, :meth:`key`...), so sessions can be scripted and tested without a screen
(Agg backend).

In Jupyter use an interactive backend (``%matplotlib widget`` with ipympl); the session is
event driven, so the call returns at once and the figure stays live.

Convention
----------
Neurons are indexed by their flat PINK index; ``annotate_neuron`` also accepts a lattice key
``(row, col)`` when built from a :class:`somtorch.io.SOM`. Panels use ``origin='upper'``
(row 0 at the top), as PYINK.
"""

from __future__ import annotations

import os

import numpy as np

from somtorch.annotation.core import Annotation
from somtorch.annotation.store import AnnotationSet
from somtorch.errors import ShapeError

__all__ = ["Annotator", "HELP"]

HELP = __doc__.split("Checkbox states")[0].split("Mouse:")[1].strip()
_NONINTERACTIVE = {"agg", "pdf", "ps", "svg", "pgf", "cairo", "template"}


def _interactive() -> bool:
    """Whether the matplotlib backend shows live windows/widgets (not Agg, files or inline)."""
    import matplotlib

    b = matplotlib.get_backend().lower()
    return b not in _NONINTERACTIVE and "inline" not in b


class Annotator:
    """Annotation session over the neurons of a SOM.

    Parameters
    ----------
    som : :class:`somtorch.io.SOM`, a SOM file path, or an array ``(N, C, H, W)`` / ``(N, H, W)``.
    results : :class:`AnnotationSet`, a path to a saved set (loaded if it exists), or ``None``.
    save : path to save to after every move (``None``: never save automatically).
    labels : initial label names (added to the set's labels).
    sigma : starting flood-fill threshold in units of the channel's standard deviation.
    keep_versions : previous files kept by each save (see :meth:`AnnotationSet.save`).
    cmap, vmin, vmax : display of the neuron panels.
    """

    def __init__(self, som, results=None, save=None, labels=(), sigma: float = 2.0, keep_versions: int = 5,
                 cmap: str = "bwr", vmin=None, vmax=None):
        self._key_to_index = None
        if isinstance(som, (str, os.PathLike)):
            from somtorch.io.binwrap import SOM
            som = SOM(som)
        if hasattr(som, "weights") and hasattr(som, "key_to_index"):
            self._key_to_index = som.key_to_index
            som = som.weights.numpy()
        w = np.asarray(som, dtype=np.float32)
        if w.ndim == 3:
            w = w[:, None]
        if w.ndim != 4:
            raise ShapeError(f"neurons must be (N, C, H, W) or (N, H, W), got shape {w.shape}")
        self.neurons = w
        if isinstance(results, (str, os.PathLike)):
            results = AnnotationSet.load(results) if os.path.exists(results) else AnnotationSet()
        self.results: AnnotationSet = results if results is not None else AnnotationSet()
        for n in labels:
            self.results.labels.add(n)
        self.save_path = None if save is None else os.fspath(save)
        self.keep_versions = int(keep_versions)
        self.sigma = float(sigma)
        self.live_update = True
        self.last_channel = 0
        self.active: list[str] = []
        self.index = 0
        self.next_move: str | None = None
        self.single = False
        self.finished = False
        self.cmap, self.vmin, self.vmax = cmap, vmin, vmax
        self.fig = None
        self.checkbox = None
        self.textbox = None
        self._lasso_pts: list | None = None
        self._lasso_ax = None

    # ---------------------------------------------------------------- state
    @property
    def num_neurons(self) -> int:
        return self.neurons.shape[0]

    @property
    def channels(self) -> int:
        return self.neurons.shape[1]

    @property
    def current(self) -> Annotation:
        """The annotation being edited (created on first use)."""
        if self.index not in self.results.results:
            self.results[self.index] = Annotation(self.neurons[self.index])
        return self.results[self.index]

    def first_unannotated(self) -> int | None:
        done = set(self.results.annotated())
        return next((i for i in range(self.num_neurons) if i not in done), None)

    def _resolve(self, key) -> int:
        if isinstance(key, (tuple, list)) and len(key) > 1:
            if self._key_to_index is None:
                raise ShapeError("lattice keys need a SOM; give the flat neuron index")
            return int(self._key_to_index(tuple(key)))
        k = int(key[0]) if isinstance(key, (tuple, list)) else int(key)
        if not 0 <= k < self.num_neurons:
            raise ShapeError(f"neuron {k} outside [0, {self.num_neurons})")
        return k

    @property
    def region_value(self) -> int:
        """Value of a new region: product of the checked labels' primes (1 if none)."""
        return self.results.labels.value(self.active)

    # ---------------------------------------------------------------- sessions
    def interactive_annotate(self, resume: bool = True, block: bool | None = None):
        """Step through all neurons starting at the first un-annotated one (``resume``) or 0.

        Returns the figure. ``block=None`` blocks (``plt.show``) only on interactive backends.
        """
        start = self.first_unannotated() if resume else 0
        self.single = False
        return self._open(0 if start is None else start, block)

    def annotate_neuron(self, key, block: bool | None = None):
        """Annotate one neuron (flat index or lattice key); ``n``/``b``/``q`` finish. Returns
        the figure (use :attr:`current` or :attr:`results` for the annotation)."""
        self.single = True
        return self._open(self._resolve(key), block)

    def _open(self, index: int, block):
        import matplotlib
        import matplotlib.pyplot as plt

        self.finished = False
        self.next_move = None
        if self.fig is None:
            self._build()
        self.show(index)
        if block is None:
            block = _interactive() and "ipympl" not in matplotlib.get_backend().lower()
        if block:
            plt.show(block=True)
        return self.fig

    def close(self) -> None:
        """Close the figure (the annotations stay in :attr:`results`)."""
        if self.fig is not None:
            import matplotlib.pyplot as plt
            if self.checkbox is not None:
                self.checkbox.disconnect_events()
            plt.close(self.fig)
            self.fig = None

    def save(self) -> str | None:
        if self.save_path is None:
            return None
        return self.results.save(self.save_path, keep=self.keep_versions)

    # ---------------------------------------------------------------- figure
    def _build(self) -> None:
        import matplotlib.pyplot as plt
        from matplotlib.widgets import TextBox

        C = self.channels
        fig = plt.figure(figsize=(4.5 * C + 3, 8))
        gs = fig.add_gridspec(2, C + 1, width_ratios=[1] * C + [0.6])
        self.ax_img, self.ax_filt = [], []
        share = None
        for c in range(C):
            a = fig.add_subplot(gs[0, c], sharex=share, sharey=share)
            share = share or a
            b = fig.add_subplot(gs[1, c], sharex=share, sharey=share)
            self.ax_img.append(a)
            self.ax_filt.append(b)
        blank = np.zeros(self.neurons.shape[2:])
        self.im_img = [a.imshow(blank, cmap=self.cmap, origin="upper") for a in self.ax_img]
        self.im_filt = [b.imshow(blank, cmap="tab20", origin="upper", interpolation="nearest") for b in self.ax_filt]
        self.im_overlap = [b.imshow(np.zeros(blank.shape + (4,)), origin="upper", interpolation="nearest")
                           for b in self.ax_filt]
        self.click_markers = [a.plot([], [], "o", color="red", ms=6, mec="k")[0] for a in self.ax_img]
        self.lasso_lines = [a.plot([], [], "-", color="yellow", lw=1)[0] for a in self.ax_img]
        for b, c in zip(self.ax_filt, range(C)):
            b.format_coord = self._format_coord_factory(c)
        self.ax_check = fig.add_subplot(gs[0, C])
        self.ax_text = fig.add_subplot(gs[1, C])
        box = self.ax_text.get_position()
        self.ax_text.set_position((box.x0, box.y0 + box.height / 2, box.width, 0.05))
        self.textbox = TextBox(self.ax_text, "", initial="")
        self.textbox.on_submit(self._on_text)
        self._rebuild_checkbox()
        self._cids = [fig.canvas.mpl_connect("button_press_event", self._on_press),
                      fig.canvas.mpl_connect("motion_notify_event", self._on_motion),
                      fig.canvas.mpl_connect("button_release_event", self._on_release),
                      fig.canvas.mpl_connect("key_press_event", self._on_key)]
        self.fig = fig

    def _rebuild_checkbox(self) -> None:
        from matplotlib.widgets import CheckButtons

        if self.checkbox is not None:
            self.checkbox.disconnect_events()
        self.ax_check.clear()
        names = self.results.labels.names
        self.ax_check.set_title("labels (prime)", fontsize=9)
        if names:
            shown = [f"{n} ({p})" for n, p in self.results.labels.pairs()]
            self.checkbox = CheckButtons(self.ax_check, shown, [n in self.active for n in names])
            self.checkbox.on_clicked(self._on_check)
        else:
            self.checkbox = None
            self.ax_check.set_axis_off()

    def _format_coord_factory(self, channel: int):
        def fmt(x, y):
            r, c = int(round(y)), int(round(x))
            if self.fig is None or not (0 <= r < self.neurons.shape[2] and 0 <= c < self.neurons.shape[3]):
                return f"x={x:.1f} y={y:.1f}"
            ann = self.results.results.get(self.index)
            v = 0 if ann is None else int(ann.filter(channel)[r, c])
            return f"x={c} y={r} value={v} {self.results.labels.decode(v)}"
        return fmt

    def show(self, index: int) -> None:
        """Display neuron ``index`` (reusing the figure's artists)."""
        self.index = self._resolve(index)
        n = self.neurons[self.index]
        for c in range(self.channels):
            im = self.im_img[c]
            im.set_data(n[c])
            im.set_clim(self.vmin if self.vmin is not None else float(n[c].min()),
                        self.vmax if self.vmax is not None else float(n[c].max()))
        self.ax_img[0].set_title(f"neuron {self.index}")
        self.redraw()

    def redraw(self) -> None:
        """Refresh filters, overlap hatching, click markers and titles of the current neuron."""
        if self.fig is None:
            return
        ann = self.results.results.get(self.index)
        for c in range(self.channels):
            f = ann.filter(c) if ann is not None else np.zeros(self.neurons.shape[2:], np.int64)
            vals = np.unique(f)
            # categorical display: rank of each value among the values present
            self.im_filt[c].set_data(np.searchsorted(vals, f))
            self.im_filt[c].set_clim(0, max(len(vals) - 1, 1))
            ov = ann.overlap(c) if ann is not None else np.zeros(f.shape, bool)
            rgba = np.zeros(f.shape + (4,))
            hatch = ov & ((np.add.outer(np.arange(f.shape[0]), np.arange(f.shape[1])) % 2) == 0)
            rgba[hatch] = (1.0, 0.0, 0.0, 0.9)
            self.im_overlap[c].set_data(rgba)
            labs = sorted({n for v in vals for n in self.results.labels.decode(int(v))})
            title = f"filter: {', '.join(labs) or '-'}"
            if ov.any():
                title += f"\noverlap of different labels: {int(ov.sum())} px"
            self.ax_filt[c].set_title(title, fontsize=9, color="red" if ov.any() else "black")
            clicks = ann.clicks[c] if ann is not None else []
            self.click_markers[c].set_data([k[1] for k in clicks], [k[0] for k in clicks])
        state = f"sigma={self.sigma:.1f}  live={'on' if self.live_update else 'off'}  value={self.region_value}"
        self.fig.suptitle(state, fontsize=10)
        self._draw()

    def _draw(self) -> None:
        if _interactive():  # Agg / inline: draw on demand only
            self.fig.canvas.draw_idle()

    # ---------------------------------------------------------------- actions
    def click(self, channel: int, y: float, x: float):
        """Flood-fill region at ``(y, x)`` of ``channel`` with the checked labels."""
        self.last_channel = int(channel)
        r = self.current.add_click(channel, y, x, self.region_value, self.sigma)
        self.redraw()
        return r

    def lasso(self, channel: int, vertices):
        """Lasso region (vertices ``(x, y)``) on ``channel`` with the checked labels."""
        r = self.current.add_lasso(channel, vertices, self.region_value)
        self.redraw()
        return r

    def add_label(self, name: str) -> int:
        prime = self.results.labels.add(name)
        if self.fig is not None:
            self._rebuild_checkbox()
        return prime

    def set_active(self, names) -> None:
        """Check exactly the labels ``names`` (they must exist)."""
        for n in names:
            self.results.labels.prime(n)
        self.active = [n for n in self.results.labels.names if n in set(names)]
        if self.fig is not None:
            self._rebuild_checkbox()
            self.redraw()

    def key(self, key: str, channel: int | None = None) -> None:
        """Apply a key command (see the module docstring); ``channel``: panel under the pointer."""
        channel = self.last_channel if channel is None else channel
        if key in ("n", "b", "q"):
            self._move(key)
        elif key == "c":
            self.current.clear()
        elif key == "d":
            self.current.undo(channel)
        elif key == "u":
            self.live_update = not self.live_update
        elif key in ("up", "down"):
            self.sigma = self.sigma + 0.5 if key == "up" else max(0.5, self.sigma - 0.5)
            if self.live_update:
                self.current.resigma_last_click(self.last_channel, self.sigma)
        else:
            return
        self.redraw()

    def _move(self, key: str) -> None:
        self.next_move = {"n": "next", "b": "back", "q": "quit"}[key]
        ann = self.results.results.get(self.index)
        if ann is not None and not ann.annotated:
            del self.results[self.index]  # visited but empty: stays un-annotated for resume
        self.save()
        if key == "q" or self.single or (key == "n" and self.index + 1 >= self.num_neurons):
            self.finished = True
            self.close()
            return
        self.show(self.index + 1 if key == "n" else max(0, self.index - 1))

    # ---------------------------------------------------------------- event handlers
    def _panel(self, event):
        if event.inaxes in self.ax_img:
            return "img", self.ax_img.index(event.inaxes)
        if event.inaxes in self.ax_filt:
            return "filt", self.ax_filt.index(event.inaxes)
        return None, None

    def _toolbar_busy(self) -> bool:
        tb = getattr(self.fig.canvas, "toolbar", None)
        return bool(tb is not None and getattr(tb, "mode", ""))

    def _on_press(self, event) -> None:
        kind, c = self._panel(event)
        if kind != "img" or self._toolbar_busy() or event.xdata is None:
            return
        if event.button == 1:
            self.click(c, event.ydata, event.xdata)
        elif event.button == 3:
            self._lasso_pts, self._lasso_ax = [(event.xdata, event.ydata)], c

    def _on_motion(self, event) -> None:
        if self._lasso_pts is None or event.inaxes is not self.ax_img[self._lasso_ax] or event.xdata is None:
            return
        self._lasso_pts.append((event.xdata, event.ydata))
        xs, ys = zip(*self._lasso_pts)
        self.lasso_lines[self._lasso_ax].set_data(xs, ys)
        self._draw()

    def _on_release(self, event) -> None:
        if self._lasso_pts is None or event.button != 3:
            return
        pts, c = self._lasso_pts, self._lasso_ax
        if event.inaxes is self.ax_img[c] and event.xdata is not None:
            pts.append((event.xdata, event.ydata))
        self._lasso_pts = None
        self.lasso_lines[c].set_data([], [])
        self.lasso(c, pts)

    def _on_key(self, event) -> None:
        kind, c = self._panel(event)
        if kind is None:
            return
        self.key(event.key, c)

    def _on_check(self, _label) -> None:
        status = self.checkbox.get_status()
        self.active = [n for n, on in zip(self.results.labels.names, status) if on]
        self.redraw()

    def _on_text(self, text: str) -> None:
        text = text.strip()
        if text in ("help", "commands"):
            print(HELP)
        elif text and text not in self.results.labels:
            self.add_label(text)
        if self.textbox.text:
            self.textbox.eventson = False
            self.textbox.set_val("")
            self.textbox.eventson = True
        self.redraw()
