"""Mapping images onto a trained SOM: distances to every neuron and best rotation/flip.

Convention
----------
``distances[i, n]`` is the Euclidean (square-root) distance between neuron ``n`` and image ``i``
under its best transformation, summed over the distance region only (not normalised), as PINK's
mapping files store it (spec §1.4). ``flip[i, n]``/``angle[i, n]`` describe that transformation:
the neuron matches ``flipud**flip(rotate_cw(image, angle))`` (angle in radians, clockwise with
row 0 at the top, flip after rotation). Images are processed in file order, in batches, so memory
stays bounded however many images there are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from somtorch.engine.data import as_image_source, check_finite, open_for_som
from somtorch.engine.distance import best_match
from somtorch.engine.som import RotationInvariantSOM
from somtorch.errors import ConfigError

__all__ = ["Mapper", "MappingResult", "precision_agreement"]


@dataclass
class MappingResult:
    """In-memory mapping of ``n`` images onto ``N`` neurons."""

    distances: torch.Tensor  # (n, N) float32, Euclidean
    transform_index: torch.Tensor  # (n, N) int64
    numrot: int

    @property
    def flip(self) -> torch.Tensor:
        return torch.div(self.transform_index, self.numrot, rounding_mode="floor").to(torch.int8)

    @property
    def angle(self) -> torch.Tensor:
        from somtorch.geometry.transforms import index_to_flip_angle

        return index_to_flip_angle(self.transform_index, self.numrot)[1]

    @property
    def bmu(self) -> torch.Tensor:
        """Best-matching neuron per image (lowest index on ties)."""
        return torch.argmin(self.distances, dim=1)

    def __len__(self) -> int:
        return self.distances.shape[0]


class Mapper:
    """Maps images onto a :class:`RotationInvariantSOM` in bounded memory.

    Parameters
    ----------
    som : RotationInvariantSOM
    batch_size : int, optional
        Images per batch; by default chosen so features and distances stay within
        ``memory_budget`` bytes (:func:`somtorch.engine.memory.memory_budget` computes one from
        the free memory of the device or a user limit) and, on CPU, so the batch's features stay
        cache-resident (:meth:`~somtorch.engine.distance.DistanceEngine.cache_batch`). A batch
        that runs out of device memory is retried in halves (the results do not depend on the
        batch size).
    memory_budget : int
        Bytes of working memory per batch (default 512 MiB).
    progress : bool
        tqdm progress bar.
    """

    def __init__(self, som: RotationInvariantSOM, batch_size: int | None = None,
                 memory_budget: int = 512 << 20, progress: bool = False):
        self.som = som
        self.batch_size = batch_size
        self.memory_budget = int(memory_budget)
        self.progress = progress

    def bytes_per_image(self) -> int:
        """Working memory one image needs (features, squared distances, temporaries)."""
        som = self.som
        eng = som.engine
        feat = eng.feature_bytes(som.geometry.channels) * 3  # features, base rotations, temporaries
        dist = som.num_transforms * som.num_neurons * 4 * 3  # cross, permuted copy, dsq
        if som.arithmetic == "pink":
            feat = som.num_transforms * som.geometry.channels * eng.num_region_pixels * 4 * 2
        return feat + dist

    def auto_batch_size(self) -> int:
        if self.batch_size:
            return int(self.batch_size)
        b = int(max(1, min(1024, self.memory_budget // max(self.bytes_per_image(), 1))))
        if self.som.device.type == "cpu" and self.som.arithmetic != "pink":
            b = min(b, self.som.engine.cache_batch(self.som.geometry.channels))  # cache-resident
        return b

    def _open_rows(self, data, rows):
        """The image source for this SOM and the rows to map (all by default; a contiguous range)."""
        src = open_for_som(self.som, data)
        rows = range(len(src)) if rows is None else rows
        if not isinstance(rows, range) or rows.step != 1:
            raise ConfigError(None, "rows", rows, "a contiguous range of image indices")
        return src, rows

    @torch.no_grad()
    def iter_batches(self, data, rows=None):
        """Yield ``(start, distances (b, N), transform_index (b, N))`` over ``rows`` (a range)."""
        som = self.som
        src, rows = self._open_rows(data, rows)
        bs = self.auto_batch_size()
        eng = som.engine
        wv = wnorm = wf = None
        if som.arithmetic == "pink":
            wf = eng.neuron_features(som.weight)
        else:
            wv, wnorm = eng.neuron_parity(som.weight)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(rows), desc="map", unit="img", dynamic_ncols=True)
        try:
            s = rows.start
            while s < rows.stop:
                e = min(s + bs, rows.stop)
                x = src.get(slice(s, e), device=som.device)
                check_finite(x, range(s, e), src, "mapping")
                try:
                    if wf is not None:
                        dmin, tbest, _ = best_match(eng.sq_distances(eng.image_features(x), wf))
                    else:
                        dmin, tbest = eng.match_fast(x, wv, wnorm, som.weight)
                except torch.OutOfMemoryError:
                    # results do not depend on the batch size: retry the same rows in halves
                    if bs == 1:
                        raise
                    bs = max(1, bs // 2)
                    self.batch_size = bs
                    x = None
                    if som.device.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                # correctly rounded float32 sqrt (torch's CPU float32 sqrt can be 1 ulp off)
                yield s, dmin.double().sqrt_().float(), tbest
                if bar is not None:
                    bar.update(e - s)
                s = e
        finally:
            if bar is not None:
                bar.close()

    def map(self, data, rows=None) -> MappingResult:
        """Map images held in memory or on disk; returns a :class:`MappingResult` (CPU tensors)."""
        ds, ts = [], []
        for _, d, t in self.iter_batches(data, rows):
            ds.append(d.cpu())
            ts.append(t.cpu())
        n = self.som.num_neurons
        dist = torch.cat(ds) if ds else torch.zeros((0, n))
        tidx = torch.cat(ts) if ts else torch.zeros((0, n), dtype=torch.int64)
        return MappingResult(dist, tidx, self.som.geometry.numrot)

    def map_to_files(self, data, mapping_path, transform_path=None, overwrite: bool = False,
                     rows=None, n_images: int | None = None, resume: bool = False) -> dict:
        """Stream a mapping (and optionally the transform file) to PINK files.

        ``rows`` restricts the work to a contiguous range of images (for sharding); the files are
        sized for ``n_images`` (default: all images) and renamed into place when complete.
        """
        from somtorch.geometry.transforms import index_to_flip_angle
        from somtorch.io import MappingWriter, TransformWriter

        src = as_image_source(data)
        n_images = len(src) if n_images is None else int(n_images)
        som = self.som
        lat = som.lattice
        mw = MappingWriter(mapping_path, n_images, lat.som_dims, overwrite, layout=lat.layout, resume=resume)
        tw = (TransformWriter(transform_path, n_images, lat.som_dims, overwrite, layout=lat.layout, resume=resume)
              if transform_path is not None else None)
        try:
            for s, d, t in self.iter_batches(src, rows):
                mw.write_rows(s, d.cpu().numpy())
                if tw is not None:
                    fl, an = index_to_flip_angle(t.cpu(), som.geometry.numrot)
                    tw.write_rows(s, fl.numpy(), an.numpy())
        except BaseException:
            for wr in (mw, tw):  # a shard keeps the partial files (other shards' rows, resume)
                if wr is not None:
                    wr.close() if (rows is not None or resume) else wr.abort()
            raise
        # a shard (rows given) leaves the partial file for the other shards unless it completed it
        for wr in (mw, tw):
            if wr is not None:
                wr.commit() if rows is None else wr.finish()
        return {"mapping": os.fspath(mapping_path),
                "transform": None if transform_path is None else os.fspath(transform_path),
                "n_images": n_images}


@torch.no_grad()
def precision_agreement(som: RotationInvariantSOM, images, precision: str) -> dict:
    """Fraction of images whose best-matching neuron (and best transform of it) under
    ``precision`` equals the float32 result, plus the largest relative distance error."""
    old = som.precision
    try:
        som.set_precision("float32")
        ref_d, ref_t = som(images)
        som.set_precision(precision)
        d, t = som(images)
    finally:
        som.set_precision(old)
    bmu_ref, bmu = ref_d.argmin(1), d.argmin(1)
    rows = torch.arange(len(bmu))
    return {
        "precision": precision,
        "bmu_agreement": float((bmu_ref == bmu).double().mean()),
        "transform_agreement": float((ref_t[rows, bmu_ref] == t[rows, bmu_ref]).double().mean()),
        "max_rel_distance_error": float(((d - ref_d).abs() / ref_d.clamp_min(1e-12)).max()),
        "n_images": int(len(bmu)),
    }
