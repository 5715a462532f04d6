"""Agreement of an approximate mapper with exact search (:func:`matching_agreement`).

Both map the same images onto the same SOM in one call, timed alike; the report is what issue 19's
targets are stated in (best-neuron agreement, best-angle error, distance errors, speed).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from somtorch.engine.mapping import Mapper, MappingResult
from somtorch.engine.som import RotationInvariantSOM

__all__ = ["matching_agreement"]


def _timed_map(mapper, images, warmup: int) -> tuple[MappingResult, float]:
    if warmup:
        mapper.map(images[:warmup])
    if images.device.type == "cuda":
        torch.cuda.synchronize(images.device)
    t0 = time.perf_counter()
    res = mapper.map(images)
    if images.device.type == "cuda":
        torch.cuda.synchronize(images.device)
    return res, time.perf_counter() - t0


@torch.no_grad()
def matching_agreement(som: RotationInvariantSOM, images, mapper=None, reference: MappingResult | None = None,
                       warmup: int = 8, **options) -> dict:
    """Compare a mapper (default ``ApproxMapper(som, **options)``) with exact search.

    Both map the same ``images`` (a tensor ``(n, C, d, d)``) onto the same SOM in this call, timed
    alike after ``warmup`` images each (pass ``reference``, an exact :class:`MappingResult` of the
    same images, to skip the exact run; its throughput is then not reported).

    Returns
    -------
    dict
        * ``bmu_agreement``: fraction of images whose best-matching neuron is the exact one;
        * ``transform_agreement``: fraction whose transformation at the exact best neuron is the
          exact one; ``flip_agreement`` likewise for the flip;
        * ``angle_error_deg_median/p95/max``: circular angle difference at the exact best neuron
          (images with the same flip there);
        * ``bmu_distance_within_1pc``, ``bmu_distance_rel_error_median/max``: reported best
          distance vs the exact best distance, ``(d - d_exact) / d_exact`` (>= 0 up to float
          rounding: every reported distance is an exact distance of some transformation);
        * ``distance_rel_error_median/p95/max``: the same over every (image, neuron);
        * ``exact_images_per_s``, ``images_per_s``, ``speedup``; ``n_images``, ``numrot``.
    """
    from somtorch.geometry.transforms import index_to_flip_angle

    x = som.check_images(images)
    if mapper is None:
        from somtorch.engine.approx import ApproxMapper

        mapper = ApproxMapper(som, **options)
    warm = min(int(warmup), len(x))
    out: dict = {"n_images": int(len(x)), "numrot": som.geometry.numrot}
    if reference is None:
        reference, te = _timed_map(Mapper(som), x, warm)
        out["exact_images_per_s"] = len(x) / te
    res, ta = _timed_map(mapper, x, warm)
    out["images_per_s"] = len(x) / ta
    if "exact_images_per_s" in out:
        out["speedup"] = out["images_per_s"] / out["exact_images_per_s"]
    rows = torch.arange(len(x))
    d_ref, d = reference.distances.double(), res.distances.double()
    bmu_ref, bmu = d_ref.argmin(1), d.argmin(1)
    t_ref, t = reference.transform_index[rows, bmu_ref], res.transform_index[rows, bmu_ref]
    numrot = som.geometry.numrot
    f_ref, a_ref = index_to_flip_angle(t_ref, numrot)
    f, a = index_to_flip_angle(t, numrot)
    same = f == f_ref
    da = torch.remainder(a.double() - a_ref.double() + math.pi, 2 * math.pi) - math.pi
    da = da.abs()[same] * (180.0 / math.pi)
    rel_b = (d[rows, bmu] - d_ref[rows, bmu_ref]) / d_ref[rows, bmu_ref].clamp_min(1e-30)
    rel = ((d - d_ref) / d_ref.clamp_min(1e-30)).flatten()

    def q(v, p):
        return float(np.quantile(v.numpy(), p)) if len(v) else float("nan")

    out.update(
        bmu_agreement=float((bmu == bmu_ref).double().mean()),
        transform_agreement=float((t == t_ref).double().mean()),
        flip_agreement=float(same.double().mean()),
        angle_error_deg_median=q(da, 0.5), angle_error_deg_p95=q(da, 0.95),
        angle_error_deg_max=float(da.max()) if len(da) else float("nan"),
        bmu_distance_within_1pc=float((rel_b.abs() <= 0.01).double().mean()),
        bmu_distance_rel_error_median=q(rel_b, 0.5), bmu_distance_rel_error_max=float(rel_b.max()),
        distance_rel_error_median=q(rel, 0.5), distance_rel_error_p95=q(rel, 0.95),
        distance_rel_error_max=float(rel.max()),
    )
    return out

