"""Fast approximate matching: a guided search over rotations, exact for every neuron.

Exact search (:class:`~somtorch.engine.mapping.Mapper`) interpolates all ``k = numrot / 4`` base
rotations of an image, gets the other transformations as exact quarter turns and flips of them,
and multiplies all of them with all neurons; both halves cost about ``k`` per image.
:class:`ApproxMapper` evaluates a small, image-dependent subset of the base rotations instead,
chosen by one of three searches (``search``):

* ``"surrogate"`` (default): evenly spaced base rotations exactly, then the distance of every
  other transformation estimated from the image's exact region norm at every angle
  (:mod:`somtorch.engine.surrogate`, no interpolation) and the cross term interpolated in angle;
  the best-estimated base rotations are evaluated exactly;
* ``"polar"``: no exact first pass; the estimate is the exact norm, the exact cross term of the
  few pixels near the centre and a polar-FFT cross term for the rest
  (:mod:`somtorch.engine.polarsearch`), for the neurons a rotation-invariant polar bound ranks
  best; the best-estimated base rotations are evaluated exactly;
* ``"bisect"`` (the first method): brackets the best rotation so far in halving steps, optionally
  seeded by the polar FFT estimate (:class:`PolarMatcher`; measured not to pay).

:class:`BaseSubsetEngine` evaluates a subset with the exact engine's own pieces (the
transformer's sampling grids, the flip-parity features and
:meth:`~somtorch.engine.distance.DistanceEngine.sq_distances_fast`), so every reported distance
is the exact distance of the reported transformation; the approximation is only in *which*
transformations are searched.

:func:`matching_agreement` compares a mapper with exact search on the same SOM and images
(best-neuron agreement, best-angle error, distance errors, throughput, in one run).

Convention
----------
As in :mod:`somtorch.engine.mapping`: distances are Euclidean region distances and
``transform_index`` is PINK's ``t`` (``flip = t // numrot``, ``angle = (t % numrot) * step``, the
neuron matching ``flipud**flip(rotate_cw(image, angle))``); polar angles as in
:mod:`somtorch.engine.polar`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from somtorch.engine.agreement import matching_agreement
from somtorch.engine.mapping import Mapper, MappingResult
from somtorch.engine.polar import PolarMatcher
from somtorch.engine.som import RotationInvariantSOM
from somtorch.errors import ConfigError

__all__ = ["ApproxMapper", "ApproxOptions", "BaseSubsetEngine", "PolarMatcher", "matching_agreement",
           "make_mapper", "MATCHING_MODES"]

#: matching modes of the mapping programs (``matching:`` in the map config, ``--fast`` in somtorch-pink)
MATCHING_MODES = ("exact", "approximate")


class BaseSubsetEngine:
    """Exact distances of every neuron to the dihedral variants of chosen base rotations.

    The exact mapper interpolates all ``k = numrot / 4`` base rotations of an image and gets the
    other transformations as exact quarter turns and flips of them (:mod:`somtorch.engine.distance`).
    This engine does the same for a per-image subset ``sel (B, M)`` of base rotations: they are
    sampled with the engine's own grids (the transformer's ``grid_sample`` coordinates, or PINK's
    exact taps for ``arithmetic="pink"`` / nearest neighbour), put in flip-parity coordinates
    (:func:`~somtorch.engine.parity.parity_from_orbits`) and multiplied with the neurons by
    :meth:`~somtorch.engine.distance.DistanceEngine.sq_distances_fast`, so every value is the exact
    mapper's distance of that transformation (to float32 rounding of the GEMM). Costs ``M / k`` of
    an exact search.
    """

    def __init__(self, som: RotationInvariantSOM):
        from somtorch.engine.parity import orbit_order
        from somtorch.geometry.regions import region_indices

        self.som = som
        eng = som.engine
        self.engine = eng
        self.tr = eng.transformer
        self.numrot = self.tr.numrot
        self.k = max(self.numrot // 4, 1)
        self.lo, self.hi = eng.window
        u = self.u = self.hi - self.lo
        self.order = torch.from_numpy(orbit_order(u).copy())
        pairs = eng.pairing()["pairs"]
        self.nq = len(pairs)
        self.nj = 4 if self.numrot != 1 else 1
        # the base pixels (window row-major) each dihedral variant sees inside the region
        region = region_indices(eng.mask, eng.window)
        a = torch.arange(u * u).reshape(u, u)
        m = torch.zeros(u * u, self.nq)
        for q in range(self.nq):
            f, j = divmod(q, self.nj)
            v = torch.rot90(a, -j)
            v = torch.flip(v, dims=(0,)) if f else v
            m[v.reshape(-1)[region], q] = 1.0
        self._vmask = m[self.order].contiguous()  # (u*u in orbit order, nq)
        self._cache: dict = {}

    def _tables(self, device, dtype):
        key = (str(device), dtype)
        tab = self._cache.get(key)
        if tab is None:
            o = self.order.to(device)
            tab = {"order": o, "vmask": self._vmask.to(device, dtype)}
            if self.k > 1:
                g = self.tr._grid(self.lo, self.hi, device, dtype)
                if isinstance(g, tuple):  # exact taps (taps, k-1, u, u) in orbit order
                    tab["taps"] = tuple(x.reshape(x.shape[0], self.k - 1, self.u * self.u)[..., o].contiguous()
                                        for x in g)
                else:
                    tab["grid"] = g.reshape(self.k - 1, self.u * self.u, 2)[:, o].contiguous()
            self._cache[key] = tab
        return tab

    def base_rotations(self, images: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        """Base rotations ``sel (B, M)`` of ``images (B, C, d, d)`` over the window in orbit order:
        ``(B, M, C, u*u)``, the exact mapper's values."""
        from somtorch.geometry.transforms import pad_or_crop

        b, c, d, _ = images.shape
        m = sel.shape[1]
        tab = self._tables(images.device, images.dtype)
        n = self.u * self.u
        base0 = pad_or_crop(images, self.tr.neuron_dim)[..., self.lo:self.hi, self.lo:self.hi]
        base0 = base0.reshape(b, c, n).index_select(-1, tab["order"])  # (B, C, n)
        if self.k == 1:
            return base0.unsqueeze(1).expand(b, m, c, n)
        im1 = (sel - 1).clamp_min(0)
        if "grid" in tab:
            if sel.stride(0) == 0:
                # one selection for the whole batch: the exact mapper's layout (one batch entry per
                # rotation, the images folded into the channels, the input expanded, not copied),
                # so each grid coordinate is computed once for all images
                grid = tab["grid"][im1[0]].unsqueeze(1)  # (M, 1, n, 2)
                vals = torch.nn.functional.grid_sample(
                    images.reshape(1, b * c, d, d).expand(m, b * c, d, d), grid, mode=self.tr.interpolation,
                    padding_mode="zeros", align_corners=True)  # (M, B*C, 1, n)
                vals = vals.view(m, b, c, n).permute(1, 2, 0, 3)
            else:
                vals = torch.nn.functional.grid_sample(images, tab["grid"][im1], mode=self.tr.interpolation,
                                                       padding_mode="zeros", align_corners=True)  # (B, C, M, n)
        else:
            idx, w = tab["taps"]
            flat = images.reshape(b, c, d * d)
            vals = None
            for tap in range(idx.shape[0]):  # PINK's order ((w0 a + w1 b) + w2 c) + w3 d
                ix = idx[tap][im1].reshape(b, 1, m * n).expand(b, c, m * n)
                term = w[tap][im1].unsqueeze(1) * torch.gather(flat, 2, ix).view(b, c, m, n)
                vals = term if vals is None else vals + term
        zero = sel == 0
        if not bool(zero.any()):
            return vals.permute(0, 2, 1, 3)
        out = torch.where(zero.view(b, 1, m, 1), base0.unsqueeze(2), vals)
        return out.permute(0, 2, 1, 3)

    @torch.no_grad()
    def sq_distances(self, images: torch.Tensor, sel: torch.Tensor, neurons=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared distances ``(B, nq * M, N)`` of every neuron to the dihedral variants of the
        base rotations ``sel (B, M)``, and their transformation indices ``(B, nq * M)`` (in
        increasing order when ``sel`` is sorted along ``M``).

        ``neurons`` is ``engine.neuron_parity(weight)`` (computed when omitted).
        """
        eng = self.engine
        v, wnorm = neurons if neurons is not None else eng.neuron_parity(self.som.weight)
        r, rnorm = self._features(images, sel)
        return eng.sq_distances_fast(r, rnorm, v, wnorm), self._transforms(sel)

    def _features(self, images: torch.Tensor, sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parity features (rows layout) of the base rotations ``sel (B, M)`` and the region norms
        ``(B, nq * M)`` of their variants, q-major."""
        from somtorch.engine.parity import parity_from_orbits

        o = self.base_rotations(images, sel)  # (B, M, C, n)
        tab = self._tables(images.device, images.dtype)
        r, _ = parity_from_orbits(o, self.u, transposed=self.engine.pairing()["sides"] == 2, blocked=True)
        r2 = (o * o).sum(2)  # (B, M, n)
        return r, (r2 @ tab["vmask"]).permute(0, 2, 1).reshape(sel.shape[0], -1)

    def _transforms(self, sel: torch.Tensor) -> torch.Tensor:
        """Transformation indices ``(B, nq * M)`` of the dihedral variants of base rotations ``sel``."""
        q = torch.arange(self.nq, device=sel.device)
        f, j = torch.div(q, self.nj, rounding_mode="floor"), torch.remainder(q, self.nj)
        t = (f * self.numrot + j * self.k).view(1, -1, 1) + sel.unsqueeze(1)  # (B, nq, M)
        return t.reshape(sel.shape[0], -1)

    @torch.no_grad()
    def best(self, images: torch.Tensor, sel: torch.Tensor, neurons=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Every neuron's lowest squared distance over the variants of the base rotations ``sel (B, M)``
        (sorted along ``M``) and the lowest transformation index attaining it, ``(B, N)`` each:
        ``first_min`` of :meth:`sq_distances` and its index, the same numbers. On CPU with the
        compiled loops the distances are never assembled
        (:func:`~somtorch.engine._native_parity.map_tail`, one pass per image)."""
        from somtorch.engine.distance import first_min

        eng = self.engine
        v, wnorm = neurons if neurons is not None else eng.neuron_parity(self.som.weight)
        cpu32 = (images.device.type == "cpu" and v.dtype == torch.float32 and eng.precision == "float32"
                 and images.dtype == torch.float32)
        if cpu32:
            r, rnorm = self._features(images, sel)
            found = eng._tail_pass(r, rnorm, v, wnorm, -1.0)
            if found is not None:
                return found[1], torch.gather(self._transforms(sel), 1, found[2])
        dsq, t = self.sq_distances(images, sel, neurons)
        cur, arg = first_min(dsq, 1)
        return cur, torch.gather(t, 1, arg)


def _update_best(best, tbest, found):
    """Fold ``found = (cur, tc)`` (:meth:`BaseSubsetEngine.best`: per neuron the first minimum of a
    pass and its transformation) into the running per-neuron minimum; among equal distances the
    lowest transformation index wins, as in PINK."""
    cur, tc = found
    better = (cur < best) | ((cur == best) & (tc < tbest))
    return torch.where(better, cur, best), torch.where(better, tc, tbest)


#: search strategies of :class:`ApproxMapper` and their default ``(coarse, refine, neurons)``
SEARCHES = {"surrogate": (15, 4, 8), "polar": (0, 5, 6), "bisect": (6, 1, 8)}


@dataclass(frozen=True)
class ApproxOptions:
    """Settings of :class:`ApproxMapper` (see its docstring); ``coarse``, ``refine`` and
    ``neurons`` default by ``search`` (:data:`SEARCHES`)."""

    coarse: int | None = None
    refine: int | None = None
    stages: int | None = None
    seeds: int = 0
    n_angles: int | None = None
    n_radii: int | None = None
    max_frequency: int | None = None
    search: str = "surrogate"
    neurons: int | None = None
    inner_radius: float = 4.0

    def __post_init__(self):
        if self.search not in SEARCHES:
            raise ConfigError(None, "approx.search", self.search, " or ".join(repr(k) for k in SEARCHES))
        for name, default in zip(("coarse", "refine", "neurons"), SEARCHES[self.search]):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        if self.search != "bisect" and self.seeds:
            raise ConfigError(None, "approx.seeds", self.seeds, f"0 with search={self.search!r} (polar seeds "
                              "belong to search='bisect')")
        polar = self.search == "polar"
        for name, lo in (("coarse", 0 if polar else 1), ("refine", 0), ("seeds", 0), ("neurons", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < lo:
                raise ConfigError(None, f"approx.{name}", v, f"an integer >= {lo}")
        if self.stages is not None and (int(self.stages) != self.stages or self.stages < 0):
            raise ConfigError(None, "approx.stages", self.stages, "an integer >= 0 or null (automatic)")
        if polar and self.coarse + self.refine < 1:
            raise ConfigError(None, "approx.refine", self.refine, ">= 1 when coarse is 0 (search='polar')")
        if not (isinstance(self.inner_radius, (int, float)) and self.inner_radius >= 0):
            raise ConfigError(None, "approx.inner_radius", self.inner_radius, "a number >= 0")


class ApproxMapper(Mapper):
    """Maps images like :class:`~somtorch.engine.mapping.Mapper`, searching a subset of rotations.

    The search is coarse to fine over the ``k = numrot / 4`` base rotations (each one brings its
    eight quarter-turn/flip variants, evaluated exactly for *every* neuron by
    :class:`BaseSubsetEngine`). Three strategies (``search``):

    * ``"surrogate"`` (default; ``coarse=15, refine=4``):

      1. ``coarse`` evenly spaced base rotations, evaluated exactly;
      2. an estimated distance for *every* transformation of the ``neurons`` best neurons: the
         image's region norm of every rotation computed exactly without interpolating it
         (:class:`~somtorch.engine.surrogate.RotationNorms`; this term carries the angle-dependent
         smoothing of bilinear interpolation that makes distance-versus-angle curves jagged), plus
         the cross term interpolated linearly in angle from step 1
         (:func:`~somtorch.engine.surrogate.surrogate_bases`);
      3. the ``refine`` base rotations with the lowest estimates, evaluated exactly.

    * ``"polar"`` (``coarse=0, refine=5, neurons=6``): no exact first pass; the estimate of
      :class:`~somtorch.engine.polarsearch.PolarSurrogate` (exact norms, exact cross term of the
      pixels within ``inner_radius`` of the centre, polar-FFT cross term of the others, for the
      ``neurons`` best neurons of a rotation-invariant polar bound) picks ``refine`` base
      rotations, evaluated exactly in two passes: ``refine - refine // 2`` spread over the best
      neurons (plus ``coarse`` evenly spaced ones), then ``refine // 2`` for the exact best
      neuron so far.

    * ``"bisect"`` (the first method; ``coarse=6, refine=1``):

      1. ``coarse`` evenly spaced base rotations (plus, with ``seeds``, the estimated best angle of
         the ``seeds`` best neurons of the polar FFT estimate, :class:`PolarMatcher`);
      2. ``stages`` halving steps: the best base rotation of each of the ``refine`` best neurons so
         far is bracketed by the two rotations half the current spacing away (default: until the
         spacing is one step).

    Measured at 360 rotations + flip on 2-core CPU, one thread (benchmarks/RESULTS.md, "Approximate
    matching, surrogate search"): ``surrogate`` evaluates 19 of 90 base rotations and finds the
    exact best neuron for 99.3-99.5 % of images (built-in sky 32 and 64 px, structured sources),
    2.2-3.2x faster than exact search; ``bisect`` evaluates 14 and finds it for 94-97 % (27 with
    ``coarse=15, refine=2``: 98.8-99.7 %). ``polar`` evaluates 5 (no exact first pass): 5.7x
    exact at 99.5 % (sky 32 px), 6.7x at 100 % (sky 64 px), but 4.1x at only 96.7 % on the sharp
    structured sources (section "polar search" there; ``refine=3``: 7.0x / 7.8x / 4.8x at 99.3 /
    99.5 / 96.3 %).

    Every reported distance is the exact region distance of the reported transformation (the same
    value the exact mapper computes for it); what is approximate is that the best transformation
    (and so possibly the best neuron) is searched among :meth:`base_rotations_per_image` base
    rotations instead of all ``k``. :func:`matching_agreement` measures the effect.

    Parameters
    ----------
    som : RotationInvariantSOM
    coarse, refine : int, optional
        The search (above); None: the default of ``search``.
    stages, seeds : the bisect search (above); ``seeds`` needs ``search="bisect"``.
    n_angles, n_radii, max_frequency : polar grid of the seeds (:class:`PolarMatcher`).
    scales : sequence of float, optional
        Also search these zoom factors (:mod:`somtorch.engine.scale`): each image is matched zoomed
        by every factor and each neuron keeps its best; :attr:`last_scale_index` /
        :meth:`map`'s result carry the chosen factor per neuron.
    batch_size, memory_budget, progress : as :class:`~somtorch.engine.mapping.Mapper`.
    search : {"surrogate", "polar", "bisect"}
    neurons : int, optional
        Surrogate and polar searches: the best neurons whose estimates rank the base rotations
        (default: surrogate 8, polar 6).
    inner_radius : float
        Polar search: radius (neuron pixels) of the central disc whose cross term is exact.

    Notes
    -----
    Same interface as the exact mapper (``iter_batches``, ``map``, ``map_to_files``, sharded
    mapping in :mod:`somtorch.distributed`), so it drops in wherever a mapper is taken. When the
    search would cover every base rotation anyway (small ``numrot``) the result is the exact one.
    Ties resolve to the lowest transformation index among those evaluated (no PINK tie-break).
    """

    last_scale_index: torch.Tensor | None = None
    _scale_sink = None

    def __init__(self, som: RotationInvariantSOM, coarse: int | None = None, refine: int | None = None,
                 stages: int | None = None, seeds: int = 0, n_angles: int | None = None, n_radii: int | None = None,
                 max_frequency: int | None = None, scales=None, batch_size: int | None = None,
                 memory_budget: int = 512 << 20, progress: bool = False, search: str = "surrogate",
                 neurons: int | None = None, inner_radius: float = 4.0):
        super().__init__(som, batch_size=batch_size, memory_budget=memory_budget, progress=progress)
        from somtorch.engine.scale import check_scales

        self.options = ApproxOptions(coarse, refine, stages, seeds, n_angles, n_radii, max_frequency, search,
                                     neurons, inner_radius)
        self.scales = check_scales(scales)
        self.subset = BaseSubsetEngine(som)
        self.polar = PolarMatcher(som, n_angles, n_radii, max_frequency=max_frequency) if seeds else None
        self._norms = self._guide = None

    @property
    def schedule(self) -> list[int]:
        """Base-rotation spacings of the refinement stages (empty: the coarse pass only)."""
        k, opt = self.subset.k, self.options
        if opt.search != "bisect":
            return []
        g = k / min(opt.coarse, k)
        out = []
        while len(out) < (opt.stages if opt.stages is not None else 64) and opt.refine:
            g /= 2
            if round(g) < 1:
                break
            out.append(int(round(g)))
        return out

    def base_rotations_per_image(self) -> int:
        """Base rotations evaluated per image (and zoom factor); the exact search evaluates ``k``."""
        opt, k = self.options, self.subset.k
        if opt.search != "bisect":
            return min(k, opt.coarse + opt.refine)
        return min(k, min(opt.coarse, k) + opt.seeds + 2 * opt.refine * len(self.schedule))

    def bytes_per_image(self) -> int:
        som = self.som
        m = self.base_rotations_per_image()
        c = som.geometry.channels
        u = self.subset.u
        opt = self.options
        per_stage = max(opt.coarse, (1 if opt.search == "surrogate" else 2) * opt.refine, 1)
        est = 0
        if opt.search == "polar":  # two exact passes; the surrogate's tables (inner samples, norms'
            # pixel products, every transformation of the estimated neurons, the polar spectra)
            per_stage = max(opt.coarse + opt.refine - opt.refine // 2, opt.refine // 2, 1)
            d, numrot = som.geometry.image_dim, som.geometry.numrot
            est = 8 * (4 * opt.neurons * numrot + 64 * c * self.subset.k + 5 * c * d * d + 128 * som.num_neurons)
        if self.polar is not None:
            p = self.polar
            est = (2 if p.flip else 1) * som.num_neurons * (p.n_eval + p.numrot + 4 * p.n_freq) * 4 * 2
        return est + per_stage * (c * u * u * 4 * 4 + self.subset.nq * som.num_neurons * 4 * 3) + m * 0

    def auto_batch_size(self) -> int:
        """Images per batch: within ``memory_budget``; on CPU, the features of the widest pass
        (``max(coarse, 2 * refine)`` base rotations) about 8 MiB, cache-friendly (measured on a
        2-core EPYC: 256 images at 32x32 and 64 at 64x64 with the defaults), at least 16."""
        if self.batch_size:
            return int(self.batch_size)
        b = int(max(1, min(256, self.memory_budget // max(self.bytes_per_image(), 1))))
        if self.som.device.type == "cpu":
            opt, sub = self.options, self.subset
            if opt.search == "polar":  # the first exact pass: coarse and the spread refined ones
                widest = max(min(opt.coarse + opt.refine - opt.refine // 2, sub.k), 1)
            else:
                widest = max(min(opt.coarse, sub.k) + opt.seeds, 2 * opt.refine, 1)
            feat = widest * self.som.engine.pairing()["sides"] * self.som.geometry.channels * sub.u * sub.u * 4
            b = min(b, max(16, (8 << 20) // max(feat, 1)))
        return b

    # ------------------------------------------------------------------ one batch
    @torch.no_grad()
    def match(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Approximate matching of one batch ``x (B, C, d, d)`` (on the SOM's device).

        Returns squared distances ``(B, N)``, transformation indices ``(B, N)`` and, with scales,
        the index into :attr:`scales` of each neuron's zoom factor ``(B, N)`` (else None).
        """
        from somtorch.engine.scale import combine_scales, zoom_images

        if not self.scales:
            d, t = self._match_one(x)
            return d, t, None
        per = [self._match_one(zoom_images(x, s)) for s in self.scales]
        return combine_scales(per, self.scales)

    def _match_one(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from somtorch.engine.distance import first_min

        som, sub, opt = self.som, self.subset, self.options
        k = sub.k
        b, n = x.shape[0], som.num_neurons
        dev = x.device
        w = som.weight
        key = (w.data_ptr(), w._version, str(w.device))
        if getattr(self, "_neurons", (None,))[0] != key:
            self._neurons = (key, som.engine.neuron_parity(w))
        neurons = self._neurons[1]
        if opt.search == "polar":
            return self._polar_pass(x, neurons)
        m1 = min(opt.coarse, k)
        coarse = torch.round(torch.arange(m1, dtype=torch.float64) * (k / m1)).long().to(dev)
        sel = coarse.unsqueeze(0).expand(b, m1)
        if self.polar is not None and opt.seeds:
            est, _ = self.polar.estimate(x)  # (B, S, N, numrot)
            emin, smin = est.amin(dim=1).min(dim=-1)  # best flip, then angle: (B, N)
            top = torch.topk(emin, min(opt.seeds, n), dim=1, largest=False).indices
            seed = torch.remainder(torch.gather(smin, 1, top), self.subset.numrot) % k
            sel = torch.cat([sel, seed], dim=1).sort(dim=1).values
        dsq, t = sub.sq_distances(x, sel, neurons)
        best, arg = first_min(dsq, 1)  # the first pass: the running minimum is its minimum
        tbest = torch.gather(t, 1, arg)
        if m1 < k and opt.search == "surrogate":
            return self._surrogate_pass(x, coarse, dsq, best, tbest, neurons) if opt.refine else (best, tbest)
        if m1 < k:
            rows = torch.arange(b, device=dev).unsqueeze(1)
            for g in self.schedule:
                top = torch.topk(best, min(opt.refine, n), dim=1, largest=False).indices  # (B, R)
                ib = torch.remainder(tbest[rows, top], sub.numrot) % k
                sel = torch.remainder(torch.cat([ib - g, ib + g], dim=1), k).sort(dim=1).values
                best, tbest = _update_best(best, tbest, sub.best(x, sel, neurons))
        return best, tbest

    def _surrogate_pass(self, x, coarse, dsq, best, tbest, neurons):
        """``search="surrogate"``: the ``refine`` base rotations with the lowest estimated
        distance (:func:`~somtorch.engine.surrogate.surrogate_bases`), evaluated exactly."""
        from somtorch.engine.surrogate import RotationNorms, surrogate_bases

        sub, opt = self.subset, self.options
        if self._norms is None:
            self._norms = RotationNorms(self.som)
        b, n = best.shape
        sel = surrogate_bases(self._norms(x), dsq.view(b, sub.nq, len(coarse), n), coarse, best, sub.numrot,
                              opt.refine, opt.neurons)
        return _update_best(best, tbest, sub.best(x, sel, neurons))

    def _polar_pass(self, x, neurons):
        """``search="polar"``: two exact passes guided by the polar surrogate
        (:class:`~somtorch.engine.polarsearch.PolarSurrogate`, per-neuron base scores ``(B, R, k)``):
        ``coarse`` evenly spaced base rotations and ``refine - refine // 2`` spread over the best
        neurons (each one's best), then the ``refine // 2`` best of the exact best neuron so far
        (or, when it is not among the estimated ones, the best over them); every base rotation
        when that is at least as many."""
        from somtorch.engine.polarsearch import PolarSurrogate, spread_bases

        sub, opt = self.subset, self.options
        k, b, dev = sub.k, x.shape[0], x.device
        m1 = min(opt.coarse, k)
        coarse = torch.round(torch.arange(m1, dtype=torch.float64) * (k / max(m1, 1))).long().to(dev)
        if m1 + opt.refine >= k or 4 * k != sub.numrot:
            return sub.best(x, torch.arange(k, device=dev).expand(b, k), neurons)
        if self._guide is None:
            self._guide = PolarSurrogate(self.som, opt.inner_radius, n_angles=opt.n_angles, n_radii=opt.n_radii,
                                         max_frequency=opt.max_frequency)
        scores, top = self._guide.base_scores(x, opt.neurons)  # (B, R, k), (B, R)
        first = opt.refine - opt.refine // 2
        sel = coarse.expand(b, m1)
        if first:
            sel = torch.cat([sel, spread_bases(scores, first, sel)], dim=1)
        best, tbest = sub.best(x, sel.sort(dim=1).values, neurons)
        if opt.refine // 2:
            # the exact best neuron's own scores (the best over the estimated neurons if it is not one)
            hit = top == best.argmin(dim=1, keepdim=True)  # (B, R)
            own = (scores * hit.unsqueeze(-1)).sum(1)
            row = torch.where(hit.any(1, keepdim=True), own, scores.amin(dim=1))
            row.scatter_(1, sel, float("inf"))
            nxt = torch.topk(row, min(opt.refine // 2, k - sel.shape[1]), dim=1, largest=False).indices
            best, tbest = _update_best(best, tbest, sub.best(x, nxt.sort(dim=1).values, neurons))
        return best, tbest

    @torch.no_grad()
    def iter_batches(self, data, rows=None):
        """Yield ``(start, distances (b, N), transform_index (b, N))`` like the exact mapper; the
        scale indices of the last batch are in :attr:`last_scale_index` (None without scales)."""
        from somtorch.engine.data import check_finite

        som = self.som
        src, rows = self._open_rows(data, rows)
        bs = self.auto_batch_size()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(rows), desc="map (approximate)", unit="img", dynamic_ncols=True)
        try:
            for s in range(rows.start, rows.stop, bs):
                e = min(s + bs, rows.stop)
                x = src.get(slice(s, e), device=som.device)
                check_finite(x, range(s, e), src, "mapping")
                dsq, t, sidx = self.match(x)
                self.last_scale_index = sidx
                if self._scale_sink is not None and sidx is not None:
                    self._scale_sink(s, sidx)
                yield s, dsq.double().sqrt_().float(), t
                if bar is not None:
                    bar.update(e - s)
        finally:
            if bar is not None:
                bar.close()

    def map(self, data, rows=None) -> MappingResult:
        """Map images; with scales the result has a ``scale`` attribute ``(n, N)`` (the factors)."""
        ds, ts, ss = [], [], []
        for _, d, t in self.iter_batches(data, rows):
            ds.append(d.cpu())
            ts.append(t.cpu())
            if self.last_scale_index is not None:
                ss.append(self.last_scale_index.cpu())
        n = self.som.num_neurons
        res = MappingResult(torch.cat(ds) if ds else torch.zeros((0, n)),
                            torch.cat(ts) if ts else torch.zeros((0, n), dtype=torch.int64),
                            self.som.geometry.numrot)
        if self.scales:
            idx = torch.cat(ss) if ss else torch.zeros((0, n), dtype=torch.int64)
            res.scale = torch.tensor(self.scales, dtype=torch.float32)[idx]
        return res

    def map_to_files(self, data, mapping_path, transform_path=None, overwrite: bool = False,
                     rows=None, n_images: int | None = None, resume: bool = False, scale_path=None) -> dict:
        """As :meth:`Mapper.map_to_files`; with scales, the zoom factor of every (image, neuron)
        is written to ``scale_path`` (default ``<transform or mapping path>.scale.npy``,
        :func:`somtorch.engine.scale.ScaleWriter`)."""
        if not self.scales:
            return super().map_to_files(data, mapping_path, transform_path, overwrite, rows, n_images, resume)
        from somtorch.engine.scale import map_to_files_with_scales

        return map_to_files_with_scales(self, super().map_to_files, data, mapping_path, transform_path,
                                        overwrite, rows, n_images, resume, scale_path)


def make_mapper(som: RotationInvariantSOM, matching: str = "exact", scales=None, approx: dict | None = None,
                **kwargs) -> Mapper:
    """The mapper of a matching mode: ``"exact"`` (:class:`~somtorch.engine.mapping.Mapper`, or
    :class:`~somtorch.engine.scale.ScaleMapper` with ``scales``) or ``"approximate"``
    (:class:`ApproxMapper` with the ``approx`` options). ``kwargs``: batch_size, memory_budget, progress."""
    from somtorch.engine.scale import ScaleMapper, check_scales

    if matching not in MATCHING_MODES:
        raise ConfigError(None, "matching", matching, " or ".join(MATCHING_MODES))
    scales = check_scales(scales)
    if matching == "approximate":
        return ApproxMapper(som, **dict(approx or {}), scales=scales, **kwargs)
    if scales:
        return ScaleMapper(som, scales=scales, **kwargs)
    return Mapper(som, **kwargs)
