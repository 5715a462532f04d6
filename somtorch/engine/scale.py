"""Scale-invariant matching: a search over zoom factors alongside rotations and flips.

PINK is invariant to rotations and flips but not to scale (cookbook §9.3): the same morphology at
another angular size matches other neurons, and training smears it. Here each image is matched
zoomed by a small set of factors (default :func:`scale_factors`: 0.8 ... 1.25 geometrically) and
every neuron keeps its best factor together with its best rotation/flip.

Convention
----------
``zoom_images(x, s)`` enlarges the image content by ``s`` about the image centre
``((d-1)/2, (d-1)/2)``: output pixel ``p`` is the bilinear sample of ``x`` at
``c + (p - c) / s`` (zero outside the image), on the same ``d x d`` grid. A neuron matched with
``(scale s, flip, angle)`` satisfies ``w ~ flipud**flip(rotate_cw(zoom(x, s), angle))``: a source
``s`` times *smaller* than the neuron's pattern is found with factor ``s > 1``. Ties between
factors go to the one listed first (:func:`scale_factors` lists 1.0 first, then by distance from 1).

Files
-----
The mapping and transform files stay PINK's (readable by PINK tools). The factors go to a
sidecar ``<transform file>.scale.npy`` (:func:`scale_sidecar_path`): a plain numpy ``.npy``
float32 array ``(n_images, N)`` (row-major like the mapping), read with :func:`read_scales`
(``numpy.load(path, allow_pickle=False)``), written through a temporary name and renamed into place.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from somtorch.engine.mapping import Mapper, MappingResult
from somtorch.errors import ConfigError

__all__ = ["scale_factors", "check_scales", "zoom_images", "combine_scales", "ScaleMapper", "ScaleWriter",
           "scale_sidecar_path", "read_scales"]


def scale_factors(n: int = 5, max_factor: float = 1.25) -> tuple[float, ...]:
    """``n`` zoom factors from ``1/max_factor`` to ``max_factor``, geometrically spaced, ordered
    1.0 first (when ``n`` is odd) and then by distance from 1 (so ties favour no zoom).

    >>> scale_factors()
    (1.0, 0.894427, 1.118034, 0.8, 1.25)
    """
    if int(n) < 1 or not max_factor >= 1:
        raise ConfigError(None, "scales", (n, max_factor), "n >= 1 factors and max_factor >= 1")
    e = np.linspace(-1.0, 1.0, int(n)) if n > 1 else np.zeros(1)
    f = [round(float(max_factor) ** float(x), 6) for x in e]
    return tuple(sorted(f, key=lambda v: (round(abs(math.log(v)), 4), v)))


def check_scales(scales) -> tuple[float, ...] | None:
    """Validated zoom factors (a tuple of positive floats, no duplicates) or None."""
    if scales is None:
        return None
    if isinstance(scales, (int, float)):
        scales = [scales]
    out = tuple(float(s) for s in scales)
    if not out:
        return None
    if any(not (math.isfinite(s) and 0.1 <= s <= 10.0) for s in out) or len(set(out)) != len(out):
        raise ConfigError(None, "scales", list(out), "distinct zoom factors in [0.1, 10], e.g. [1.0, 0.8, 1.25]")
    return out


def zoom_images(images: torch.Tensor, scale: float) -> torch.Tensor:
    """Zoom ``images (B, C, d, d)`` by ``scale`` about their centre (see the module docstring)."""
    if scale == 1.0:
        return images
    d = images.shape[-1]
    c = (d - 1) * 0.5
    src = (torch.arange(d, dtype=torch.float64) - c) / float(scale) + c
    g = src * (2.0 / max(d - 1, 1)) - 1.0
    grid = torch.stack([g[None, :].expand(d, d), g[:, None].expand(d, d)], dim=-1)  # x = col, y = row
    grid = grid.to(device=images.device, dtype=images.dtype).unsqueeze(0).expand(images.shape[0], d, d, 2)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def combine_scales(per_scale: list, scales) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-neuron best over zoom factors: ``per_scale[i] = (dsq (B, N), t (B, N), ...)`` for
    ``scales[i]``; returns ``(dsq, t, scale_index)``, ties to the factor listed first."""
    d = torch.stack([p[0] for p in per_scale])  # (S, B, N)
    t = torch.stack([p[1] for p in per_scale])
    idx = torch.argmin(d, dim=0)  # first minimum: the factor listed first
    return (torch.gather(d, 0, idx.unsqueeze(0)).squeeze(0), torch.gather(t, 0, idx.unsqueeze(0)).squeeze(0), idx)


class ScaleMapper(Mapper):
    """Exact mapping with a search over zoom factors (every factor searched exhaustively).

    Each batch is zoomed by every factor (:func:`zoom_images`) and mapped by the SOM's exact
    engine; each neuron keeps the factor of its smallest distance. Same interface as
    :class:`~somtorch.engine.mapping.Mapper`; the factor indices of the last batch are in
    :attr:`last_scale_index`, :meth:`map`'s result has ``scale (n, N)`` and :meth:`map_to_files`
    writes the sidecar. For the fast version use :class:`~somtorch.engine.approx.ApproxMapper`
    with ``scales``.
    """

    last_scale_index: torch.Tensor | None = None
    _scale_sink = None

    def __init__(self, som, scales=None, batch_size: int | None = None, memory_budget: int = 512 << 20,
                 progress: bool = False):
        super().__init__(som, batch_size=batch_size, memory_budget=memory_budget, progress=progress)
        self.scales = check_scales(scales) or scale_factors()

    @torch.no_grad()
    def match(self, x: torch.Tensor):
        """``(dsq (B, N), t (B, N), scale_index (B, N))`` of one batch on the SOM's device."""
        from somtorch.engine.distance import best_match

        som = self.som
        per = []
        for s in self.scales:
            dmin, tbest, _ = best_match(som.engine.distances_for(zoom_images(x, s), som.weight))
            per.append((dmin, tbest))
        return combine_scales(per, self.scales)

    @torch.no_grad()
    def iter_batches(self, data, rows=None):
        from somtorch.engine.data import check_finite

        som = self.som
        src, rows = self._open_rows(data, rows)
        bs = self.auto_batch_size()
        for s in range(rows.start, rows.stop, bs):
            e = min(s + bs, rows.stop)
            x = src.get(slice(s, e), device=som.device)
            check_finite(x, range(s, e), src, "mapping")
            dsq, t, idx = self.match(x)
            self.last_scale_index = idx
            if self._scale_sink is not None:
                self._scale_sink(s, idx)
            yield s, dsq.double().sqrt_().float(), t

    def map(self, data, rows=None) -> MappingResult:
        ds, ts, ss = [], [], []
        for _, d, t in self.iter_batches(data, rows):
            ds.append(d.cpu())
            ts.append(t.cpu())
            ss.append(self.last_scale_index.cpu())
        n = self.som.num_neurons
        res = MappingResult(torch.cat(ds) if ds else torch.zeros((0, n)),
                            torch.cat(ts) if ts else torch.zeros((0, n), dtype=torch.int64),
                            self.som.geometry.numrot)
        idx = torch.cat(ss) if ss else torch.zeros((0, n), dtype=torch.int64)
        res.scale = torch.tensor(self.scales, dtype=torch.float32)[idx]
        return res

    def map_to_files(self, data, mapping_path, transform_path=None, overwrite: bool = False,
                     rows=None, n_images: int | None = None, resume: bool = False, scale_path=None) -> dict:
        return map_to_files_with_scales(self, super().map_to_files, data, mapping_path, transform_path,
                                        overwrite, rows, n_images, resume, scale_path)


def map_to_files_with_scales(mapper, base_map_to_files, data, mapping_path, transform_path, overwrite, rows,
                             n_images, resume, scale_path) -> dict:
    """``base_map_to_files`` (a mapper's :meth:`~somtorch.engine.mapping.Mapper.map_to_files`) with
    the zoom factor of every (image, neuron) streamed to ``scale_path`` (default
    ``<transform or mapping path>.scale.npy``) through the mapper's ``_scale_sink``; the sidecar
    is committed only when the mapping is, and removed when it fails."""
    from somtorch.engine.data import as_image_source

    src = as_image_source(data)
    n_total = len(src) if n_images is None else int(n_images)
    sp = scale_path or scale_sidecar_path(transform_path or mapping_path)
    sw = ScaleWriter(sp, n_total, mapper.som.num_neurons, mapper.scales, overwrite=overwrite)
    mapper._scale_sink = sw.write_rows
    try:
        info = base_map_to_files(src, mapping_path, transform_path, overwrite, rows, n_images, resume)
    except BaseException:
        sw.abort()
        raise
    finally:
        mapper._scale_sink = None
    sw.commit()
    info["scale"] = str(sp)
    return info


def scale_sidecar_path(path) -> Path:
    """The zoom-factor sidecar of a transform (or mapping) file: ``<path>.scale.npy``."""
    return Path(os.fspath(path) + ".scale.npy")


class ScaleWriter:
    """Streams the zoom factor of every (image, neuron) into a ``.npy`` sidecar (float32
    ``(n_images, N)``), written under a temporary name and renamed into place by :meth:`commit`."""

    def __init__(self, path, n_images: int, num_neurons: int, scales, overwrite: bool = False):
        from somtorch.io.atomic import check_output_path

        self.path = Path(path)
        check_output_path(self.path, overwrite)
        self.scales = np.asarray(check_scales(scales), dtype=np.float32)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._arr = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.float32,
                                              shape=(int(n_images), int(num_neurons)))

    def write_rows(self, start: int, scale_index) -> None:
        idx = scale_index.cpu().numpy() if isinstance(scale_index, torch.Tensor) else np.asarray(scale_index)
        self._arr[start:start + len(idx)] = self.scales[idx]

    def commit(self) -> None:
        self._arr.flush()
        del self._arr
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._arr = None
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


def read_scales(path) -> np.ndarray:
    """Read a zoom-factor sidecar (float32 ``(n_images, N)``); no pickle is ever loaded."""
    from somtorch.errors import MissingFileError

    p = Path(path)
    if not p.is_file():
        raise MissingFileError(p, field="scale sidecar")
    arr = np.load(p, allow_pickle=False, mmap_mode="r")
    if arr.ndim != 2 or arr.dtype != np.float32:
        raise ConfigError(p, "scale sidecar", f"{arr.dtype} {arr.shape}", "a float32 (n_images, N) array")
    return arr
