"""A deterministic synthetic radio sky that looks like VLASS QuickLook (no network needed).

:func:`generate_sky` draws a field of radio sources and builds the component catalogue a source
finder would produce; :func:`render_cutout` / :func:`render_cutouts` make 150×150 image cutouts
centred on catalogue components; :func:`write_fits_cutouts` and :func:`make_sample` write FITS
files and the catalogue CSV. Everything is a pure function of :class:`SkyConfig` (``seed``
included): the same configuration gives a bit-identical catalogue and bit-identical images, in
any rendering order and with any number of workers.

Physical choices (all configurable in :class:`SkyConfig`)
---------------------------------------------------------
* **Survey.** VLASS QuickLook at 3 GHz: 0.6″ pixels, 150×150-pixel (1.5′) cutouts, a circular
  2.5″ FWHM Gaussian restoring beam (the real QL beam is ~2.5″ and slightly elliptical), image
  units Jy/beam, noise rms 0.12 mJy/beam (QL epoch-1 median ~0.12–0.14 mJy/beam).
* **Field.** Sources are scattered uniformly on the sphere (no clustering) in a square patch
  centred on (RA, Dec) = (150°, +2°), whose area is ``n_sources / source_density_deg2``
  (default 70 deg⁻², about VLASS's source density, so a few degrees across).
* **Fluxes.** Total source flux densities follow a power law dN/dS ∝ S^-1.8 between 1 mJy and
  3 Jy (sub-Euclidean, as the 3 GHz counts at mJy levels). The morphology is drawn
  independently of flux.
* **Morphologies** (:mod:`somtorch.datasets.morphologies`): compact (intrinsic FWHM < 1″,
  unresolved), resolved single (3–10″ elliptical Gaussian), doubles (6–60″ separation, flux
  ratio 1/3–3, random angle), triples (core + two lobes, 10–90″, small bends), FR-I (bright core
  and fading, widening jets, 12–50″), FR-II (edge-brightened lobes with compact hotspots and a
  faint core, 20–120″), wide- and narrow-angle tails (WAT/NAT: tails bending downstream,
  15–60″ and 10–45″). Every source is a sum of elliptical Gaussians; their convolution with the
  Gaussian beam is analytic (intrinsic σ² + beam σ²), so cutouts are rendered directly as
  beam-convolved Gaussians, never by convolving images.
* **Sidelobes.** VLASS QL images are lightly cleaned snapshots; the VLA's Y-shaped array gives a
  six-armed snapshot PSF, so residual sidelobes around bright sources appear as radial spokes
  and ripples. Each source brighter than ``sidelobe_threshold_mjy`` (30 mJy) gets, with
  probability ``sidelobe_fraction``, a residual pattern around its brightest feature::

      A · peak · env(r) · cos(2π r / P) · (Σ_k exp(-d_k² / 2w²) + 0.08)

  with six arms (three lines through the source, random orientation), d_k the distance from
  line k, w the beam σ, ripple period P in 8–16″, amplitude A 0.5–2 % of the peak,
  env(r) = (1 − exp(−(r/6″)²))·exp(−(r/r_out)²), r_out in 30–50″ (negative ripples included).
  On the crests of that pattern sit 1–4 spurious *components* (elongated Gaussians, FWHM 4–10″
  by ≤ 1.5″, aligned radially or along the ripple, 2–8 % of the peak times env) that the source
  finder catalogues: ``Is_sidelobe=True``, ``Morph_class='sidelobe'``, their own
  ``Source_id`` and the bright source as ``Parent_source_id``.
* **Noise.** White Gaussian noise convolved with the beam (FFT, periodic) and rescaled to the
  configured rms, precomputed once as a 2048² field; each cutout takes a 150² slice at a
  per-component random offset under one of the 8 square symmetries (the noise is isotropic, so
  statistics are unchanged). Noise is therefore independent between cutouts (overlapping
  cutouts do not share a noise realisation), which is fine for SOM training; slices of one field
  may partly overlap, a negligible correlation.
* **Catalogue measurements** (as a PyBDSF-like finder would report them, per component):
  ``Peak_flux`` (mJy/beam) = the component's own beam-convolved model peak plus the noise at the
  cutout centre; ``Total_flux`` (mJy) = true total flux scaled by measured/true peak;
  ``Peak_to_ring`` = max brightness within 5″ of the component / max brightness in the 5–10″
  annulus, measured on the noisy 150² cutout (the definition of Gordon et al. 2021 used in the
  PINK/PYINK cookbook, §8); ``Maj``/``Min``/``PA`` = beam-convolved FWHMs (″) and position angle
  (° E of N) from the flux-weighted second moments of the component's Gaussians;
  ``S_Code`` = 'M' for multi-Gaussian components, otherwise 'C' when its island (the region
  above 3σ) touches another component's, else 'S' ('E' is never produced). Only components with
  measured peak ≥ ``detection_snr``·rms (5σ) are catalogued; ``sky.components`` keeps them all
  with ``Detected``. Hidden truth columns: ``Component_id``, ``Source_id``,
  ``Parent_source_id``, ``Morph_class``, ``Role`` (compact, resolved, core, lobe, hotspot, jet,
  tail, sidelobe), ``Is_sidelobe``, ``True_peak_flux``, ``True_total_flux``.
* **Infrared channel** (``with_ir``): a host galaxy at the radio core (source centre, ±0.3″) of
  ``ir_host_fraction`` (85 %) of real sources, none for sidelobes; hosts are softened Sérsic
  profiles (n = 1 or 4, r_eff 1–3″), field galaxies (n = 1 or 4, r_eff 0.4–2″, power-law
  brightness) at 10 arcmin⁻² (about unWISE depth) are drawn in fixed 2′ sky cells so that
  overlapping cutouts agree. The IR image is in arbitrary units with white-ish noise of rms 1
  (correlated by the IR PSF, FWHM 2″, also used as the softening length), on the *radio* pixel
  grid (0.6″ pixels, same WCS) for simplicity; real unWISE has 2.75″ pixels and a 6″ PSF.

Conventions
-----------
Arrays are indexed ``[row, col]`` with row = FITS axis 2 (Dec) and col = FITS axis 1 (RA):
Dec increases with row (north is up when displayed with ``origin='lower'``, as FITS), and RA
*increases to the left* (east is left; CDELT1 < 0). The component sits at the geometric centre
of the cutout, 0-based pixel ((size−1)/2, (size−1)/2) = (74.5, 74.5), i.e. FITS CRPIX = 75.5.
Positions are exact gnomonic (TAN) projections; position angles ignore the (< 0.1°) rotation of
north across a cutout. Fluxes in the catalogue are in mJy and mJy/beam, images in Jy/beam.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from somtorch.datasets._catalogue import _build_components, _measure
from somtorch.datasets._sphere import (  # noqa: F401 (stream keys)
    _S_HOST,
    _S_IRCELL,
    _S_NOISE,
    _S_SIDELOBE,
    _S_SKY,
    _S_SOURCE,
    FWHM_TO_SIGMA,
    _basis,
    _chord,
    _deproject,
    _project,
    _radec,
    _rng,
    _xyz,
)
from somtorch.datasets.morphologies import (
    MORPH_CLASSES,
    draw_source,
    host_galaxy,
    sersic,
    sersic_extent,
    sidelobe_artefacts,
    sidelobe_pattern,
)
from somtorch.errors import ConfigError

__all__ = ["SkyConfig", "SkyModel", "generate_sky", "render_cutout", "render_cutouts",
           "DEFAULT_CLASS_MIX"]


DEFAULT_CLASS_MIX: dict[str, float] = {
    "compact": 0.60, "resolved": 0.10, "double": 0.10, "triple": 0.05,
    "fr1": 0.05, "fr2": 0.05, "wat": 0.03, "nat": 0.02,
}

# lower flux limit per class (mJy; flux_min_mjy for classes not listed): extended sources
# need more flux to be seen at all, a surface-brightness selection real catalogues have
DEFAULT_CLASS_FLUX_MIN: dict[str, float] = {
    "compact": 1.0, "resolved": 3.0, "double": 5.0, "triple": 8.0,
    "fr1": 10.0, "fr2": 10.0, "wat": 10.0, "nat": 8.0,
}

_CELL = 2.0 / 60.0  # IR field-galaxy cell size, degrees


@dataclass
class SkyConfig:
    """Configuration of the synthetic sky; see the module docstring for the physics.

    Fluxes in mJy, angles in arcsec unless the name says otherwise. ``class_mix`` gives the
    fraction of (real) sources per morphology class (keys from ``MORPH_CLASSES``); it is
    normalised and allocated exactly (largest remainder), so counts match it to ±1 source.
    """

    n_sources: int = 2000
    class_mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CLASS_MIX))
    seed: int = 0
    # survey
    image_size: int = 150
    pixel_scale_arcsec: float = 0.6
    beam_fwhm_arcsec: float = 2.5
    noise_rms_mjy: float = 0.12
    frequency_hz: float = 3.0e9
    component_prefix: str = "VLASS1QLCIR"
    # field and fluxes
    ra_centre_deg: float = 150.0
    dec_centre_deg: float = 2.0
    source_density_deg2: float = 70.0
    flux_min_mjy: float = 1.0
    flux_max_mjy: float = 3000.0
    flux_index: float = 1.8
    class_flux_min_mjy: dict[str, float] = field(default_factory=lambda: dict(
        DEFAULT_CLASS_FLUX_MIN))
    detection_snr: float = 5.0
    # morphology sizes (ranges are drawn log-uniformly)
    compact_fwhm_max_arcsec: float = 1.0
    resolved_fwhm_arcsec: tuple[float, float] = (3.0, 10.0)
    double_sep_arcsec: tuple[float, float] = (6.0, 60.0)
    triple_sep_arcsec: tuple[float, float] = (10.0, 90.0)
    fr1_size_arcsec: tuple[float, float] = (12.0, 50.0)
    fr2_size_arcsec: tuple[float, float] = (20.0, 120.0)
    wat_size_arcsec: tuple[float, float] = (15.0, 60.0)
    nat_size_arcsec: tuple[float, float] = (10.0, 45.0)
    # sidelobes
    sidelobe_threshold_mjy: float = 30.0
    sidelobe_fraction: float = 0.8
    sidelobe_max_components: int = 4
    sidelobe_pattern_level: tuple[float, float] = (0.01, 0.03)
    sidelobe_component_level: tuple[float, float] = (0.03, 0.1)
    sidelobe_period_arcsec: tuple[float, float] = (8.0, 16.0)
    # infrared channel
    with_ir: bool = False
    ir_host_fraction: float = 0.85
    ir_host_reff_arcsec: tuple[float, float] = (1.0, 3.0)
    ir_host_offset_arcsec: float = 0.3
    ir_field_density_arcmin2: float = 10.0
    ir_psf_fwhm_arcsec: float = 2.0
    ir_noise_rms: float = 1.0
    # implementation
    noise_field_size: int = 2048

    def validate(self) -> None:
        def bad(name, found, expected):
            raise ConfigError(f"SkyConfig.{name}: found {found!r}, expected {expected}")

        if int(self.n_sources) != self.n_sources or self.n_sources < 1:
            bad("n_sources", self.n_sources, "a positive integer")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            bad("seed", self.seed, "a non-negative integer")
        unknown = set(self.class_mix) - set(MORPH_CLASSES)
        if unknown or not self.class_mix:
            bad("class_mix", sorted(unknown), f"keys among {MORPH_CLASSES}")
        fr = np.array(list(self.class_mix.values()), dtype=float)
        if not np.all(np.isfinite(fr)) or np.any(fr < 0) or fr.sum() <= 0:
            bad("class_mix", dict(self.class_mix), "non-negative fractions with a positive sum")
        for name in ("pixel_scale_arcsec", "beam_fwhm_arcsec", "noise_rms_mjy", "flux_min_mjy",
                     "source_density_deg2", "ir_psf_fwhm_arcsec", "ir_noise_rms"):
            if not getattr(self, name) > 0:
                bad(name, getattr(self, name), "> 0")
        if not self.flux_max_mjy > self.flux_min_mjy or self.flux_index == 1.0:
            bad("flux_max_mjy/flux_index", (self.flux_max_mjy, self.flux_index),
                "flux_max_mjy > flux_min_mjy and flux_index != 1")
        if self.image_size < 8 or 2 * self.image_size > self.noise_field_size:
            bad("image_size", self.image_size, f"in [8, noise_field_size/2={self.noise_field_size // 2}]")
        for name in ("sidelobe_fraction", "ir_host_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                bad(name, getattr(self, name), "in [0, 1]")
        if self.sidelobe_max_components < 1:
            bad("sidelobe_max_components", self.sidelobe_max_components, ">= 1")

    @property
    def beam_sigma_arcsec(self) -> float:
        return self.beam_fwhm_arcsec * FWHM_TO_SIGMA

    @property
    def noise_rms_jy(self) -> float:
        return self.noise_rms_mjy * 1e-3


# --------------------------------------------------------------------------------------------
# the sky model


class SkyModel:
    """A generated sky: ``sources``, ``components`` (all, truth) and ``catalogue`` (detected).

    ``catalogue`` rows are what cutouts are made of (row ``i`` ↔ ``render_cutout(sky, i)``),
    sorted by RA like a survey catalogue; ``catalogue.Component_id`` indexes ``components``.
    The remaining attributes are flat arrays of the rendering primitives (private).
    """

    config: SkyConfig
    sources: pd.DataFrame
    components: pd.DataFrame
    catalogue: pd.DataFrame

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_noise_fields"] = {}
        state["_ir_cells"] = {}
        return state

    def __len__(self) -> int:
        return len(self.catalogue)

    def __repr__(self) -> str:
        return (f"SkyModel({len(self.sources)} sources, {len(self.components)} components, "
                f"{len(self.catalogue)} catalogued, seed={self.config.seed})")

    @property
    def channels(self) -> tuple[str, ...]:
        return ("radio", "ir") if self.config.with_ir else ("radio",)

    # -- noise ---------------------------------------------------------------------------
    def _noise_field(self, channel: str) -> np.ndarray:
        f = self._noise_fields.get(channel)
        if f is None:
            cfg = self.config
            m = cfg.noise_field_size
            ch = 0 if channel == "radio" else 1
            white = _rng(cfg.seed, _S_NOISE, ch).standard_normal((m, m))
            fwhm = cfg.beam_fwhm_arcsec if ch == 0 else cfg.ir_psf_fwhm_arcsec
            sig = fwhm * FWHM_TO_SIGMA / cfg.pixel_scale_arcsec
            u = np.fft.fftfreq(m)[:, None] ** 2 + np.fft.rfftfreq(m)[None, :] ** 2
            f = np.fft.irfft2(np.fft.rfft2(white) * np.exp(-2 * np.pi ** 2 * sig ** 2 * u), s=(m, m))
            rms = cfg.noise_rms_jy if ch == 0 else cfg.ir_noise_rms
            f = (f * (rms / f.std())).astype(np.float32)
            self._noise_fields[channel] = f
        return f

    def _noise(self, channel: str, cid: int, size: int, win) -> np.ndarray:
        field_ = self._noise_field(channel)
        m = field_.shape[0]
        off = self._noise_off[cid, (0 if channel == "radio" else 3):][:3]
        r, c = off[0] % (m - size + 1), off[1] % (m - size + 1)
        sl = field_[r:r + size, c:c + size]
        t = off[2]
        if t & 1:
            sl = sl[::-1]
        if t & 2:
            sl = sl[:, ::-1]
        if t & 4:
            sl = sl.T
        r0, r1, c0, c1 = win
        return sl[r0:r1, c0:c1]

    # -- rendering -----------------------------------------------------------------------
    def _frame(self, cid: int, size: int, win):
        cfg = self.config
        basis = _basis(self._comp_ra[cid], self._comp_dec[cid])
        centre = (size - 1) / 2.0
        r0, r1, c0, c1 = win
        dr = max(abs(r0 - centre), abs(r1 - 1 - centre))
        dc = max(abs(c0 - centre), abs(c1 - 1 - centre))
        return basis, centre, np.hypot(dr, dc) * cfg.pixel_scale_arcsec

    def _render_radio(self, cid: int, size: int, win, noise: bool = True) -> np.ndarray:
        cfg = self.config
        pix = cfg.pixel_scale_arcsec
        r0, r1, c0, c1 = win
        img = np.zeros((r1 - r0, c1 - c0))
        basis, centre, reach = self._frame(cid, size, win)
        idx = self._prim_tree.query_ball_point(basis[0], _chord(reach + self._prim_reach))
        if idx:
            idx = np.sort(np.asarray(idx))
            xi, eta = _project(self._prim_xyz[idx], basis)
            colp, rowp = centre - xi / pix, centre + eta / pix
            ext, peak, qa, qb, qc = (a[idx] for a in (self._prim_ext, self._prim_peak,
                                                       self._prim_qa, self._prim_qb, self._prim_qc))
            rlo = np.maximum(r0, np.ceil(rowp - ext)).astype(int)
            rhi = np.minimum(r1, np.floor(rowp + ext) + 1).astype(int)
            clo = np.maximum(c0, np.ceil(colp - ext)).astype(int)
            chi = np.minimum(c1, np.floor(colp + ext) + 1).astype(int)
            for j in np.flatnonzero((rlo < rhi) & (clo < chi)):
                dy = (np.arange(rlo[j], rhi[j]) - rowp[j])[:, None]
                dx = (colp[j] - np.arange(clo[j], chi[j]))[None, :]
                img[rlo[j] - r0:rhi[j] - r0, clo[j] - c0:chi[j] - c0] += peak[j] * np.exp(
                    -0.5 * (qa[j] * dx * dx + qb[j] * dx * dy + qc[j] * dy * dy))
        if len(self._pat_params):
            idx = self._pat_tree.query_ball_point(basis[0], _chord(reach + self._pat_reach))
            for k in sorted(idx):
                xi, eta = _project(self._pat_xyz[k], basis)
                theta0, period, amp, r_out = self._pat_params[k]
                ext = 2.5 * r_out / pix
                colp, rowp = centre - xi / pix, centre + eta / pix
                a0, a1 = max(r0, int(np.ceil(rowp - ext))), min(r1, int(np.floor(rowp + ext)) + 1)
                b0, b1 = max(c0, int(np.ceil(colp - ext))), min(c1, int(np.floor(colp + ext)) + 1)
                if a0 >= a1 or b0 >= b1:
                    continue
                dn = ((np.arange(a0, a1) - rowp) * pix)[:, None]
                de = ((colp - np.arange(b0, b1)) * pix)[None, :]
                img[a0 - r0:a1 - r0, b0 - c0:b1 - c0] += sidelobe_pattern(
                    de, dn, theta0, period, amp, r_out, cfg.beam_sigma_arcsec)
        if noise:
            img += self._noise("radio", cid, size, win)
        return img

    def _ir_cell(self, j: int, i: int):
        key = (j, i)
        cell = self._ir_cells.get(key)
        if cell is None:
            cfg = self.config
            dec_c = (j + 0.5) * _CELL - 90.0
            n_ra = max(1, int(360.0 * np.cos(np.deg2rad(dec_c)) / _CELL))
            w = 360.0 / n_ra
            rng = _rng(cfg.seed, _S_IRCELL, j, i)
            area = w * np.cos(np.deg2rad(dec_c)) * _CELL * 3600.0
            k = rng.poisson(cfg.ir_field_density_arcmin2 * area)
            ra = (i + rng.uniform(size=k)) * w
            dec = (j + rng.uniform(size=k)) * _CELL - 90.0
            reff = np.exp(rng.uniform(np.log(0.4), np.log(2.0), size=k))
            nser = np.where(rng.uniform(size=k) < 0.7, 1.0, 4.0)
            q, pa = rng.uniform(0.3, 1.0, size=k), rng.uniform(0, 180, size=k)
            amp = np.minimum(2.0 * rng.uniform(1e-3, 1.0, size=k) ** -1.0, 500.0) * cfg.ir_noise_rms
            params = np.stack([reff, nser, q, pa, amp], axis=1)
            cell = (_xyz(ra, dec).reshape(-1, 3), params, self._ir_extent(params))
            if len(self._ir_cells) > 50000:
                self._ir_cells.clear()
            self._ir_cells[key] = cell
        return cell

    def _ir_extent(self, params: np.ndarray) -> np.ndarray:
        cfg = self.config
        soft = cfg.ir_psf_fwhm_arcsec * FWHM_TO_SIGMA
        return sersic_extent(params[:, 0], params[:, 1], params[:, 4], soft, 0.02 * cfg.ir_noise_rms)

    def _ir_galaxies(self, basis, reach: float):
        """Hosts and field galaxies within ``reach`` arcsec of the basis centre."""
        xyzs, pars, exts = [], [], []
        if len(self._host_params):
            idx = sorted(self._host_tree.query_ball_point(basis[0], _chord(reach + 25.0)))
            xyzs.append(self._host_xyz[idx])
            pars.append(self._host_params[idx])
            exts.append(self._host_ext[idx])
        if self.config.ir_field_density_arcmin2 > 0:
            ra0, dec0 = _radec(basis[0])
            rad = (reach + 25.0) / 3600.0
            for j in range(int((dec0 - rad + 90) // _CELL), int((dec0 + rad + 90) // _CELL) + 1):
                dec_c = (j + 0.5) * _CELL - 90.0
                n_ra = max(1, int(360.0 * np.cos(np.deg2rad(dec_c)) / _CELL))
                w = 360.0 / n_ra
                hw = rad / max(np.cos(np.deg2rad(min(abs(dec0) + rad, 89.9))), 1e-3)
                cells = range(int((ra0 - hw) // w), int((ra0 + hw) // w) + 1)
                for i in sorted({c % n_ra for c in cells}):
                    x, p, e = self._ir_cell(j, i)
                    xyzs.append(x)
                    pars.append(p)
                    exts.append(e)
        if not xyzs:
            return np.zeros((0, 3)), np.zeros((0, 5)), np.zeros(0)
        return np.concatenate(xyzs), np.concatenate(pars), np.concatenate(exts)

    def _render_ir(self, cid: int, size: int, win, noise: bool = True) -> np.ndarray:
        cfg = self.config
        pix = cfg.pixel_scale_arcsec
        soft = cfg.ir_psf_fwhm_arcsec * FWHM_TO_SIGMA
        r0, r1, c0, c1 = win
        img = np.zeros((r1 - r0, c1 - c0))
        basis, centre, reach = self._frame(cid, size, win)
        xyz, par, ext = self._ir_galaxies(basis, reach)
        if len(xyz):
            xi, eta = _project(xyz, basis)
            colp, rowp = centre - xi / pix, centre + eta / pix
            ext = ext / pix
            rlo = np.maximum(r0, np.ceil(rowp - ext)).astype(int)
            rhi = np.minimum(r1, np.floor(rowp + ext) + 1).astype(int)
            clo = np.maximum(c0, np.ceil(colp - ext)).astype(int)
            chi = np.minimum(c1, np.floor(colp + ext) + 1).astype(int)
            for j in np.flatnonzero((rlo < rhi) & (clo < chi)):
                dn = ((np.arange(rlo[j], rhi[j]) - rowp[j]) * pix)[:, None]
                de = ((colp[j] - np.arange(clo[j], chi[j])) * pix)[None, :]
                reff, nser, q, pa, amp = par[j]
                img[rlo[j] - r0:rhi[j] - r0, clo[j] - c0:chi[j] - c0] += sersic(
                    de, dn, reff, nser, q, pa, amp, soft)
        if noise:
            img += self._noise("ir", cid, size, win)
        return img

    def render(self, cid: int, channel: str = "radio", size: int | None = None,
               noise: bool = True) -> np.ndarray:
        """Cutout (float32, Jy/beam for radio) centred on *component* ``cid`` (truth index)."""
        size = self.config.image_size if size is None else int(size)
        if channel == "radio":
            return self._render_radio(cid, size, (0, size, 0, size), noise).astype(np.float32)
        if channel == "ir":
            if not self.config.with_ir:
                raise ConfigError("channel 'ir' needs SkyConfig(with_ir=True)")
            return self._render_ir(cid, size, (0, size, 0, size), noise).astype(np.float32)
        raise ConfigError(f"channel: found {channel!r}, expected 'radio' or 'ir'")


def _allocate(mix: dict[str, float], n: int, rng: np.random.Generator) -> np.ndarray:
    """Exact class counts by largest remainder, in random order."""
    names = [k for k in MORPH_CLASSES if k in mix]
    fr = np.array([mix[k] for k in names], dtype=float)
    quota = fr / fr.sum() * n
    counts = np.floor(quota).astype(int)
    counts[np.argsort(-(quota - counts), kind="stable")[: n - counts.sum()]] += 1
    return rng.permutation(np.repeat(np.array(names, dtype=object), counts))


def _prim_shape(cfg: SkyConfig, fmaj, fmin, pa):
    """Beam-convolved σ (arcsec) and quadratic-form coefficients (pixel units)."""
    sb2 = cfg.beam_sigma_arcsec ** 2
    smaj = np.sqrt((fmaj * FWHM_TO_SIGMA) ** 2 + sb2)
    smin = np.sqrt((fmin * FWHM_TO_SIGMA) ** 2 + sb2)
    t = np.deg2rad(pa)
    s, c = np.sin(t), np.cos(t)
    M2, m2 = (smaj / cfg.pixel_scale_arcsec) ** 2, (smin / cfg.pixel_scale_arcsec) ** 2
    return smaj, smin, (s * s / M2 + c * c / m2, 2 * s * c * (1 / M2 - 1 / m2), c * c / M2 + s * s / m2)


def generate_sky(config: SkyConfig | None = None, **overrides: Any) -> SkyModel:
    """Draw sources, sidelobe artefacts and IR hosts, and measure the component catalogue.

    ``generate_sky(seed=3, n_sources=500)`` is short for
    ``generate_sky(dataclasses.replace(SkyConfig(), seed=3, n_sources=500))``.
    """
    import dataclasses

    cfg = dataclasses.replace(config or SkyConfig(), **overrides)
    cfg.validate()
    rng = _rng(cfg.seed, _S_SKY)
    n = int(cfg.n_sources)
    sky = SkyModel()
    sky.config = cfg
    sky._noise_fields, sky._ir_cells = {}, {}

    # source centres (uniform on the sphere in a square patch) and power-law fluxes
    classes = _allocate(cfg.class_mix, n, rng)
    side = np.sqrt(n / cfg.source_density_deg2)
    dec0 = np.deg2rad(cfg.dec_centre_deg)
    lo, hi = np.sin(dec0 - np.deg2rad(side / 2)), np.sin(dec0 + np.deg2rad(side / 2))
    dec = np.rad2deg(np.arcsin(rng.uniform(lo, hi, n)))
    ra = (cfg.ra_centre_deg + (rng.uniform(-0.5, 0.5, n) * side / np.cos(dec0))) % 360.0
    g = 1.0 - cfg.flux_index
    fmin = np.array([cfg.class_flux_min_mjy.get(k, cfg.flux_min_mjy) for k in classes])
    smin, smax = np.minimum(fmin, cfg.flux_max_mjy) ** g, cfg.flux_max_mjy ** g
    flux = (smin + rng.uniform(size=n) * (smax - smin)) ** (1.0 / g)

    # primitives: columns de, dn, fwhm_maj, fwhm_min, pa, flux (Jy); frame = centre source
    rows, frame, comp_of, comp_src, comp_role = [], [], [], [], []
    for s in range(n):
        for role, p in draw_source(classes[s], _rng(cfg.seed, _S_SOURCE, s), cfg):
            p = p.copy()
            p[:, 5] *= flux[s] * 1e-3
            rows.append(p)
            frame += [s] * len(p)
            comp_of += [len(comp_src)] * len(p)
            comp_src.append(s)
            comp_role.append(role)
    prims = np.concatenate(rows)
    smaj, smin_, _ = _prim_shape(cfg, prims[:, 2], prims[:, 3], prims[:, 4])
    peak = prims[:, 5] * cfg.beam_sigma_arcsec ** 2 / (smaj * smin_)
    frame, comp_of = np.array(frame), np.array(comp_of)

    # sidelobe artefacts around bright sources
    src_class, src_parent = list(classes), list(range(n))
    pat_frame, pat_params, pat_off = [], [], []
    sl_rows, sl_frame = [], []
    bright = np.flatnonzero(flux >= cfg.sidelobe_threshold_mjy)
    for s in bright:
        srng = _rng(cfg.seed, _S_SIDELOBE, s)
        if srng.uniform() >= cfg.sidelobe_fraction:
            continue
        own = np.flatnonzero(frame == s)
        b = own[np.argmax(peak[own])]
        (theta0, period, level, r_out), sl = sidelobe_artefacts(srng, cfg)
        pat_frame.append(s)
        pat_off.append(prims[b, :2])
        pat_params.append((theta0, period, level * peak[b], r_out))
        sl[:, :2] += prims[b, :2]
        M, m, _ = _prim_shape(cfg, sl[:, 2], sl[:, 3], sl[:, 4])
        sl[:, 5] *= peak[b] * M * m / cfg.beam_sigma_arcsec ** 2
        for p in sl:
            sl_rows.append(p)
            sl_frame.append(s)
            comp_of = np.append(comp_of, len(comp_src))
            comp_src.append(len(src_class))
            comp_role.append("sidelobe")
            src_class.append("sidelobe")
            src_parent.append(s)
    if sl_rows:
        prims = np.vstack([prims, np.array(sl_rows)])
        frame = np.concatenate([frame, sl_frame])
    n_all = len(src_class)

    # absolute positions and rendering parameters of every primitive
    fbasis = _basis(ra, dec)
    pxyz = _deproject(tuple(b[frame] for b in fbasis), prims[:, 0], prims[:, 1])
    smaj, smin_, (qa, qb, qc) = _prim_shape(cfg, prims[:, 2], prims[:, 3], prims[:, 4])
    peak = prims[:, 5] * cfg.beam_sigma_arcsec ** 2 / (smaj * smin_)
    rms = cfg.noise_rms_jy
    ext = smaj / cfg.pixel_scale_arcsec * np.sqrt(2 * np.log(np.maximum(peak / (0.01 * rms), np.e)))
    sky._prim_xyz, sky._prim_peak, sky._prim_ext = pxyz, peak, ext
    sky._prim_qa, sky._prim_qb, sky._prim_qc = qa, qb, qc
    sky._prim_comp = comp_of
    sky._prim_reach = float(ext.max() * cfg.pixel_scale_arcsec) if len(ext) else 0.0
    sky._prim_tree = cKDTree(pxyz)
    if pat_frame:
        pf = np.array(pat_frame)
        po = np.array(pat_off)
        sky._pat_xyz = _deproject(tuple(b[pf] for b in fbasis), po[:, 0], po[:, 1])
        sky._pat_params = np.array(pat_params)
        sky._pat_reach = float(2.5 * sky._pat_params[:, 3].max())
        sky._pat_tree = cKDTree(sky._pat_xyz)
    else:
        sky._pat_params = np.zeros((0, 4))

    _build_components(sky, prims, smaj, smin_, np.array(comp_src), comp_role, src_class,
                      src_parent)
    comps = sky.components
    src_ra = np.concatenate([ra, comps.RA.to_numpy()[comps.Is_sidelobe.to_numpy()]])
    src_dec = np.concatenate([dec, comps.DEC.to_numpy()[comps.Is_sidelobe.to_numpy()]])
    src_flux = np.concatenate([flux, comps.True_total_flux.to_numpy()[comps.Is_sidelobe]])
    sky.sources = pd.DataFrame({
        "Source_id": np.arange(n_all), "RA": src_ra, "DEC": src_dec,
        "Morph_class": np.array(src_class, dtype=object), "Total_flux": src_flux,
        "Parent_source_id": np.array(src_parent),
        "N_components": np.bincount(comps.Source_id.to_numpy(), minlength=n_all),
        "Has_sidelobes": np.isin(np.arange(n_all), pat_frame),
    })

    # infrared hosts (real sources only)
    hosts, hsrc = [], []
    if cfg.with_ir:
        for s in range(n):
            hrng = _rng(cfg.seed, _S_HOST, s)
            if hrng.uniform() < cfg.ir_host_fraction:
                hosts.append(host_galaxy(hrng, cfg))
                hsrc.append(s)
    h = np.array(hosts).reshape(-1, 7)
    hsrc = np.array(hsrc, dtype=int)
    sky._host_xyz = _deproject(tuple(b[hsrc] for b in fbasis), h[:, 0], h[:, 1])
    sky._host_params = h[:, 2:]
    sky._host_ext = sky._ir_extent(sky._host_params)
    if len(h):
        sky._host_tree = cKDTree(sky._host_xyz)
    hra, hdec = _radec(sky._host_xyz)
    sky.sources["Has_host"] = np.isin(np.arange(n_all), hsrc)
    sky.sources["Host_RA"] = np.nan
    sky.sources["Host_DEC"] = np.nan
    sky.sources.loc[hsrc, "Host_RA"] = hra
    sky.sources.loc[hsrc, "Host_DEC"] = hdec

    _measure(sky)
    return sky


# --------------------------------------------------------------------------------------------
# public rendering and writing API


def _component_id(sky: SkyModel, idx: int) -> int:
    n = len(sky.catalogue)
    if not -n <= int(idx) < n:
        raise IndexError(f"catalogue row {idx} out of range for {n} rows")
    return int(sky.catalogue.Component_id.iat[int(idx)])


def render_cutout(sky: SkyModel, idx: int, size: int | None = None, channel: str = "radio",
                  noise: bool = True) -> np.ndarray:
    """The ``size``×``size`` float32 cutout centred on catalogue row ``idx``.

    ``channel='radio'`` is in Jy/beam; ``'ir'`` (needs ``with_ir``) in arbitrary units.
    ``noise=False`` gives the noiseless model.
    """
    return sky.render(_component_id(sky, idx), channel, size, noise)


def _render_chunk(sky: SkyModel, cids, channels, size) -> np.ndarray:
    out = np.empty((len(cids), len(channels), size, size), dtype=np.float32)
    for i, cid in enumerate(cids):
        for c, ch in enumerate(channels):
            out[i, c] = sky.render(int(cid), ch, size)
    return out


_WORKER_SKY: SkyModel | None = None


def _worker_init(sky: SkyModel) -> None:
    global _WORKER_SKY
    _WORKER_SKY = sky


def _worker_chunk(args) -> np.ndarray:
    return _render_chunk(_WORKER_SKY, *args)


def render_cutouts(sky: SkyModel, indices=None, channels: tuple[str, ...] | None = None,
                   size: int | None = None, n_workers: int = 1) -> np.ndarray:
    """Cutouts of catalogue rows ``indices`` (all by default): float32 ``(N, C, size, size)``.

    Channels default to ``sky.channels`` (radio, plus ir with ``with_ir``). ``n_workers > 1``
    renders chunks in worker processes; the result is bit-identical to ``n_workers=1``.
    """
    idx = np.arange(len(sky.catalogue)) if indices is None else np.asarray(indices, dtype=int)
    channels = tuple(sky.channels if channels is None else channels)
    size = sky.config.image_size if size is None else int(size)
    cids = np.array([_component_id(sky, i) for i in idx], dtype=int)
    if n_workers <= 1 or len(cids) < 64:
        return _render_chunk(sky, cids, channels, size)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    chunks = np.array_split(cids, min(len(cids) // 16, 8 * n_workers))
    with ProcessPoolExecutor(n_workers, mp_context=mp.get_context("spawn"),
                             initializer=_worker_init, initargs=(sky,)) as ex:
        parts = list(ex.map(_worker_chunk, [(c, channels, size) for c in chunks]))
    return np.concatenate(parts)
