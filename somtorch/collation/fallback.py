"""Proximity fallback of :func:`~somtorch.collation.consensus_graph`: pair entries that the SOM
views could not group -- partners beyond the cutout, or off sparse LINK masks -- by where their
neurons point and by flux-weighted proximity.

Convention
----------
* An entry *expects a partner* when it is not isolated and its best-matching neuron is annotated
  with LINK pixels farther than ``far`` times the neuron's half-side from the centre ("far LINK
  pixels"). Its *pointing offset* towards another entry ``b`` is the smallest angle between
  ``b``'s direction and a far LINK pixel's direction in the neuron frame, through the exact
  transform of the view (``inf`` when ``b`` lies closer than half the nearest far pixel's radius).
  ``views="directions"`` takes the smallest offset over the best view and the ``extra_views``
  (2nd, 3rd best neurons) that have far LINK pixels -- whether an entry expects a partner is still
  decided by its best view; ``views="all"`` lets any of the views decide that too; ``"best"``:
  the best view only.
* A candidate pair ``(a, b)`` lies within ``radius`` (sky angle) and either both expect a
  partner, one pointing within ``angle`` and the other within ``angle_other``, or (*one-sided*,
  ``one_sided`` not ``None``) exactly one of them does and points within ``one_sided`` degrees,
  counting only far LINK pixels whose radius is within a factor ``one_sided_radial`` of ``b``'s
  (the view expects a partner *at that distance*), and the two fluxes differ by at most a factor
  ``one_sided_ratio`` (an artefact of a bright source is far fainter than the source).
* Cost of a pair: flux-weighted distance ``sep * (1 + |log10(f_a / f_b)|)``. Pairs are
  accepted when each is the other's cheapest candidate (mutual best).
* Step 1 pairs entries that are alone after the graph step (with ``one_sided``: any alone
  entry; otherwise those that expect a partner). Step 2 (``groups``): an entry still alone joins
  a group through a member that expects a partner, by the same test and mutual best between the
  alone entries and those members -- any group (``groups=True``), or only groups step 1 made
  (``groups="fallback"``: completes triples whose third component points at one of a pair).
"""

from __future__ import annotations

import numpy as np

from somtorch.errors import ConfigError

__all__ = ["FALLBACKS", "fallback_settings", "proximity_fallback"]

#: Settings of each fallback mode of :func:`~somtorch.collation.consensus_graph`
#: (``fallback=``); explicit ``fallback_*`` options override them.
FALLBACKS = {
    "proximity": {"groups": False, "views": "best", "angle_other": 60.0, "one_sided": None,
                  "one_sided_ratio": 4.0, "one_sided_radial": 1.3},
    "extended": {"groups": "fallback", "views": "directions", "angle_other": 40.0, "one_sided": 10.0,
                 "one_sided_ratio": 4.0, "one_sided_radial": 1.3},
}


def fallback_settings(mode: str, **given) -> dict:
    """The settings of ``mode`` with the options given explicitly (not ``None``) replacing them;
    ``one_sided=0`` (or ``False``) turns the one-sided test off."""
    if mode not in FALLBACKS:
        raise ConfigError(None, "fallback", mode, f"None or one of {list(FALLBACKS)}")
    out = dict(FALLBACKS[mode])
    out.update({k: v for k, v in given.items() if v is not None})
    if not out["one_sided"]:
        out["one_sided"] = None
    if out["groups"] not in (False, True, "fallback"):
        raise ConfigError(None, "fallback_groups", out["groups"], "False, True or 'fallback'")
    if out["views"] not in ("best", "directions", "all"):
        raise ConfigError(None, "fallback_views", out["views"], "'best', 'directions' or 'all'")
    if not out["one_sided_ratio"] >= 1 or not out["one_sided_radial"] >= 1:
        raise ConfigError(None, "fallback_one_sided_ratio/radial",
                          (out["one_sided_ratio"], out["one_sided_radial"]), "factors >= 1")
    return out


def to_neuron(fs, a, coords):
    """Neuron-frame (row, col) of sky ``coords`` in entry ``a``'s view (may lie outside)."""
    from somtorch.analysis.frames import image_to_neuron_coords, sky_to_pixel

    if fs.wcs is None:
        pix = sky_to_pixel(coords, center=fs.base[a], pixel_scale=fs.pixel_scale, image_shape=fs.image_dim)
    else:
        w = fs.wcs(a) if callable(fs.wcs) else fs.wcs[a]
        pix = sky_to_pixel(coords, wcs=w)
    return image_to_neuron_coords(pix, (int(fs.flip[a]), float(fs.angle[a])), fs.image_dim, fs.neuron_dim,
                                  fs.numrot)


def to_neuron_pairs(fs, a, b) -> np.ndarray:
    """Neuron-frame (row, col) of entries ``b`` in the views of entries ``a`` (index arrays of
    equal length), vectorised where the views have no WCS: ``(len(a), 2)``."""
    from somtorch.analysis.frames import image_to_neuron_coords, sky_to_pixel

    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    if len(a) == 0:
        return np.zeros((0, 2))
    if fs.wcs is not None:
        return np.array([to_neuron(fs, i, fs.base[j:j + 1])[0] for i, j in zip(a.tolist(), b.tolist())])
    pix = sky_to_pixel(fs.base[b], center=fs.base[a], pixel_scale=fs.pixel_scale, image_shape=fs.image_dim)
    return image_to_neuron_coords(pix, (fs.flip[a], fs.angle[a]), fs.image_dim, fs.neuron_dim, fs.numrot)


def proximity_fallback(fs, label, isolated, link_primes, flux, *, radius=None, far: float = 0.6,
                       angle: float = 20.0, angle_other: float = 60.0, groups=False, views: str = "best",
                       extra_views=(), one_sided=None, one_sided_ratio: float = 4.0,
                       one_sided_radial: float = 1.3):
    """Apply the fallback (module convention) to the cluster ``label`` of every entry.

    Angles in degrees; ``radius`` an astropy angle (default twice ``fs.seplimit``). Returns
    ``(label, set of the entries the fallback joined)``.
    """
    import astropy.units as u
    from astropy.coordinates import search_around_sky

    n = len(fs)
    cen = (fs.neuron_dim - 1) / 2
    yy, xx = np.mgrid[:fs.neuron_dim, :fs.neuron_dim]
    rad = np.hypot(yy - cen, xx - cen)
    ang = np.arctan2(yy - cen, xx - cen)
    farm = rad > far * cen
    angle_tol, other_tol = np.radians(angle), np.radians(angle_other)
    one_tol = None if one_sided is None else np.radians(one_sided)
    far_dirs: dict[int, list] = {}
    views_used = list(extra_views) if views != "best" else []
    where: dict[tuple, np.ndarray] = {}  # (view, a, b) -> b's neuron-frame position in a's view
    for v in [fs] + views_used:
        for j in range(n):
            k = v.bmu[j]
            if j in isolated or not v.annotated[k]:
                continue
            if views == "directions" and v is not fs and j not in far_dirs:
                continue  # the best view decides whether j expects a partner
            f = v.filters[k, 0]
            m = np.zeros(f.shape, bool)
            for pr in link_primes:
                m |= (f > 1) & (f % pr == 0)
            m &= farm
            if m.any():
                far_dirs.setdefault(j, []).append((v, ang[m], rad[m].min(), rad[m]))
    radius = 2 * fs.seplimit if radius is None else radius
    fl = np.ones(n) if flux is None else np.asarray(flux, np.float64)

    def offset(a, b, radial=None):
        """Pointing offset of a's views towards b (radians; None: a expects no partner)."""
        if a not in far_dirs:
            return None
        best = np.inf
        for v, angs, rmin, rads in far_dirs[a]:
            rc = where.get((id(v), a, b))
            if rc is None:
                rc = to_neuron(v, a, fs.base[b:b + 1])[0]
            dr, dc = rc[0] - cen, rc[1] - cen
            q = np.hypot(dr, dc)
            if q < 0.5 * rmin:
                continue
            if radial is not None:
                keep = (rads <= radial * q) & (rads * radial >= q)
                if not keep.any():
                    continue
                angs = angs[keep]
            best = min(best, float(np.abs(np.angle(np.exp(1j * (angs - np.arctan2(dr, dc))))).min()))
        return best

    def acceptable(a, b, ratio):
        oa, ob = offset(a, b), offset(b, a)
        if oa is not None and ob is not None:
            o1, o2 = sorted((oa, ob))
            return o1 <= angle_tol and o2 <= other_tol
        if one_tol is None or (oa is None and ob is None):
            return False
        if abs(np.log10(ratio)) > np.log10(one_sided_ratio):
            return False
        o = offset(a, b, one_sided_radial) if oa is not None else offset(b, a, one_sided_radial)
        return o <= one_tol

    def match(A, B):
        """Mutual best (flux-weighted distance) acceptable pairs a in A, b in B."""
        A, B = np.asarray(A, np.int64), np.asarray(B, np.int64)
        if len(A) == 0 or len(B) == 0:
            return []
        ia, ib, sep, _ = search_around_sky(fs.base[A], fs.base[B], radius)
        # every pair's position in every pointing view of either entry, in one pass per view
        pa, pb = np.concatenate([A[ia], B[ib]]), np.concatenate([B[ib], A[ia]])
        for v in [fs] + list(views_used):
            sel = np.array([any(x[0] is v for x in far_dirs.get(int(i), ())) for i in pa.tolist()], bool)
            rcs = to_neuron_pairs(v, pa[sel], pb[sel])
            where.update({(id(v), int(i), int(j)): rc for i, j, rc in zip(pa[sel].tolist(), pb[sel].tolist(), rcs)})
        best_a: dict[int, tuple] = {}
        best_b: dict[int, tuple] = {}
        for a, b, s_ in zip(A[ia].tolist(), B[ib].tolist(), sep.to_value(u.arcsec)):
            if a == b:
                continue
            r = fl[a] / fl[b] if fl[a] > 0 and fl[b] > 0 else 1.0
            if not acceptable(a, b, r):
                continue
            c = s_ * (1 + abs(np.log10(r)))
            if a not in best_a or c < best_a[a][1]:
                best_a[a] = (b, c)
            if b not in best_b or c < best_b[b][1]:
                best_b[b] = (a, c)
        return [(a, b) for a, (b, _) in best_a.items() if best_b.get(b, (None,))[0] == a]

    label = label.copy()
    joined: set = set()
    cand = [j for j in range(n) if j not in isolated] if one_tol is not None else list(far_dirs)
    sizes = np.bincount(label, minlength=n)
    alone = [j for j in cand if sizes[label[j]] == 1]
    for a, b in match(alone, alone):
        if a < b:  # symmetric: each pair appears twice
            label[label == label[b]] = label[a]
            joined.update((a, b))
    if groups:
        sizes = np.bincount(label, minlength=n)
        alone = [j for j in cand if sizes[label[j]] == 1]
        grouped = [j for j in far_dirs if sizes[label[j]] > 1 and (groups is True or j in joined)]
        for a, b in match(alone, grouped):
            label[a] = label[b]
            joined.update((a, b))
    return label, joined
