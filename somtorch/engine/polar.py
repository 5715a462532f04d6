"""Polar FFT estimate of every neuron's distance at every rotation/flip (bisect seeds; the polar search's outer term).

Images and neurons are resampled (bilinear) on a polar grid about their centres: ``n_radii``
rings ``rho_i = (i + 1/2) * radial_step`` and ``n_angles`` equally spaced angles. A rotation of
the image about its centre is then a circular shift along the angle axis and the flip after it
reverses that axis. The squared region distance, written as a polar quadrature with area weights
``rho * d_rho * d_theta`` and the region mask sampled on the same grid,
``D(f, a) = |w|^2 + |Q x|^2(f, a) - 2 <Q x, w>(f, a)``, has cross and norm terms that are
circular correlations along the angle axis: their angular spectra (``rfft``) are multiplied for
every neuron at once (one batched product per angular frequency gives both flips: a flip
conjugates the image spectrum, so both come from the same four real products) and an inverse
FFT evaluates them at all ``numrot`` angles.

Convention
----------
Polar angle ``theta`` is measured from the column axis towards the row axis (clockwise on screen
with row 0 at the top), so a clockwise rotation by ``a`` (PINK's) maps ``X(rho, theta)`` to
``X(rho, theta - a)`` and the flip after it (rows reversed) to ``X(rho, -theta - a)``. Centres
are ``(d-1)/2`` (images) and ``(nd-1)/2`` (neurons), PINK's.

The estimate is a smooth model: it does not see the angle-dependent smoothing of bilinear
interpolation that the exact distances contain (none at quarter turns), see
:mod:`somtorch.engine.approx`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from somtorch.errors import ConfigError

if TYPE_CHECKING:
    from somtorch.engine.som import RotationInvariantSOM

__all__ = ["PolarMatcher"]


def _polar_grid(n_radii: int, n_angles: int, step: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row and column offsets ``(R, A)`` of the polar samples and the ring radii ``(R,)`` (float64)."""
    rho = (torch.arange(n_radii, dtype=torch.float64) + 0.5) * step
    theta = torch.arange(n_angles, dtype=torch.float64) * (2.0 * math.pi / n_angles)
    return rho[:, None] * torch.sin(theta)[None, :], rho[:, None] * torch.cos(theta)[None, :], rho


def _sample(x: torch.Tensor, dr: torch.Tensor, dc: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``x (B, C, n, n)`` at offsets ``(dr, dc)`` from its centre ``(n-1)/2``
    (zero outside): ``(B, C, R, A)``."""
    n = x.shape[-1]
    scale = 2.0 / max(n - 1, 1)
    c = (n - 1) * 0.5
    grid = torch.stack([(c + dc) * scale - 1.0, (c + dr) * scale - 1.0], dim=-1)  # x = col, y = row
    grid = grid.to(device=x.device, dtype=x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1, -1)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


class PolarMatcher:
    """Polar FFT estimate of every neuron's best flip, angle and squared distance.

    Parameters
    ----------
    som : RotationInvariantSOM
    n_angles : int, optional
        Angular samples of the polar grid (even). Default: ``2 * ceil(pi * r_max / 2)`` with
        ``r_max`` the region's outer radius in pixels (about one sample per pixel of the outer ring).
    n_radii : int, optional
        Rings; default ``ceil(r_max / radial_step)``.
    radial_step : float
        Ring spacing in neuron pixels.
    max_frequency : int, optional
        Highest angular frequency kept (default ``n_angles // 2``): fewer is faster and smoother.
    mask : torch.Tensor, optional
        Boolean ``(nd, nd)`` region of the model (default: the SOM's distance region); the
        polar search (:mod:`somtorch.engine.polarsearch`) models the region without its centre.

    Notes
    -----
    The neurons' spectra are computed once per weight tensor (cached by its ``_version`` and data
    pointer) and reused for every batch.
    """

    def __init__(self, som: RotationInvariantSOM, n_angles: int | None = None, n_radii: int | None = None,
                 radial_step: float = 1.0, max_frequency: int | None = None, mask: torch.Tensor | None = None):
        self.som = som
        g = som.geometry
        self.numrot = g.numrot
        self.flip = g.flip
        mask = som.engine.mask if mask is None else mask.bool()
        if tuple(mask.shape) != tuple(som.engine.mask.shape):
            raise ConfigError(None, "mask", tuple(mask.shape), f"shape {tuple(som.engine.mask.shape)}")
        self.mask = mask
        nd = g.nd
        idx = torch.nonzero(som.engine.mask)  # the grid covers the whole region whatever the mask
        cn = (nd - 1) * 0.5
        r_max = float(((idx.double() - cn) ** 2).sum(1).sqrt().max()) + 0.7072
        if not radial_step > 0:
            raise ConfigError(None, "radial_step", radial_step, "> 0")
        self.radial_step = float(radial_step)
        self.n_radii = int(n_radii) if n_radii else max(1, math.ceil(r_max / self.radial_step))
        a = int(n_angles) if n_angles else 2 * math.ceil(math.pi * r_max / 2.0)
        if a < 4 or a % 2:
            raise ConfigError(None, "n_angles", n_angles, "an even number >= 4")
        self.n_angles = a
        kmax = a // 2 if max_frequency is None else int(max_frequency)
        if not 1 <= kmax <= a // 2:
            raise ConfigError(None, "max_frequency", max_frequency, f"in [1, n_angles / 2 = {a // 2}]")
        self.n_freq = kmax + 1
        # the angles the estimate is evaluated at: a multiple of numrot >= n_angles, every m-th kept
        self.n_eval = self.numrot * math.ceil(a / self.numrot)
        dr, dc, _ = _polar_grid(self.n_radii, a, self.radial_step)
        self._dr, self._dc = dr, dc
        rho = (torch.arange(self.n_radii, dtype=torch.float64) + 0.5) * self.radial_step
        self._area = (rho * self.radial_step * (2.0 * math.pi / a))  # (R,)
        self._cache: dict = {}

    # ------------------------------------------------------------------ spectra
    def _weights_key(self, w: torch.Tensor):
        return (w.data_ptr(), w._version, str(w.device), tuple(w.shape))

    def _spectrum(self, polar: torch.Tensor) -> torch.Tensor:
        """``(..., R, A)`` real -> ``(..., R, F)`` complex angular spectrum (kept frequencies)."""
        return torch.fft.rfft(polar, dim=-1)[..., : self.n_freq]

    def neuron_tables(self, weights: torch.Tensor) -> dict:
        """Spectra of ``area * mask * w`` (as a ``(F, C*R, 2N)`` real matrix), of ``area * mask``
        and the polar norms ``|w|^2`` (cached per weight tensor)."""
        key = self._weights_key(weights)
        tab = self._cache.get("neurons")
        if tab is not None and tab[0] == key:
            return tab[1]
        dev, dt = weights.device, weights.dtype
        n, c = weights.shape[:2]
        dr, dc = self._dr.to(dev), self._dc.to(dev)
        m = _sample(self.mask.to(dev, dt)[None, None], dr, dc)[0, 0]  # (R, A) soft mask
        am = m * self._area.to(dev, dt)[:, None]  # area-weighted mask
        wp = _sample(weights, dr, dc)  # (N, C, R, A)
        v = self._spectrum(wp * am)  # (N, C, R, F)
        wnorm = (wp * wp * am).sum((1, 2, 3))  # (N,)
        # real form: columns [Re V | Im V] for every neuron, rows (channel, ring)
        vr = v.real.permute(3, 1, 2, 0).reshape(self.n_freq, c * self.n_radii, n)
        vi = v.imag.permute(3, 1, 2, 0).reshape(self.n_freq, c * self.n_radii, n)
        tab = {"v": torch.cat([vr, vi], dim=2).contiguous(), "mask": self._spectrum(am), "wnorm": wnorm}
        self._cache["neurons"] = (key, tab)
        return tab

    def _correlate(self, spec: torch.Tensor) -> torch.Tensor:
        """Evaluate real series with spectra ``(..., F)`` at ``numrot`` angles ``(..., numrot)``."""
        full = torch.zeros(spec.shape[:-1] + (self.n_eval // 2 + 1,), dtype=spec.dtype, device=spec.device)
        f = min(self.n_freq, full.shape[-1])
        full[..., :f] = spec[..., :f]
        if f - 1 == self.n_angles // 2 and self.n_eval > self.n_angles:
            full[..., f - 1] *= 0.5  # the Nyquist term of n_angles samples counts once
        # irfft's 1/n_eval normalisation, and the DC/Nyquist terms counted once (as a real series)
        vals = torch.fft.irfft(full, n=self.n_eval, dim=-1) * (self.n_eval / self.n_angles)
        return vals[..., :: self.n_eval // self.numrot]

    @torch.no_grad()
    def estimate(self, images: torch.Tensor, weights: torch.Tensor | None = None,
                 scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Estimated squared distances ``(B, S, N, numrot)`` (``S`` = 2 with flip, else 1) of
        ``images (B, C, d, d)`` zoomed by ``scale`` about their centre (the image is sampled at
        radii ``rho / scale``), and the image's polar norm spectrum (internal).

        Returns ``(dsq, None)``; ``dsq[b, f, n, s]`` estimates the squared region distance of
        neuron ``n`` to transformation ``t = f * numrot + s``.
        """
        w = self.som.weight if weights is None else weights
        tab = self.neuron_tables(w)
        dev, dt = images.device, images.dtype
        b, c = images.shape[:2]
        nf, r = self.n_freq, self.n_radii
        dr, dc = self._dr.to(dev) / scale, self._dc.to(dev) / scale
        xp = _sample(images, dr, dc)  # (B, C, R, A)
        xs = self._spectrum(xp)  # (B, C, R, F)
        x2 = self._spectrum((xp * xp).sum(1))  # (B, R, F)
        # cross products: [Re X; Im X] (2B, C*R) per frequency against [Re V | Im V] (C*R, 2N)
        lhs = torch.cat([xs.real, xs.imag], dim=0).permute(3, 0, 1, 2).reshape(nf, 2 * b, c * r)
        prod = torch.bmm(lhs, tab["v"])  # (F, 2B, 2N)
        n = prod.shape[-1] // 2
        xa, xb = prod[:, :b, :n], prod[:, :b, n:]  # Re X Re V, Re X Im V
        ya, yb = prod[:, b:, :n], prod[:, b:, n:]  # Im X Re V, Im X Im V
        # V conj(X) (no flip) and V X (flip, read at -angle)
        p0 = torch.complex(xa + yb, xb - ya).permute(1, 2, 0)  # (B, N, F)
        cross = [self._correlate(p0)]
        # image norm term: area*mask correlated with |X|^2 (summed over channels and rings)
        mk = tab["mask"]  # (R, F)
        e0 = torch.complex((x2.real * mk.real + x2.imag * mk.imag).sum(1),
                           (x2.real * mk.imag - x2.imag * mk.real).sum(1))  # (B, F)
        norms = [self._correlate(e0)]
        if self.flip:
            p1 = torch.complex(xa - yb, xb + ya).permute(1, 2, 0)
            e1 = torch.complex((x2.real * mk.real - x2.imag * mk.imag).sum(1),
                               (x2.real * mk.imag + x2.imag * mk.real).sum(1))
            rev = (-torch.arange(self.numrot, device=dev)) % self.numrot
            cross.append(self._correlate(p1)[..., rev])
            norms.append(self._correlate(e1)[..., rev])
        cr = torch.stack(cross, dim=1)  # (B, S, N, numrot)
        nm = torch.stack(norms, dim=1).unsqueeze(2)  # (B, S, 1, numrot)
        dsq = nm - 2.0 * cr + tab["wnorm"].to(dt)[None, None, :, None]
        return dsq.clamp_min_(0), None
