"""Spherical geometry for the synthetic sky: gnomonic (FITS TAN) projection and IAU names.

Convention: offsets ``xi`` (east) and ``eta`` (north) are in arcsec in the tangent plane at the
projection centre; unit vectors are ICRS cartesian (x towards RA=0, z towards the pole).
"""

from __future__ import annotations

import numpy as np

_ARCSEC = np.pi / (180.0 * 3600.0)  # radians per arcsec
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
# spawn keys of the independent random streams (see _rng)
_S_SKY, _S_SOURCE, _S_SIDELOBE, _S_HOST, _S_NOISE, _S_IRCELL = range(6)


def _rng(seed: int, *key: int) -> np.random.Generator:
    """An independent stream per (seed, key): order-independent, reproducible draws."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(key)))



def _xyz(ra, dec) -> np.ndarray:
    a, d = np.deg2rad(ra), np.deg2rad(dec)
    return np.stack(np.broadcast_arrays(np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)),
                    axis=-1)


def _basis(ra, dec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radial, east and north unit vectors at (ra, dec); shapes (..., 3)."""
    a, d = np.deg2rad(ra), np.deg2rad(dec)
    zero = np.zeros_like(a)
    east = np.stack(np.broadcast_arrays(-np.sin(a), np.cos(a), zero), axis=-1)
    north = np.stack(np.broadcast_arrays(-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a),
                                         np.cos(d)), axis=-1)
    return _xyz(ra, dec), east, north


def _project(xyz, basis) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic offsets (xi east, eta north; arcsec) of ``xyz`` about the basis' centre."""
    r, e, n = basis
    w = np.sum(xyz * r, axis=-1)
    return np.sum(xyz * e, axis=-1) / w / _ARCSEC, np.sum(xyz * n, axis=-1) / w / _ARCSEC


def _deproject(basis, xi, eta) -> np.ndarray:
    """Inverse of :func:`_project`: unit vectors at gnomonic offsets (arcsec)."""
    r, e, n = basis
    p = r + (xi * _ARCSEC)[..., None] * e + (eta * _ARCSEC)[..., None] * n
    return p / np.linalg.norm(p, axis=-1, keepdims=True)


def _radec(xyz) -> tuple[np.ndarray, np.ndarray]:
    ra = np.rad2deg(np.arctan2(xyz[..., 1], xyz[..., 0])) % 360.0
    return ra, np.rad2deg(np.arcsin(np.clip(xyz[..., 2], -1, 1)))


def _chord(arcsec: float) -> float:
    return 2.0 * np.sin(0.5 * arcsec * _ARCSEC)


def _component_names(prefix: str, ra, dec) -> list[str]:
    """IAU-style names, truncated (not rounded): ``PREFIX JHHMMSS.ss+DDMMSS.s``."""
    cs = np.floor(np.asarray(ra) / 15.0 * 360000.0).astype(np.int64)
    ds = np.floor(np.abs(np.asarray(dec)) * 36000.0).astype(np.int64)
    names = []
    for c, d, sgn in zip(cs, ds, np.asarray(dec) < 0):
        names.append(f"{prefix} J{c // 360000:02d}{c // 6000 % 60:02d}{c % 6000 // 100:02d}."
                     f"{c % 100:02d}{'-' if sgn else '+'}{d // 36000:02d}{d // 600 % 60:02d}"
                     f"{d % 600 // 10:02d}.{d % 10:d}")
    seen: dict[str, int] = {}
    for i, nm in enumerate(names):  # vanishingly rare collisions: suffix a, b, ...
        if nm in seen:
            seen[nm] += 1
            names[i] = f"{nm}{chr(96 + seen[nm])}"
        else:
            seen[nm] = 0
    return names
