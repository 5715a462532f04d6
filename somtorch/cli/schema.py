"""Typed schemas of the Hydra programs' configs (structured configs) and their range checks.

The dataclasses below are registered with Hydra's :class:`~hydra.core.config_store.ConfigStore`
(:func:`register`) as ``train_schema`` and ``map_schema``, the first entries of the defaults lists
of ``train.yaml`` and ``map.yaml``: every group file (``som/``, ``data/``, ``schedule/``,
``stage/``, ``runtime/``) and every command-line override is merged into them, so a misspelt key
(``+som.shapee=[3,3]``) or a value of the wrong type (``som.numrot=abc``) is refused when the
config is composed, naming the key. :func:`validate_train` and :func:`validate_map` then check
ranges (positive sizes, rotation counts, finite sigma and damping, known names, existing files)
before any work is done, raising :class:`~somtorch.errors.ConfigError` with the option's full
name.
"""

# ``Optional[...]``/``List[...]`` rather than ``X | None``/``list[X]``: OmegaConf evaluates the
# annotations at runtime (Python 3.10).
# ruff: noqa: UP006, UP035, UP045
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from somtorch.errors import ConfigError

__all__ = [
    "SOMConfig", "DataConfig", "StageConfig", "ScheduleConfig", "RuntimeConfig", "TrainConfig",
    "MapConfig", "ApproxConfig", "RecipeConfig", "SampleFitsConfig", "PreprocessSchema", "register", "validate_train",
    "validate_map", "validate_preprocess", "missing_keys",
]



@dataclass
class SOMConfig:
    """The ``som`` group: lattice, initialisation and geometry (see ``som/default.yaml``)."""

    layout: str = "cartesian"
    shape: List[int] = field(default_factory=lambda: [10, 10])
    periodic: bool = False
    init: str = "zero"
    seed: int = 1234
    numrot: int = 360
    flip: bool = True
    neuron_dim: Optional[int] = None
    euclidean_dim: Optional[int] = None
    distance_shape: str = "quadratic"
    interpolation: str = "bilinear"
    convention: Optional[str] = None


@dataclass
class DataConfig:
    """The ``data`` group: the built-in sample (``kind: sample``) or a PINK image binary (``file``)."""

    kind: str = "sample"
    path: Optional[str] = None
    n: int = 200
    seed: int = 0
    cutout_size: int = 150
    crop: Optional[int] = 96
    image_size: int = 32
    snr: float = 2.0
    log: bool = True
    cache_dir: Optional[str] = None


@dataclass
class StageConfig:
    """One training stage (``stage/`` group, ``schedule.common`` and ``schedule.stages.<name>``).

    ``null`` fields take the schedule's ``common`` value, then the defaults of
    :func:`somtorch.cli.common.stage_list`; geometry fields left ``null`` keep the ``som`` group's.
    """

    name: Optional[str] = None
    dist_func: Optional[str] = None
    sigma: Optional[float] = None
    damping: Optional[float] = None
    num_iter: Optional[int] = None
    max_update_distance: Optional[float] = None
    shuffle: Optional[bool] = None
    init: Optional[str] = None
    progress: Optional[int] = None
    inter_store: Optional[str] = None
    numrot: Optional[int] = None
    flip: Optional[bool] = None
    neuron_dim: Optional[int] = None
    euclidean_dim: Optional[int] = None
    distance_shape: Optional[str] = None
    interpolation: Optional[str] = None
    convention: Optional[str] = None


@dataclass
class ScheduleConfig:
    """The ``schedule`` group: stages run in order, each starting from the previous SOM."""

    name: Optional[str] = None
    common: StageConfig = field(default_factory=StageConfig)
    stages: Dict[str, StageConfig] = field(default_factory=dict)


@dataclass
class RuntimeConfig:
    """The ``runtime`` group: device, precision, reproduction modes, threads, memory, batch mode."""

    device: str = "auto"
    precision: str = "float32"
    arithmetic: str = "gemm"
    rng: str = "torch"
    convention: Optional[str] = None
    threads: Optional[int] = None
    batch_size: Optional[int] = None
    progress_bar: Optional[bool] = None
    mode: str = "online"
    step_size: int = 256
    compile: str = "auto"
    memory_limit: Any = None
    dist_timeout_s: float = 600.0


@dataclass
class TrainConfig:
    """``somtorch.train``'s config (``train.yaml``)."""

    som: SOMConfig = field(default_factory=SOMConfig)
    data: DataConfig = field(default_factory=DataConfig)
    schedule: Optional[ScheduleConfig] = None
    stage: Optional[StageConfig] = None
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    resume: Any = None
    overwrite: bool = False
    metrics_sample: int = 64
    checkpoint_every: Optional[int] = None
    plots: bool = True
    stop_after_images: Optional[int] = None
    stop_stage: Optional[str] = None
    debug: bool = False


@dataclass
class ApproxConfig:
    """``approx`` of ``somtorch.map`` (``matching: approximate``; :class:`somtorch.engine.ApproxMapper`)."""

    coarse: Optional[int] = None   # default by search: surrogate 15, polar 0, bisect 6
    refine: Optional[int] = None   # default by search: surrogate 4, polar 5, bisect 1
    stages: Optional[int] = None
    seeds: int = 0
    search: str = "surrogate"
    neurons: Optional[int] = None  # default by search: surrogate 8, polar 6


@dataclass
class MapConfig:
    """``somtorch.map``'s config (``map.yaml``)."""

    data: DataConfig = field(default_factory=DataConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    som_path: Optional[str] = None
    run_dir: Optional[str] = None
    som_config: Optional[str] = None
    numrot: Optional[int] = None
    batch_size: Optional[int] = None
    matching: str = "exact"
    approx: ApproxConfig = field(default_factory=ApproxConfig)
    scales: Optional[List[float]] = None
    plots: bool = True
    overwrite: bool = False
    resume: bool = False
    debug: bool = False


@dataclass
class RecipeConfig:
    """The ``recipe`` group of ``somtorch.preprocess``: named steps, per-channel overrides."""

    name: str = "custom"
    steps: List[Any] = field(default_factory=list)
    channels: Dict[str, Any] = field(default_factory=dict)


@dataclass
class SampleFitsConfig:
    """``somtorch.preprocess``'s built-in FITS sample (used without ``catalogue``)."""

    n: int = 200
    seed: int = 0
    with_ir: bool = False
    four_axis: bool = True
    cache_dir: Optional[str] = None


@dataclass
class PreprocessSchema:
    """``somtorch.preprocess``'s config (``preprocess.yaml``)."""

    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    catalogue: Optional[str] = None
    image_dir: Optional[str] = None
    id_column: str = "Component_name"
    channels: Optional[List[Any]] = None
    output: Optional[str] = None
    ra_column: str = "RA"
    dec_column: str = "DEC"
    cutout_size: Optional[int] = None
    image_shape: Optional[List[int]] = None
    resample: bool = True
    max_padded_fraction: float = 0.5
    record_columns: List[str] = field(default_factory=list)
    workers: int = 1
    chunk_size: int = 64
    overwrite: bool = False
    resume: bool = True
    progress: bool = True
    threads: Optional[int] = 1
    sample: SampleFitsConfig = field(default_factory=SampleFitsConfig)
    debug: bool = False


def register() -> None:
    """Register ``train_schema``, ``map_schema`` and ``preprocess_schema`` with Hydra's
    ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="map_schema", node=MapConfig)
    cs.store(name="preprocess_schema", node=PreprocessSchema)


# ---------------------------------------------------------------------------------------- checks
_CHOICES = {
    "som.layout": ("cartesian", "hexagonal"),
    "distance_shape": ("quadratic", "circular"),
    "interpolation": ("bilinear", "nearest"),
    "convention": (None, "native", "pink"),
    "dist_func": ("gaussian", "unitygaussian", "mexicanhat"),
    "inter_store": (None, "off", "overwrite", "keep"),
    "runtime.precision": ("float32", "tf32", "bf16", "float64"),
    "runtime.arithmetic": ("gemm", "pink"),
    "runtime.rng": ("torch", "pink"),
    "runtime.mode": ("online", "batch"),
    "runtime.compile": ("auto", "on", "off"),
    "matching": ("exact", "approximate"),
    "search": ("surrogate", "polar", "bisect"),
}


def _g(node, key):
    if node is None:
        return None
    return node.get(key) if hasattr(node, "get") else getattr(node, key, None)


def _choice(node, prefix: str, key: str, rule: str | None = None) -> None:
    v = _g(node, key)
    allowed = _CHOICES[rule or key]
    if v is None and None in allowed:
        return
    if (str(v).lower() if v is not None else None) not in allowed:
        names = ", ".join("null" if a is None else a for a in allowed)
        raise ConfigError(None, f"{prefix}{key}", v, f"one of {names}")


def _int(node, prefix: str, key: str, lo: int = 1, optional: bool = False, what: str | None = None) -> None:
    v = _g(node, key)
    if v is None:
        if optional:
            return
        raise ConfigError(None, f"{prefix}{key}", None, what or f"an integer >= {lo}")
    if isinstance(v, bool) or int(v) != v or v < lo:
        raise ConfigError(None, f"{prefix}{key}", v, what or (f"an integer >= {lo}" + (" or null" if optional else "")))


def _pos(node, prefix: str, key: str, optional: bool = True, zero: bool = False) -> None:
    v = _g(node, key)
    if v is None:
        if optional:
            return
        raise ConfigError(None, f"{prefix}{key}", None, "a finite number")
    ok = math.isfinite(float(v)) and (float(v) >= 0 if zero else float(v) > 0)
    if not ok:
        raise ConfigError(None, f"{prefix}{key}", v, "a finite number " + (">= 0" if zero else "> 0"))


def _numrot(node, prefix: str, optional: bool) -> None:
    v = _g(node, "numrot")
    if v is None and optional:
        return
    if v is None or v < 1 or (v != 1 and v % 4):
        raise ConfigError(None, f"{prefix}numrot", v, "1 or a positive multiple of 4 (e.g. 4, 8, 180, 360)")


def _geometry(node, prefix: str, optional: bool) -> None:
    _numrot(node, prefix, optional)
    _int(node, prefix, "neuron_dim", optional=True)
    _int(node, prefix, "euclidean_dim", optional=True)
    for key in ("distance_shape", "interpolation"):
        if not (optional and _g(node, key) is None):
            _choice(node, prefix, key)
    _choice(node, prefix, "convention")


_INIT_METHODS = ("zero", "random", "random_with_preferred_direction")


def _init(node, prefix: str) -> None:
    """``init``: a method name or an existing PINK SOM file."""
    v = _g(node, "init")
    if v is None or str(v).lower() in _INIT_METHODS:
        return
    if not os.path.isfile(os.path.expanduser(str(v))):
        raise ConfigError(None, f"{prefix}init", v, f"one of {', '.join(_INIT_METHODS)} or an existing PINK SOM file")


def _stage(node, prefix: str) -> None:
    if node is None:
        return
    name = _g(node, "name")
    if name is not None and (not str(name) or "/" in str(name) or str(name) in (".", "..")):
        raise ConfigError(None, f"{prefix}name", name, "a folder name without '/'")
    if _g(node, "dist_func") is not None:
        _choice(node, prefix, "dist_func")
    _pos(node, prefix, "sigma")
    _pos(node, prefix, "damping")
    _pos(node, prefix, "max_update_distance")
    _int(node, prefix, "num_iter", optional=True)
    _int(node, prefix, "progress", optional=True)
    _choice(node, prefix, "inter_store")
    _init(node, prefix)
    _geometry(node, prefix, optional=True)


def missing_keys(cfg) -> list[str]:
    """Full names of the mandatory values (``???``) left unset in ``cfg``."""
    from omegaconf import OmegaConf

    return sorted(OmegaConf.missing_keys(cfg))


def _missing(cfg) -> None:
    miss = missing_keys(cfg)
    if miss:
        hint = ("data=file needs the image binary: data.path=<images.bin>" if miss[0] == "data.path"
                else f"set it on the command line: {miss[0]}=<value>")
        raise ConfigError(None, miss[0], None, None, f"no value given; {hint}")


def _runtime(rt) -> None:
    from somtorch.engine.memory import parse_bytes

    for key in ("runtime.precision", "runtime.arithmetic", "runtime.rng", "runtime.mode", "runtime.compile"):
        _choice(rt, "runtime.", key.split(".", 1)[1], key)
    _choice(rt, "runtime.", "convention")
    _int(rt, "runtime.", "threads", optional=True, what="an integer >= 1 or null (torch's default)")
    _int(rt, "runtime.", "batch_size", optional=True, what="an integer >= 1 or null (automatic)")
    _int(rt, "runtime.", "step_size")
    _pos(rt, "runtime.", "dist_timeout_s", optional=False)
    try:
        parse_bytes(_g(rt, "memory_limit"))
    except ConfigError:
        raise ConfigError(None, "runtime.memory_limit", _g(rt, "memory_limit"),
                          "a size such as 2GiB or 512MB, or null") from None


def _data(data, kinds: tuple[str, ...]) -> None:
    kind = _g(data, "kind")
    if kind not in kinds:
        raise ConfigError(None, "data.kind", kind, " or ".join(kinds))
    if kind == "file":
        p = _g(data, "path")
        if not p:
            raise ConfigError(None, "data.path", None, None,
                              "no value given; data=file needs the image binary: data.path=<images.bin>")
        p = os.path.abspath(os.path.expanduser(str(p)))
        if not os.path.isfile(p):
            raise ConfigError(None, "data.path", p, "an existing PINK image binary")
        return
    _int(data, "data.", "n")
    _int(data, "data.", "cutout_size", lo=2)
    _int(data, "data.", "image_size", lo=2)
    _int(data, "data.", "crop", optional=True, what=f"an integer in [1, cutout_size={_g(data, 'cutout_size')}] or null")
    if _g(data, "crop") is not None and _g(data, "crop") > _g(data, "cutout_size"):
        raise ConfigError(None, "data.crop", _g(data, "crop"), f"at most cutout_size={_g(data, 'cutout_size')}")
    _pos(data, "data.", "snr", optional=False, zero=True)


def validate_train(cfg) -> None:
    """Range checks of a composed ``train`` config; :class:`ConfigError` naming the first bad option."""
    _missing(cfg)
    som = cfg.som
    _choice(som, "som.", "layout", "som.layout")
    shape = list(som.shape or [])
    if not shape or any(int(s) < 1 for s in shape):
        raise ConfigError(None, "som.shape", shape, "a list of positive sizes, e.g. [10, 10]")
    if str(som.layout).lower() == "hexagonal" and (len(shape) != 1 or shape[0] % 2 == 0):
        raise ConfigError(None, "som.shape", shape, "one odd side for a hexagonal SOM, e.g. [7]")
    if str(som.layout).lower() == "cartesian" and len(shape) > 3:
        raise ConfigError(None, "som.shape", shape, "1 to 3 sizes for a cartesian SOM")
    _geometry(som, "som.", optional=False)
    _init(som, "som.")
    _data(cfg.data, ("sample", "file"))
    _runtime(cfg.runtime)
    _int(cfg, "", "metrics_sample", lo=0)
    _int(cfg, "", "checkpoint_every", optional=True, what="an integer >= 1 (images) or null")
    _int(cfg, "", "stop_after_images", lo=0, optional=True)
    if cfg.get("stage") is not None:
        _stage(cfg.stage, "stage.")
    else:
        sched = cfg.get("schedule")
        if sched is None or not sched.get("stages"):
            raise ConfigError(None, "schedule.stages", None, "at least one stage",
                              "pick one with schedule=<name> or run a single stage with +stage=<name>")
        _stage(sched.common, "schedule.common.")
        for name, st in sched.stages.items():
            _stage(st, f"schedule.stages.{name}.")


def validate_map(cfg) -> None:
    """Range checks of a composed ``map`` config."""
    _missing(cfg)
    _data(cfg.data, ("trained", "sample", "file"))
    _runtime(cfg.runtime)
    _numrot(cfg, "", optional=True)
    _int(cfg, "", "batch_size", optional=True, what="an integer >= 1 or null (automatic)")
    _choice(cfg, "", "matching")
    ap = cfg.get("approx")
    if ap is not None:
        _choice(ap, "approx.", "search")
        polar = _g(ap, "search") == "polar"
        _int(ap, "approx.", "coarse", lo=0 if polar else 1, optional=True,
             what=f"an integer >= {0 if polar else 1} or null (default of the search)")
        _int(ap, "approx.", "refine", lo=0, optional=True, what="an integer >= 0 or null (default of the search)")
        _int(ap, "approx.", "neurons", optional=True)
        _int(ap, "approx.", "seeds", lo=0)
        _int(ap, "approx.", "stages", lo=0, optional=True, what="an integer >= 0 or null (automatic)")
    if cfg.get("scales") is not None:
        from somtorch.engine.scale import check_scales

        check_scales(list(cfg.get("scales")))


def validate_preprocess(cfg) -> None:
    """Range checks of a composed ``preprocess`` config."""
    _missing(cfg)
    for key in ("catalogue", "image_dir"):
        p = cfg.get(key)
        if p is not None and not os.path.exists(os.path.expanduser(str(p))):
            raise ConfigError(None, key, str(p), "an existing " + ("catalogue file" if key == "catalogue" else "folder"))
    _int(cfg, "", "workers")
    _int(cfg, "", "chunk_size")
    _int(cfg, "", "threads", optional=True, what="an integer >= 1 or null")
    _int(cfg, "", "cutout_size", lo=2, optional=True, what="an integer >= 2 (pixels) or null")
    shape = cfg.get("image_shape")
    if shape is not None and (len(shape) != 2 or min(shape) < 1):
        raise ConfigError(None, "image_shape", list(shape), "[rows, cols] of positive sizes, or null")
    f = cfg.get("max_padded_fraction")
    if not (math.isfinite(float(f)) and 0.0 <= float(f) <= 1.0):
        raise ConfigError(None, "max_padded_fraction", f, "a fraction in [0, 1]")
    _int(cfg.sample, "sample.", "n")
