"""Catalogue building for the synthetic sky: component table and PyBDSF-like measurements.

Private helpers of :func:`somtorch.datasets.synthetic.generate_sky`; the measured quantities
and their conventions are documented in :mod:`somtorch.datasets.synthetic`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from somtorch.datasets._sphere import (
    _ARCSEC,
    _S_NOISE,
    FWHM_TO_SIGMA,
    _basis,
    _chord,
    _component_names,
    _project,
    _radec,
    _rng,
)


def _build_components(sky, prims, smaj, smin, comp_src, comp_role, src_class, src_parent):
    """Component positions (brightest Gaussian), true peak/total flux, moments, truth columns."""
    cfg = sky.config
    comp = sky._prim_comp
    nc = len(comp_src)
    order = np.lexsort((-sky._prim_peak, comp))
    first = order[np.r_[0, np.flatnonzero(np.diff(comp[order])) + 1]]
    cxyz = sky._prim_xyz[first]
    cra, cdec = _radec(cxyz)
    basis = tuple(b[comp] for b in _basis(cra, cdec))
    de, dn = _project(sky._prim_xyz, basis)
    pix = cfg.pixel_scale_arcsec
    dx, dy = de / pix, dn / pix  # offsets of the Gaussian from its component position
    own = sky._prim_peak * np.exp(-0.5 * (sky._prim_qa * dx * dx + sky._prim_qb * dx * dy
                                          + sky._prim_qc * dy * dy))
    true_peak = np.bincount(comp, own, nc)
    flux = prims[:, 5]
    tot = np.bincount(comp, flux, nc)
    # flux-weighted second moments (arcsec²), beam included via the convolved σ
    t = np.deg2rad(prims[:, 4])
    s, c = np.sin(t), np.cos(t)
    see = smaj ** 2 * s * s + smin ** 2 * c * c + de * de
    snn = smaj ** 2 * c * c + smin ** 2 * s * s + dn * dn
    sen = (smaj ** 2 - smin ** 2) * s * c + de * dn
    w = np.maximum(tot, 1e-300)
    me, mn = np.bincount(comp, flux * de, nc) / w, np.bincount(comp, flux * dn, nc) / w
    cee = np.bincount(comp, flux * see, nc) / w - me * me
    cnn = np.bincount(comp, flux * snn, nc) / w - mn * mn
    cen = np.bincount(comp, flux * sen, nc) / w - me * mn
    half = np.sqrt(((cee - cnn) / 2) ** 2 + cen ** 2)
    lmaj, lmin = (cee + cnn) / 2 + half, np.maximum((cee + cnn) / 2 - half, 0.0)
    pa = np.rad2deg(0.5 * np.arctan2(2 * cen, cnn - cee)) % 180.0
    sky._comp_ra, sky._comp_dec, sky._comp_xyz = cra, cdec, cxyz
    sky._comp_sigma = np.sqrt(lmaj)
    sky._comp_nprim = np.bincount(comp, minlength=nc)
    sky._noise_off = _rng(cfg.seed, _S_NOISE, 2).integers(0, 2 ** 31, size=(nc, 6))
    sky._noise_off[:, 2] %= 8
    sky._noise_off[:, 5] %= 8
    morph = np.array(src_class, dtype=object)[comp_src]
    sky.components = pd.DataFrame({
        "Component_id": np.arange(nc), "RA": cra, "DEC": cdec,
        "True_peak_flux": true_peak * 1e3, "True_total_flux": tot * 1e3,
        "Maj": np.sqrt(lmaj) / FWHM_TO_SIGMA, "Min": np.sqrt(lmin) / FWHM_TO_SIGMA, "PA": pa,
        "Source_id": comp_src, "Parent_source_id": np.array(src_parent)[comp_src],
        "Morph_class": morph, "Role": np.array(comp_role, dtype=object),
        "Is_sidelobe": morph == "sidelobe",
    })


def _measure(sky) -> None:  # sky: a somtorch.datasets.synthetic.SkyModel (duck-typed: no import cycle)
    """What the source finder reports: noisy peak, peak-to-ring, S_Code, detection."""
    cfg = sky.config
    comps = sky.components
    nc = len(comps)
    size, pix, rms = cfg.image_size, cfg.pixel_scale_arcsec, cfg.noise_rms_jy
    centre = (size - 1) / 2.0
    rad = 10.0 / pix
    a0, a1 = max(0, int(np.floor(centre - rad))), min(size, int(np.ceil(centre + rad)) + 1)
    win = (a0, a1, a0, a1)
    g = np.arange(a0, a1) - centre
    dist = np.hypot(g[:, None], g[None, :]) * pix
    inner, ring = dist <= 5.0, (dist > 5.0) & (dist <= 10.0)
    k = [size // 2 - a0] if size % 2 else [size // 2 - 1 - a0, size // 2 - a0]
    true_peak = comps.True_peak_flux.to_numpy() * 1e-3
    meas, ptr = np.empty(nc), np.empty(nc)
    for cid in range(nc):
        img = sky._render_radio(cid, size, win, noise=True)
        meas[cid] = true_peak[cid] + float(sky._noise("radio", cid, size, win)[np.ix_(k, k)].mean())
        ptr[cid] = img[inner].max() / max(img[ring].max(), rms)
    detected = meas >= cfg.detection_snr * rms
    # islands: the region above 3σ of each component, a Gaussian of its second-moment size
    reach = sky._comp_sigma * np.sqrt(2 * np.log(np.maximum(true_peak / (3 * rms), 1.0)))
    shared = np.zeros(nc, dtype=bool)
    if nc > 1 and reach.max() > 0:
        tree = cKDTree(sky._comp_xyz)
        pairs = tree.query_pairs(_chord(2 * reach.max()), output_type="ndarray")
        if len(pairs):
            sep = 2 * np.arcsin(np.linalg.norm(sky._comp_xyz[pairs[:, 0]] - sky._comp_xyz[pairs[:, 1]],
                                               axis=1) / 2) / _ARCSEC
            touch = pairs[sep < reach[pairs[:, 0]] + reach[pairs[:, 1]]]
            shared[touch.ravel()] = True
    scode = np.where(sky._comp_nprim > 1, "M", np.where(shared, "C", "S")).astype(object)
    comps["Peak_flux"] = meas * 1e3
    comps["Total_flux"] = comps.True_total_flux * np.where(true_peak > 0, meas / true_peak, 0.0)
    comps["Peak_to_ring"] = ptr
    comps["S_Code"] = scode
    comps["Isl_rms"] = cfg.noise_rms_mjy
    comps["Detected"] = detected
    cat = comps[detected].sort_values(["RA", "DEC"], kind="stable").reset_index(drop=True)
    names = _component_names(cfg.component_prefix, cat.RA.to_numpy(), cat.DEC.to_numpy())
    files = [nm.replace(" ", "_") + ".fits" for nm in names]
    cat.insert(0, "Component_name", pd.Series(names, dtype=object))
    cols = ["Component_name", "RA", "DEC", "Peak_flux", "Total_flux", "Isl_rms", "Maj", "Min", "PA",
            "Peak_to_ring", "S_Code"]
    truth = ["Component_id", "Source_id", "Parent_source_id", "Morph_class", "Role",
             "Is_sidelobe", "True_peak_flux", "True_total_flux"]
    cat["File_name"] = pd.Series(files, dtype=object)
    if cfg.with_ir:
        cat["IR_file_name"] = pd.Series([f.replace(".fits", "_ir.fits") for f in files], dtype=object)
    sky.catalogue = cat[cols + ["File_name"] + (["IR_file_name"] if cfg.with_ir else []) + truth]
