"""Morphology recipes for the synthetic radio sky (:mod:`somtorch.datasets.synthetic`).

Each recipe draws one radio source in its own flat, source-local frame: offsets in arcsec
east (``de``, towards increasing RA) and north (``dn``, towards increasing Dec) of the source
centre. The centre is where the host galaxy (and the radio core, where there is one) sits.

A recipe returns a list of *components* ``(role, prims)``: one component is what a source
finder would catalogue as one entry, and ``prims`` is a float64 array of shape ``(k, 6)`` whose
rows are the elliptical Gaussians that make up the component::

    de, dn, fwhm_major, fwhm_minor, pa, flux_fraction

with intrinsic (not beam-convolved) FWHMs in arcsec, position angle in degrees east of north
and the fraction of the source's total flux carried by that Gaussian (the fractions of all
primitives of a source sum to one). A component with more than one Gaussian is what PyBDSF
calls a multi-Gaussian (``S_Code='M'``) component.

Sizes are drawn from the ranges configured in :class:`~somtorch.datasets.synthetic.SkyConfig`
(``*_arcsec`` attributes); any object with those attributes can be passed as ``cfg``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["MORPH_CLASSES", "RECIPES", "draw_source", "sidelobe_artefacts", "sidelobe_pattern",
           "host_galaxy", "sersic", "sersic_extent"]

MORPH_CLASSES: tuple[str, ...] = ("compact", "resolved", "double", "triple", "fr1", "fr2",
                                  "wat", "nat")

Component = tuple[str, np.ndarray]


def _logu(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Log-uniform draw in [lo, hi]."""
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _unit(pa_deg: float) -> np.ndarray:
    """Unit vector (east, north) along position angle ``pa_deg`` (east of north)."""
    t = np.deg2rad(pa_deg)
    return np.array([np.sin(t), np.cos(t)])


def _prim(pos, fmaj, fmin, pa, frac) -> list[float]:
    return [float(pos[0]), float(pos[1]), float(fmaj), float(min(fmin, fmaj)),
            float(pa % 180.0), float(frac)]


def _wrap180(a: float) -> float:
    return (a + 180.0) % 360.0 - 180.0


def _lobe_fwhm(rng: np.random.Generator, sep: float) -> float:
    """FWHM of a lobe of a double/triple of separation ``sep``: up to 30 % of it, 8″ at most."""
    hi = max(1.0, min(8.0, 0.3 * sep))
    return float(rng.uniform(0.5, hi))


def compact(rng, cfg) -> list[Component]:
    fwhm = rng.uniform(0.0, cfg.compact_fwhm_max_arcsec)
    q = rng.uniform(0.5, 1.0)
    return [("compact", np.array([_prim((0, 0), fwhm, fwhm * q, rng.uniform(0, 180), 1.0)]))]


def resolved(rng, cfg) -> list[Component]:
    fwhm = _logu(rng, *cfg.resolved_fwhm_arcsec)
    q = rng.uniform(0.3, 1.0)
    return [("resolved", np.array([_prim((0, 0), fwhm, fwhm * q, rng.uniform(0, 180), 1.0)]))]


def double(rng, cfg) -> list[Component]:
    """Two lobes, no detected core; the (invisible) nucleus sits between them."""
    sep = _logu(rng, *cfg.double_sep_arcsec)
    pa = rng.uniform(0, 360)
    ratio = _logu(rng, 1 / 3, 3)
    arm = rng.uniform(0.4, 0.6)
    u = _unit(pa)
    out = []
    for pos, frac in ((u * arm * sep, 1 / (1 + ratio)), (-u * (1 - arm) * sep, ratio / (1 + ratio))):
        f = _lobe_fwhm(rng, sep)
        out.append(("lobe", np.array([_prim(pos, f, f * rng.uniform(0.5, 1.0), pa, frac)])))
    return out


def triple(rng, cfg) -> list[Component]:
    """Core plus two lobes, with arm-length asymmetry and a small bend."""
    sep = _logu(rng, *cfg.triple_sep_arcsec)
    pa = rng.uniform(0, 360)
    fcore = rng.uniform(0.1, 0.4)
    ratio = _logu(rng, 0.5, 2.0)
    fwhm = rng.uniform(0.0, cfg.compact_fwhm_max_arcsec)
    out = [("core", np.array([_prim((0, 0), fwhm, fwhm, 0.0, fcore)]))]
    for pa_arm, frac in ((pa, (1 - fcore) / (1 + ratio)),
                         (pa + 180 + rng.normal(0, 10), (1 - fcore) * ratio / (1 + ratio))):
        pos = _unit(pa_arm) * 0.5 * sep * rng.uniform(0.8, 1.2)
        f = _lobe_fwhm(rng, sep)
        out.append(("lobe", np.array([_prim(pos, f, f * rng.uniform(0.5, 1.0), pa_arm, frac)])))
    return out


def _jet_path(h0: float, h1: float, length: float, n: int) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
    """Positions, headings and path lengths of ``n`` points along a jet/tail.

    The heading turns smoothly from ``h0`` to ``h1`` (degrees east of north) along the path.
    """
    s = np.linspace(0.0, length, 64)
    t = s / length
    head = h0 + _wrap180(h1 - h0) * (3 * t ** 2 - 2 * t ** 3)
    step = np.diff(s)[:, None] * np.stack([np.sin(np.deg2rad(head[:-1])),
                                          np.cos(np.deg2rad(head[:-1]))], axis=1)
    xy = np.vstack([[0.0, 0.0], np.cumsum(step, axis=0)])
    sk = (np.arange(n) + 0.5) / n * length
    pos = np.stack([np.interp(sk, s, xy[:, 0]), np.interp(sk, s, xy[:, 1])], axis=1)
    return pos, np.interp(sk, s, head), sk


def _chain(h0, h1, length, n, frac, decay, width0, widen) -> np.ndarray:
    """A jet or tail: ``n`` Gaussians along a curved path, widening and fading outwards."""
    pos, head, sk = _jet_path(h0, h1, length, n)
    w = np.exp(-decay * sk / length)
    w = frac * w / w.sum()
    seg = 1.6 * length / n
    return np.array([_prim(pos[k], max(seg, width0 + widen * sk[k]), width0 + widen * sk[k],
                           head[k], w[k]) for k in range(n)])


def fr1(rng, cfg) -> list[Component]:
    """Core-brightened FR-I: bright core, two fading, widening jets (one component each)."""
    size = _logu(rng, *cfg.fr1_size_arcsec)
    pa = rng.uniform(0, 360)
    fcore = rng.uniform(0.15, 0.35)
    ratio = _logu(rng, 1 / 1.5, 1.5)
    out = [("core", np.array([_prim((0, 0), 0.5, 0.5, 0.0, fcore)]))]
    for h0, frac in ((pa, (1 - fcore) / (1 + ratio)),
                     (pa + 180 + rng.normal(0, 10), (1 - fcore) * ratio / (1 + ratio))):
        arm = 0.5 * size * rng.uniform(0.8, 1.2)
        out.append(("jet", _chain(h0, h0 + rng.normal(0, 20), arm, 4, frac, 1.5, 1.0, 0.4)))
    return out


def fr2(rng, cfg) -> list[Component]:
    """Edge-brightened FR-II: a compact hotspot at the end of each lobe, a faint core."""
    size = _logu(rng, *cfg.fr2_size_arcsec)
    pa = rng.uniform(0, 360)
    fcore = rng.uniform(0.01, 0.08) if rng.uniform() < 0.7 else 0.0
    ratio = _logu(rng, 1 / 1.5, 1.5)
    out = []
    if fcore > 0:
        out.append(("core", np.array([_prim((0, 0), 0.3, 0.3, 0.0, fcore)])))
    for pa_arm, fside in ((pa, (1 - fcore) / (1 + ratio)),
                          (pa + 180 + rng.normal(0, 5), (1 - fcore) * ratio / (1 + ratio))):
        arm = 0.5 * size * rng.uniform(0.85, 1.15)
        u = _unit(pa_arm)
        fhot = rng.uniform(0.25, 0.6)
        lobe_min = arm * rng.uniform(0.25, 0.45)
        out.append(("lobe", np.array([_prim(u * 0.72 * arm, max(0.5 * arm, lobe_min), lobe_min,
                                            pa_arm, fside * (1 - fhot))])))
        hot = rng.uniform(0.5, 2.0)
        out.append(("hotspot", np.array([_prim(u * 0.95 * arm, hot, hot * rng.uniform(0.6, 1),
                                               pa_arm, fside * fhot)])))
    return out


def _tailed(rng, size, fcore, h_start, h_end) -> list[Component]:
    ratio = _logu(rng, 1 / 1.5, 1.5)
    out = [("core", np.array([_prim((0, 0), 0.5, 0.5, 0.0, fcore)]))]
    for (h0, h1), frac in zip(zip(h_start, h_end),
                              ((1 - fcore) / (1 + ratio), (1 - fcore) * ratio / (1 + ratio))):
        length = size * rng.uniform(0.8, 1.2)
        out.append(("tail", _chain(h0, h1, length, 5, frac, 0.8, 1.2, 0.25)))
    return out


def wat(rng, cfg) -> list[Component]:
    """Wide-angle tail: jets leave the core in opposite directions, then bend downstream."""
    size = _logu(rng, *cfg.wat_size_arcsec)
    wind = rng.uniform(0, 360)
    h_start = (wind + 90 + rng.normal(0, 20), wind - 90 + rng.normal(0, 20))
    h_end = (wind + rng.uniform(10, 40), wind - rng.uniform(10, 40))
    return _tailed(rng, size, rng.uniform(0.1, 0.3), h_start, h_end)


def nat(rng, cfg) -> list[Component]:
    """Narrow-angle tail: both tails stream in nearly the same direction from the core."""
    size = _logu(rng, *cfg.nat_size_arcsec)
    wind = rng.uniform(0, 360)
    h_start = (wind + rng.uniform(10, 35), wind - rng.uniform(10, 35))
    h_end = (wind + rng.uniform(0, 8), wind - rng.uniform(0, 8))
    return _tailed(rng, size, rng.uniform(0.15, 0.4), h_start, h_end)


RECIPES: dict[str, Callable[[np.random.Generator, Any], list[Component]]] = {
    "compact": compact, "resolved": resolved, "double": double, "triple": triple,
    "fr1": fr1, "fr2": fr2, "wat": wat, "nat": nat,
}


def draw_source(morph: str, rng: np.random.Generator, cfg) -> list[Component]:
    """Draw one source of class ``morph``; flux fractions are renormalised to sum to one."""
    comps = RECIPES[morph](rng, cfg)
    total = sum(float(p[:, 5].sum()) for _, p in comps)
    for _, p in comps:
        p[:, 5] /= total
    return comps


# --------------------------------------------------------------------------------------------
# Sidelobe artefacts (snapshot-PSF residuals around a bright source)


def _sidelobe_env(r, r_out: float):
    return (1.0 - np.exp(-(r / 6.0) ** 2)) * np.exp(-(r / r_out) ** 2)


def sidelobe_artefacts(rng: np.random.Generator, cfg) -> tuple[tuple[float, ...], np.ndarray]:
    """Draw the residual-sidelobe pattern of one bright source and its spurious components.

    Returns ``(pattern, prims)``: ``pattern = (theta0, period, level, r_out)`` (degrees, arcsec,
    fraction of the bright peak, arcsec) for :func:`sidelobe_pattern`, and ``prims`` of shape
    ``(k, 6)`` like a recipe's, except that the last column is the component's beam-convolved
    peak as a fraction of the bright source's peak (not a flux fraction). Components sit on the
    crests (r = m·P ≥ 12″) of the six arms.
    """
    theta0 = rng.uniform(0.0, 60.0)
    period = rng.uniform(*cfg.sidelobe_period_arcsec)
    level = rng.uniform(*cfg.sidelobe_pattern_level)
    r_out = rng.uniform(30.0, 50.0)
    n = int(rng.integers(1, cfg.sidelobe_max_components + 1))
    ms = [m for m in range(1, int(1.5 * r_out / period) + 1) if m * period >= 12.0]
    cands = [(k, m) for k in range(6) for m in ms]
    pick = rng.choice(len(cands), size=min(n, len(cands)), replace=False)
    rows = []
    for j in np.sort(pick):
        k, m = cands[j]
        arm = theta0 + 60.0 * k
        r = m * period
        pa = arm if rng.uniform() < 0.5 else arm + 90.0
        rel = _logu(rng, *cfg.sidelobe_component_level) * float(_sidelobe_env(r, r_out))
        rows.append(_prim(_unit(arm) * r, rng.uniform(5.0, 14.0), rng.uniform(0.0, 1.5), pa, rel))
    return (theta0, period, level, r_out), np.array(rows).reshape(-1, 6)


def sidelobe_pattern(de, dn, theta0, period, amp, r_out, width):
    """Residual-sidelobe brightness at offsets ``de``, ``dn`` (arcsec) from the bright source.

    ``amp · env(r) · cos(2πr/P) · (Σ_k exp(−d_k²/2w²) + 0.08)`` over three lines through the
    source at ``theta0 + 0/60/120°`` (six arms), ``d_k`` the distance to line k.
    """
    r = np.hypot(de, dn)
    spokes = 0.08
    for k in range(3):
        t = np.deg2rad(theta0 + 60.0 * k)
        d = de * np.cos(t) - dn * np.sin(t)
        spokes = spokes + np.exp(-0.5 * (d / width) ** 2)
    return amp * _sidelobe_env(r, r_out) * np.cos(2 * np.pi * r / period) * spokes


# --------------------------------------------------------------------------------------------
# Infrared galaxies


def host_galaxy(rng: np.random.Generator, cfg) -> tuple[float, ...]:
    """A host galaxy near the source centre: ``(de, dn, r_eff, n, q, pa, amp)``."""
    off = rng.normal(0.0, cfg.ir_host_offset_arcsec, size=2)
    return (float(off[0]), float(off[1]), _logu(rng, *cfg.ir_host_reff_arcsec),
            float(rng.choice([1.0, 4.0])), rng.uniform(0.4, 1.0), rng.uniform(0, 180),
            _logu(rng, 10.0, 200.0) * cfg.ir_noise_rms)


def _bn(n):
    return 2.0 * n - 1.0 / 3.0 + 0.009876 / n


def sersic(de, dn, reff, n, q, pa, amp, soft):
    """Softened Sérsic profile with central value ``amp``.

    The elliptical radius is softened as r_s = sqrt(r² + soft²) (a cheap stand-in for PSF
    convolution), and I = amp · exp(−b_n[(r_s/r_e)^(1/n) − (soft/r_e)^(1/n)]).
    """
    t = np.deg2rad(pa)
    a = de * np.sin(t) + dn * np.cos(t)
    b = (de * np.cos(t) - dn * np.sin(t)) / q
    rs = np.sqrt(a * a + b * b + soft * soft)
    bn = _bn(n)
    return amp * np.exp(-bn * ((rs / reff) ** (1.0 / n) - (soft / reff) ** (1.0 / n)))


def sersic_extent(reff, n, amp, soft, floor, cap=25.0):
    """Radius (arcsec) beyond which :func:`sersic` stays below ``floor`` (at most ``cap``)."""
    x = np.log(np.maximum(amp / floor, 1.0)) / _bn(n) + (soft / reff) ** (1.0 / n)
    rs = reff * x ** n
    return np.minimum(np.sqrt(np.maximum(rs * rs - soft * soft, 0.0)), cap)
