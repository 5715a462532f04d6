"""Shared helpers of the Hydra command-line programs (:mod:`somtorch.train`, :mod:`somtorch.map`).

* :data:`CONFIG_MODULE`, :func:`config_dir`: the packaged Hydra configs (``somtorch/configs``);
* :func:`resolve_device`, :func:`apply_runtime`: runtime group -> torch device and threads;
* :func:`stage_list`, :func:`build_som`: SOM and stage configs -> engine objects;
* :func:`prepare_sample_binary`, :func:`resolve_image_path`: the data group -> a PINK image binary;
* :func:`write_json`, :func:`read_json`: small atomic JSON files (summaries, saved configs).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from somtorch.errors import ConfigError

__all__ = [
    "CONFIG_MODULE", "CONFIG_PATH", "CACHE_DIR_ENV", "SAMPLE_FORMAT_VERSION", "config_dir", "to_plain",
    "resolve_device", "apply_runtime", "auto_threads", "stage_list", "stage_geometry", "build_som",
    "sample_cache_dir", "prepare_sample_binary", "preprocess_cutouts", "resolve_image_path", "write_json", "read_json",
    "GEOMETRY_KEYS",
]

#: The package holding the Hydra configs, and its Hydra search-path form (``@hydra.main(config_path=...)``).
CONFIG_MODULE = "somtorch.configs"
CONFIG_PATH = "pkg://" + CONFIG_MODULE
CACHE_DIR_ENV = "SOMTORCH_CACHE_DIR"
#: Bump when the sample recipe changes, so stale caches are not reused.
SAMPLE_FORMAT_VERSION = 1
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
_SAMPLE_KEYS = ("n", "seed", "cutout_size", "crop", "image_size", "snr", "log")


def sample_cache_dir(data_cfg) -> Path:
    """Cache folder of the sample binary for these settings: ``<cache>/sample-<hash>``.

    ``<cache>`` is ``data.cache_dir``, else ``$SOMTORCH_CACHE_DIR``, else ``~/.cache/somtorch``.
    """
    d = to_plain(data_cfg) or {}
    params = {k: d.get(k) for k in _SAMPLE_KEYS}
    params["version"] = SAMPLE_FORMAT_VERSION
    params["generator"] = _sample_generator_name()
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    root = d.get("cache_dir") or os.environ.get(CACHE_DIR_ENV) or os.path.join("~", ".cache", "somtorch")
    return Path(os.path.expanduser(str(root))).resolve() / f"sample-{h}"


def _sample_generator_name() -> str:
    try:
        from somtorch.datasets.synthetic import generate_sky, render_cutouts  # noqa: F401

        return "synthetic-sky"
    except ImportError:
        return "fallback-blobs"


def _render_sample(n: int, seed: int, size: int) -> tuple[np.ndarray, list[dict], str]:
    """``n`` raw radio cutouts ``(n, size, size)`` (Jy/beam) and one record per image."""
    try:
        from somtorch.datasets.synthetic import generate_sky, render_cutouts
    except ImportError:
        return _fallback_blobs(n, seed, size)
    n_src = max(1, int(np.ceil(n / 1.3)))
    while True:  # the same growth rule as somtorch.datasets.make_sample
        sky = generate_sky(seed=int(seed), n_sources=n_src, image_size=max(int(size), 8))
        if len(sky.catalogue) >= n:
            break
        n_src = int(np.ceil(n_src * 1.1 * n / max(len(sky.catalogue), 1))) + 1
    cube = render_cutouts(sky, indices=np.arange(n), channels=("radio",), size=int(size))[:, 0]
    cat = sky.catalogue.iloc[:n]
    cols = [c for c in ("Component_name", "Morph_class", "Is_sidelobe", "Peak_flux", "Total_flux")
            if c in cat.columns]
    records = [{"index": i, **{c: _scalar(cat[c].iat[i]) for c in cols}} for i in range(n)]
    return cube, records, "synthetic-sky"


def _scalar(v):
    return v.item() if hasattr(v, "item") else v


def _fallback_blobs(n: int, seed: int, size: int) -> tuple[np.ndarray, list[dict], str]:
    """FALLBACK only (when :mod:`somtorch.datasets` is unavailable): noisy Gaussian blobs --
    singles, doubles and triples at random angles -- in place of the synthetic radio sky."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) - (size - 1) / 2.0
    out = np.empty((n, size, size), np.float32)
    recs = []
    kinds = ("single", "double", "triple")
    for i in range(n):
        k = int(rng.integers(0, 3))
        ang = rng.uniform(0, np.pi)
        sep = rng.uniform(0.1, 0.3) * size
        w = rng.uniform(0.02, 0.05) * size
        centres = [(0.0, 0.0)] if k == 0 else [(sep * np.cos(ang), sep * np.sin(ang)),
                                             (-sep * np.cos(ang), -sep * np.sin(ang))]
        if k == 2:
            centres.append((0.0, 0.0))
        img = sum(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * w * w)) for cx, cy in centres)
        img = img * 1e-3 * rng.uniform(2, 20) + rng.normal(0, 1.2e-4, (size, size))
        out[i] = img
        recs.append({"index": i, "Morph_class": kinds[k]})
    return out, recs, "fallback-blobs"


def preprocess_cutouts(cube: np.ndarray, snr: float = 2.0, log: bool = True, crop: int | None = None,
                       image_size: int = 32) -> np.ndarray:
    """Cookbook recipe (rms, drop < snr*rms, log10, minmax), central crop, area resampling."""
    from somtorch.preprocessing import preprocess_image

    steps = [("rms", {"mode": "mad", "clip_rounds": 2, "ignore_zeros": True}),
             ("snr_clip", {"snr": float(snr), "mode": "drop"})]
    steps += (["log"] if log else []) + ["minmax"]

    def pre(im):
        return preprocess_image(im, steps)

    s = cube.shape[-1]
    if crop:
        c = int(crop)
        if not 0 < c <= s:
            raise ConfigError(None, "data.crop", c, f"in (0, cutout_size={s}]")
        o = (s - c) // 2
        cube = cube[:, o:o + c, o:o + c]
    out = np.stack([np.nan_to_num(np.asarray(pre(im), dtype=np.float32)) for im in cube])
    t = torch.from_numpy(out)[:, None]
    if t.shape[-1] != image_size:
        t = torch.nn.functional.interpolate(t, size=(image_size, image_size), mode="area")
    t = t[:, 0]
    lo = t.flatten(1).min(1).values.view(-1, 1, 1)
    hi = t.flatten(1).max(1).values.view(-1, 1, 1)
    t = torch.where(hi > lo, (t - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(t))
    return t.numpy().astype(np.float32)


def prepare_sample_binary(cfg) -> str:
    """Create (once; cached) the PINK image binary of the built-in sample and return its path.

    ``cfg`` is the full config or its ``data`` group (``kind: sample``) with ``n`` images,
    ``seed``, ``cutout_size`` (rendered pixels, 0.6"/px), ``crop`` (central crop, pixels or
    null), ``image_size`` (final pixels), ``snr`` and ``log``. The images come from the
    synthetic VLASS-like sky (:mod:`somtorch.datasets.synthetic`), preprocessed with the
    cookbook recipe (noise rms, drop pixels below ``snr`` x rms, log10, min-max), cropped,
    area-resampled to ``image_size`` and min-max scaled again. Written to
    ``<cache>/sample-<hash>/sample.bin`` with a ``.records.json`` sidecar and ``sample.json``.
    """
    data = cfg.get("data") if (hasattr(cfg, "get") and cfg.get("data") is not None
                               and "kind" not in cfg) else cfg
    d = to_plain(data) or {}
    n, seed = int(d.get("n", 200)), int(d.get("seed", 0))
    size, image_size = int(d.get("cutout_size", 150)), int(d.get("image_size", 32))
    crop = d.get("crop")
    if n < 1:
        raise ConfigError(None, "data.n", n, ">= 1")
    if image_size < 2:
        raise ConfigError(None, "data.image_size", image_size, ">= 2")
    folder = sample_cache_dir(d)
    path = folder / "sample.bin"
    if path.exists() and (folder / "sample.json").exists():
        return str(path)
    from somtorch.io import write_images, write_records
    from somtorch.io.records import records_path

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(folder.parent) / f".{folder.name}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    cube, records, generator = _render_sample(n, seed, size)
    images = preprocess_cutouts(cube, float(d.get("snr", 2.0)), bool(d.get("log", True)), crop, image_size)
    tpath = tmp / "sample.bin"
    write_images(tpath, images[:, None], comments=[f"somtorch built-in sample ({generator})"],
                 overwrite=True)
    write_records(records_path(tpath), records, overwrite=True)
    info = {k: d.get(k) for k in _SAMPLE_KEYS}
    info.update(generator=generator, version=SAMPLE_FORMAT_VERSION, shape=list(images.shape))
    write_json(tmp / "sample.json", info)
    try:
        os.replace(tmp, folder)  # atomic publish; fails if another process won the race
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        if not path.exists():
            raise
    if generator != "synthetic-sky":
        import warnings

        warnings.warn("somtorch.datasets is unavailable: the built-in sample uses the fallback "
                      "Gaussian-blob generator", RuntimeWarning, stacklevel=2)
    return str(path)


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
    with open(path, encoding="utf-8") as f:
        return json.load(f)
