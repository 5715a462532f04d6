"""Write the synthetic sky to disk: FITS cutouts with WCS and beam keywords plus the catalogue.

See :mod:`somtorch.datasets.synthetic` for the sky model and its conventions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from somtorch.datasets.synthetic import SkyConfig, SkyModel, generate_sky
from somtorch.errors import OutputExistsError

__all__ = ["SamplePaths", "write_fits_cutouts", "make_sample"]


@dataclass
class SamplePaths:
    """What :func:`write_fits_cutouts` / :func:`make_sample` wrote."""

    out_dir: str
    catalogue: str
    radio: list[str]
    ir: list[str]


def _fits_header(sky: SkyModel, cid: int, name: str, channel: str, size: int, four_axis: bool):
    from astropy.io import fits

    cfg = sky.config
    h = fits.Header()
    cards = [("CTYPE1", "RA---TAN"), ("CRVAL1", float(sky._comp_ra[cid])),
             ("CDELT1", -cfg.pixel_scale_arcsec / 3600.0), ("CRPIX1", (size + 1) / 2.0),
             ("CUNIT1", "deg"), ("CTYPE2", "DEC--TAN"), ("CRVAL2", float(sky._comp_dec[cid])),
             ("CDELT2", cfg.pixel_scale_arcsec / 3600.0), ("CRPIX2", (size + 1) / 2.0),
             ("CUNIT2", "deg")]
    if four_axis:
        cards += [("CTYPE3", "FREQ"), ("CRVAL3", cfg.frequency_hz), ("CDELT3", 2.0e9),
                  ("CRPIX3", 1.0), ("CUNIT3", "Hz"), ("CTYPE4", "STOKES"), ("CRVAL4", 1.0),
                  ("CDELT4", 1.0), ("CRPIX4", 1.0), ("CUNIT4", "")]
    cards += [("RADESYS", "ICRS"), ("EQUINOX", 2000.0)]
    if channel == "radio":
        b = cfg.beam_fwhm_arcsec / 3600.0
        cards += [("BMAJ", b), ("BMIN", b), ("BPA", 0.0), ("BUNIT", "Jy/beam"),
                  ("BTYPE", "Intensity")]
        if four_axis:
            cards.append(("RESTFRQ", cfg.frequency_hz))
    else:
        cards += [("PSF_FWHM", cfg.ir_psf_fwhm_arcsec, "[arcsec] IR PSF (arbitrary flux units)")]
    cards += [("OBJECT", name), ("ORIGIN", "somtorch synthetic sky"),
              ("SEED", int(cfg.seed))]
    for card in cards:
        h.append(card)
    return h


def write_fits_cutouts(sky: SkyModel, out_dir: str | os.PathLike, indices=None,
                       overwrite: bool = False, four_axis: bool = False,
                       catalogue_name: str = "catalogue.csv") -> SamplePaths:
    """Write one FITS cutout per catalogue row (plus ``*_ir.fits`` with ``with_ir``) and the CSV.

    Headers carry a celestial TAN WCS centred on the component (CRPIX = (size+1)/2), BMAJ/BMIN/
    BPA in degrees and BUNIT 'Jy/beam'; ``four_axis=True`` writes (1, 1, N, N) data with
    degenerate FREQ and STOKES axes as VLASS QL images have. The CSV holds the selected rows with
    ``File_name`` (and ``IR_file_name``) relative to ``out_dir``. Raises
    :class:`~somtorch.errors.OutputExistsError` if any target exists and not ``overwrite``.
    """
    from astropy.io import fits

    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    idx = np.arange(len(sky.catalogue)) if indices is None else np.asarray(indices, dtype=int)
    cat = sky.catalogue.iloc[idx]
    size = sky.config.image_size
    jobs = [("radio", f, n, c) for f, n, c in zip(cat.File_name, cat.Component_name,
                                                   cat.Component_id)]
    if sky.config.with_ir:
        jobs += [("ir", f, n, c) for f, n, c in zip(cat.IR_file_name, cat.Component_name,
                                                     cat.Component_id)]
    targets = [os.path.join(out, catalogue_name)] + [os.path.join(out, j[1]) for j in jobs]
    if not overwrite:
        for t in targets:
            if os.path.exists(t):
                raise OutputExistsError(f"{t}: exists; pass overwrite=True to replace it")
    paths: dict[str, list[str]] = {"radio": [], "ir": []}
    for ch, fname, name, cid in jobs:
        data = sky.render(int(cid), ch, size)
        if four_axis:
            data = data[None, None]
        hdu = fits.PrimaryHDU(data=data, header=_fits_header(sky, int(cid), name, ch, size,
                                                             four_axis))
        path = os.path.join(out, fname)
        tmp = f"{path}.part"
        hdu.writeto(tmp, overwrite=True)
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written cutout
        paths[ch].append(path)
    tmp = f"{targets[0]}.part"
    cat.to_csv(tmp, index=False)
    os.replace(tmp, targets[0])
    return SamplePaths(out, targets[0], paths["radio"], paths["ir"])


def make_sample(out_dir: str | os.PathLike, n: int = 1000, seed: int = 0, with_ir: bool = False,
                config: SkyConfig | None = None, four_axis: bool = False,
                overwrite: bool = False) -> SamplePaths:
    """Generate a sky with at least ``n`` catalogued components and write the first ``n``.

    The number of sources is chosen from the mean number of catalogued components per source
    (grown until enough); rows are the first ``n`` of the RA-sorted catalogue.
    """
    import dataclasses

    base = dataclasses.replace(config or SkyConfig(), seed=seed, with_ir=with_ir)
    n_src = max(1, int(np.ceil(n / 1.3)))
    while True:
        sky = generate_sky(base, n_sources=n_src)
        if len(sky.catalogue) >= n:
            break
        n_src = int(np.ceil(n_src * 1.1 * n / max(len(sky.catalogue), 1))) + 1
    return write_fits_cutouts(sky, out_dir, indices=np.arange(n), overwrite=overwrite,
                              four_axis=four_axis)
