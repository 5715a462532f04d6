"""Shared helpers of the Hydra command-line programs (:mod:`somtorch.train`, :mod:`somtorch.map`).

* :data:`CONFIG_MODULE`, :func:`config_dir`: the packaged Hydra configs (``somtorch/configs``);
* :func:`resolve_device`, :func:`apply_runtime`: runtime group -> torch device and threads;
* :func:`stage_list`, :func:`build_som`: SOM and stage configs -> engine objects;
* :func:`prepare_sample_binary`, :func:`resolve_image_path`: the data group -> a PINK image binary
  (the built-in sample from :func:`somtorch.datasets.sample_image_binary`);
* :func:`write_json`, :func:`read_json`: small atomic JSON files (summaries, saved configs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from somtorch.errors import ConfigError

__all__ = [
    "CONFIG_MODULE", "CONFIG_PATH", "CACHE_DIR_ENV", "config_dir", "to_plain",
    "resolve_device", "apply_runtime", "auto_threads", "stage_list", "stage_geometry", "build_som",
    "prepare_sample_binary", "resolve_image_path", "write_json", "read_json", "GEOMETRY_KEYS",
]

#: names kept here for older imports; they live in :mod:`somtorch.datasets.images` (the one
#: path from raw sample cutouts to training images)
_MOVED = {"preprocess_cutouts": "somtorch.datasets.images", "SAMPLE_FORMAT_VERSION": "somtorch.datasets.images"}
#: environment variable naming the cache folder of generated samples (default ``~/.cache/somtorch``)
CACHE_DIR_ENV = "SOMTORCH_CACHE_DIR"


def __getattr__(name: str):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'somtorch.cli.common' has no attribute {name!r}")

#: The package holding the Hydra configs, and its Hydra search-path form (``@hydra.main(config_path=...)``).
CONFIG_MODULE = "somtorch.configs"
CONFIG_PATH = "pkg://" + CONFIG_MODULE
#: Geometry fields a stage may override (``null`` in the stage keeps the ``som`` group's value).
GEOMETRY_KEYS = ("numrot", "flip", "neuron_dim", "euclidean_dim", "distance_shape", "interpolation", "convention")


# ---------------------------------------------------------------------------------------- configs
def config_dir() -> str:
    """Absolute path of the packaged Hydra config folder (``somtorch/configs``).

    The programs find it on Hydra's package search path (:data:`CONFIG_PATH`); this path is for
    tools that want the files themselves (e.g. :func:`hydra.initialize_config_dir`).
    """
    import somtorch.configs

    return str(Path(somtorch.configs.__file__).resolve().parent)


def to_plain(cfg) -> Any:
    """An OmegaConf node (or anything) as plain resolved Python containers."""
    if cfg is None:
        return None
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover
        return cfg
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def _get(d, key, default=None):
    if d is None:
        return default
    if hasattr(d, "get"):
        v = d.get(key, default)
        return default if v is None else v
    return getattr(d, key, default)


# ---------------------------------------------------------------------------------------- runtime
def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda``/``cuda:k``/``cpu``/``mps`` as given
    (ConfigError if the device is not available)."""
    name = "auto" if name in (None, "") else str(name).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(None, "runtime.device", name, "auto, cpu, cuda, cuda:<k> or mps", str(e)) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(None, "runtime.device", name, "a usable device",
                              "CUDA is not available on this machine; use runtime=cpu or runtime.device=auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(None, "runtime.device", name, f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(None, "runtime.device", name, "a usable device", "MPS is not available")
    return dev


def auto_threads() -> int:
    """CPU threads for a program when ``runtime.threads`` is null: the cores not busy with other work.

    The cores this process may run on (``sched_getaffinity``), shared among the ``torchrun``
    processes of this machine (``$LOCAL_WORLD_SIZE``), less the one-minute load average, and at
    least one. On a busy machine more threads than idle cores make torch's parallel regions wait
    for descheduled threads -- several times slower than one thread -- so a loaded machine gets
    one thread and an idle one all of its cores.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    share = max(1, cores // local)
    try:
        load = os.getloadavg()[0] / local
    except (OSError, AttributeError):  # not available on this platform
        load = 0.0
    return int(max(1, min(share, share - int(round(load)))))


def apply_runtime(runtime) -> torch.device:
    """Set torch's CPU thread count and return the device.

    ``runtime.threads`` as given, or with null :func:`auto_threads` (never more threads than idle
    cores, see there).
    """
    threads = _get(runtime, "threads")
    if threads is None:
        threads = auto_threads()
    threads = int(threads)
    if threads < 1:
        raise ConfigError(None, "runtime.threads", threads, ">= 1 (or null for the idle cores)")
    torch.set_num_threads(threads)
    return resolve_device(_get(runtime, "device", "auto"))


# ---------------------------------------------------------------------------------------- SOM
_STAGE_DEFAULTS = {
    "name": None, "dist_func": "gaussian", "sigma": 1.1, "damping": 0.2, "num_iter": 1,
    "max_update_distance": None, "shuffle": True, "init": None, "progress": 10, "inter_store": None,
    **{k: None for k in GEOMETRY_KEYS},
}


def _norm_stage(st: dict, default_name: str) -> dict:
    st = dict(st)
    unknown = set(st) - set(_STAGE_DEFAULTS)
    if unknown:
        raise ConfigError(None, f"stage '{st.get('name') or default_name}'", sorted(unknown),
                          f"keys among {sorted(_STAGE_DEFAULTS)}")
    out = dict(_STAGE_DEFAULTS)
    out.update({k: v for k, v in st.items() if v is not None})
    out["name"] = str(out["name"] or default_name)
    if not out["name"] or "/" in out["name"] or out["name"] in (".", ".."):
        raise ConfigError(None, "stage.name", out["name"], "a folder name without '/'")
    if int(out["num_iter"]) < 1:
        raise ConfigError(None, f"stage '{out['name']}'.num_iter", out["num_iter"], ">= 1")
    return out


def stage_list(cfg) -> tuple[str, list[dict]]:
    """The stages to run, as plain dicts with every field filled in.

    ``cfg.stage`` (set with ``+stage=<name>``) runs that single stage; otherwise
    ``cfg.schedule.stages`` (an ordered mapping name -> stage) runs in order, each stage's fields
    layered over ``cfg.schedule.common``. Returns ``(schedule_name, stages)``.
    """
    single = cfg.get("stage") if hasattr(cfg, "get") else None
    if single is not None:
        st = to_plain(single)
        return str(st.get("name") or "stage"), [_norm_stage(st, "stage")]
    sched = to_plain(cfg.get("schedule"))
    if not sched or not sched.get("stages"):
        raise ConfigError(None, "schedule.stages", None, "at least one stage",
                          "pick one with schedule=<name> or run a single stage with +stage=<name>")
    common = dict(sched.get("common") or {})
    stages = sched["stages"]
    if isinstance(stages, dict):
        items = list(stages.items())
    else:  # a list of stages, each with its own name
        items = [(s.get("name") or f"stage{k + 1}", s) for k, s in enumerate(stages)]
    out = []
    for key, st in items:
        merged = dict(common)
        merged.update({k: v for k, v in (st or {}).items() if v is not None})
        merged["name"] = merged.get("name") if (st or {}).get("name") else key
        out.append(_norm_stage(merged, str(key)))
    names = [s["name"] for s in out]
    if len(set(names)) != len(names):
        raise ConfigError(None, "schedule.stages", names, "unique stage names")
    return str(sched.get("name") or "schedule"), out


def stage_geometry(som_cfg, image_dim: int, channels: int, stage: dict | None = None,
                   convention: str | None = None):
    """:class:`~somtorch.engine.SOMGeometry` from the ``som`` group, with a stage's overrides.

    ``convention`` is used where neither the ``som`` group nor the stage sets one (the runtime
    preset's: ``runtime=pink_exact`` reproduces PINK's geometry); the default is ``"native"``.
    """
    from somtorch.engine import SOMGeometry

    som_cfg = to_plain(som_cfg) or {}
    kw = {k: som_cfg.get(k) for k in GEOMETRY_KEYS}
    if kw.get("convention") is None:
        kw["convention"] = convention
    for k in GEOMETRY_KEYS:
        if stage is not None and stage.get(k) is not None:
            kw[k] = stage[k]
    kw = {k: v for k, v in kw.items() if v is not None}
    return SOMGeometry(image_dim=int(image_dim), channels=int(channels), **kw)


def build_lattice(som_cfg):
    """:class:`~somtorch.geometry.Lattice` from the ``som`` group (``layout``, ``shape``, ``periodic``)."""
    from somtorch.geometry import Lattice

    som_cfg = to_plain(som_cfg) or {}
    shape = som_cfg.get("shape", [10, 10])
    shape = (int(shape),) if isinstance(shape, (int, float)) else tuple(int(s) for s in shape)
    return Lattice(som_cfg.get("layout", "cartesian"), shape, bool(som_cfg.get("periodic", False)))


def build_som(som_cfg, runtime, image_dim: int, channels: int = 1, stage: dict | None = None,
              init=None, device=None):
    """A :class:`~somtorch.engine.RotationInvariantSOM` from the ``som`` and ``runtime`` groups.

    ``init`` (a method name, tensor or PINK SOM path) overrides ``stage.init`` and ``som.init``.
    """
    from somtorch.engine import RotationInvariantSOM

    som_plain = to_plain(som_cfg) or {}
    lat = build_lattice(som_plain)
    geo = stage_geometry(som_plain, image_dim, channels, stage, convention=_get(runtime, "convention"))
    if init is None:
        init = (stage or {}).get("init") or som_plain.get("init", "zero")
    if isinstance(init, str) and init.lower() not in ("zero", "random", "random_with_preferred_direction"):
        init = os.path.abspath(os.path.expanduser(init))
    return RotationInvariantSOM(
        lat, geo, init=init, seed=int(som_plain.get("seed", 1234)),
        rng=str(_get(runtime, "rng", "torch")), arithmetic=str(_get(runtime, "arithmetic", "gemm")),
        precision=str(_get(runtime, "precision", "float32")),
        device=device if device is not None else resolve_device(_get(runtime, "device", "auto")))


# ---------------------------------------------------------------------------------------- data
_SAMPLE_KEYS = ("n", "seed", "cutout_size", "crop", "image_size", "snr", "log", "cache_dir")


def prepare_sample_binary(cfg) -> str:
    """The built-in sample's PINK image binary for a ``data`` group (``kind: sample``).

    ``cfg`` is the full config or its ``data`` group, with ``n``, ``seed``, ``cutout_size``,
    ``crop``, ``image_size``, ``snr``, ``log`` and ``cache_dir``; the images are made (once,
    cached) by :func:`somtorch.datasets.sample_image_binary`, preprocessed with the same recipe
    steps as catalogue data.
    """
    from somtorch.datasets.images import sample_image_binary

    data = cfg.get("data") if (hasattr(cfg, "get") and cfg.get("data") is not None
                               and "kind" not in cfg) else cfg
    d = to_plain(data) or {}
    kw = {k: d[k] for k in _SAMPLE_KEYS if k in d}
    try:
        return sample_image_binary(**kw)
    except ConfigError as e:  # name the option as the user wrote it
        if e.field in _SAMPLE_KEYS:
            raise ConfigError(None, f"data.{e.field}", e.found, e.expected, e.detail) from None
        raise


def resolve_image_path(data_cfg) -> str:
    """The PINK image binary named by the ``data`` group (``kind: sample`` or ``kind: file``)."""
    d = to_plain(data_cfg) or {}
    kind = d.get("kind", "sample")
    if kind == "sample":
        return prepare_sample_binary(d)
    if kind == "file":
        p = d.get("path")
        if not p:
            raise ConfigError(None, "data.path", p, "a PINK image binary", "use data=file data.path=<images.bin>")
        p = os.path.abspath(os.path.expanduser(str(p)))
        if not os.path.exists(p):
            raise ConfigError(None, "data.path", p, "an existing PINK image binary")
        return p
    raise ConfigError(None, "data.kind", kind, "'sample' or 'file'")


# ---------------------------------------------------------------------------------------- JSON
def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically (overwriting)."""
    from somtorch.io.atomic import atomic_output
    from somtorch.io.records import to_jsonable

    with atomic_output(path, overwrite=True, mode="w") as f:
        json.dump(to_jsonable(obj), f, indent=1)
        f.write("\n")


def read_json(path) -> Any:
    from somtorch.io.files import open_regular

    with open_regular(path, "r", "JSON", encoding="utf-8") as f:
        return json.load(f)
