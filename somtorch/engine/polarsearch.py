"""Polar-guided approximate search: a surrogate distance for every transformation without an exact pass.

:class:`~somtorch.engine.approx.ApproxMapper`'s ``search="polar"`` ranks the base rotations of an
image with a surrogate of the squared region distance that needs no interpolated rotation::

    D(t, w) = |T_t x|^2_M  -  2 <T_t x, w>_M  +  |w|^2_M
            ~ norm(t)      -  2 (inner(t, w) + outer(t, w))  +  |w|^2_M

* ``norm(t)``: the image's exact region norm of every rotation
  (:class:`~somtorch.engine.surrogate.RotationNorms`, one product, no interpolation);
* ``inner(t, w)``: the cross term over the pixels of the region within ``inner_radius`` of the
  centre, **exact**: those few pixels of all ``k`` base rotations are sampled with the
  transformer's own taps as one product ``x[support] @ S`` (``S`` precomputed), and the eight
  quarter-turn/flip variants are permutations of them (the inner disc is symmetric);
* ``outer(t, w)``: the cross term over the rest of the region from the polar FFT model
  (:class:`~somtorch.engine.polar.PolarMatcher` with that region as its mask): every angle of
  every flip from one spectral product per angular frequency.

Why the split: bilinear interpolation smooths a rotated image by an amount that depends on the
angle *and on the pixel*; near the centre a rotation moves pixels by less than a pixel, so their
fractional offsets, and the smoothing, change smoothly and strongly with the angle, and for a
compact source at the centre that decides the best exact angle. The smooth polar model cannot
see it there. Measured offline on 200 images of the built-in sky (32x32, 10x10 SOM, 360
rotations + flip), evaluating exactly the 4 base rotations the estimate ranks best found the exact
best neuron for 93.5 % of images with the polar cross term of the whole region, and for 100 %
with the inner 52 pixels (``inner_radius=4``) exact. Farther out the polar model is close for
smooth neurons; for sharp ones (the structured test images, neurons made of images) it is not:
there the same check gave 94.5 % with the inner 52 pixels and 100 % only with 384 of the 484
region pixels exact, i.e. nearly the exact search's work (benchmarks/RESULTS.md).

Only the ``neurons`` best neurons get the surrogate at every angle: they are ranked by a
rotation- and flip-invariant bound, the distance between the magnitudes of the images' and
neurons' angular spectra ring by ring (one product for all neurons; it held the exact best neuron
among its 8 best for 99-100 % of images in all three benchmark cases). The base rotations the
surrogate ranks best (with their eight variants each) are then evaluated **exactly** for every
neuron (:class:`~somtorch.engine.approx.BaseSubsetEngine`), in two passes
(:meth:`~somtorch.engine.approx.ApproxMapper._polar_pass`): first the best one of each of the best
neurons in turn (:func:`spread_bases`), then the next best ones of the exact best neuron so far.
Every reported distance is the exact distance of the reported transformation.

Convention
----------
As :mod:`somtorch.engine.surrogate`: base rotation ``b < k = numrot / 4``; transformation
``t = f * numrot + j * k + b`` is quarter turn ``j`` and flip ``f`` of it (variant ``q = 4 f +
j``), angle ``a = j * k + b``. Window pixels are row-major over ``engine.window``; a pixel is
*inner* when its centre lies within ``inner_radius`` (neuron pixels) of the window centre and
every variant's region contains it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from somtorch.engine.polar import PolarMatcher, _sample
from somtorch.errors import ConfigError

__all__ = ["PolarSurrogate", "spread_bases"]


class PolarSurrogate:
    """Surrogate distances of every transformation for the best neurons: exact norms, exact inner
    cross term, polar-FFT outer cross term (see the module docstring).

    Parameters
    ----------
    som : RotationInvariantSOM
    inner_radius : float
        Radius (neuron pixels, about the window centre) of the disc whose cross term is exact.
    n_angles, n_radii, max_frequency : polar grid (:class:`~somtorch.engine.polar.PolarMatcher`);
        ``n_angles`` defaults to its default rounded up to a multiple of 4 (so that the estimate
        of a quarter-turned image is the shifted estimate), ``max_frequency`` to 12 here
        (measured on the sky: as good as all frequencies, and cheaper).
    """

    def __init__(self, som, inner_radius: float = 4.0, n_angles: int | None = None,
                 n_radii: int | None = None, max_frequency: int | None = None):
        from somtorch.engine.surrogate import RotationNorms, _window_taps

        if not inner_radius >= 0:
            raise ConfigError(None, "inner_radius", inner_radius, ">= 0")
        self.som = som
        eng = som.engine
        tr = eng.transformer
        self.numrot = tr.numrot
        self.k = max(self.numrot // 4, 1)
        self.flip = som.geometry.flip
        self.nf = 2 if self.flip else 1
        lo, hi = eng.window
        u = self.u = hi - lo
        _, vmask = eng._variant_tables("cpu")  # (u*u, nq): region pixels of every variant
        core = vmask.min(dim=1).values.numpy() > 0
        c = (u - 1) * 0.5
        rr, cc = np.meshgrid(np.arange(u) - c, np.arange(u) - c, indexing="ij")
        inner = np.nonzero(core & (np.hypot(rr, cc).reshape(-1) < inner_radius))[0]
        self.inner = torch.from_numpy(inner)
        self.n_in = len(inner)
        # permutations: variant q of base rotation b at window pixel p is the base's pixel v_q[p]
        a = np.arange(u * u).reshape(u, u)
        pos = -np.ones(u * u, np.int64)
        pos[inner] = np.arange(self.n_in)
        self.nq = len(eng.pairing()["pairs"])
        nj = 4 if self.numrot != 1 else 1
        perm = np.zeros((self.nq, self.n_in), np.int64)
        for q in range(self.nq):
            f, j = divmod(q, nj)
            v = np.rot90(a, -j)
            v = np.flipud(v) if f else v
            perm[q] = pos[v.reshape(-1)[inner]]
        if (perm < 0).any():
            raise AssertionError("the inner disc is not symmetric under the dihedral variants")
        self._perm = torch.from_numpy(perm)
        # inner samples of all k base rotations: x[support] @ S (support: the image pixels they tap)
        idx, wt = _window_taps(som)  # (k, u*u, taps)
        idx, wt = idx[:, inner], wt[:, inner]
        sup, inv = np.unique(idx[wt != 0], return_inverse=True)
        smat = np.zeros((max(len(sup), 1), self.n_in * self.k))  # columns (inner pixel, rotation)
        kk, pp, _ = np.nonzero(wt != 0)
        np.add.at(smat, (inv, pp * self.k + kk), wt[wt != 0])
        self._sup = torch.from_numpy(sup if len(sup) else np.zeros(1, np.int64))
        self._smat = torch.from_numpy(smat.astype(np.float32))
        # polar grids: the whole region (the invariant ranking's samples) and, as the outer
        # model's mask, the region without the inner disc
        outer = eng.mask.clone()
        ri, ci = np.divmod(inner, u)
        outer[torch.from_numpy(ri + lo), torch.from_numpy(ci + lo)] = False
        if n_angles is None:  # a multiple of 4: quarter turns of an image are shifts of its samples
            n_angles = 4 * math.ceil(PolarMatcher(som).n_angles / 4)
        if max_frequency is None:  # measured: the outer model needs no more (benchmarks/RESULTS.md)
            max_frequency = min(12, int(n_angles) // 2)
        self.full = PolarMatcher(som, n_angles, n_radii, max_frequency=max_frequency)
        self.outer = PolarMatcher(som, self.full.n_angles, self.full.n_radii, max_frequency=max_frequency,
                                  mask=outer)
        self.norms = RotationNorms(som)
        self._cache: dict = {}

    # ------------------------------------------------------------------ tables
    def _basis(self, device, dtype) -> torch.Tensor:
        """``(S, 2F, numrot)``: ``[Re P | Im P] @ basis[0]`` = the polar series of spectrum ``P`` at
        every angle (the values :meth:`PolarMatcher._correlate` gives; it is linear);
        ``basis[1]`` reads it at minus every angle (the flip)."""
        key = ("basis", str(device), dtype)
        tab = self._cache.get(key)
        if tab is None:
            f = self.full.n_freq
            eye = torch.eye(f, dtype=torch.float64)
            spec = torch.cat([torch.complex(eye, torch.zeros_like(eye)), torch.complex(torch.zeros_like(eye), eye)])
            basis = self.full._correlate(spec)
            rev = (-torch.arange(self.numrot)) % self.numrot
            tab = torch.stack([basis, basis[:, rev]][: self.nf]).to(device, dtype).contiguous()
            self._cache[key] = tab
        return tab

    def _neuron_tables(self, weights: torch.Tensor) -> dict:
        """Per weight tensor (cached): the inner pixels of every variant ``w_in (N, nq, C*n_in)``,
        the outer polar spectra ``v (F, C*R, 2N)`` (``[Re V | Im V]``), the rotation-invariant
        ring spectra ``mag (N, C*R*F)`` and the region norms ``wnorm (N,)``."""
        key = (weights.data_ptr(), weights._version, str(weights.device), tuple(weights.shape))
        tab = self._cache.get("neurons")
        if tab is not None and tab[0] == key:
            return tab[1]
        dev, dt = weights.device, weights.dtype
        n, c = weights.shape[:2]
        lo, hi = self.som.engine.window
        win = weights[..., lo:hi, lo:hi].reshape(n, c, self.u * self.u)[:, :, self.inner.to(dev)]  # (N, C, n_in)
        # w_in[n, q, c, perm_q[i]] = w[n, c, inner[i]]: cross of variant q = w_in[n, q] . base_in
        w_in = weights.new_zeros((n, self.nq, c, self.n_in))
        for q in range(self.nq):
            w_in[:, q, :, self._perm[q].to(dev)] = win
        _, wnorm = self.som.engine.neuron_parity(weights)
        tab = {"w_in": w_in.reshape(n, self.nq, c * self.n_in), "v": self.outer.neuron_tables(weights)["v"],
               "mag": self._magnitudes(_sample(weights, self.full._dr.to(dev), self.full._dc.to(dev))),
               "wnorm": wnorm.to(dt)}
        tab["mag2"] = (tab["mag"] ** 2).sum(1)
        self._cache["neurons"] = (key, tab)
        return tab

    def _magnitudes(self, polar: torch.Tensor) -> torch.Tensor:
        """Rotation- and flip-invariant features ``(B, C*R*F)`` of polar samples ``(B, C, R, A)``:
        the magnitudes of the angular spectra of ``sqrt(area * mask) * samples``, weighted so that
        ``|a - b|^2`` of two such features is the ring-wise lower bound of the polar distance
        over all rotations and flips."""
        dev, dt = polar.device, polar.dtype
        key = ("magw", str(dev), dt)
        wts = self._cache.get(key)
        if wts is None:
            pm = self.full
            m = _sample(self.som.engine.mask.to(dev, dt)[None, None], pm._dr.to(dev), pm._dc.to(dev))[0, 0]
            area = (m * pm._area.to(dev, dt)[:, None]).clamp_min(0).sqrt()  # (R, A)
            fw = torch.full((pm.n_freq,), 2.0, dtype=dt, device=dev)  # a real series counts +-m
            fw[0] = 1.0
            if pm.n_freq - 1 == pm.n_angles // 2:
                fw[-1] = 1.0
            wts = self._cache[key] = (area, (fw / pm.n_angles).sqrt())
        area, fw = wts
        spec = self.full._spectrum(polar * area).abs() * fw
        return spec.reshape(polar.shape[0], -1)

    # ------------------------------------------------------------------ pieces
    def inner_samples(self, images: torch.Tensor) -> torch.Tensor:
        """The inner pixels of all base rotations: ``(B, C * n_in, k)`` (channel-major)."""
        b, c, d, _ = images.shape
        dev, dt = images.device, images.dtype
        key = ("smat", str(dev), dt)
        smat = self._cache.get(key)
        if smat is None:
            smat = self._cache[key] = (self._sup.to(dev), self._smat.to(dev, dt))
        sup, s = smat
        return (images.reshape(b * c, d * d).index_select(1, sup) @ s).view(b, c * self.n_in, self.k)

    def polar_samples(self, images: torch.Tensor) -> torch.Tensor:
        """Bilinear samples ``(B, C, n_radii, n_angles)`` of images on the polar grid."""
        pm = self.full
        return _sample(images, pm._dr.to(images.device), pm._dc.to(images.device))

    def rank(self, images: torch.Tensor, neurons: int, xp: torch.Tensor | None = None) -> torch.Tensor:
        """The ``neurons`` neurons ``(B, R)`` with the lowest rotation/flip-invariant ring-spectrum
        bound (polar magnitudes), best first (``xp``: :meth:`polar_samples`, computed if omitted)."""
        tab = self._neuron_tables(self.som.weight)
        xp = self.polar_samples(images) if xp is None else xp
        bound = tab["mag2"] - 2.0 * (self._magnitudes(xp) @ tab["mag"].T)  # (B, N), up to the image's constant
        r = min(int(neurons), bound.shape[1])
        return torch.topk(bound, r, dim=1, largest=False).indices

    def cross_terms(self, images: torch.Tensor, top: torch.Tensor,
                    xp: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The outer (polar FFT) and inner (exact) cross terms ``<T_t x, w>`` of neurons ``top
        (B, R)`` at every transformation: ``(B, R, S, numrot)`` each, ``[.., f, a]`` for
        ``t = f * numrot + a``."""
        outer, inner = self._cross(images, top, xp)
        return torch.stack(outer, dim=2), inner

    def _cross(self, images, top, xp=None):
        """:meth:`cross_terms` as ``([outer of each flip (B, R, numrot)], inner)``."""
        w = self.som.weight
        tab = self._neuron_tables(w)
        b, r = top.shape
        dev, dt = images.device, images.dtype
        n, numrot, nf = w.shape[0], self.numrot, self.nf
        pm = self.full
        xp = self.polar_samples(images) if xp is None else xp  # (B, C, R, A)
        # outer: the polar FFT model at every angle and flip; the spectra of all neurons in one
        # product per frequency, then those of the R
        xs = pm._spectrum(xp)  # (B, C, R, F)
        nfr = pm.n_freq
        lhs = torch.cat([xs.real, xs.imag], dim=0).permute(3, 0, 1, 2).reshape(nfr, 2 * b, -1)
        prod = torch.bmm(lhs, tab["v"]).view(nfr, 2, b, 2, n)  # (F, Re/Im X, B, Re/Im V, N)
        g = torch.gather(prod, 4, top.view(1, 1, b, 1, r).expand(nfr, 2, b, 2, r))  # (F, 2, B, 2, R)
        g = g.permute(2, 4, 1, 3, 0)  # (B, R, Re/Im X, Re/Im V, F)
        xr_vr, xr_vi, xi_vr, xi_vi = g[:, :, 0, 0], g[:, :, 0, 1], g[:, :, 1, 0], g[:, :, 1, 1]  # (B, R, F)
        # V conj(X) (no flip) and V X (flip, read at -angle): [Re | Im] along the frequencies
        basis = self._basis(dev, dt)  # (S, 2F, numrot)
        cross = [torch.cat([xr_vr + xi_vi, xr_vi - xi_vr], dim=2) @ basis[0]]  # (B, R, numrot)
        if nf > 1:
            cross.append(torch.cat([xr_vr - xi_vi, xr_vi + xi_vr], dim=2) @ basis[1])
        # inner, exact: the inner pixels of all base rotations against every variant;
        # rows (neuron, flip, quarter turn) and columns (base rotation) are (neuron, flip, angle)
        xin = self.inner_samples(images)  # (B, C*n_in, k)
        w_in = tab["w_in"].index_select(0, top.reshape(-1)).view(b, r * self.nq, -1)  # (B, R*nq, C*n_in)
        return cross, torch.bmm(w_in, xin).view(b, r, nf, numrot)

    def surrogate(self, images: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """Estimated squared distances ``(B, R, S, numrot)`` of neurons ``top (B, R)`` to every
        transformation: exact norm - 2 (outer + inner cross term) + ``|w|^2``."""
        outer, inner = self.cross_terms(images, top)
        return self._add_norms(images, outer.add_(inner).mul_(-2.0).add_(self._wnorm(top)))

    def _wnorm(self, top: torch.Tensor) -> torch.Tensor:
        wn = self._neuron_tables(self.som.weight)["wnorm"]
        return wn[top].view(top.shape[0], top.shape[1], 1, 1)

    def _norms_by_angle(self, images: torch.Tensor) -> torch.Tensor:
        """Exact region norms ``(B, S or 1, numrot)`` of every transformation."""
        norms = self.norms(images)  # (B, k, V)
        b, k, numrot = images.shape[0], self.k, self.numrot
        a = torch.arange(numrot, device=images.device)
        if norms.shape[2] > 1:
            fi = torch.arange(self.nf, device=images.device).view(-1, 1)
            return norms.reshape(b, -1)[:, ((a % k) * norms.shape[2]).view(1, -1) + fi * 4 + a // k]
        return norms[:, a % k, 0].unsqueeze(1)

    def _add_norms(self, images, part):
        return part.add_(self._norms_by_angle(images).unsqueeze(1))

    def base_scores(self, images: torch.Tensor, neurons: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every base rotation's surrogate for each of the ``neurons`` best neurons of :meth:`rank`:
        its lowest estimate over the flips and quarter turns, ``(B, R, k)``, and those neurons
        ``(B, R)``."""
        b, k = images.shape[0], self.k
        xp = self.polar_samples(images)
        top = self.rank(images, neurons, xp)
        outer, part = self._cross(images, top, xp)
        for f, o in enumerate(outer):
            part[:, :, f] += o
        part.mul_(-2.0).add_(self._wnorm(top)).add_(self._norms_by_angle(images).unsqueeze(1))
        return part.view(b, top.shape[1], -1, k).amin(dim=2), top

    def estimate(self, images: torch.Tensor, count: int, neurons: int,
                 exclude: torch.Tensor | None = None) -> torch.Tensor:
        """The ``count`` base rotations ``(B, count)`` (sorted) with the lowest :meth:`surrogate`
        over the ``neurons`` best neurons of :meth:`rank`, none of ``exclude (m,)``."""
        k = self.k
        score = self.base_scores(images, neurons)[0].amin(dim=1)  # (B, k): best over the neurons
        if exclude is not None and len(exclude):
            score[:, exclude] = float("inf")
        count = min(int(count), k - (len(exclude) if exclude is not None else 0))
        return torch.topk(score, count, dim=1, largest=False).indices.sort(dim=1).values


def spread_bases(scores: torch.Tensor, count: int, taken: torch.Tensor | None = None) -> torch.Tensor:
    """``count`` distinct base rotations ``(B, count)``: the best one (lowest score) of each neuron in
    turn, neurons ordered by their lowest score, none of ``taken (B, m)``; ``scores (B, R, k)``.

    Measured (benchmarks/RESULTS.md): spreading the first exact pass over the best neurons finds
    the exact best neuron more often on sharp sources than the globally lowest scores do."""
    scores = scores.clone()
    b, r, k = scores.shape
    if taken is not None and taken.numel():
        scores.scatter_(2, taken.unsqueeze(1).expand(b, r, taken.shape[1]), float("inf"))
    order = scores.amin(dim=2).argsort(dim=1)  # (B, R)
    out = []
    for i in range(min(int(count), k)):
        row = torch.gather(scores, 1, order[:, i % r].view(b, 1, 1).expand(b, 1, k))[:, 0]  # (B, k)
        pick = row.argmin(dim=1)
        out.append(pick)
        scores.scatter_(2, pick.view(b, 1, 1).expand(b, r, 1), float("inf"))
    return torch.stack(out, dim=1)
