"""PYINK's ``filteractions``: sky positions projected onto annotated neurons, on
:mod:`somtorch.analysis.frames` and :class:`somtorch.collation.FilterSet`.

Numbers: PYINK's. Offsets from the image centre are ``x = -dRA / scale``, ``y = +dDec / scale``
(or WCS pixel differences), rotated by ``R(+angle)`` in ``(x=col, y=row)`` and ``y -> -y`` when
flipped; a neuron pixel is read at the offset from the neuron centre. PYINK indexed
``trunc(offset + shape / 2)``, which for positions inside the neuron is the nearest pixel to
``offset + (n - 1) / 2`` -- the rounding used here, so the pixels read are the same.

**PYINK bugs corrected** (spec §14): positions outside the neuron read 0 (PYINK wrapped around
or raised ``IndexError``); a component on an unlabelled region (value 1) gets no labels instead
of ``ValueError``; an un-annotated best-matching neuron reads 0 (PYINK: ``KeyError``); integer
label tests never count unselected (0) pixels; ``cpu_cores`` is accepted (the projection is
vectorised, PYINK's parallel mode hung); ``Filter.plot(figure=...)`` works; node ids of match
catalogue ``c > 0`` are ``(c, index)`` so index spaces do not collide.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np

from somtorch.analysis.frames import image_to_neuron_coords, sky_to_pixel

__all__ = ["CoordinateTransformer", "Filter", "FilterSet"]


def _offsets_pixel(center_coord, sky_coords, pixel_scale, wcs):
    """PYINK's ``offsets-pixel``: ``(x, y)`` = (column, row) offsets from the centre."""
    if wcs is not None:
        p = sky_to_pixel(sky_coords, wcs=wcs)
        c = sky_to_pixel(center_coord, wcs=wcs)
        d = np.asarray(p) - np.asarray(c)
    elif pixel_scale is not None:
        d = sky_to_pixel(sky_coords, center=center_coord, pixel_scale=pixel_scale, center_pixel=(0.0, 0.0))
    else:
        raise ValueError("CoordinateTransformer needs a pixel_scale or a wcs")
    return np.asarray(d, np.float64)[..., ::-1]


def _rotate_offsets(xy, transform):
    """Rotate ``(x, y)`` offsets by ``R(+angle)``, then ``y -> -y`` if flipped (PYINK §4.3).

    Computed with the native frame maps on a 1-pixel image and neuron (whose centre is 0), so
    offsets follow the pixels of the image transform exactly.
    """
    flip, angle = int(transform[0]), float(transform[1])
    rc = np.asarray(xy, np.float64)[..., ::-1]
    out = image_to_neuron_coords(rc, (flip, angle), 1, 1, numrot=None)
    return out[..., ::-1]


class CoordinateTransformer:
    """Sky positions in the frame of an image's best-matching neuron (PYINK signature).

    ``coords`` holds ``"sky"``, ``"offsets-angular"`` (``(dlon, dlat)``), ``"offsets-pixel"``
    and ``"offsets-neuron"`` (``(N, 2)`` Quantities in pixels, ``(x, y)`` = (column, row) offsets
    from the centre). ``pixel_scale`` is an angle per pixel or an ``(x, y)`` pair (PYINK's
    default 1 arcsec is rarely right: pass the cutouts' scale); ``wcs`` takes precedence.
    """

    def __init__(self, center_coord, sky_coords, transform, pixel_scale=u.arcsecond, wcs=None, src_idx=None):
        self.center_coord, self.sky_coords = center_coord, sky_coords
        self.transform, self.pixel_scale, self.wcs = transform, pixel_scale, wcs
        self.src_idx = None if src_idx is None else np.asarray(src_idx)
        off = _offsets_pixel(center_coord, sky_coords, pixel_scale if wcs is None else None, wcs)
        self.coords = {
            "sky": sky_coords,
            "offsets-angular": center_coord.spherical_offsets_to(sky_coords),
            "offsets-pixel": off * u.pix,
            "offsets-neuron": _rotate_offsets(off, transform) * u.pix,
        }

    def __repr__(self) -> str:
        return f"CoordinateTransformer({len(np.atleast_2d(self.coords['offsets-neuron']))} positions)"


class Filter:
    """Projected positions read on an annotation's filter (PYINK ``Filter``).

    ``product_labels`` is the filter value under each position (0 outside the neuron),
    ``coord_labels`` the label names per position; ``data`` is carried along unchanged.
    """

    def __init__(self, coords, neuron, channel=0, plot=False, data=None):
        self.coords, self.neuron, self.channel, self.data = coords, neuron, int(channel), data
        filt = neuron.filters[self.channel]
        xy = np.atleast_2d(np.asarray(u.Quantity(coords.coords["offsets-neuron"]).value, np.float64))
        h, w = filt.shape
        r = np.floor(xy[:, 1] + (h - 1) / 2.0 + 0.5).astype(np.int64)
        c = np.floor(xy[:, 0] + (w - 1) / 2.0 + 0.5).astype(np.int64)
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        self.pixel = np.stack([r, c], axis=1)
        self.product_labels = np.zeros(len(xy), np.int64)
        self.product_labels[inside] = np.asarray(filt)[r[inside], c[inside]]
        self.coord_labels = [neuron.resolve_label(v, pedantic=False) for v in self.product_labels]
        if plot:
            self.plot()

    @property
    def src_idx(self):
        return self.coords.src_idx

    def coord_label_contains(self, label):
        """Boolean per position: a name is among its labels (str) or ``label`` divides its value
        (int; unselected 0 pixels never match)."""
        if isinstance(label, str):
            return np.array([label in labs for labs in self.coord_labels], dtype=bool)
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            v = self.product_labels
            return (v > 1) & (v % int(label) == 0)
        raise ValueError(f"label must be a name or a prime, got {label!r}")

    def plot(self, figure=None, axes=None):
        """The filter with the positions on top, one legend entry per label; ``(fig, ax)``."""
        import matplotlib.pyplot as plt

        if axes is None:
            figure = figure if figure is not None else plt.figure(figsize=(5, 5))
            axes = figure.add_subplot(1, 1, 1)
        figure = axes.figure
        axes.imshow(np.asarray(self.neuron.filters[self.channel]), origin="upper", cmap="tab20",
                    interpolation="nearest")
        for v in np.unique(self.product_labels):
            sel = self.product_labels == v
            name = "Unassigned" if v == 0 else (", ".join(self.neuron.resolve_label(v, pedantic=False)) or str(v))
            axes.scatter(self.pixel[sel, 1], self.pixel[sel, 0], s=30, edgecolor="k", label=name)
        if len(self.product_labels):
            axes.legend(fontsize=8)
        return figure, axes

    def __repr__(self) -> str:
        return f"Filter(channel={self.channel}, {len(self.product_labels)} positions)"


def _shifted_wcs(wcs, centre_sky, target_rc):
    """Copy of ``wcs`` whose pixel grid is shifted so ``centre_sky`` lands on ``target_rc``."""
    w = wcs.deepcopy()
    r, c = sky_to_pixel(centre_sky, wcs=w)
    w.wcs.crpix = w.wcs.crpix + np.array([target_rc[1] - c, target_rc[0] - r])
    return w


class FilterSet:
    """Every base source's matched components projected onto its neuron's annotation (PYINK).

    ``base_catalogue`` entry ``i`` is image ``i`` of the mapping; ``match_catalogues`` (a
    SkyCoord or a tuple of them) are projected onto annotation channel ``c`` each;
    ``annotation`` is a :class:`somtorch.pyink.Annotator`; ``som_set`` gives BMUs (its
    ``bmu_mask`` honoured) and transforms; ``**ct_kwargs`` are ``pixel_scale=`` (default 1
    arcsec, as PYINK) or ``wcs=`` (one WCS for all offsets, as PYINK).

    ``fs[k]`` is ``[Filter of channel c for c in channels]``; ``filters[c][k]`` likewise;
    :attr:`native` is the :class:`somtorch.collation.FilterSet` doing the work (vectorised).
    """

    def __init__(self, base_catalogue, match_catalogues, annotation, som_set, cpu_cores=None,
                 seplimit=1 * u.arcminute, progress=False, **ct_kwargs):
        from somtorch.collation import FilterSet as _NativeFilterSet

        extra = set(ct_kwargs) - {"pixel_scale", "wcs"}
        if extra:
            raise TypeError(f"FilterSet got unexpected keywords {sorted(extra)} (pixel_scale=, wcs=)")
        if not isinstance(match_catalogues, (tuple, list)):
            match_catalogues = (match_catalogues,)
        self.base_catalogue, self.match_catalogues = base_catalogue, tuple(match_catalogues)
        self.annotation, self.som_set = annotation, som_set
        self.cpu_cores, self.seplimit, self.progress = cpu_cores, seplimit, progress
        self.ct_kwargs = dict(ct_kwargs)
        self.pixel_scale = ct_kwargs.get("pixel_scale", u.arcsecond)
        self.wcs = ct_kwargs.get("wcs")
        self.channels = len(self.match_catalogues)
        nd = int(som_set.som.neuron_shape[-1])
        self.neuron_dim = nd
        from somtorch.annotation import AnnotationSet

        ann_set = annotation if isinstance(annotation, AnnotationSet) else annotation.results
        self._ann_set = ann_set
        wcs_arg = None
        if self.wcs is not None:
            cn = ((nd - 1) / 2.0, (nd - 1) / 2.0)
            wcs_arg = lambda i: _shifted_wcs(self.wcs, base_catalogue[i], cn)  # noqa: E731
        mapping, transform = som_set.mapping, som_set.transform
        k, dist = mapping._best(np.arange(len(mapping)), 0)
        rec = transform.data.reshape(len(transform), -1)[np.arange(len(transform)), k]
        # image_dim = neuron_dim: offsets are taken about the neuron centre for every angle, as
        # PYINK (the native default follows PINK's pixels, half a pixel off for quarter turns)
        self.native = _NativeFilterSet(
            base_catalogue, self.match_catalogues, ann_set, None, bmu=k,
            transform=(rec["flip"], rec["angle"].astype(np.float64)), distance=dist, image_dim=nd,
            pixel_scale=None if self.wcs is not None else self.pixel_scale, wcs=wcs_arg, seplimit=seplimit,
            numrot=None, progress=progress)
        self._bmu, self._rec = k, rec
        self.filters = [_ChannelFilters(self, c) for c in range(self.channels)]

    def cookie_cutter(self, channel, src_idx):
        """The :class:`Filter` of base source ``src_idx`` on ``channel``."""
        nf = self.native.filter(int(src_idx), int(channel))
        i = int(src_idx)
        cat = self.match_catalogues[channel]
        ct = CoordinateTransformer(self.base_catalogue[i], cat[nf.src_idx], (int(self._rec["flip"][i]),
                                   float(self._rec["angle"][i])), pixel_scale=self.pixel_scale, wcs=self.wcs,
                                   src_idx=nf.src_idx)
        from somtorch.pyink.annotator import Annotation

        ann = self._ann_set.results.get(int(self._bmu[i]))
        if ann is None:  # never annotated: an empty filter (PYINK raised KeyError)
            ann = Annotation(np.zeros((self.native.filters.shape[1],) + self.native.filters.shape[2:], np.float32),
                             self._ann_set.labels)
        elif not isinstance(ann, Annotation):
            ann = Annotation._adopt(ann, self._ann_set.labels)
        f = Filter(ct, ann, channel)
        f.product_labels = np.asarray(nf.product_labels, np.int64)  # the vectorised read (same pixels)
        f.coord_labels = [ann.resolve_label(v, pedantic=False) for v in f.product_labels]
        return f

    def project(self):
        """``filters`` as lists over channels of lists over base sources (built on access)."""
        return [[self.cookie_cutter(c, i) for i in range(len(self))] for c in range(self.channels)]

    def __getitem__(self, k):
        return [self.cookie_cutter(c, int(k)) for c in range(self.channels)]

    def __len__(self) -> int:
        return len(self.base_catalogue)

    def __repr__(self) -> str:
        return f"FilterSet({self.channels} channels, {len(self)} filters per channel)"


class _ChannelFilters:
    """``fs.filters[c]``: a lazy sequence of the channel's Filters."""

    def __init__(self, fs, channel):
        self._fs, self._c = fs, channel

    def __len__(self) -> int:
        return len(self._fs)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self._fs.cookie_cutter(self._c, i) for i in range(len(self))[k]]
        return self._fs.cookie_cutter(self._c, int(k))

    def __iter__(self):
        return (self._fs.cookie_cutter(self._c, i) for i in range(len(self)))
