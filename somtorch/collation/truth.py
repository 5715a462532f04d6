"""Annotate neurons programmatically from a catalogue with known truth (benchmarks, demos).

The masks are painted through the same API as a person's annotations
(:meth:`somtorch.annotation.Annotation.add_mask` into an
:class:`~somtorch.annotation.AnnotationSet`), so grouping driven by them exercises exactly the
path of hand-made annotations.

Convention
----------
For every entry ``b`` mapped to neuron ``k``, the catalogue entries within ``seplimit`` are
projected into ``k``'s frame with ``b``'s transform (as :class:`~somtorch.collation.FilterSet`
does). Each projected entry votes, in a disk of ``radius`` pixels around its position, for

* ``link`` -- it belongs to the same true source as ``b`` (and is not a sidelobe);
* ``sidelobe`` -- it is a sidelobe artefact;
* nothing (an "other" vote) -- it belongs to another source.

Channel 1 (if ``hosts`` is given) gets ``host`` votes where ``b``'s true host lands, "other"
votes elsewhere. A pixel gets a label when that label's votes exceed all other votes together
and reach ``min_votes``.
"""

from __future__ import annotations

import numpy as np

from somtorch.errors import ShapeError

__all__ = ["annotate_from_truth"]


def _disk(radius: float) -> np.ndarray:
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (np.hypot(yy, xx) <= radius).astype(np.float64)


def _votes(pairs, bmu, weights_mask, num_neurons, nd, kernel):
    from scipy import ndimage

    out = np.zeros((num_neurons, nd, nd))
    sel = pairs["inside"] & weights_mask
    if sel.any():
        r = np.floor(pairs["rc"][sel, 0] + 0.5).astype(np.int64)
        c = np.floor(pairs["rc"][sel, 1] + 0.5).astype(np.int64)
        np.add.at(out, (bmu[pairs["base"][sel]], r, c), 1.0)
    for k in range(num_neurons):
        if out[k].any():
            out[k] = ndimage.convolve(out[k], kernel, mode="constant")
    return out


def annotate_from_truth(neurons, base, source_id, *, bmu, transform, image_dim: int, pixel_scale=None,
                        wcs=None, sidelobe=None, hosts=None, host_of=None, seplimit=None,
                        numrot: int | None = 360, radius: float = 1.5, min_votes: float = 1.0,
                        labels=("link", "host", "sidelobe"), subjects=None):
    """Build an :class:`~somtorch.annotation.AnnotationSet` from true source memberships.

    Parameters
    ----------
    neurons : array ``(N, C, nd, nd)`` -- the SOM's neurons (stored with each annotation).
    base : SkyCoord ``(n,)`` -- the catalogue (also match catalogue 0).
    source_id : int ``(n,)`` -- true source of each entry.
    bmu, transform, image_dim, pixel_scale, wcs, seplimit, numrot : as for
        :class:`~somtorch.collation.FilterSet`.
    sidelobe : bool ``(n,)``, optional -- true artefacts.
    hosts : SkyCoord, optional -- host catalogue (channel 1); ``host_of`` ``(n,)`` gives the index
        of each entry's true host in it, -1 for none.
    radius, min_votes : vote disk radius (pixels) and minimum votes for a label.
    labels : names of the (link, host, sidelobe) labels.
    subjects : bool ``(n,)``, optional -- only these entries' views vote (the "labelled" part of
        the catalogue, to measure grouping on entries whose truth was not used).
    """
    from somtorch.annotation import Annotation, AnnotationSet
    from somtorch.collation.filters import FilterSet

    w = np.asarray(neurons, dtype=np.float32)
    if w.ndim != 4:
        raise ShapeError(f"neurons must be (N, C, nd, nd), got shape {w.shape}")
    num_neurons, channels, nd = w.shape[0], w.shape[1], w.shape[-1]
    if hosts is not None and channels < 2:
        raise ShapeError("host annotation needs neurons with at least 2 channels")
    sid = np.asarray(source_id)
    side = np.zeros(len(sid), bool) if sidelobe is None else np.asarray(sidelobe, dtype=bool)
    blank = AnnotationSet(list(labels), {k: Annotation(w[k]) for k in range(num_neurons)})
    fs = FilterSet(base, (None, hosts) if hosts is not None else None, blank, bmu=bmu, transform=transform,
                   image_dim=image_dim, pixel_scale=pixel_scale, wcs=wcs, seplimit=seplimit, numrot=numrot)
    b = fs.bmu
    kern = _disk(radius)
    subj = np.ones(len(sid), bool) if subjects is None else np.asarray(subjects, dtype=bool)
    p0 = fs.pairs(0)
    p0["inside"] = p0["inside"] & subj[p0["base"]]
    same = (sid[p0["match"]] == sid[p0["base"]]) & ~side[p0["match"]]
    v_link = _votes(p0, b, same, num_neurons, nd, kern)
    v_side = _votes(p0, b, side[p0["match"]], num_neurons, nd, kern)
    v_all0 = _votes(p0, b, np.ones(len(same), bool), num_neurons, nd, kern)
    out = AnnotationSet(list(labels))
    link_lab, host_lab, side_lab = labels
    masks = {link_lab: (0, (v_link > v_all0 - v_link) & (v_link >= min_votes)),
             side_lab: (0, (v_side > v_all0 - v_side) & (v_side >= min_votes))}
    if hosts is not None:
        p1 = fs.pairs(1)
        p1["inside"] = p1["inside"] & subj[p1["base"]]
        hof = np.asarray(host_of)
        is_host = hof[p1["base"]] == p1["match"]
        v_host = _votes(p1, b, is_host, num_neurons, nd, kern)
        v_all1 = _votes(p1, b, np.ones(len(is_host), bool), num_neurons, nd, kern)
        masks[host_lab] = (1, (v_host > v_all1 - v_host) & (v_host >= min_votes))
    for k in range(num_neurons):
        a = Annotation(w[k])
        for lab, (ch, m) in masks.items():
            a.add_mask(ch, m[k], out.labels.value([lab]))
        if a.annotated:
            out[k] = a
    return out
