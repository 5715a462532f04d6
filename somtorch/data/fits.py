"""FITS cutouts: loading, cutting from mosaics at catalogue positions, resampling between grids.

* :func:`read_fits_image` loads one 2-D celestial image (degenerate FREQ/STOKES axes squeezed,
  integer ``BLANK`` and non-finite pixels turned into NaN, scaling keywords applied) as a
  :class:`FitsImage` holding the data, its 2-D celestial :class:`~astropy.wcs.WCS`, the header
  and the beam.
* :func:`cutout` cuts a square of ``size`` pixels from a (large) image at a sky position with
  :class:`astropy.nddata.Cutout2D`; a partial overlap is padded with NaN and reported.
* :func:`reproject_bilinear` resamples an image onto another WCS grid (WCS pixel mapping and
  bilinear interpolation, :func:`scipy.ndimage.map_coordinates`), e.g. an infrared image onto
  the radio grid; :func:`stack_channels` builds a ``(C, H, W)`` multi-channel stack that way.

Convention
----------
* Arrays are indexed ``[row, col]``: row = the latitude (Dec) FITS axis, col = the longitude
  (RA) FITS axis, whatever their order in the file (a file storing Dec first is transposed and
  its WCS axes swapped). With the usual ``CDELT1 < 0``, RA increases to the left (east left) and
  Dec increases with row (north up when displayed with ``origin='lower'``).
* Pixel coordinates are 0-based with pixel centres at integers (numpy / astropy
  ``origin=0``); FITS ``CRPIX`` is 1-based. The centre of an ``n``-pixel axis is ``(n-1)/2``.
* Sky positions are degrees in the image's own celestial frame (given by its ``RADESYS`` /
  ``CTYPE``; no frame conversion is done: catalogue RA/Dec must be in the same frame, e.g. ICRS).
* Blank pixels are NaN: integer pixels equal to ``BLANK``, float NaN and +-inf.
* Beam: ``BMAJ``/``BMIN`` are converted from degrees (FITS) to arcsec; ``BPA`` stays in degrees.
* Data keep the file's units (``BUNIT``, e.g. Jy/beam). Bilinear resampling interpolates
  surface brightness; it does not conserve flux per pixel when the pixel area changes.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from somtorch.errors import FileFormatError, MissingFileError, ShapeError, SomtorchError
from somtorch.io.files import check_regular_file, open_regular

__all__ = ["FitsImage", "Cutout", "MissingFileError", "NoOverlapError", "read_fits_image",
           "cutout", "reproject_bilinear", "same_grid", "stack_channels"]


class NoOverlapError(SomtorchError, ValueError):
    """A requested cutout lies entirely outside the image."""


@dataclass
class FitsImage:
    """A 2-D celestial image read from FITS.

    Attributes
    ----------
    data : float ndarray ``(H, W)`` (row = Dec axis, col = RA axis), NaN for blank pixels.
    wcs : 2-D celestial :class:`astropy.wcs.WCS` (longitude first) or ``None``.
    header : the HDU's :class:`astropy.io.fits.Header` (unchanged, all axes).
    path : file name (for messages).
    beam : ``(bmaj_arcsec, bmin_arcsec, bpa_deg)`` or ``None`` when the header has no beam.
    """

    data: np.ndarray
    wcs: object
    header: object = None
    path: str | None = None
    beam: tuple | None = None
    info: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.data.shape)

    @property
    def pixel_scale_arcsec(self) -> tuple[float, float] | None:
        """Pixel side lengths (col, row) in arcsec at the reference point (``None`` without WCS)."""
        if self.wcs is None:
            return None
        from astropy.wcs.utils import proj_plane_pixel_scales

        s = proj_plane_pixel_scales(self.wcs) * 3600.0
        return float(s[0]), float(s[1])


def _first_image_hdu(hdul, path, hdu):
    if hdu is not None:
        try:
            h = hdul[hdu]
        except (KeyError, IndexError):
            raise FileFormatError(path, "hdu", hdu, f"one of {len(hdul)} HDUs") from None
        if h.data is None:
            raise FileFormatError(path, f"hdu {hdu!r}", "no data", "an image HDU")
        return h
    for h in hdul:
        if getattr(h, "is_image", False) and h.data is not None and h.data.ndim >= 2:
            return h
    raise FileFormatError(path, "data", "no image HDU", "an image with at least 2 axes")


def _celestial_plane(data: np.ndarray, header, path, require_wcs: bool):
    """Select the 2-D celestial plane: squeeze degenerate axes, order as (lat, lon)."""
    from astropy.wcs import WCS, FITSFixedWarning

    nd = data.ndim
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            w = WCS(header, naxis=nd)
        except Exception as exc:  # malformed WCS keywords
            if require_wcs:
                raise FileFormatError(path, "WCS", None, None, f"cannot parse: {exc}") from exc
            w = None
    lng = lat = -1
    if w is not None and w.has_celestial:
        lng, lat = w.wcs.lng, w.wcs.lat
    if lng < 0 or lat < 0:
        if require_wcs:
            raise FileFormatError(path, "WCS", "no celestial axes",
                                  "a celestial WCS (e.g. CTYPE1='RA---TAN', CTYPE2='DEC--TAN')")
        plane = np.squeeze(data)
        if plane.ndim != 2:
            raise ShapeError(f"{path}: data shape {data.shape} does not reduce to one 2-D image")
        return plane, None
    # FITS axis i (0-based) is numpy axis nd-1-i
    index = []
    for ax in range(nd):
        fits_ax = nd - 1 - ax
        if fits_ax in (lng, lat):
            index.append(slice(None))
        elif data.shape[ax] == 1:
            index.append(0)
        else:
            ctype = w.wcs.ctype[fits_ax] or f"axis {fits_ax + 1}"
            raise ShapeError(f"{path}: non-celestial axis {fits_ax + 1} ({ctype}) has length "
                             f"{data.shape[ax]}, expected 1 (a single plane)")
    plane = data[tuple(index)]
    if lng > lat:  # numpy order after selection is (lng, lat): transpose to (lat, lon)
        plane = plane.T
    return plane, w.sub([lng + 1, lat + 1])


def read_fits_image(path, hdu=None, dtype=np.float32, require_wcs: bool = True) -> FitsImage:
    """Load one celestial image from a FITS file.

    Parameters
    ----------
    path : FITS file name.
    hdu : HDU index or name (default: the first HDU holding an image of rank >= 2).
    dtype : floating dtype of the returned data.
    require_wcs : raise if the header has no celestial WCS (else ``wcs=None``).

    Raises
    ------
    MissingFileError : the file does not exist.
    FileFormatError : not a readable FITS file, no image, or no celestial WCS.
    ShapeError : a non-celestial axis (frequency, Stokes...) holds more than one plane.

    Convention
    ----------
    See the module docstring: ``data[row, col]`` with row = Dec axis, col = RA axis; NaN blanks.
    """
    from astropy.io import fits

    p = os.fspath(path)
    check_regular_file(p, "FITS")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy warns on e.g. non-standard keywords
            # our own handle: astropy leaves its file open when a damaged file makes it fail
            with open_regular(p, "rb", "FITS") as fh, fits.open(fh, memmap=False,
                                                               do_not_scale_image_data=True) as hdul:
                h = _first_image_hdu(hdul, p, hdu)
                header = h.header.copy()
                raw = np.array(h.data)
    except SomtorchError:
        raise
    except Exception as exc:  # astropy raises OSError/ValueError/TypeError on corrupt files
        raise FileFormatError(p, "FITS", None, None,
                              f"cannot read ({type(exc).__name__}: {exc})") from exc
    try:  # damaged headers (non-numeric BSCALE/BLANK) and data (non-finite values) give typed errors / NaN
        with np.errstate(all="ignore"):
            bscale, bzero = float(header.get("BSCALE", 1.0)), float(header.get("BZERO", 0.0))
            data = raw.astype(np.float64)
            if np.issubdtype(raw.dtype, np.integer) and "BLANK" in header:
                blank = raw == int(header["BLANK"])
            else:
                blank = None
            if bscale != 1.0 or bzero != 0.0:
                data = data * bscale + bzero
    except (ValueError, TypeError, OverflowError) as exc:
        raise FileFormatError(p, "FITS header", None, None, f"cannot scale the data ({exc})") from None
    if blank is not None:
        data[blank] = np.nan
    data[~np.isfinite(data)] = np.nan
    plane, w = _celestial_plane(data, header, p, require_wcs)
    beam = None
    if "BMAJ" in header and "BMIN" in header:
        beam = (float(header["BMAJ"]) * 3600.0, float(header["BMIN"]) * 3600.0,
                float(header.get("BPA", 0.0)))
    return FitsImage(np.ascontiguousarray(plane, dtype=dtype), w, header, p, beam)


@dataclass
class Cutout:
    """A cutout and how it sits in its parent image.

    Attributes
    ----------
    data : ``(size, size)`` float array, NaN where the cutout extends beyond the parent.
    wcs : WCS of the cutout (or ``None``).
    position : 0-based ``(x, y)`` = (col, row) of the requested sky position in the cutout.
    position_original : the same position in the parent image.
    n_padded : number of pixels outside the parent image (NaN-padded); 0 for a full overlap.
    """

    data: np.ndarray
    wcs: object
    position: tuple[float, float]
    position_original: tuple[float, float]
    n_padded: int = 0

    @property
    def partial(self) -> bool:
        return self.n_padded > 0


def cutout(image: FitsImage, ra: float, dec: float, size: int | tuple[int, int],
           fill_value: float = np.nan) -> Cutout:
    """Cut ``size`` pixels (``int`` or ``(rows, cols)``) around sky position ``(ra, dec)``.

    Uses :class:`astropy.nddata.Cutout2D` in ``'partial'`` mode: the cutout always has the
    requested shape and pixels beyond the parent image are ``fill_value`` (NaN), counted in
    :attr:`Cutout.n_padded`. A position whose cutout misses the image entirely raises
    :class:`NoOverlapError`.

    Convention
    ----------
    ``ra``/``dec`` in degrees, in the image's celestial frame. Cutout2D centres the cutout on
    the pixel *nearest* the position: for odd sizes that pixel is the cutout's centre pixel
    ``(size-1)/2``; for even sizes it is pixel ``size/2`` (the cutout's geometric centre
    ``(size-1)/2`` lies half a pixel before it). The exact sub-pixel position is returned in
    :attr:`Cutout.position`.
    """
    from astropy.nddata import Cutout2D
    from astropy.nddata.utils import NoOverlapError as _AstropyNoOverlap

    if image.wcs is None:
        raise FileFormatError(image.path, "WCS", None, "a celestial WCS to cut at a sky position")
    shape = (int(size), int(size)) if np.ndim(size) == 0 else tuple(int(s) for s in size)
    if len(shape) != 2 or min(shape) < 1:
        raise ShapeError(f"cutout size must be a positive int or (rows, cols), got {size!r}")
    # rounded to 1e-6 pixel: a position on a pixel centre must not flip to the next pixel on
    # float noise (Cutout2D takes ceil(position - size/2) as the first pixel)
    x, y = (round(float(v), 6) for v in image.wcs.all_world2pix(float(ra), float(dec), 0))
    if not (np.isfinite(x) and np.isfinite(y)):
        raise NoOverlapError(f"{image.path}: position ({ra}, {dec}) does not project onto the image")
    try:
        cut = Cutout2D(image.data, (x, y), shape, wcs=image.wcs, mode="partial",
                       fill_value=fill_value, copy=True)
    except _AstropyNoOverlap:
        raise NoOverlapError(f"{image.path}: a {shape[0]}x{shape[1]} cutout at RA={ra}, Dec={dec} "
                             f"(pixel x={x:.1f}, y={y:.1f}) does not overlap the "
                             f"{image.shape[0]}x{image.shape[1]} image") from None
    sl = cut.slices_cutout
    inside = (sl[0].stop - sl[0].start) * (sl[1].stop - sl[1].start)
    data = np.asarray(cut.data, dtype=image.data.dtype)
    return Cutout(data, cut.wcs, tuple(float(v) for v in cut.input_position_cutout), (x, y),
                  int(shape[0] * shape[1] - inside))


def same_grid(wcs_a, shape_a, wcs_b, shape_b, tol_pix: float = 1e-3) -> bool:
    """True when two images share their pixel grid (same shape, pixels map within ``tol_pix``)."""
    if tuple(shape_a) != tuple(shape_b):
        return False
    if wcs_a is None or wcs_b is None:
        return wcs_a is None and wcs_b is None
    h, w = shape_a
    cols = np.array([0.0, w - 1.0, 0.0, w - 1.0, (w - 1) / 2.0])
    rows = np.array([0.0, 0.0, h - 1.0, h - 1.0, (h - 1) / 2.0])
    world = wcs_a.all_pix2world(cols, rows, 0)
    xb, yb = wcs_b.all_world2pix(world[0], world[1], 0)
    return bool(np.all(np.abs(xb - cols) <= tol_pix) and np.all(np.abs(yb - rows) <= tol_pix))


def reproject_bilinear(data: np.ndarray, wcs_in, wcs_out, shape_out: tuple[int, int],
                       fill_value: float = np.nan) -> np.ndarray:
    """Resample ``data`` (on ``wcs_in``) onto the ``shape_out`` grid of ``wcs_out``, bilinearly.

    Each output pixel centre is mapped to the sky with ``wcs_out`` and back to input pixel
    coordinates with ``wcs_in`` (full distortion-aware transforms), and the input is
    interpolated there with :func:`scipy.ndimage.map_coordinates` (``order=1``).

    Convention
    ----------
    Output pixels whose centre falls outside the input's pixel centres ``[0, n-1]`` (with a
    1e-6-pixel tolerance) are ``fill_value``; a NaN among the (up to) four input neighbours
    makes the output NaN. Values are interpolated surface brightness (see module docstring).
    Both WCS must use the same celestial frame.
    """
    from scipy.ndimage import map_coordinates

    a = np.asarray(data)
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    if a.ndim != 2:
        raise ShapeError(f"reproject_bilinear: expected a 2-D image, got shape {a.shape}")
    h, w = (int(s) for s in shape_out)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    ra, dec = wcs_out.all_pix2world(cols.ravel(), rows.ravel(), 0)
    x, y = wcs_in.all_world2pix(ra, dec, 0)
    x, y = np.asarray(x).reshape(h, w), np.asarray(y).reshape(h, w)
    eps = 1e-6
    ok = (np.isfinite(x) & np.isfinite(y) & (x >= -eps) & (x <= a.shape[1] - 1 + eps)
          & (y >= -eps) & (y <= a.shape[0] - 1 + eps))
    xs = np.clip(np.where(ok, x, 0.0), 0, a.shape[1] - 1)
    ys = np.clip(np.where(ok, y, 0.0), 0, a.shape[0] - 1)
    out = map_coordinates(a, [ys, xs], order=1, mode="nearest", prefilter=False)
    out[~ok] = fill_value
    return out


def stack_channels(images, resample: bool = True, dtype=np.float32) -> np.ndarray:
    """Stack images ``[primary, other, ...]`` into ``(C, H, W)`` on the primary's pixel grid.

    Each further image is copied as is when it already shares the primary's grid
    (:func:`same_grid`), else resampled onto it with :func:`reproject_bilinear` (``resample``)
    or rejected with :class:`ShapeError`. Items are :class:`FitsImage` or :class:`Cutout`.
    """
    first = images[0]
    out = [np.asarray(first.data, dtype=np.float64)]
    for im in images[1:]:
        if same_grid(first.wcs, first.data.shape, im.wcs, im.data.shape):
            out.append(np.asarray(im.data, dtype=np.float64))
        elif resample and first.wcs is not None and im.wcs is not None:
            out.append(reproject_bilinear(im.data, im.wcs, first.wcs, first.data.shape))
        else:
            raise ShapeError(f"channel of shape {im.data.shape} is not on the primary grid "
                             f"{first.data.shape}" + ("" if resample else " (resample=False)"))
    return np.stack(out).astype(dtype)
