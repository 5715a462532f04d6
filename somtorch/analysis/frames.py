"""Image <-> neuron frames: PINK's stored ``(flip, angle)`` applied to images and coordinates.

Convention
----------
Arrays are indexed ``[row][col]``, row 0 first ("top" with ``imshow(origin='upper')``). A PINK
transform record ``(flip, angle)`` (angle in radians) of image ``x`` and neuron ``w`` means
(spec §1.5, §3.5)::

    w  ~  flipud**flip( rotate_cw(x, angle) )       # rotate clockwise first, then reverse rows

* **forward** (``reverse=False``): image -> neuron frame. The result lives on an ``nd x nd``
  grid (``neuron_dim``) and is *exactly* PINK's transformation (and our engine's,
  :class:`~somtorch.geometry.PinkTransformer` with ``exact=True``, bit for bit): with ``numrot``
  given, the angle is the step index ``s = t mod numrot``, split into ``j = s // k`` exact quarter
  turns and the residual base rotation ``i = s mod k`` (``k = numrot / 4``). Base 0 is the image
  centre-cropped / zero-padded with margin ``floor(|nd - d| / 2)`` on the top/left; base ``i > 0``
  is PINK's float32 bilinear rotation by ``float32(i) * step`` mapping the image centre
  ``((d-1)/2, (d-1)/2)`` onto the neuron centre ``((nd-1)/2, (nd-1)/2)``, zero outside. With
  ``numrot=None`` an arbitrary angle is split the same way into quarter turns and a residual
  ``alpha in [0, pi/2)`` rotated bilinearly (angles within 1e-5 rad of a quarter turn count as
  exact quarter turns).
* **inverse** (``reverse=True``): neuron -> image frame: reverse the rows if flipped, undo the
  quarter turns exactly, undo the residual rotation (bilinear, about the same centres), and
  sample onto a ``d x d`` grid (``image_dim``; trimmed or padded to the image size), so pixel
  ``(r, c)`` of the result lies on pixel ``(r, c)`` of the image.

Coordinates follow the same maps point by point. Image pixel coordinates are ``(row, col)``
floats (pixel centres at integers). For a residual rotation ``alpha`` with ``ca = cos``,
``sa = sin``, an image point at offset ``s = (sr, sc)`` from the image centre lands at neuron
offset ``(sr ca + sc sa, -sr sa + sc ca)`` from the neuron centre (clockwise on screen); base 0
shifts by the margin instead; then each clockwise quarter turn maps ``(r, c) -> (c, nd-1-r)`` and
a flip maps ``r -> nd-1-r``. In ``(x = col, y = row)`` this is PYINK's ``R(+theta)`` followed by
``y -> -y``. The maps are affine and invertible, so coordinate round trips are exact to float64
rounding. If ``nd - d`` is odd, base 0 and the interpolated bases disagree by half a pixel --
PINK's own inconsistency (spec §2.4), reproduced so coordinates follow the pixels.

**Scale** (the zoom-factor search, :mod:`somtorch.engine.scale`): the functions take ``scale``
(default 1). A record ``(scale s, flip, angle)`` means ``w ~ flipud**flip(rotate_cw(zoom(x, s),
angle))``, ``zoom`` enlarging the content by ``s`` about the image centre ``c = (d-1)/2``
(:func:`~somtorch.engine.scale.zoom_images`): forward, a point moves from ``p`` to
``c + s (p - c)`` before the maps above; inverse, the zoom is undone last.

Sky coordinates become image pixel coordinates either through the image's WCS
(``world_to_pixel``, 0-based: ``x`` = column, ``y`` = row of the stored array) or from the image
centre and a pixel scale: ``col = cc - dlon / scale``, ``row = rc + dlat / scale`` where
``(dlon, dlat)`` are the spherical offsets from the centre (``SkyCoord.spherical_offsets_to``)
-- east to the left, north up when drawn with ``origin='lower'``, as in a FITS array with
``CDELT1 < 0``. The centre pixel ``(rc, cc)`` defaults to ``((H-1)/2, (W-1)/2)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from somtorch.errors import ConfigError, ShapeError

__all__ = [
    "pink_spatial_transform",
    "transform_images",
    "trim_neuron",
    "default_trim_side",
    "image_to_neuron_coords",
    "neuron_to_image_coords",
    "sky_to_pixel",
    "pixel_to_sky",
    "sky_to_neuron",
    "neuron_to_sky",
    "CoordinateTransformer",
]

_HALF_PI = math.pi / 2.0
_TWO_PI = 2.0 * math.pi


# --------------------------------------------------------------------------------------------
# decomposition of (flip, angle)
# --------------------------------------------------------------------------------------------

def _parse_transform(transform) -> tuple[np.ndarray, np.ndarray]:
    """``(flip, angle)`` record(s) -> int64 flip ``(B,)`` and float64 angle ``(B,)``."""
    if getattr(getattr(transform, "dtype", None), "names", None) and "flip" in transform.dtype.names:
        f, a = transform["flip"], transform["angle"]
    elif (isinstance(transform, (tuple, list)) and len(transform) == 2
          and all(np.ndim(v) == 0 or isinstance(v, (np.ndarray, torch.Tensor)) for v in transform)):
        f, a = transform  # one (flip, angle), or a (flips, angles) pair of arrays
    else:
        arr = np.asarray(transform, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ShapeError(f"transform must be (flip, angle), a structured record or an (n, 2) array; "
                             f"got shape {arr.shape}")
        f, a = arr[:, 0], arr[:, 1]
    f = np.atleast_1d(np.asarray(f.cpu() if isinstance(f, torch.Tensor) else f)).astype(np.int64)
    a = np.atleast_1d(np.asarray(a.cpu() if isinstance(a, torch.Tensor) else a)).astype(np.float64)
    if f.shape != a.shape:
        raise ShapeError(f"flip has shape {f.shape}, angle has shape {a.shape}")
    return (f == 1).astype(np.int64), a


def _decompose(flip: np.ndarray, angle: np.ndarray, numrot: int | None):
    """-> flip, quarter turns ``j`` (0-3), residual alpha (float32, 0 = no interpolation)."""
    if numrot is None:
        a = np.mod(angle, _TWO_PI)
        # angles within 1e-5 rad of a quarter turn (float32 angles) are exact quarter turns
        j = np.floor(a / _HALF_PI + 1e-5).astype(np.int64)
        alpha = a - j * _HALF_PI
        alpha = np.where(np.abs(alpha) < 1e-5, 0.0, alpha)
        j = np.mod(j, 4)
        return flip, j, alpha.astype(np.float32)
    from somtorch.geometry.transforms import check_numrot, rotation_step

    numrot = check_numrot(numrot)
    step = rotation_step(numrot)
    s = np.rint(angle / float(step)).astype(np.int64)
    off = np.abs(angle - s * float(step))
    if off.size and off.max() > 1e-3 * float(step) and numrot > 1:
        bad = int(np.argmax(off))
        raise ConfigError(None, "angle", float(angle[bad]),
                          f"a multiple of the numrot={numrot} step {float(step)!r} rad (pass numrot=None "
                          "for arbitrary angles)")
    s = np.mod(s, numrot)
    if numrot == 1:
        return flip, np.zeros_like(s), np.zeros(len(s), np.float32)
    k = numrot // 4
    j, i = np.divmod(s, k)
    alpha = (i.astype(np.float32) * step).astype(np.float32)
    return flip, j, alpha


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------

def _bilinear_pink(img: np.ndarray, sr: np.ndarray, sc: np.ndarray) -> np.ndarray:
    """PINK's float32 bilinear formula (spec §3.3): ``img (C, d, d)``, coords ``(u, v)`` -> ``(C, u, v)``."""
    d = img.shape[-1]
    inside = (sr >= 0) & (sr <= d - 1) & (sc >= 0) & (sc <= d - 1)
    r0 = np.where(inside, np.trunc(sr), 0).astype(np.int64)
    c0 = np.where(inside, np.trunc(sc), 0).astype(np.int64)
    one = np.float32(1)
    fr = np.where(inside, sr - r0.astype(np.float32), 0).astype(np.float32)
    fc = np.where(inside, sc - c0.astype(np.float32), 0).astype(np.float32)
    r1, c1 = np.minimum(r0 + 1, d - 1), np.minimum(c0 + 1, d - 1)
    w0, w1 = (one - fr) * (one - fc), (one - fr) * fc
    w2, w3 = fr * (one - fc), fr * fc
    out = ((w0 * img[:, r0, c0] + w1 * img[:, r0, c1]) + w2 * img[:, r1, c0]) + w3 * img[:, r1, c1]
    out[:, ~inside] = 0
    return out.astype(np.float32)


def _pad_crop(img: np.ndarray, size: int) -> np.ndarray:
    d = img.shape[-1]
    if size == d:
        return img.copy()
    m = abs(size - d) // 2
    if size < d:
        return img[..., m:m + size, m:m + size].copy()
    out = np.zeros(img.shape[:-2] + (size, size), img.dtype)
    out[..., m:m + d, m:m + d] = img
    return out


def _forward_one(img: np.ndarray, f: int, j: int, alpha: np.float32, nd: int) -> np.ndarray:
    d = img.shape[-1]
    if alpha == 0:
        base = _pad_crop(img, nd)
    else:
        ca, sa = np.float32(math.cos(float(alpha))), np.float32(math.sin(float(alpha)))
        cs, cn = np.float32((d - 1) * 0.5), np.float32((nd - 1) * 0.5)
        idx = np.arange(nd, dtype=np.float32)
        pr, pc = (idx - cn)[:, None], (idx - cn)[None, :]
        sr = np.broadcast_to((pr * ca - pc * sa) + cs, (nd, nd))
        sc = np.broadcast_to((pr * sa + pc * ca) + cs, (nd, nd))
        base = _bilinear_pink(img, sr, sc)
    out = np.rot90(base, -int(j), axes=(-2, -1))
    if f:
        out = out[..., ::-1, :]
    return np.ascontiguousarray(out)


def _bilinear_zero(img: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Bilinear sample (float64 weights) of ``img (C, n, n)`` at ``(r, c)``; 0 outside ``[0, n-1]``."""
    n = img.shape[-1]
    inside = (r >= -1e-9) & (r <= n - 1 + 1e-9) & (c >= -1e-9) & (c <= n - 1 + 1e-9)
    rr, cc = np.clip(r, 0, n - 1), np.clip(c, 0, n - 1)
    r0, c0 = np.floor(rr).astype(np.int64), np.floor(cc).astype(np.int64)
    r1, c1 = np.minimum(r0 + 1, n - 1), np.minimum(c0 + 1, n - 1)
    fr, fc = rr - r0, cc - c0
    out = ((1 - fr) * (1 - fc) * img[:, r0, c0] + (1 - fr) * fc * img[:, r0, c1]
           + fr * (1 - fc) * img[:, r1, c0] + fr * fc * img[:, r1, c1])
    out[:, ~inside] = 0
    return out.astype(img.dtype, copy=False)


def _inverse_one(neuron: np.ndarray, f: int, j: int, alpha: np.float32, d: int) -> np.ndarray:
    nd = neuron.shape[-1]
    base = neuron[..., ::-1, :] if f else neuron
    base = np.rot90(base, int(j), axes=(-2, -1))  # undo j clockwise quarter turns
    if alpha == 0:
        return _pad_crop(np.ascontiguousarray(base), d)
    ca, sa = math.cos(float(alpha)), math.sin(float(alpha))
    cs, cn = (d - 1) * 0.5, (nd - 1) * 0.5
    off = np.arange(d, dtype=np.float64) - cs
    sr, sc = off[:, None], off[None, :]
    pr = sr * ca + sc * sa + cn
    pc = -sr * sa + sc * ca + cn
    return _bilinear_zero(np.ascontiguousarray(base), np.broadcast_to(pr, (d, d)), np.broadcast_to(pc, (d, d)))


_INTERPOLATIONS = ("bilinear", "cubic")


def _check_interpolation(interpolation: str) -> None:
    if interpolation not in _INTERPOLATIONS:
        raise ConfigError(None, "interpolation", interpolation, f"one of {_INTERPOLATIONS}")


def _cubic_one(img: np.ndarray, f: int, angle: float, out_dim: int, reverse: bool) -> np.ndarray:
    """PYINK's transform: ``scipy.ndimage.rotate`` (cubic spline, order 3, prefiltered, zero
    outside) by ``-angle`` about the array centre ``(n-1)/2``, then rows reversed if flipped
    (reverse: rows first, then ``+angle``). ``out_dim`` other than the input side centres the
    output grid on the same point ``(out_dim-1)/2``. ``img`` is ``(C, n, n)``."""
    from scipy import ndimage

    n = img.shape[-1]
    src = img[:, ::-1, :] if (reverse and f) else img
    theta = float(angle)
    ca, sa = math.cos(theta), math.sin(theta)
    # output offset (pr, pc) samples input offset R(-theta) (forward) / R(+theta) (reverse)
    s = -sa if reverse else sa
    mat = np.array([[ca, -s], [s, ca]])
    cn, cs = (out_dim - 1) * 0.5, (n - 1) * 0.5
    offset = np.array([cs, cs]) - mat @ np.array([cn, cn])
    out = np.stack([ndimage.affine_transform(np.asarray(ch, np.float64), mat, offset=offset,
                                             output_shape=(out_dim, out_dim), order=3, mode="constant",
                                             cval=0.0, prefilter=True) for ch in src]).astype(np.float32)
    if f and not reverse:
        out = out[:, ::-1, :]
    return np.ascontiguousarray(out)


def _as_chw(img) -> tuple[np.ndarray, bool, bool]:
    was_tensor = isinstance(img, torch.Tensor)
    a = img.detach().cpu().numpy() if was_tensor else np.asarray(img)
    if a.ndim not in (2, 3) or a.shape[-1] != a.shape[-2]:
        raise ShapeError(f"image must be (H, W) or (C, H, W) with H == W; got shape {a.shape}")
    two_d = a.ndim == 2
    a = a[None] if two_d else a
    if a.dtype != np.float32:
        a = a.astype(np.float32)
    return a, two_d, was_tensor


def _zoom(a: np.ndarray, scale: float) -> np.ndarray:
    """:func:`~somtorch.engine.scale.zoom_images` of one ``(C, n, n)`` float32 array."""
    if float(scale) == 1.0:
        return a
    from somtorch.engine.scale import zoom_images

    return zoom_images(torch.from_numpy(np.ascontiguousarray(a))[None], float(scale))[0].numpy()


def pink_spatial_transform(img, transform, reverse: bool = False, *, numrot: int | None = 360,
                           neuron_dim: int | None = None, image_dim: int | None = None,
                           interpolation: str = "bilinear", scale: float = 1.0):
    """Apply (or undo) a PINK ``(flip, angle)`` to one image or neuron.

    Parameters
    ----------
    img : array or tensor ``(H, W)`` or ``(C, H, W)``, square
        The image (forward) or the neuron (``reverse=True``).
    transform : ``(flip, angle)``
        A record of :class:`~somtorch.io.Transform` ``.data``, a tuple or a 2-sequence; angle in
        radians, ``flip == 1`` means flipped.
    reverse : bool
        False: image -> neuron frame; True: neuron -> image frame.
    numrot : int or None
        The ``numrot`` of the run that wrote the angles (default PINK's 360; angles of a
        ``numrot=4`` run are on the 360 grid too). Gives PINK's exact transformation; ``None``
        accepts any angle (quarter turns + one bilinear residual rotation).
    neuron_dim : int, optional
        Forward output side; default: the input side (PYINK's same-size behaviour). Pass the
        SOM's neuron side to compare with a neuron pixel by pixel.
    image_dim : int, optional
        Inverse output side; default: the input side.
    interpolation : {'bilinear', 'cubic'}
        ``'bilinear'`` (default): PINK's own transformation (exact quarter turns, PINK's float32
        bilinear residual rotation), so the result equals what PINK compared with the neuron.
        ``'cubic'``: PYINK's ``scipy.ndimage.rotate`` (cubic spline, prefiltered, zero outside)
        by the whole angle (``numrot`` is then not used). On 150x150 radio cutouts the largest
        pixel difference is a median 4.3 % and up to 16 % of the peak
        (``python -m somtorch.pyink.differences``); cubic splines overshoot next to sharp edges.
    scale : float
        The record's zoom factor (scale search): forward zooms the image first, inverse undoes the
        zoom last (module docstring).

    Returns
    -------
    Same type as ``img`` (numpy or torch), float32, ``(nd, nd)`` / ``(C, nd, nd)`` forward or
    ``(d, d)`` / ``(C, d, d)`` inverse. See the module docstring for the exact maps.

    Examples
    --------
    >>> x = np.arange(9, dtype=np.float32).reshape(3, 3)
    >>> pink_spatial_transform(x, (0, np.float32(np.pi / 2)), numrot=4).tolist()   # clockwise
    [[6.0, 3.0, 0.0], [7.0, 4.0, 1.0], [8.0, 5.0, 2.0]]
    >>> pink_spatial_transform(x, (1, 0.0), numrot=4).tolist()                       # rows reversed
    [[6.0, 7.0, 8.0], [3.0, 4.0, 5.0], [0.0, 1.0, 2.0]]
    """
    _check_interpolation(interpolation)
    a, two_d, was_tensor = _as_chw(img)
    f, ang = _parse_transform(transform)
    if len(f) != 1:
        raise ShapeError(f"pink_spatial_transform takes one (flip, angle); got {len(f)} (use transform_images)")
    if not reverse:
        a = _zoom(a, scale)
    if interpolation == "cubic":
        side = int((image_dim if reverse else neuron_dim) or a.shape[-1])
        out = _cubic_one(a, int(f[0]), float(ang[0]), side, reverse)
    else:
        f, j, alpha = _decompose(f, ang, numrot)
        if reverse:
            out = _inverse_one(a, int(f[0]), int(j[0]), alpha[0], int(image_dim or a.shape[-1]))
        else:
            out = _forward_one(a, int(f[0]), int(j[0]), alpha[0], int(neuron_dim or a.shape[-1]))
    if reverse:
        out = _zoom(out, 1.0 / scale)
    out = out[0] if two_d else out
    return torch.from_numpy(np.ascontiguousarray(out)) if was_tensor else out


def transform_images(images, transforms, reverse: bool = False, *, numrot: int | None = 360,
                     neuron_dim: int | None = None, image_dim: int | None = None, progress: bool = False,
                     interpolation: str = "bilinear", scale=1.0):
    """Transform many images (or neurons) by their own ``(flip, angle)``.

    ``images`` is ``(K, C, H, W)`` (or ``(K, H, W)``); ``transforms`` has ``K`` records (a
    structured array, ``(K, 2)`` array or a ``(flips, angles)`` pair). Other arguments as in
    :func:`pink_spatial_transform` (``scale``: one zoom factor or one per image). Returns a numpy
    (or torch, for tensor input) ``(K, C, s, s)``
    array (``(K, s, s)`` for ``(K, H, W)`` input).
    """
    was_tensor = isinstance(images, torch.Tensor)
    arr = images.detach().cpu().numpy() if was_tensor else np.asarray(images)
    if arr.ndim not in (3, 4):
        raise ShapeError(f"images must be (K, C, H, W) or (K, H, W); got shape {arr.shape}")
    _check_interpolation(interpolation)
    f, ang = _parse_transform(transforms)
    if len(f) != len(arr):
        raise ShapeError(f"{len(arr)} images but {len(f)} transforms")
    cubic = interpolation == "cubic"
    f, j, alpha = (f, None, None) if cubic else _decompose(f, ang, numrot)
    sc = np.broadcast_to(np.asarray(scale, dtype=np.float64).reshape(-1), (len(arr),))
    it = range(len(arr))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="transform", unit="img")
    outs = []
    for k in it:
        a = arr[k] if arr.ndim == 4 else arr[k][None]
        a = a.astype(np.float32, copy=False)
        if not reverse:
            a = _zoom(a, sc[k])
        if cubic:
            side = int((image_dim if reverse else neuron_dim) or a.shape[-1])
            o = _cubic_one(a, int(f[k]), float(ang[k]), side, reverse)
        elif reverse:
            o = _inverse_one(a, int(f[k]), int(j[k]), alpha[k], int(image_dim or a.shape[-1]))
        else:
            o = _forward_one(a, int(f[k]), int(j[k]), alpha[k], int(neuron_dim or a.shape[-1]))
        if reverse:
            o = _zoom(o, 1.0 / sc[k])
        outs.append(o if arr.ndim == 4 else o[0])
    side = int((image_dim if reverse else neuron_dim) or arr.shape[-1])
    out = np.stack(outs) if outs else np.zeros((0,) + arr.shape[1:-2] + (side, side), np.float32)
    return torch.from_numpy(out) if was_tensor else out


def default_trim_side(n: int) -> int:
    """Image side ``d`` whose PINK default neuron side ``int(sqrt(2) d + 1)`` first reaches ``n``.

    >>> default_trim_side(213), default_trim_side(212), default_trim_side(300)
    (150, 150, 212)
    """
    n = int(n)
    d = max(1, math.ceil((n - 1) / math.sqrt(2.0)))
    while d > 1 and int(math.sqrt(2.0) * (d - 1) + 1) >= n:  # guard float rounding
        d -= 1
    return d


def trim_neuron(neuron, img_shape=None):
    """Centre crop (or zero-pad) a neuron ``(..., n, n)`` to ``img_shape`` (int or ``(H, W)``).

    The margin is ``floor(|n - s| / 2)`` on the top/left, PINK's crop (spec §2.3), so the result
    lines up with the image for base-0 transforms. Without ``img_shape`` the side is the image
    side PINK's default neuron size came from: PINK makes ``int(sqrt(2) d + 1)`` neurons for
    images of side ``d``, and the smallest ``d`` reaching ``n`` is ``ceil((n - 1) / sqrt 2)``
    (213 -> 150, as PYINK's ``floor(n / sqrt 2)``; 212 -> 150 where PYINK's floor gives 149).
    Prefer passing the true image side.
    """
    a = neuron.detach().cpu().numpy() if isinstance(neuron, torch.Tensor) else np.asarray(neuron)
    n = a.shape[-1]
    if img_shape is None:
        s = default_trim_side(n)
    else:
        s = int(img_shape if np.ndim(img_shape) == 0 else img_shape[-1])
    return _pad_crop(a, s)


# --------------------------------------------------------------------------------------------
# coordinates
# --------------------------------------------------------------------------------------------

def _points(rc) -> np.ndarray:
    p = np.asarray(rc, dtype=np.float64)
    if p.shape[-1] != 2:
        raise ShapeError(f"coordinates must have a last axis of 2 (row, col); got shape {p.shape}")
    return p


def _broadcast_tf(transform, n_points_shape):
    f, a = _parse_transform(transform)
    if len(f) == 1:
        return f[0], a[0]
    if (len(f),) != tuple(n_points_shape[:1]):
        raise ShapeError(f"{len(f)} transforms for points of shape {n_points_shape}")
    return f, a


def _zoom_points(p: np.ndarray, image_dim: int, scale, inverse: bool) -> np.ndarray:
    """Points ``(..., 2)`` zoomed by ``scale`` (one, or one per point along the first axis)
    about the image centre (undone with ``inverse``)."""
    sc = np.asarray(scale, dtype=np.float64)
    if not np.any(sc != 1.0):
        return p
    sc = sc.reshape((-1,) + (1,) * (p.ndim - 1)) if sc.ndim else sc
    cs = (int(image_dim) - 1) * 0.5
    return cs + (p - cs) / sc if inverse else cs + sc * (p - cs)


def image_to_neuron_coords(rc, transform, image_dim: int, neuron_dim: int, numrot: int | None = 360,
                           scale=1.0):
    """Image pixel coordinates ``(..., 2)`` = (row, col) -> neuron pixel coordinates (row, col).

    ``transform`` is one ``(flip, angle)`` for all points or one per point (first axis). The map
    follows the pixels of :func:`pink_spatial_transform` (module docstring), so a source at image
    pixel ``p`` appears at the returned neuron pixel of the transformed image.
    """
    p = _zoom_points(_points(rc), image_dim, scale, inverse=False)
    f, a = _broadcast_tf(transform, p.shape)
    f, j, alpha = _decompose(np.atleast_1d(f), np.atleast_1d(a), numrot)
    if f.size > 1:
        f, j, alpha = f.reshape(-1, *([1] * (p.ndim - 2))), j.reshape(-1, *([1] * (p.ndim - 2))), \
            alpha.reshape(-1, *([1] * (p.ndim - 2)))
    else:
        f, j, alpha = f[0], j[0], alpha[0]
    d, nd = int(image_dim), int(neuron_dim)
    r, c = p[..., 0], p[..., 1]
    alpha = np.asarray(alpha, np.float64)
    ca, sa = np.cos(alpha), np.sin(alpha)
    cs, cn = (d - 1) * 0.5, (nd - 1) * 0.5
    sr, sc = r - cs, c - cs
    m = (nd - d) // 2 if nd >= d else -((d - nd) // 2)
    zero = alpha == 0
    br = np.where(zero, r + m, sr * ca + sc * sa + cn)
    bc = np.where(zero, c + m, -sr * sa + sc * ca + cn)
    n1 = nd - 1
    jj = np.asarray(j)
    qr = np.select([jj == 0, jj == 1, jj == 2, jj == 3], [br, bc, n1 - br, n1 - bc])
    qc = np.select([jj == 0, jj == 1, jj == 2, jj == 3], [bc, n1 - br, n1 - bc, br])
    qr = np.where(np.asarray(f) == 1, n1 - qr, qr)
    return np.stack([qr, qc], axis=-1)


def neuron_to_image_coords(rc, transform, image_dim: int, neuron_dim: int, numrot: int | None = 360,
                           scale=1.0):
    """Inverse of :func:`image_to_neuron_coords`: neuron pixel (row, col) -> image pixel (row, col)."""
    p = _points(rc)
    f, a = _broadcast_tf(transform, p.shape)
    f, j, alpha = _decompose(np.atleast_1d(f), np.atleast_1d(a), numrot)
    if f.size > 1:
        shp = (-1,) + (1,) * (p.ndim - 2)
        f, j, alpha = f.reshape(shp), j.reshape(shp), alpha.reshape(shp)
    else:
        f, j, alpha = f[0], j[0], alpha[0]
    d, nd = int(image_dim), int(neuron_dim)
    n1 = nd - 1
    qr, qc = p[..., 0], p[..., 1]
    qr = np.where(np.asarray(f) == 1, n1 - qr, qr)
    jj = np.asarray(j)
    br = np.select([jj == 0, jj == 1, jj == 2, jj == 3], [qr, n1 - qc, n1 - qr, qc])
    bc = np.select([jj == 0, jj == 1, jj == 2, jj == 3], [qc, qr, n1 - qc, n1 - qr])
    alpha = np.asarray(alpha, np.float64)
    ca, sa = np.cos(alpha), np.sin(alpha)
    cs, cn = (d - 1) * 0.5, (nd - 1) * 0.5
    m = (nd - d) // 2 if nd >= d else -((d - nd) // 2)
    pr, pc = br - cn, bc - cn
    zero = alpha == 0
    r = np.where(zero, br - m, pr * ca - pc * sa + cs)
    c = np.where(zero, bc - m, pr * sa + pc * ca + cs)
    return _zoom_points(np.stack([r, c], axis=-1), image_dim, scale, inverse=True)


def _centre_pixel(image_shape, center_pixel):
    if center_pixel is not None:
        return float(center_pixel[0]), float(center_pixel[1])
    if image_shape is None:
        raise ConfigError(None, "image_shape", None, "the image shape (H, W) or a center_pixel")
    h, w = (image_shape, image_shape) if np.ndim(image_shape) == 0 else tuple(image_shape)[-2:]
    return (h - 1) / 2.0, (w - 1) / 2.0


def _scale_deg(pixel_scale):
    import astropy.units as u

    if pixel_scale is None:
        raise ConfigError(None, "pixel_scale", None, "an angle per pixel (e.g. 0.6 * u.arcsec) or a wcs")
    ps = pixel_scale if isinstance(pixel_scale, (tuple, list)) else (pixel_scale, pixel_scale)
    out = []
    for s in ps:
        out.append(float(u.Quantity(s, u.arcsec).to_value(u.deg)) if hasattr(s, "unit")
                   else float(s) / 3600.0)
    return out  # (x / column, y / row) in degrees


def sky_to_pixel(sky, *, wcs=None, center=None, pixel_scale=None, image_shape=None, center_pixel=None):
    """Sky positions (``SkyCoord``) -> image pixel coordinates ``(..., 2)`` = (row, col), 0-based.

    Either ``wcs`` (celestial astropy WCS of the image) or ``center`` (SkyCoord of the image's
    centre pixel) with ``pixel_scale`` (angle per pixel: a Quantity, arcsec as a float, or an
    ``(x, y)`` pair). See the module docstring for the conventions.
    """
    if wcs is not None:
        x, y = wcs.celestial.world_to_pixel(sky) if hasattr(wcs, "celestial") else wcs.world_to_pixel(sky)
        return np.stack([np.asarray(y, float), np.asarray(x, float)], axis=-1)
    if center is None:
        raise ConfigError(None, "wcs", None, "a WCS, or center and pixel_scale")
    sx, sy = _scale_deg(pixel_scale)
    rc, cc = _centre_pixel(image_shape, center_pixel)
    dlon, dlat = center.spherical_offsets_to(sky)
    col = cc - dlon.deg / sx
    row = rc + dlat.deg / sy
    return np.stack([np.asarray(row, float), np.asarray(col, float)], axis=-1)


def pixel_to_sky(rc, *, wcs=None, center=None, pixel_scale=None, image_shape=None, center_pixel=None):
    """Inverse of :func:`sky_to_pixel`: image pixel (row, col) -> ``SkyCoord``."""
    import astropy.units as u

    p = _points(rc)
    if wcs is not None:
        w = wcs.celestial if hasattr(wcs, "celestial") else wcs
        return w.pixel_to_world(p[..., 1], p[..., 0])
    if center is None:
        raise ConfigError(None, "wcs", None, "a WCS, or center and pixel_scale")
    sx, sy = _scale_deg(pixel_scale)
    rc0, cc0 = _centre_pixel(image_shape, center_pixel)
    dlon = (cc0 - p[..., 1]) * sx
    dlat = (p[..., 0] - rc0) * sy
    return center.spherical_offsets_by(dlon * u.deg, dlat * u.deg)


def sky_to_neuron(sky, transform, image_dim: int, neuron_dim: int, *, numrot: int | None = 360, **where):
    """Sky positions -> neuron pixel (row, col) of an image's best-matching neuron.

    ``where`` are the :func:`sky_to_pixel` keywords (``wcs=`` or ``center=``/``pixel_scale=``);
    ``image_shape`` defaults to ``image_dim``.
    """
    where.setdefault("image_shape", image_dim)
    return image_to_neuron_coords(sky_to_pixel(sky, **where), transform, image_dim, neuron_dim, numrot)


def neuron_to_sky(rc, transform, image_dim: int, neuron_dim: int, *, numrot: int | None = 360, **where):
    """Inverse of :func:`sky_to_neuron`: neuron pixel (row, col) -> ``SkyCoord``."""
    where.setdefault("image_shape", image_dim)
    return pixel_to_sky(neuron_to_image_coords(rc, transform, image_dim, neuron_dim, numrot), **where)


class CoordinateTransformer:
    """Catalogue positions in the frame of an image's best-matching neuron (PYINK name).

    Parameters
    ----------
    center_coord : SkyCoord
        Sky position of the image's centre pixel.
    sky_coords : SkyCoord
        Positions to project (e.g. catalogue components near the source).
    transform : ``(flip, angle)``
        The image's record for its best-matching neuron.
    pixel_scale : angle per pixel (or ``(x, y)``); ignored when ``wcs`` is given.
    wcs : astropy WCS of the image, optional.
    image_dim, neuron_dim : sides of the image and the neuron (required: PYINK's offsets-only
        output could not be placed on a neuron without them).
    numrot : see :func:`pink_spatial_transform`.
    src_idx : optional indices of ``sky_coords`` in their catalogue (kept as an attribute).

    Attributes
    ----------
    coords : dict with ``"sky"``, ``"offsets-angular"`` (``(dlon, dlat)`` Quantities),
        ``"pixel"`` (image (row, col)), ``"offsets-pixel"`` (``(x, y)`` = (col, row) minus the
        centre pixel), ``"neuron"`` (neuron (row, col)) and ``"offsets-neuron"`` (``(x, y)``
        relative to the neuron centre ``(nd-1)/2``).
    """

    def __init__(self, center_coord, sky_coords, transform, pixel_scale=None, wcs=None, *,
                 image_dim: int, neuron_dim: int, numrot: int | None = 360, src_idx=None):
        self.center_coord, self.sky_coords, self.transform = center_coord, sky_coords, transform
        self.pixel_scale, self.wcs, self.src_idx = pixel_scale, wcs, src_idx
        self.image_dim, self.neuron_dim, self.numrot = int(image_dim), int(neuron_dim), numrot
        kw = dict(wcs=wcs, center=center_coord, pixel_scale=pixel_scale, image_shape=self.image_dim)
        pix = sky_to_pixel(sky_coords, **kw)
        if wcs is not None:
            cpix = sky_to_pixel(center_coord, **kw)
        else:
            cpix = np.array(_centre_pixel(self.image_dim, None))
        neu = image_to_neuron_coords(pix, transform, self.image_dim, self.neuron_dim, numrot)
        cn = (self.neuron_dim - 1) / 2.0
        self.coords = {
            "sky": sky_coords,
            "offsets-angular": center_coord.spherical_offsets_to(sky_coords),
            "pixel": pix,
            "offsets-pixel": (pix - cpix)[..., ::-1],
            "neuron": neu,
            "offsets-neuron": (neu - cn)[..., ::-1],
        }

    def inverse(self, neuron_rc):
        """Neuron pixel (row, col) -> SkyCoord (the exact inverse of the forward projection)."""
        return neuron_to_sky(neuron_rc, self.transform, self.image_dim, self.neuron_dim, numrot=self.numrot,
                             wcs=self.wcs, center=self.center_coord, pixel_scale=self.pixel_scale)
