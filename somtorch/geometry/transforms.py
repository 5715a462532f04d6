"""PINK-compatible rotations and flips of image stacks, generated in batch by grid sampling.

Convention
----------
Images are indexed ``[row][col]`` with row 0 first in memory ("top" when drawn with
``imshow(origin='upper')``). Transformation index ``t`` (spec §3.2) means:

* ``t < numrot``: the image rotated **clockwise** (row axis pointing down) by ``t * step``, with
  ``step = float32(float32(2*pi) / numrot)`` radians, resampled into the ``nd x nd`` neuron grid;
* ``t >= numrot``: the same rotation by ``(t - numrot) * step``, **then** flipped upside-down
  (rows reversed, ``np.flipud``; horizontal mirror axis).

So a neuron ``w`` matched with ``(flip, angle)`` satisfies ``w ~ flipud**flip(rotate_cw(image, angle))``.
With ``origin='lower'`` (the usual astronomy display) the same rotation looks counter-clockwise.

Generation follows PINK exactly: ``t = 0`` is the image centre-cropped or zero-padded to ``nd``
(margin ``floor(|nd - d| / 2)`` on the top/left, §2.3, no interpolation); ``t = 1 .. k-1``
(``k = numrot / 4``) are bilinear rotations of the original ``d x d`` image about its centre
``((d-1)/2, (d-1)/2)`` onto the neuron centre ``((nd-1)/2, (nd-1)/2)``, a destination pixel being 0
when its source position falls outside ``[0, d-1]`` in either axis (inclusive, §3.3); all other
transformations are exact quarter turns (``np.rot90(x, -1)``) and flips of those, so nothing is
interpolated twice. If ``nd - d`` is odd, padding and rotation disagree by half a pixel, as in PINK.

Two sampling back-ends produce the interpolated rotations from precomputed grids (built once per
image size, neuron size, numrot, window, interpolation and device, then reused):

* ``exact=False`` (default): kornia's ``remap`` (``torch.grid_sample``) on a normalised grid; matches
  PINK to float rounding (~1e-6 relative), fast on CPU and CUDA. For batches of float32 images on
  CPU (:meth:`PinkTransformer.base_rotations`, :meth:`PinkTransformer.base_rotations_ordered`) the
  same samples come from a compiled C loop over tabulated neighbours and weights
  (:mod:`somtorch.geometry._sampler`), bit-identical to ``grid_sample`` (it checks itself against
  it on first use and stands aside otherwise; ``SOMTORCH_NATIVE=0`` disables it);
* ``exact=True``: gathers the four neighbours and evaluates PINK's float32 formula in PINK's order,
  reproducing PINK's CPU build bit for bit (used by ``arithmetic="pink"``).

Native geometry
---------------
PINK's default neuron side ``trunc(sqrt(2) d + 1)`` has the other parity than an even image side
(91 for 64), which puts the image centre between neuron pixels and breaks exact invariance under
quarter turns and flips. somtorch's native convention (:func:`default_neuron_dim`, the default of
the Python API and the Hydra programs) uses sizes of the image's parity; PINK's sizes stay the
default of the drop-in command line and of ``convention="pink"``. The transformations themselves
are the same formulas in both conventions.

``interpolation="nearest"`` takes the source pixel at ``round(sr), round(sc)`` (0 outside
``[-0.5, d-0.5)``); PINK's nearest-neighbour option is broken (spec §3.6), ours is not.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from somtorch.errors import ConfigError, ShapeError
from somtorch.geometry._selection import PerImageSelection

__all__ = [
    "default_neuron_dim",
    "default_euclidean_dim",
    "parity_problem",
    "check_convention",
    "CONVENTIONS",
    "rotation_step",
    "index_to_flip_angle",
    "flip_angle_to_index",
    "num_transforms",
    "pad_or_crop",
    "PinkTransformer",
    "pink_transforms",
    "check_numrot",
    "dihedral_split",
    "FLIP_DIMS",
]

_TWO_PI_F32 = np.float32(2.0 * math.pi)


def check_numrot(numrot: int) -> int:
    numrot = int(numrot)
    if numrot != 1 and (numrot <= 0 or numrot % 4 != 0):
        raise ConfigError(None, "numrot", numrot, "1 or a positive multiple of 4")
    return numrot


#: geometry conventions: ``"native"`` (exactly invariant, the default of the Python API and the
#: Hydra programs) and ``"pink"`` (PINK 2.5's sizes, the drop-in command line and reproduction)
CONVENTIONS = ("native", "pink")


def check_convention(convention: str) -> str:
    c = str(convention).lower()
    if c not in CONVENTIONS:
        raise ConfigError(None, "convention", convention, "'native' or 'pink'")
    return c


def default_neuron_dim(image_dim: int, numrot: int, convention: str = "native") -> int:
    """Default neuron side ``nd`` for images of side ``d``.

    Convention
    ----------
    * ``"pink"`` (spec §2.2): ``d`` for numrot 1, else ``trunc(2 d / sqrt(2) + 1)`` (the smallest
      side holding the image's diagonal). For even ``d`` this side is odd (57 for 40, 91 for 64),
      so the image centre falls between neuron pixels: a quarter turn of the image is then not a
      quarter turn on the neuron grid, and turned or mirrored copies of an image can match
      another neuron (PINK's own best-neuron agreement under quarter turns: 57 % at 4 rotations).
    * ``"native"`` (default): the PINK side made the parity of ``d`` (one pixel less where they
      differ: 56 for 40, 90 for 64, 212 for 150, 46 for 32). Image and neuron then share their
      centre pixel (or pixel corner), the zero-padding of ``t = 0`` and the interpolated rotations
      agree, and quarter turns and flips of an input give the same best neuron and distance to
      float rounding whenever numrot is a multiple of 4. The pixel lost covers only the extreme
      corners of a 45-degree turn, which lie outside every distance region.

    >>> default_neuron_dim(64, 360, "pink"), default_neuron_dim(150, 360, "pink"), default_neuron_dim(64, 1, "pink")
    (91, 213, 64)
    >>> default_neuron_dim(64, 360), default_neuron_dim(40, 36), default_neuron_dim(32, 8), default_neuron_dim(63, 4)
    (90, 56, 46, 89)
    """
    convention = check_convention(convention)
    if check_numrot(numrot) == 1:
        return int(image_dim)
    nd = int(2.0 * image_dim / math.sqrt(2.0) + 1.0)
    if convention == "native":
        nd -= (nd - int(image_dim)) % 2
    return nd


def default_euclidean_dim(image_dim: int, numrot: int, shape: str = "quadratic",
                          convention: str = "native") -> int:
    """Default distance-window side ``ed``.

    Convention
    ----------
    * ``"pink"`` (spec §2.2): ``trunc(d sqrt(2) / 2)`` for rotated quadratic windows, otherwise ``d``.
    * ``"native"`` (default): the same, made the parity of ``d`` (one pixel less where they
      differ), so the window is centred on the neuron centre (``nd - ed`` even) and is mapped onto
      itself by quarter turns and flips.

    >>> default_euclidean_dim(64, 360, convention="pink"), default_euclidean_dim(150, 360, convention="pink")
    (45, 106)
    >>> default_euclidean_dim(64, 360), default_euclidean_dim(40, 36), default_euclidean_dim(64, 360, "circular")
    (44, 28, 64)
    """
    convention = check_convention(convention)
    if check_numrot(numrot) != 1 and shape == "quadratic":
        ed = int(image_dim * math.sqrt(2.0) / 2.0)
        if convention == "native":
            ed -= (ed - int(image_dim)) % 2
        return max(ed, 1)
    return int(image_dim)


def parity_problem(image_dim: int, neuron_dim: int, euclidean_dim: int) -> str | None:
    """Why sizes break exact rotation/flip invariance, or None when they keep it.

    Exact invariance needs one centre for image, neuron and distance window: ``nd - d`` and
    ``nd - ed`` even (see :func:`default_neuron_dim`).

    >>> parity_problem(40, 56, 28) is None, parity_problem(64, 91, 45)
    (True, 'neuron_dim 91 and image_dim 64 differ in parity (nd - d = 27 is odd)')
    """
    d, nd, ed = int(image_dim), int(neuron_dim), int(euclidean_dim)
    if (nd - d) % 2:
        return f"neuron_dim {nd} and image_dim {d} differ in parity (nd - d = {nd - d} is odd)"
    if (nd - ed) % 2:
        return f"euclidean_dim {ed} and neuron_dim {nd} differ in parity (nd - ed = {nd - ed} is odd)"
    return None


def rotation_step(numrot: int) -> np.float32:
    """The float32 angle step ``float32(float32(2 pi) / numrot)`` in radians."""
    return np.float32(_TWO_PI_F32 / np.float32(numrot))


def num_transforms(numrot: int, flip: bool) -> int:
    return check_numrot(numrot) * (2 if flip else 1)


def index_to_flip_angle(t: torch.Tensor, numrot: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Transformation index -> ``(flip int8, angle float32 radians)`` exactly as PINK writes them."""
    t = torch.as_tensor(t)
    flip = torch.div(t, numrot, rounding_mode="floor").to(torch.int8)
    rot = torch.remainder(t, numrot).to(torch.float32)
    angle = rot * torch.tensor(float(rotation_step(numrot)), dtype=torch.float32, device=rot.device)
    return flip, angle


def flip_angle_to_index(flip, angle, numrot: int) -> torch.Tensor:
    """Inverse of :func:`index_to_flip_angle` (angles rounded to the nearest step)."""
    flip = torch.as_tensor(flip).to(torch.int64)
    angle = torch.as_tensor(angle, dtype=torch.float64)
    k = torch.round(angle / float(rotation_step(numrot))).to(torch.int64) % numrot
    return (flip == 1).to(torch.int64) * numrot + k


def pad_or_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop or zero-pad the last two axes to ``size`` (PINK §2.3, margin on top/left).

    The margin is ``floor(|size - d| / 2)``; when ``size - d`` is odd the extra row and column go
    at the bottom/right.
    """
    d = images.shape[-1]
    if size == d:
        return images
    m = abs(size - d) // 2
    if size < d:
        return images[..., m:m + size, m:m + size]
    out = images.new_zeros(images.shape[:-2] + (size, size))
    out[..., m:m + d, m:m + d] = images
    return out


@lru_cache(maxsize=64)
def _source_coords(d: int, nd: int, numrot: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PINK's float32 source coordinates for rotations 1..k-1 over destination rows/cols [lo, hi).

    Returns ``sr, sc`` of shape ``(k-1, u, u)`` and the inclusive in-bounds mask.
    """
    k = numrot // 4
    step = rotation_step(numrot)
    cs = np.float32((d - 1) * 0.5)
    cn = np.float32((nd - 1) * 0.5)
    idx = np.arange(lo, hi, dtype=np.float32)
    pr = (idx - cn)[:, None]  # destination row offset (float32)
    pc = (idx - cn)[None, :]
    srs, scs = [], []
    for i in range(1, k):
        alpha = np.float32(np.float32(i) * step)
        ca = np.float32(math.cos(float(alpha)))
        sa = np.float32(math.sin(float(alpha)))
        sr = (pr * ca - pc * sa) + cs
        sc = (pr * sa + pc * ca) + cs
        srs.append(np.broadcast_to(sr, (hi - lo, hi - lo)))
        scs.append(np.broadcast_to(sc, (hi - lo, hi - lo)))
    u = hi - lo
    sr = np.asarray(srs, dtype=np.float32).reshape(k - 1, u, u)
    sc = np.asarray(scs, dtype=np.float32).reshape(k - 1, u, u)
    inside = (sr >= 0) & (sr <= d - 1) & (sc >= 0) & (sc <= d - 1)
    return sr, sc, inside


def _combine_taps(w: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Weighted sum over the leading tap axis in PINK's order ``((w0 a + w1 b) + w2 c) + w3 d``.

    ``w`` has shape ``(taps, k-1, u, u)`` and broadcasts against ``taps`` ``(taps, ..., k-1, u, u)``.
    """
    if w.shape[0] == 1:
        return w[0] * taps[0]
    return ((w[0] * taps[0] + w[1] * taps[1]) + w[2] * taps[2]) + w[3] * taps[3]


def _remap(img: torch.Tensor, grid: torch.Tensor, mode: str) -> torch.Tensor:
    """Batched generation with :func:`kornia.geometry.transform.remap` on a precomputed normalised
    grid ``(B, H, W, 2)`` (x, y last): ``align_corners=True``, zero padding."""
    from kornia.geometry.transform import remap

    grid = grid.to(img.dtype)
    return remap(img, grid[..., 0], grid[..., 1], mode=mode, padding_mode="zeros", align_corners=True,
                 normalized_coordinates=True)


def _grid_sample(img: torch.Tensor, grid: torch.Tensor, mode: str) -> torch.Tensor:
    """Sample ``img (B, C, d, d)`` at precomputed normalised grids ``(B, H, W, 2)`` (x, y last).

    The fast path of the per-image selection in training: exactly what :func:`_remap` (kornia's
    ``remap``) computes -- the same ``grid_sample`` kernel -- minus kornia's re-stacking of the
    grid's x and y planes on every call, which costs ~0.1 ms per training image there (the batched
    base rotations use kornia: there the re-stacking is ~1 % of the call). Half-precision CPU
    inputs go through kornia, which works around torch's CPU half kernel.
    """
    if img.device.type == "cpu" and img.dtype in (torch.float16, torch.bfloat16):
        from kornia.geometry.transform import remap

        return remap(img, grid[..., 0], grid[..., 1], mode=mode, padding_mode="zeros",
                     align_corners=True, normalized_coordinates=True)
    return torch.nn.functional.grid_sample(img, grid.to(img.dtype), mode=mode, padding_mode="zeros",
                                           align_corners=True)


class PinkTransformer(PerImageSelection, nn.Module):
    """All ``T`` rotations/flips of an image stack, in PINK's order (see module docstring).

    Parameters
    ----------
    image_dim : int
        Side ``d`` of the (square) input images.
    neuron_dim : int, optional
        Side ``nd`` of the output grid; PINK's default if omitted.
    numrot : int
        1 or a multiple of 4.
    flip : bool
        Also generate the flipped copies (``T = 2 * numrot``).
    interpolation : {"bilinear", "nearest"}
    exact : bool
        Bit-exact PINK arithmetic for the interpolated rotations (slower).

    Shape
    -----
    - Input: ``(B, C, d, d)``
    - Output of :meth:`forward`: ``(B, T, C, u, u)`` where ``u = hi - lo`` for a centred window
      ``[lo, hi)`` of the neuron grid (the whole grid by default).

    Examples
    --------
    >>> tr = PinkTransformer(4, neuron_dim=4, numrot=4, flip=True)
    >>> x = torch.arange(16.).reshape(1, 1, 4, 4)
    >>> y = tr(x)
    >>> y.shape
    torch.Size([1, 8, 1, 4, 4])
    >>> bool((y[0, 1, 0] == torch.rot90(x[0, 0], -1)).all()), bool((y[0, 4, 0] == x[0, 0].flipud()).all())
    (True, True)
    """

    def __init__(self, image_dim: int, neuron_dim: int | None = None, numrot: int = 360,
                 flip: bool = True, interpolation: str = "bilinear", exact: bool = False):
        super().__init__()
        self.image_dim = int(image_dim)
        self.numrot = check_numrot(numrot)
        self.neuron_dim = (int(neuron_dim) if neuron_dim is not None
                           else default_neuron_dim(self.image_dim, self.numrot, "pink"))
        self.flip = bool(flip)
        if interpolation not in ("bilinear", "nearest"):
            raise ConfigError(None, "interpolation", interpolation, "'bilinear' or 'nearest'")
        self.interpolation = interpolation
        self.exact = bool(exact)
        self._k = max(self.numrot // 4, 1)
        self._grid_cache: dict = {}
        self._perm_cache: dict = {}

    # ------------------------------------------------------------------ bookkeeping
    @property
    def num_transforms(self) -> int:
        return num_transforms(self.numrot, self.flip)

    def extra_repr(self) -> str:
        return (f"image_dim={self.image_dim}, neuron_dim={self.neuron_dim}, numrot={self.numrot}, "
                f"flip={self.flip}, interpolation={self.interpolation!r}, exact={self.exact}")

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
            raise ShapeError(f"images must have shape (B, C, d, d) with square d x d images; got {tuple(images.shape)}")
        if images.shape[-1] != self.image_dim:
            raise ShapeError(f"images have side {images.shape[-1]}, transformer expects image_dim={self.image_dim}")
        if not images.is_floating_point():
            images = images.float()
        return images

    def _window(self, window) -> tuple[int, int]:
        nd = self.neuron_dim
        if window is None:
            return 0, nd
        lo, hi = int(window[0]), int(window[1])
        if lo < 0 or hi > nd or lo + hi != nd or hi <= lo:
            raise ConfigError(None, "window", (lo, hi), f"a centred range [lo, nd-lo) inside [0, {nd})")
        return lo, hi

    def _grid(self, lo: int, hi: int, device, dtype):
        key = (lo, hi, str(device), dtype)
        g = self._grid_cache.get(key)
        if g is not None:
            return g
        d = self.image_dim
        sr, sc, inside = _source_coords(d, self.neuron_dim, self.numrot, lo, hi)
        if self.exact and self.interpolation == "bilinear":
            r0 = np.where(inside, np.trunc(sr), 0).astype(np.int64)
            c0 = np.where(inside, np.trunc(sc), 0).astype(np.int64)
            fr = np.where(inside, sr - r0.astype(np.float32), 0).astype(np.float32)
            fc = np.where(inside, sc - c0.astype(np.float32), 0).astype(np.float32)
            one = np.float32(1)
            w = np.stack([(one - fr) * (one - fc), (one - fr) * fc, fr * (one - fc), fr * fc]).astype(np.float32)
            w[:, ~inside] = 0
            r1 = np.minimum(r0 + 1, d - 1)
            c1 = np.minimum(c0 + 1, d - 1)
            idx = np.stack([r0 * d + c0, r0 * d + c1, r1 * d + c0, r1 * d + c1])
            g = (torch.from_numpy(idx).to(device), torch.from_numpy(w).to(device=device, dtype=dtype))
        elif self.interpolation == "nearest":
            # exact gather: source pixel floor(s + 0.5) (round half up), 0 outside [-0.5, d - 0.5)
            inside = (sr >= -0.5) & (sr < d - 0.5) & (sc >= -0.5) & (sc < d - 0.5)
            r0 = np.where(inside, np.floor(sr + np.float32(0.5)), 0).astype(np.int64)
            c0 = np.where(inside, np.floor(sc + np.float32(0.5)), 0).astype(np.int64)
            idx = (r0 * d + c0)[None]
            w = inside.astype(np.float32)[None]
            g = (torch.from_numpy(idx).to(device), torch.from_numpy(w).to(device=device, dtype=dtype))
        else:
            scale = 2.0 / max(d - 1, 1)
            gx = np.where(inside, sc.astype(np.float64) * scale - 1.0, -10.0)
            gy = np.where(inside, sr.astype(np.float64) * scale - 1.0, -10.0)
            # one tall grid: the k-1 rotations stacked along the height axis
            grid = np.stack([gx, gy], axis=-1).reshape(1, -1, hi - lo, 2)
            g = torch.from_numpy(grid).to(device=device, dtype=dtype).contiguous()
        self._grid_cache[key] = g
        return g

    def _sampler(self, key, images: torch.Tensor, grid):
        """The :class:`~somtorch.geometry._sampler.GridSampler` of the grids ``grid (G, P, 2)`` (a
        tensor, or a function building it: called only when the sampler is first built; cached under
        ``key``), or None where it is not used for ``images`` (bilinear, CPU, float32 only, and
        only where it agrees bit for bit with ``grid_sample`` on this machine)."""
        if self.interpolation != "bilinear" or images.device.type != "cpu" or images.dtype != torch.float32:
            return None
        skey = ("sampler", key)
        smp = self._grid_cache.get(skey)
        if smp is None:
            from somtorch.geometry._sampler import GridSampler

            smp = self._grid_cache[skey] = GridSampler(grid() if callable(grid) else grid, self.image_dim)
        return smp if smp.ok else None

    def base_rotations(self, images: torch.Tensor, window=None, transposes: bool = False) -> torch.Tensor:
        """The ``k = numrot/4`` base orientations (t = 0 .. k-1), ``(B, k, C, u, u)``; with
        ``transposes``, ``(B, 2k, C, u, u)``: then their transposes (rows <-> columns), sampled on the
        transposed grids where the compiled sampler runs (the same values as transposing: every
        sample depends on its own grid point only)."""
        if transposes:
            return self._with_transposes(images, window)
        images = self._check(images)
        lo, hi = self._window(window)
        b, c, d, _ = images.shape
        base0 = pad_or_crop(images, self.neuron_dim)[..., lo:hi, lo:hi]
        if self._k == 1:
            return base0.unsqueeze(1)
        u = hi - lo
        g = self._grid(lo, hi, images.device, images.dtype)
        if isinstance(g, tuple):  # exact PINK arithmetic
            idx, w = g
            flat = images.reshape(b, c, d * d)
            taps = flat[:, :, idx.reshape(-1)].reshape(b, c, idx.shape[0], self._k - 1, u, u)
            rot = _combine_taps(w, taps.transpose(0, 2)).transpose(0, 1).permute(0, 2, 1, 3, 4)
        else:
            km1 = self._k - 1
            smp = self._sampler(("base", lo, hi), images, g.view(km1, u * u, 2))
            if smp is not None:
                out = images.new_empty((b, self._k, c, u, u))
                smp.sample(images, out=out.view(b, self._k, c, u * u)[:, 1:])
                out[:, 0].copy_(base0)
                return out
            # one batch entry per rotation, the images folded into the channels (see
            # base_rotations_ordered); the grid is a view, the input is expanded, not copied
            out = _remap(images.reshape(1, b * c, d, d).expand(km1, b * c, d, d),
                         g.view(km1, u, u, 2), self.interpolation)  # (k-1, B*C, u, u)
            rot = out.view(km1, b, c, u, u).transpose(0, 1)
        return torch.cat([base0.unsqueeze(1), rot], dim=1)

    def _with_transposes(self, images: torch.Tensor, window) -> torch.Tensor:
        images = self._check(images)
        lo, hi = self._window(window)
        b, c, d, _ = images.shape
        k, u = self._k, hi - lo
        g = self._grid(lo, hi, images.device, images.dtype) if k > 1 else None
        if g is not None and not isinstance(g, tuple):
            def both():  # the rotations' grids, then the same grids transposed
                g4 = g.view(k - 1, u, u, 2)
                return torch.cat([g4, g4.transpose(1, 2)]).reshape(2 * (k - 1), u * u, 2)

            smp = self._sampler(("base+T", lo, hi), images, both)
            if smp is not None:
                out = images.new_empty((b, 2 * k, c, u, u))
                flat = out.view(b, 2 * k, c, u * u)
                smp.sample_into(images, [(range(k - 1), flat[:, 1:k]), (range(k - 1, 2 * (k - 1)), flat[:, k + 1:])])
                base0 = pad_or_crop(images, self.neuron_dim)[..., lo:hi, lo:hi]
                out[:, 0].copy_(base0)
                out[:, k].copy_(base0.transpose(-2, -1))
                return out
        r = self.base_rotations(images, window)
        return torch.cat([r, r.transpose(-2, -1)], dim=1)

    def base_rotations_ordered(self, images: torch.Tensor, order, window=None, parts: bool = False):
        """The base orientations at the window pixels ``order`` (row-major indices into the
        ``u x u`` window, e.g. grouped by symmetry orbit): ``(B, k, C, len(order))``; with
        ``parts``, the list ``[t = 0 (B, 1, C, n), t = 1..k-1 (B, k-1, C, n)]`` (not assembled:
        one copy less).

        Bit-identical to ``base_rotations(images, window).flatten(-2)[..., order]``, but the
        pixels are sampled in that order (grids permuted once and cached), so no gather is needed.
        """
        images = self._check(images)
        lo, hi = self._window(window)
        b, c, d, _ = images.shape
        u = hi - lo
        order_np = np.asarray(order, dtype=np.int64)
        okey = (order_np.tobytes(), str(images.device))
        oidx = self._perm_cache.get(okey)
        if oidx is None:
            oidx = self._perm_cache[okey] = torch.from_numpy(order_np.copy()).to(images.device)
        n = len(order_np)
        base0 = pad_or_crop(images, self.neuron_dim)[..., lo:hi, lo:hi].reshape(b, c, u * u).index_select(-1, oidx)
        if self._k == 1:
            return [base0.unsqueeze(1)] if parts else base0.unsqueeze(1)
        km1 = self._k - 1
        key = ("ordered", lo, hi, str(images.device), images.dtype, okey[0])
        g = self._grid_cache.get(key)
        if g is None:
            g = self._grid(lo, hi, images.device, images.dtype)
            if isinstance(g, tuple):
                g = tuple(a.reshape(a.shape[0], km1, u * u)[..., oidx].contiguous() for a in g)
            else:
                g = g.reshape(km1, u * u, 2)[:, oidx].unsqueeze(0).contiguous()  # (1, k-1, n, 2)
            self._grid_cache[key] = g
        if isinstance(g, tuple):  # exact PINK arithmetic
            idx, w = g
            taps = images.reshape(b, c, d * d)[:, :, idx.reshape(-1)].reshape(b, c, idx.shape[0], km1, n)
            rot = _combine_taps(w, taps.transpose(0, 2)).permute(1, 2, 0, 3)
        elif (smp := self._sampler(key, images, g.view(km1, n, 2))) is not None:
            rot = smp.sample(images)  # (B, k-1, C, n)
        else:
            # one batch entry per rotation, every image folded into the channels (input expanded,
            # not copied): CPU grid_sample parallelises over the batch axis, and this layout ran
            # 2x faster than one tall grid (2.5 vs 4.9 ms, 16 64x64 images, 89 rotations, 2 threads;
            # kornia's remap adds ~10 %: 1.31 vs 1.18 ms for 8 images)
            rot = _remap(images.reshape(1, b * c, d, d).expand(km1, b * c, d, d),
                         g.view(km1, 1, n, 2), self.interpolation)  # (k-1, B*C, 1, n)
            rot = rot.view(km1, b, c, n).transpose(0, 1)
        if parts:
            return [base0.unsqueeze(1), rot]
        return torch.cat([base0.unsqueeze(1), rot], dim=1)

    def expand_dihedral(self, base: torch.Tensor) -> torch.Tensor:
        """Base orientations ``(B, k, C, u, u)`` -> all ``T`` transforms in PINK order."""
        if self.numrot == 1:
            parts = [base]
        else:
            parts = [base] + [torch.rot90(base, -j, dims=(-2, -1)) for j in (1, 2, 3)]
        allrot = torch.cat(parts, dim=1)
        if self.flip:
            allrot = torch.cat([allrot, torch.flip(allrot, dims=(-2,))], dim=1)
        return allrot

    def forward(self, images: torch.Tensor, window=None) -> torch.Tensor:
        """All ``T`` transformations of ``images``: ``(B, T, C, u, u)`` (see class docstring)."""
        return self.expand_dihedral(self.base_rotations(images, window))

    # ------------------------------------------------------------------ selected transforms
    def _perms(self, device) -> torch.Tensor:
        key = str(device)
        p = self._perm_cache.get(key)
        if p is None:
            nd = self.neuron_dim
            a = torch.arange(nd * nd).reshape(nd, nd)
            perms = []
            for f in (0, 1):
                for j in range(4):
                    q = torch.rot90(a, -j)
                    if f:
                        q = torch.flip(q, dims=(0,))
                    perms.append(q.reshape(-1))
            p = torch.stack(perms).to(device)
            self._perm_cache[key] = p
        return p


#: torch.flip dims of the four flips (0: none, 1: rows reversed, 2: columns reversed, 3: both)
FLIP_DIMS = {1: (-2,), 2: (-1,), 3: (-2, -1)}


@lru_cache(maxsize=1)
def dihedral_split() -> list[tuple[int, int]]:
    """Each dihedral variant as a flip of the image or of its transpose.

    Convention
    ----------
    Entry ``q = 4 f + j`` (rotate clockwise by ``j`` quarter turns, ``np.rot90(x, -j)``, then
    flip rows if ``f``) is ``(side, g)`` such that ``Q_q(x) = G_g(x)`` for ``side = 0`` and
    ``Q_q(x) = G_g(x^T)`` for ``side = 1``, where ``G_g`` reverses nothing (0), the rows (1), the
    columns (2) or both (3). Derived from index permutations of a 4x4 grid (on which the dihedral
    group acts faithfully), not assumed.

    >>> dihedral_split()[1]  # a clockwise quarter turn reverses the columns of the transpose
    (1, 2)
    """
    a = np.arange(16).reshape(4, 4)
    out = []
    for f in (0, 1):
        for j in range(4):
            q = np.rot90(a, -j)
            if f:
                q = q[::-1]
            hits = [(side, g) for side, base in ((0, a), (1, a.T))
                    for g, fl in enumerate((base, base[::-1], base[:, ::-1], base[::-1, ::-1]))
                    if np.array_equal(fl, q)]
            out.append(hits[0])
    return out


#: (side, flip) of every dihedral variant q = 4 f + j (:func:`dihedral_split`) as an array
_SPLIT = np.array(dihedral_split(), dtype=np.int64)


def pink_transforms(images: torch.Tensor, numrot: int = 360, flip: bool = True,
                    neuron_dim: int | None = None, interpolation: str = "bilinear",
                    exact: bool = False) -> torch.Tensor:
    """Functional form of :class:`PinkTransformer`: ``(B, C, d, d) -> (B, T, C, nd, nd)``."""
    return PinkTransformer(images.shape[-1], neuron_dim, numrot, flip, interpolation, exact)(images)
