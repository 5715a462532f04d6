"""Which projected entries lie on a label, for :func:`~somtorch.collation.consensus_graph`:
the label masks read with a tolerance, and LINK masks grown over the neuron's own emission.

Convention
----------
* A label's mask on neuron ``k`` (channel ``c``) is the set of pixels of ``filters[k, c]``
  carrying any of the label primes. A projected entry is *on* it when the pixel under it
  (``floor(x + 0.5)``) carries it or, with ``tolerance > 0``, a mask pixel lies within
  ``tolerance`` neuron pixels (Euclidean distance between pixel centres).
* Grown LINK masks (:func:`grow_link_masks`, ``consensus_graph(link_grow=...)``): an annotator
  paints whole lobes, while annotations painted point by point (votes of the components that
  happened to land there) cover a lobe only where they landed. On channel 0 of the neuron image
  stored with the annotation, the *islands* are the 8-connected components of the pixels above a
  threshold ``t``: ``link_grow * max(image)`` (``link_grow_mode="peak"``) or ``link_grow *
  std(image)`` over all pixels (``"sigma"``: the threshold of a flood-fill click,
  :func:`somtorch.annotation.seed_fill`). Every island holding a *seed* LINK pixel becomes LINK,
  except pixels that carry an ISOLATE or UNLINK label. Seeds are all LINK pixels
  (``link_grow_seed="any"``) or only those farther than ``link_grow_seed_radius`` neuron pixels
  from the centre (``"offcentre"``: the central island -- the subject's own component -- grows
  only when a LINK pixel away from the centre lies on it, so a compact neuron whose only LINK is
  its centre stays as painted and does not absorb neighbours).
"""

from __future__ import annotations

import numpy as np

from somtorch.errors import ConfigError

__all__ = ["label_masks", "grow_link_masks", "near"]

_EIGHT = np.ones((3, 3), dtype=bool)


def label_masks(filters, primes) -> np.ndarray:
    """Boolean ``filters.shape`` array: pixels carrying any of ``primes``."""
    m = np.zeros(filters.shape, bool)
    for pr in primes:
        m |= (filters > 1) & (filters % pr == 0)
    return m


def grow_link_masks(fs, annotations, link_primes, block_primes, threshold: float, mode: str = "peak",
                    seed: str = "any", seed_radius: float = 3.0) -> np.ndarray:
    """LINK masks of channel 0 grown over the neuron's emission (module convention).

    Parameters
    ----------
    fs : :class:`~somtorch.collation.filters.FilterSet` (its filter stack and annotated neurons).
    annotations : the :class:`~somtorch.annotation.AnnotationSet` holding each neuron's image.
    link_primes, block_primes : primes of the LINK labels and of the labels growth must not
        cover (ISOLATE / UNLINK).
    threshold, mode : island threshold ``threshold * max`` (``"peak"``) or ``threshold * std``
        (``"sigma"``) of the neuron's channel-0 image.
    seed, seed_radius : ``"any"`` LINK pixel seeds an island, or (``"offcentre"``) only LINK
        pixels farther than ``seed_radius`` pixels from the centre.

    Returns
    -------
    bool array ``(num_neurons, nd, nd)``: the painted LINK mask united with the grown islands
    (unannotated neurons: all False).
    """
    from scipy import ndimage

    if mode not in ("peak", "sigma"):
        raise ConfigError(None, "link_grow_mode", mode, "'peak' or 'sigma'")
    if seed not in ("any", "offcentre"):
        raise ConfigError(None, "link_grow_seed", seed, "'any' or 'offcentre'")
    if not np.isfinite(threshold) or threshold <= 0:
        raise ConfigError(None, "link_grow", threshold, "a finite number > 0")
    f0 = fs.filters[:, 0]
    link = label_masks(f0, link_primes)
    block = label_masks(f0, block_primes)
    out = link.copy()
    nd = f0.shape[-1]
    cen = (nd - 1) / 2
    yy, xx = np.mgrid[:nd, :nd]
    seed_ok = np.ones((nd, nd), bool) if seed == "any" else np.hypot(yy - cen, xx - cen) > seed_radius
    for k in np.flatnonzero(fs.annotated):
        seeds = link[k] & seed_ok
        if not seeds.any() or int(k) not in annotations.results:
            continue
        img = np.asarray(annotations[int(k)].neuron[0], np.float64)
        if img.shape != (nd, nd):
            raise ConfigError(None, f"annotations[{int(k)}].neuron", img.shape, f"channel 0 of shape {(nd, nd)}")
        t = threshold * (img.max() if mode == "peak" else img.std())
        lab, _ = ndimage.label(img > t, structure=_EIGHT)
        keep = np.unique(lab[seeds])
        keep = keep[keep > 0]
        if len(keep):
            out[k] |= np.isin(lab, keep) & ~block[k]
    return out


def near(fs, primes, channel, tolerance, polar=None, masks=None) -> np.ndarray:
    """Per projected pair of ``channel``: on any label of ``primes`` (within ``tolerance`` px).

    ``masks`` (bool ``(num_neurons, nd, nd)``) replaces the masks of ``primes`` (grown LINK)."""
    p = fs._pairs[channel]
    v = p["value"]
    k = fs.bmu[p["base"]]
    r = np.floor(p["rc"][:, 0] + 0.5).astype(np.int64)
    c = np.floor(p["rc"][:, 1] + 0.5).astype(np.int64)
    if masks is None:
        on = np.zeros(len(v), bool)
        for pr in primes:
            on |= (v > 1) & (v % pr == 0)
    else:
        on = np.zeros(len(v), bool)
        ins = p["inside"]
        on[ins] = masks[k[ins], r[ins], c[ins]]
    if tolerance > 0 and (primes or masks is not None) and len(v):
        from scipy import ndimage

        ok = p["inside"] & ~on
        for n in np.unique(k[ok]):
            m = label_masks(fs.filters[n, channel], primes) if masks is None else masks[n]
            if not m.any():
                continue
            sel = ok & (k == n)
            if polar is None:
                d = ndimage.distance_transform_edt(~m)
                on[sel] = d[r[sel], c[sel]] <= tolerance
            else:
                on[sel] = polar_hit(m, p["rc"][sel], tolerance, *polar)
    return on


def polar_hit(mask, rc, tolerance, angle_tol, ratio):
    """Points within ``tolerance`` px of the mask, or (away from the centre) at the angle of a
    mask pixel within ``angle_tol`` radians and a radius within a factor ``ratio`` of it."""
    from scipy import ndimage

    nd = mask.shape[0]
    cen = (nd - 1) / 2
    d = ndimage.distance_transform_edt(~mask)
    r = np.clip(np.floor(rc[:, 0] + 0.5).astype(np.int64), 0, nd - 1)
    c = np.clip(np.floor(rc[:, 1] + 0.5).astype(np.int64), 0, nd - 1)
    hit = d[r, c] <= tolerance
    pr, pc = np.nonzero(mask)
    prad = np.hypot(pr - cen, pc - cen)
    keep = prad > 3.0
    if not keep.any():
        return hit
    pang = np.arctan2(pr[keep] - cen, pc[keep] - cen)
    prad = prad[keep]
    qrad = np.hypot(rc[:, 0] - cen, rc[:, 1] - cen)
    qang = np.arctan2(rc[:, 0] - cen, rc[:, 1] - cen)
    da = np.abs(np.angle(np.exp(1j * (qang[:, None] - pang[None]))))
    rr = qrad[:, None] / prad[None]
    polar = ((da <= angle_tol) & (rr <= ratio) & (rr >= 1 / ratio)).any(1) & (qrad > 3.0)
    return hit | polar
