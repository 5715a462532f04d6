"""Project annotated neuron masks onto catalogue entries ("cookie cutter", PYINK ``filteractions``).

Convention
----------
* ``base_catalogue`` (a ``SkyCoord`` array) entry ``i`` is image ``i`` of the mapping: its cutout
  of side ``image_dim`` is centred on it, its best-matching neuron is ``bmu[i]`` (flat PINK index)
  and its transform record is ``(flip[i], angle[i])`` (radians).
* ``match_catalogues[c]`` is projected onto channel ``c`` of the annotation filters (e.g. radio
  components on channel 0, infrared sources on channel 1). ``None`` as channel 0 (the default)
  means the base catalogue itself.
* Projection: sky -> image pixel (WCS of the cutout, or centre + ``pixel_scale``: column grows
  to the west, row to the north) -> neuron pixel with the image's transform, exactly as the
  pixels move (:mod:`somtorch.analysis.frames`). The filter value is read at the nearest pixel
  (``floor(x + 0.5)``; PYINK truncated); positions outside the neuron read 0 ("outside every
  mask"; PYINK wrapped around or raised). Entries whose neuron was never annotated read 0 and are
  marked ``annotated=False``.
* Node ids used downstream: catalogue-0 entries are plain ``int`` indices, entries of catalogue
  ``c > 0`` are ``(c, index)`` tuples, so index spaces never collide (PYINK mixed them).
"""

from __future__ import annotations

import numpy as np

from somtorch.errors import ConfigError, ShapeError

__all__ = ["Filter", "FilterSet"]


class Filter:
    """Entries of one match catalogue around one base entry, seen through its neuron's filter.

    Attributes
    ----------
    base_idx, channel, neuron : the subject (base index), the channel, its best-matching neuron.
    src_idx : int array, indices of the matched entries in ``match_catalogues[channel]``.
    coords : ``(k, 2)`` neuron pixel (row, col) of each matched entry.
    product_labels : int array, filter value under each entry (0 outside the neuron).
    annotated : whether the neuron has an annotation.
    """

    def __init__(self, fs: FilterSet, channel: int, base_idx: int, sel: slice):
        self._fs = fs
        self.channel, self.base_idx = channel, int(base_idx)
        p = fs._pairs[channel]
        self.src_idx = p["match"][sel]
        self.coords = p["rc"][sel]
        self.product_labels = p["value"][sel]
        self.neuron = int(fs.bmu[base_idx])
        self.annotated = bool(fs.annotated[self.neuron])

    @property
    def nodes(self) -> list:
        """Graph node ids of the matched entries (see module convention)."""
        return [int(i) if self.channel == 0 else (self.channel, int(i)) for i in self.src_idx]

    @property
    def coord_labels(self) -> list[tuple[str, ...]]:
        return [self._fs.labels.decode(int(v)) for v in self.product_labels]

    def coord_label_contains(self, label) -> np.ndarray:
        """Boolean per matched entry: lies on a pixel carrying ``label`` (a name, or a prime)."""
        p = self._fs.labels.prime(label) if isinstance(label, str) else int(label)
        v = self.product_labels
        return (v > 1) & (v % p == 0)

    def __len__(self) -> int:
        return len(self.src_idx)

    def plot(self, figure=None, axes=None):
        """Diagnostic plot: the neuron's filter with the projected entries, one legend entry per
        label combination (``origin='upper'``, row 0 at the top). Returns the Figure."""
        import matplotlib.pyplot as plt

        if axes is None:
            figure = figure if figure is not None else plt.figure(figsize=(5, 5))
            axes = figure.add_subplot(1, 1, 1)
        figure = axes.figure
        f = self._fs.filters[self.neuron, self.channel]
        vals = np.unique(f)
        axes.imshow(np.searchsorted(vals, f), cmap="tab20", origin="upper", interpolation="nearest",
                    vmin=0, vmax=max(len(vals) - 1, 1))
        labs = self.coord_labels
        for key in dict.fromkeys(labs):
            sel = np.array([lab == key for lab in labs], dtype=bool)
            axes.scatter(self.coords[sel, 1], self.coords[sel, 0], s=30, edgecolor="k",
                         label=" + ".join(key) if key else "no label")
        if len(self):
            axes.legend(fontsize=8, loc="upper right")
        axes.set_title(f"entry {self.base_idx}, neuron {self.neuron}, channel {self.channel}", fontsize=9)
        return figure

    def __repr__(self) -> str:
        return f"Filter(base={self.base_idx}, channel={self.channel}, neuron={self.neuron}, matches={len(self)})"


class FilterSet:
    """Every base entry's matched catalogue entries projected onto its neuron's annotation.

    Parameters
    ----------
    base_catalogue : SkyCoord ``(N,)`` -- one entry per mapped image.
    match_catalogues : SkyCoord, tuple of SkyCoord (``None`` entries mean the base), or ``None``.
    annotation : :class:`somtorch.annotation.AnnotationSet`.
    som_set : :class:`somtorch.io.SOMSet` with mapping and transform (gives ``bmu``,
        ``transform`` and ``distance``), or ``None`` if those are given directly.
    bmu : int ``(N,)`` flat neuron index per base entry.
    transform : ``(flip, angle)`` arrays ``(N,)``, an ``(N, 2)`` array, or structured records.
    distance : float ``(N,)``, distance to the best-matching neuron (for sorting), optional.
    image_dim : side of the cutouts (pixels).
    pixel_scale : angle per pixel (Quantity or arcsec float) when no ``wcs``.
    wcs : one celestial WCS per base entry (sequence or callable ``i -> WCS``), optional.
    seplimit : Quantity; only entries within this separation are matched (default 1 arcmin).
    numrot : ``numrot`` of the mapping run (see :func:`somtorch.analysis.frames.pink_spatial_transform`).
    progress : tqdm bar over catalogues / entries.
    rank : with ``som_set``: use each entry's ``rank``-th best-matching neuron (0: the best) and
        that neuron's own transform, e.g. to give :func:`~somtorch.collation.consensus_graph`
        the views of the 2nd and 3rd best neurons (``extra_views``).
    """

    def __init__(self, base_catalogue, match_catalogues=None, annotation=None, som_set=None, *, bmu=None,
                 transform=None, distance=None, image_dim: int, pixel_scale=None, wcs=None, seplimit=None,
                 numrot: int | None = 360, progress: bool = False, rank: int = 0):
        import astropy.units as u

        from somtorch.analysis.frames import _parse_transform

        if annotation is None:
            raise ConfigError(None, "annotation", None, "an AnnotationSet")
        self.base = base_catalogue
        n = len(base_catalogue)
        if som_set is not None:
            m, t = som_set.mapping, som_set.transform
            k = m._best(np.arange(len(m)), int(rank))
            bmu = k[0] if bmu is None else bmu
            distance = k[1] if distance is None else distance
            if transform is None:
                rec = t.data.reshape(len(t), -1)[np.arange(len(t)), bmu]
                transform = (rec["flip"], rec["angle"])
        if bmu is None or transform is None:
            raise ConfigError(None, "bmu/transform", None, "a som_set, or bmu= and transform= arrays")
        self.bmu = np.asarray(bmu, dtype=np.int64).reshape(-1)
        if isinstance(transform, (tuple, list)) and len(transform) == 2 and all(np.ndim(v) == 1 for v in transform):
            transform = (np.asarray(transform[0]), np.asarray(transform[1], dtype=np.float64))
        self.flip, self.angle = _parse_transform(transform)
        self.distance = None if distance is None else np.asarray(distance, dtype=np.float64).reshape(-1)
        for name, arr in (("bmu", self.bmu), ("flip", self.flip), ("distance", self.distance)):
            if arr is not None and len(arr) != n:
                raise ShapeError(f"{name} has {len(arr)} entries, base catalogue has {n}")
        if match_catalogues is None or not isinstance(match_catalogues, (tuple, list)):
            match_catalogues = (match_catalogues,)
        self.match = tuple(base_catalogue if mc is None else mc for mc in match_catalogues)
        self.base_is_match0 = match_catalogues[0] is None or match_catalogues[0] is base_catalogue or (
            len(self.match[0]) == n and bool(np.all(self.match[0].separation(base_catalogue).arcsec < 1e-6)))
        self.annotation = annotation
        self.labels = annotation.labels
        self.image_dim = int(image_dim)
        self.numrot = numrot
        self.seplimit = 1 * u.arcmin if seplimit is None else seplimit
        num_neurons = int(self.bmu.max()) + 1 if n else 1
        num_neurons = max(num_neurons, max(annotation.results, default=-1) + 1)
        self.filters, self.annotated = annotation.filter_stack(num_neurons)
        if len(self.match) > self.filters.shape[1]:
            raise ShapeError(f"{len(self.match)} match catalogues but the annotations have "
                             f"{self.filters.shape[1]} channels")
        self.neuron_dim = self.filters.shape[-1]
        self.pixel_scale, self.wcs = pixel_scale, wcs
        self._pairs = [self._project(c, progress) for c in range(len(self.match))]

    # ---------------------------------------------------------------- projection
    def _project(self, channel: int, progress: bool) -> dict:
        from astropy.coordinates import search_around_sky

        from somtorch.analysis.frames import image_to_neuron_coords, sky_to_pixel

        cat = self.match[channel]
        ib, im, _, _ = search_around_sky(self.base, cat, self.seplimit)
        order = np.lexsort((im, ib))
        ib, im = ib[order].astype(np.int64), im[order].astype(np.int64)
        if self.wcs is None:
            pix = sky_to_pixel(cat[im], center=self.base[ib], pixel_scale=self.pixel_scale,
                               image_shape=self.image_dim) if len(ib) else np.zeros((0, 2))
        else:
            from tqdm.auto import tqdm

            pix = np.zeros((len(ib), 2))
            starts = np.searchsorted(ib, np.arange(len(self.base) + 1))
            for i in tqdm(range(len(self.base)), disable=not progress, desc=f"project channel {channel}"):
                s, e = starts[i], starts[i + 1]
                if e > s:
                    w = self.wcs(i) if callable(self.wcs) else self.wcs[i]
                    pix[s:e] = sky_to_pixel(cat[im[s:e]], wcs=w)
        rc = image_to_neuron_coords(pix, (self.flip[ib], self.angle[ib]), self.image_dim, self.neuron_dim,
                                    self.numrot) if len(ib) else np.zeros((0, 2))
        r = np.floor(rc[:, 0] + 0.5).astype(np.int64)
        c = np.floor(rc[:, 1] + 0.5).astype(np.int64)
        nd = self.neuron_dim
        inside = (r >= 0) & (r < nd) & (c >= 0) & (c < nd)
        value = np.zeros(len(ib), dtype=np.int64)
        value[inside] = self.filters[self.bmu[ib[inside]], channel, r[inside], c[inside]]
        starts = np.searchsorted(ib, np.arange(len(self.base) + 1))
        return {"base": ib, "match": im, "rc": rc, "value": value, "inside": inside, "starts": starts}

    # ---------------------------------------------------------------- access
    @property
    def channels(self) -> int:
        return len(self.match)

    def __len__(self) -> int:
        return len(self.base)

    def filter(self, base_idx: int, channel: int = 0) -> Filter:
        st = self._pairs[channel]["starts"]
        return Filter(self, channel, base_idx, slice(st[base_idx], st[base_idx + 1]))

    def __getitem__(self, base_idx) -> list[Filter]:
        """``[Filter of channel c for c in channels]`` of base entry ``base_idx`` (PYINK ``fs[k]``)."""
        return [self.filter(int(base_idx), c) for c in range(self.channels)]

    def pairs(self, channel: int = 0) -> dict:
        """All projected pairs of ``channel`` as flat arrays (``base``, ``match``, ``rc``,
        ``value``, ``inside``), sorted by base then match index -- the vectorised view."""
        return {k: v for k, v in self._pairs[channel].items() if k != "starts"}

    def image_mask(self, base_idx: int, label=None, channel: int = 0) -> np.ndarray:
        """The neuron's ``label`` mask (any selected pixel if ``None``) in the frame of base entry
        ``base_idx``'s cutout: boolean ``(image_dim, image_dim)``, via the inverse transform."""
        from somtorch.analysis.frames import pink_spatial_transform
        from somtorch.annotation.encoding import label_mask

        f = self.filters[self.bmu[base_idx], channel]
        m = (f != 0) if label is None else label_mask(f, self.labels.prime(label))
        img = pink_spatial_transform(m.astype(np.float32), (int(self.flip[base_idx]), float(self.angle[base_idx])),
                                     reverse=True, numrot=self.numrot, image_dim=self.image_dim)
        return np.asarray(img) >= 0.5

    def __repr__(self) -> str:
        counts = [len(p["base"]) for p in self._pairs]
        return f"FilterSet({len(self)} base entries, {self.channels} channels, matches per channel {counts})"
