"""Memory estimates for a SOM configuration, and batch sizes that fit a memory budget.

Convention
----------
All sizes are bytes (float32 = 4 bytes, float64 = 8). An estimate has a *fixed* part (held for
the whole run: weights, the neuron features the fast path matches against, training sums) and a
*per-image* part (the working set of one image in a batch: its base rotations over the dihedral
window, the ``T x N`` squared distances and temporaries). A batch of ``B`` images needs about
``fixed + B * per_image``. Memory-mapped image files are not counted: pages are read on demand and
only the current batch is copied.

The analogue of cookbook Eq. 5
------------------------------
PINK keeps the SOM (``M^2`` neurons of ``(sqrt(2) N)^2 C`` floats) and **all** ``2R``
transformations of one image (``2R (sqrt(2) N)^2 C`` floats) on the GPU::

    Mem_PINK = 54.5 (R/360) C (N/100)^2 + 7.6 (M/10)^2 C (N/100)^2   MB      (cookbook Eq. 5)

somtorch's fast path never materialises the ``2R`` transformations: an image needs only its
``R/4`` base rotations over the ``u x u`` dihedral window (``u ~ nd / sqrt(2)``, the distance
region's bounding square) and their transposes, in flip-parity coordinates, and each neuron is
kept once over the window in the same coordinates. With ``K = M^2`` neurons, ``T = 2R``
transformations, ``S = 2`` image sides (1 without rotations)::

    fixed     = 4 K C nd^2 (weights) + 4 K C u^2 (neuron parity features)
    per_image = 3 * 4 S (R/4) C u^2 (base rotations, transposes, temporaries) + 3 * 4 T K (distances)

so for a 10x10 SOM, 150 px images and R = 360 (nd = 213, u = 107): fixed = 21.7 MiB and per
image = 24.4 MiB, against PINK's 133 MiB (Eq. 5) for one image at a time; for 64 px images
(nd = 91, u = 45): 3.9 MiB + 5.0 MiB per image, against 24 MiB. Batch training adds float64
sums (``8 K C nd^2``) to the fixed part. On CPU, the compiled sampler's tables
(:mod:`somtorch.geometry._sampler`: 32 bytes per grid point, ``(R/4 - 1) u^2`` points) add to the
fixed part: 31.1 MiB at 150 px and R = 360, 5.6 MiB at 64 px; the dense online step's tables cover
the whole neuron grid and its transposes (``2 (R/4 - 1) nd^2`` points; it runs only for small
problems).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from somtorch.errors import ConfigError

__all__ = ["MemoryEstimate", "estimate_memory", "pink_eq5_bytes", "available_memory", "memory_budget",
           "parse_bytes", "fit_batch_size", "format_bytes"]

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 1000 ** 2,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1000 ** 3, "gib": 1 << 30, "t": 1 << 40, "tb": 1000 ** 4,
          "tib": 1 << 40}


def parse_bytes(value) -> int | None:
    """``"2GiB"``, ``"512MB"``, ``"1.5g"``, ``1048576`` -> bytes; ``None``/``"auto"`` -> ``None``.

    >>> parse_bytes("2GiB"), parse_bytes("512MB"), parse_bytes(1024), parse_bytes(None)
    (2147483648, 512000000, 1024, None)
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto", "null", "none")):
        return None
    if isinstance(value, (int, float)):
        out = int(value)
    else:
        s = str(value).strip().lower().replace(" ", "")
        num = s.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = s[len(num):]
        if unit not in _UNITS or not num:
            raise ConfigError(None, "memory limit", value, "bytes or a size like '2GiB', '512MB'")
        out = int(float(num) * _UNITS[unit])
    if out <= 0:
        raise ConfigError(None, "memory limit", value, "> 0")
    return out


def format_bytes(n: float) -> str:
    """``1536 -> '1.5 KiB'``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def pink_eq5_bytes(numrot: int, channels: int, image_dim: int, num_neurons: int) -> int:
    """Cookbook Eq. 5 (PINK's GPU memory) in bytes, for ``num_neurons = M^2``."""
    mb = (54.5 * (numrot / 360) * channels * (image_dim / 100) ** 2
          + 7.6 * (num_neurons / 100) * channels * (image_dim / 100) ** 2)
    return int(mb * 1e6)


@dataclass
class MemoryEstimate:
    """Bytes a configuration needs: ``total(B) = fixed + B * per_image``."""

    fixed: dict = field(default_factory=dict)
    per_image: dict = field(default_factory=dict)
    mode: str = "map"
    pink_eq5: int = 0

    @property
    def fixed_bytes(self) -> int:
        return int(sum(self.fixed.values()))

    @property
    def per_image_bytes(self) -> int:
        return int(sum(self.per_image.values()))

    def total(self, batch_size: int) -> int:
        return self.fixed_bytes + int(batch_size) * self.per_image_bytes

    def describe(self, batch_size: int | None = None) -> str:
        """One line for logs: fixed part, per image, total for ``batch_size``, PINK's Eq. 5."""
        s = (f"memory estimate ({self.mode}): fixed {format_bytes(self.fixed_bytes)} "
             f"[{', '.join(f'{k} {format_bytes(v)}' for k, v in self.fixed.items())}] + "
             f"{format_bytes(self.per_image_bytes)} per image")
        if batch_size:
            s += f"; batch of {batch_size}: {format_bytes(self.total(batch_size))}"
        return s + f" (PINK, cookbook Eq. 5: {format_bytes(self.pink_eq5)})"

    def to_dict(self, batch_size: int | None = None) -> dict:
        d = {"mode": self.mode, "fixed": dict(self.fixed), "per_image": dict(self.per_image),
             "fixed_bytes": self.fixed_bytes, "per_image_bytes": self.per_image_bytes, "pink_eq5_bytes": self.pink_eq5}
        if batch_size:
            d.update(batch_size=int(batch_size), total_bytes=self.total(batch_size))
        return d


def estimate_memory(som, mode: str = "map") -> MemoryEstimate:
    """Memory estimate of mapping (``"map"``), online (``"online"``) or batch (``"batch"``) training.

    Parameters
    ----------
    som : RotationInvariantSOM
    mode : {"map", "online", "batch"}
    """
    if mode not in ("map", "online", "batch"):
        raise ConfigError(None, "mode", mode, "map, online or batch")
    g = som.geometry
    eng = som.engine
    n, c, t = som.num_neurons, g.channels, som.num_transforms
    lo, hi = eng.window
    u = hi - lo
    fixed = {"weights": 4 * n * c * g.nd * g.nd}
    per = {}
    if som.arithmetic == "pink":
        fixed["neuron features"] = 4 * n * c * eng.num_region_pixels
        per["transformations"] = 2 * 4 * t * c * eng.num_region_pixels
    else:
        fixed["neuron parity features"] = 4 * n * c * u * u
        sides = eng.pairing()["sides"]  # base rotations and, with rotations, their transposes
        per["base rotations"] = 3 * 4 * sides * max(g.numrot // 4, 1) * c * u * u
    per["distances"] = 3 * 4 * t * n
    if som.device.type == "cpu" and som.arithmetic != "pink" and g.interpolation == "bilinear" and g.numrot >= 8:
        km1 = g.numrot // 4 - 1  # the compiled sampler's tables: 32 bytes per grid point
        fixed["sampler tables"] = 32 * km1 * u * u
        if mode == "online":
            from somtorch.engine.online import step_kind

            if step_kind(som) == "dense":
                fixed["sampler tables"] += 32 * 2 * km1 * g.nd * g.nd
    if mode != "map":
        fixed["update"] = 2 * 4 * n * c * g.nd * g.nd  # one image's best transformations + temporaries
    if mode == "batch":
        fixed["batch sums"] = 8 * n * (c * g.nd * g.nd + 2)
    return MemoryEstimate(fixed, per, mode, pink_eq5_bytes(g.numrot, c, g.image_dim, n))


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def available_memory(device) -> int:
    """Free memory on ``device``: CUDA ``mem_get_info``; CPU ``MemAvailable`` (and RLIMIT_AS/DATA)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    avail = _meminfo_available() or (4 << 30)
    try:
        import resource

        for lim in (resource.RLIMIT_AS, getattr(resource, "RLIMIT_DATA", resource.RLIMIT_AS)):
            soft = resource.getrlimit(lim)[0]
            if soft not in (resource.RLIM_INFINITY, -1) and soft > 0:
                avail = min(avail, int(soft))
    except (ImportError, OSError, ValueError):  # pragma: no cover - non-POSIX
        pass
    return int(avail)


def memory_budget(device, limit=None, fraction: float = 0.5) -> int:
    """Working-memory budget: ``limit`` (bytes or ``"2GiB"``) if given, else ``fraction`` of the free
    memory of ``device`` (``$SOMTORCH_MEMORY_LIMIT`` is used when ``limit`` is None)."""
    lim = parse_bytes(limit if limit is not None else os.environ.get("SOMTORCH_MEMORY_LIMIT"))
    if lim is not None:
        return lim
    return int(available_memory(device) * float(fraction))


def fit_batch_size(estimate: MemoryEstimate, budget: int, max_batch: int = 1024) -> int:
    """Largest batch (images computed together, ``<= max_batch``) whose estimate fits ``budget``.

    Raises :class:`~somtorch.errors.ConfigError` when not even one image fits (the fixed part
    -- the SOM itself -- is larger than the budget).
    """
    room = int(budget) - estimate.fixed_bytes
    if room < estimate.per_image_bytes:
        raise ConfigError(None, "memory budget", format_bytes(budget),
                          f">= {format_bytes(estimate.total(1))} for this SOM",
                          estimate.describe(1) + "; raise runtime.memory_limit, use fewer rotations, a smaller "
                          "SOM or smaller images")
    return int(max(1, min(max_batch, room // max(estimate.per_image_bytes, 1))))
