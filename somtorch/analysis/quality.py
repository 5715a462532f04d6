"""How good is a SOM? Quality metrics of any mapping, per-neuron statistics, U-matrix, convergence.

Convention
----------
A *mapping* is one of: a :class:`~somtorch.io.Mapping` (PINK mapping file; its ``bmu_mask`` is
honoured everywhere: excluded neurons can be neither the best nor the second-best match), a
:class:`~somtorch.engine.MappingResult`, or a ``(n_images, N)`` distance array/tensor with a
``lattice``. Distances are PINK's Euclidean image-to-neuron distances (spec §1.4).

* quantization error (QE): mean distance of each image to its best-matching neuron (BMU);
* topographic error (TE): fraction of images whose best and second-best neurons are not lattice
  neighbours -- grid distance > 1: 4-neighbourhood on cartesian lattices, 6-neighbourhood on
  hexagonal ones, wrap-around when periodic (the criterion of :mod:`somtorch.engine.metrics`;
  ties between equal distances go to the lowest neuron index, as in PINK and ``Mapping.bmu``);
* coherence (PYINK): fraction (or count) of images whose second-best neuron is within Chebyshev
  distance 1 of the best one (cartesian 8-neighbourhood; hex distance 1 on hexagonal lattices);
* per-neuron statistics: count, median, mean, std, 16th/84th percentiles and MAD of the BMU
  distances of the images a neuron wins (cookbook §4.1);
* U-matrix: for each neuron, the mean (or median/max) Euclidean distance between its weights and
  those of its lattice neighbours (grid distance 1; periodic if the lattice is).

Queries run in row chunks, so mappings of millions of images work in bounded memory.
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np
import torch

from somtorch.engine.metrics import quantization_error as _qe_tensor
from somtorch.errors import ConfigError, ShapeError
from somtorch.geometry.lattice import Lattice

__all__ = [
    "neuron_purity",
    "mapping_lattice",
    "iter_distance_chunks",
    "quantization_error",
    "topographic_error",
    "coherence",
    "best_two",
    "neuron_distance_stats",
    "quality_report",
    "u_matrix",
    "intermediate_soms",
    "convergence_curve",
]

CHUNK_ROWS = 65536


def mapping_lattice(mapping, lattice=None, periodic: bool = False) -> Lattice:
    """The lattice of a mapping (from its file header), or ``lattice`` if given."""
    if lattice is not None:
        if isinstance(lattice, Lattice):
            return Lattice(lattice.layout, lattice.shape, periodic or lattice.periodic)
        return Lattice("cartesian", tuple(lattice), periodic)
    header = getattr(mapping, "header", None)
    if header is not None:
        return Lattice.from_header(header.som_dims, header.num_neurons, periodic)
    raise ConfigError(None, "lattice", None, "a Lattice for a plain distance matrix")


def iter_distance_chunks(mapping, idx=None, chunk_rows: int = CHUNK_ROWS):
    """Yield ``(image_indices, distances (k, N) float32 tensor)``; masked neurons are +inf."""
    from somtorch.io.binwrap import Mapping

    if isinstance(mapping, Mapping):
        ind = mapping._indices(idx)
        mask = mapping._mask
        for s in range(0, len(ind), chunk_rows):
            rows = ind[s:s + chunk_rows]
            block = np.array(mapping.flat[rows], dtype=np.float32)
            if mask is not None:
                block[:, ~mask] = np.inf
            yield rows, torch.from_numpy(block)
        return
    d = mapping.distances if hasattr(mapping, "distances") else mapping
    d = d if isinstance(d, torch.Tensor) else torch.from_numpy(np.asarray(d, dtype=np.float32))
    if d.ndim != 2:
        raise ShapeError(f"distances must be (n_images, N); got {tuple(d.shape)}")
    ind = np.arange(len(d)) if idx is None else np.arange(len(d))[idx]
    ind = np.atleast_1d(ind)
    for s in range(0, len(ind), chunk_rows):
        rows = ind[s:s + chunk_rows]
        yield rows, d[torch.from_numpy(rows)].float()


def _weighted_mean(parts) -> float:
    n = sum(k for k, _ in parts)
    return float(sum(k * v for k, v in parts) / n) if n else float("nan")


def quantization_error(mapping, idx=None) -> float:
    """Mean best-match distance over the selected images (NaN for none)."""
    return _weighted_mean([(len(r), _qe_tensor(d)) for r, d in iter_distance_chunks(mapping, idx) if len(r)])


def topographic_error(mapping, lattice=None, periodic: bool = False, idx=None) -> float:
    """Fraction of images whose two best neurons are not lattice neighbours (module docstring)."""
    lat = mapping_lattice(mapping, lattice, periodic)
    k0, k1, _ = best_two(mapping, idx)
    if len(k0) == 0:
        return float("nan")
    # the engine's criterion (grid distance > 1, :func:`somtorch.engine.metrics.topographic_error`),
    # on picks with PINK/PYINK's tie rule (lowest index), which ``topk`` does not guarantee
    return float((lat.distances().numpy()[k0, k1] > 1.0 + 1e-6).mean())


def best_two(mapping, idx=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices of the best and second-best neuron and the best distance, per image
    (lowest neuron index on ties, masked neurons never chosen)."""
    k0, k1, dmin = [], [], []
    for _, d in iter_distance_chunks(mapping, idx):
        if d.shape[1] < 2:
            raise ConfigError(None, "num_neurons", d.shape[1], ">= 2 for second-best matches")
        # stable ascending sort keeps the lowest index first among equal distances
        order = torch.sort(d, dim=1, stable=True).indices[:, :2]
        k0.append(order[:, 0].numpy())
        k1.append(order[:, 1].numpy())
        dmin.append(d.gather(1, order[:, :1])[:, 0].numpy())
    return _cat(k0, np.int64), _cat(k1, np.int64), _cat(dmin, np.float32)


def _cat(parts, dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def coherence(mapping, lattice=None, periodic: bool = False, idx=None, fraction: bool = True):
    """Fraction (``fraction=True``) or number of images whose second-best neuron is adjacent to
    the best one: Chebyshev distance <= 1 on cartesian lattices (PYINK's ``Mapping.coherence``,
    which returns the count), hex distance 1 on hexagonal ones; ``periodic`` wraps around."""
    lat = mapping_lattice(mapping, lattice, periodic)
    k0, k1, _ = best_two(mapping, idx)
    n = int(_adjacent(lat, k0, k1).sum())
    return (n / len(k0) if len(k0) else float("nan")) if fraction else n


def _adjacent(lat: Lattice, k0: np.ndarray, k1: np.ndarray) -> np.ndarray:
    """PYINK coherence criterion per image (see :func:`coherence`)."""
    if lat.layout == "hexagonal":
        near = lat.distances().numpy()[k0, k1] <= 1.0 + 1e-6
    else:
        c = lat.coords.numpy()
        delta = np.abs(c[k0] - c[k1])
        if lat.periodic:
            delta = np.minimum(delta, np.asarray(lat.shape) - delta)
        near = delta.max(axis=1) <= 1 if len(delta) else np.zeros(0, bool)
    return near


def neuron_distance_stats(mapping, lattice=None, idx=None):
    """Per-neuron statistics of the BMU distances of the images each neuron wins.

    Returns a pandas DataFrame indexed by flat neuron index with columns ``count``, ``median``,
    ``mean``, ``std``, ``q16``, ``q84``, ``mad`` (median absolute deviation) and ``spread``
    (``(q84 - q16) / 2``); NaN for neurons that win no image. With a ``bmu_mask``, excluded
    neurons win nothing.
    """
    import pandas as pd

    n = mapping_lattice(mapping, lattice).num_neurons
    ks, ds = [], []
    for _, d in iter_distance_chunks(mapping, idx):
        a = d.numpy()
        k = a.argmin(axis=1)  # first (lowest-index) minimum
        ks.append(k)
        ds.append(np.take_along_axis(a, k[:, None], 1)[:, 0])
    k = np.concatenate(ks) if ks else np.zeros(0, np.int64)
    dist = np.concatenate(ds).astype(np.float64) if ds else np.zeros(0)
    order = np.argsort(k, kind="stable")
    k, dist = k[order], dist[order]
    bounds = np.searchsorted(k, np.arange(n + 1))
    rows = []
    for i in range(n):
        v = dist[bounds[i]:bounds[i + 1]]
        if len(v) == 0:
            rows.append((0,) + (np.nan,) * 7)
            continue
        q16, med, q84 = np.percentile(v, [16, 50, 84])
        rows.append((len(v), med, v.mean(), v.std(), q16, q84, np.median(np.abs(v - med)), (q84 - q16) / 2))
    df = pd.DataFrame(rows, columns=["count", "median", "mean", "std", "q16", "q84", "mad", "spread"])
    df.index.name = "neuron"
    return df


def quality_report(mapping, lattice=None, periodic: bool = False, idx=None) -> dict:
    """QE (mean, median, std), TE, coherence fraction, image count and neurons winning nothing."""
    lat = mapping_lattice(mapping, lattice, periodic)
    k0, k1, dmin = best_two(mapping, idx)
    d64 = dmin.astype(np.float64)
    gd = lat.distances().numpy()
    stats_counts = np.bincount(k0, minlength=lat.num_neurons)
    return {
        "n_images": int(len(k0)),
        "qe": float(d64.mean()) if len(d64) else float("nan"),
        "qe_median": float(np.median(d64)) if len(d64) else float("nan"),
        "qe_std": float(d64.std(ddof=1)) if len(d64) > 1 else 0.0,
        "te": float((gd[k0, k1] > 1.0 + 1e-6).mean()) if len(k0) else float("nan"),
        "coherence": float(_adjacent(lat, k0, k1).mean()) if len(k0) else float("nan"),
        "empty_neurons": int((stats_counts == 0).sum()),
        "lattice": lat.describe(),
    }


def u_matrix(weights, lattice, reduce: str = "mean") -> np.ndarray:
    """Per-neuron distance to its lattice neighbours' weights, ``(N,)`` float64.

    ``weights`` is ``(N, C, nd, nd)`` (tensor, array, or a :class:`~somtorch.io.SOM`); neighbours
    are the neurons at grid distance 1 (4 on cartesian 2-D, 6 on hexagonal lattices, wrapped
    when ``lattice.periodic``). ``reduce`` is ``"mean"``, ``"median"`` or ``"max"``.
    """
    if hasattr(weights, "weights") and not isinstance(weights, (np.ndarray, torch.Tensor)):
        weights = weights.weights
    w = weights.detach().cpu().double() if isinstance(weights, torch.Tensor) else torch.from_numpy(
        np.asarray(weights, dtype=np.float64))
    lat = mapping_lattice(None, lattice)
    if w.shape[0] != lat.num_neurons:
        raise ShapeError(f"{w.shape[0]} neurons for the {lat.describe()} lattice")
    if reduce not in ("mean", "median", "max"):
        raise ConfigError(None, "reduce", reduce, "'mean', 'median' or 'max'")
    flat = w.reshape(w.shape[0], -1)
    pair = torch.cdist(flat, flat).numpy()
    adj = np.abs(lat.distances().numpy() - 1.0) < 1e-6
    fn = {"mean": np.mean, "median": np.median, "max": np.max}[reduce]
    return np.array([fn(pair[i, adj[i]]) if adj[i].any() else np.nan for i in range(lat.num_neurons)])


# --------------------------------------------------------------------------------------------
# convergence across the intermediate SOMs of a run
# --------------------------------------------------------------------------------------------

def intermediate_soms(final_path) -> list[str]:
    """The ``--inter-store`` SOMs of a run, ``<stem>_<k>.<ext>`` next to ``final_path``, by ``k``."""
    head, tail = os.path.split(os.fspath(final_path))
    stem, ext = (tail.rsplit(".", 1) + [""])[:2] if "." in tail else (tail, "")
    pat = os.path.join(head, glob.escape(stem) + "_*" + ("." + ext if ext else ""))
    rx = re.compile(re.escape(stem) + r"_(\d+)" + (re.escape("." + ext) if ext else "") + "$")
    found = [(int(m.group(1)), p) for p in glob.glob(pat) if (m := rx.match(os.path.basename(p)))]
    return [p for _, p in sorted(found)]


def convergence_curve(soms, images, geometry, lattice=None, *, max_images: int = 512, seed: int = 0,
                      batch_size: int | None = None, progress: bool = False, **som_kwargs):
    """QE, TE and relative weight change of a sequence of SOMs (e.g. :func:`intermediate_soms`).

    Parameters
    ----------
    soms : list of PINK SOM paths or ``(N, C, nd, nd)`` weight tensors, in training order
    images : anything :func:`somtorch.engine.as_image_source` accepts
    geometry : :class:`~somtorch.engine.SOMGeometry` of the run (numrot, flip, sizes)
    lattice : Lattice; read from the first SOM file header if omitted
    max_images : evaluate on a fixed random subset of this many images (seeded), the same for
        every SOM so the curve compares like with like.

    Returns
    -------
    pandas.DataFrame with columns ``step``, ``som``, ``qe``, ``qe_median``, ``qe_std``, ``te``,
    ``change`` (``|w_k - w_{k-1}| / |w_{k-1}|``, NaN for the first).
    """
    import pandas as pd

    from somtorch.engine import Mapper, RotationInvariantSOM, as_image_source
    from somtorch.engine.metrics import quality_metrics

    soms = list(soms)
    if not soms:
        raise ConfigError(None, "soms", [], "at least one SOM")
    if lattice is None:
        if not isinstance(soms[0], (str, os.PathLike)):
            raise ConfigError(None, "lattice", None, "a Lattice when the SOMs are given as tensors")
        from somtorch.io import read_header

        h = read_header(soms[0])
        lattice = Lattice.from_header(h.som_dims, h.num_neurons)
    src = as_image_source(images)
    n = len(src)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, max_images), replace=False))
    x = src.get(rows)
    recs, prev = [], None
    it = enumerate(soms)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=len(soms), desc="convergence", unit="som")
    for k, s in it:
        som = RotationInvariantSOM(lattice, geometry, init=s, **som_kwargs)
        dist = Mapper(som, batch_size=batch_size).map(x).distances
        w = som.weight.detach()
        change = float((w - prev).norm() / (prev.norm() or 1.0)) if prev is not None else float("nan")
        rec = {"step": k, "som": os.fspath(s) if isinstance(s, (str, os.PathLike)) else f"<weights {k}>"}
        rec.update(quality_metrics(dist, lattice))
        rec["change"] = change
        recs.append(rec)
        prev = w.clone()
    return pd.DataFrame(recs)


def neuron_purity(bmu, labels) -> float:
    """Count-weighted neuron purity: the fraction of entries that carry their best-matching
    neuron's most common label (NaN for no entries).

    Equivalently, the mean over neurons of the majority-label fraction, weighted by how many
    entries each neuron collects; 1 means every neuron collects a single class.
    """
    import pandas as pd

    df = pd.DataFrame({"n": np.asarray(bmu), "k": np.asarray(labels, dtype=object)})
    if not len(df):
        return float("nan")
    top = df.groupby("n")["k"].agg(lambda v: v.value_counts().iloc[0])
    return float(top.sum() / len(df))
