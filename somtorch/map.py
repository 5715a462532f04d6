"""Map an image binary onto a trained SOM from the command line (Hydra).

Usage
-----
::

    python -m somtorch.map som=outputs/train/.../stage2/som.bin   # images it was trained on
    python -m somtorch.map run_dir=outputs/train/...              # the run's final SOM
    python -m somtorch.map som=SOM.bin data=file data.path=new_images.bin runtime=cuda
    python -m somtorch.map som=SOM_B3.bin som_config=null numrot=360 data=file data.path=IMG.bin
    torchrun --nproc_per_node=4 -m somtorch.map som=SOM.bin data=file data.path=IMG.bin hydra.run.dir=out
    python -m somtorch.map resume=out           # finish a crashed mapping (with its saved config)

Under ``torchrun`` every rank maps a contiguous shard of the images and writes its rows of the
mapping/transform files in place (byte-identical to one process); rank 0 writes the tables and
plots (:mod:`somtorch.distributed`); give ``hydra.run.dir`` so that every rank's Hydra uses the
same folder (otherwise rank 0's is used and the others leave empty timestamped folders). ``runtime.memory_limit`` (default: half the free memory of
the device) sets the working-memory budget the batch size is chosen for; the estimate is logged.

``som=<path>`` is an alias of ``som_path=<path>``. The geometry (lattice, numrot, neuron and
distance dims, distance shape) comes from ``som_config.json`` next to the SOM file (written by
:mod:`somtorch.train`); for a plain PINK SOM without one, the lattice is read from the file and
``numrot`` (default 360) and the image size from the data.

Outputs in the Hydra run folder: ``mapping.bin`` and ``transform.bin`` (PINK format, as
``Pink --map ... --store-rot-flip``), ``bmu.csv`` (image, best neuron, its lattice coordinates,
distance, flip, angle), ``bmu_counts.png`` (best-match counts per neuron) and ``map_summary.json``.

``matching=approximate`` maps with :class:`somtorch.engine.ApproxMapper` (a coarse-to-fine search
over the rotations; options ``approx.search`` (``surrogate``, ``polar``, ``bisect``) and
``approx.coarse/refine/neurons/stages/seeds``); ``scales=[1.0,0.8,1.25]``
also searches zoom factors (:mod:`somtorch.engine.scale`; one process, no resume) and writes
``transform.bin.scale.npy`` (float32 ``(n_images, N)``) and a ``scale`` column in ``bmu.csv``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from somtorch.cli.common import (
    CONFIG_PATH,
    apply_runtime,
    prepare_sample_binary,
    read_json,
    resolve_image_path,
    to_plain,
    write_json,
)
from somtorch.cli.runner import (
    call_hydra,
    claim_run_dir,
    compose_checked,
    console_logging,
    debug_requested,
    fmt_figure,
    is_expected_error,
    log_to_file,
    override_value,
    progress_bar_wanted,
    report_error,
    resume_target,
    save_run_config,
    saved_config_for_resume,
    split_argv,
    tune_process,
)
from somtorch.errors import ConfigError

__all__ = ["run_mapping", "main"]

log = logging.getLogger("somtorch.map")

PROG = "somtorch.map"
#: options a resumed mapping may change: they do not change the result
RESUME_OPTIONS = ("runtime.device", "runtime.threads", "runtime.progress_bar", "runtime.batch_size", "batch_size",
                  "runtime.memory_limit", "runtime.dist_timeout_s", "plots", "debug", "resume", "overwrite")


def _resolve_som(cfg) -> tuple[str, dict | None]:
    som_path, run_dir = cfg.get("som_path"), cfg.get("run_dir")
    if som_path is None and run_dir is not None:
        summ = Path(run_dir).expanduser() / "summary.json"
        if not summ.exists():
            raise ConfigError(summ, "run_dir", str(run_dir), "a somtorch.train run folder with summary.json")
        som_path = read_json(summ).get("final_som")
        if not som_path:
            raise ConfigError(summ, "final_som", None, "a finished run",
                              f"the run has no finished SOM yet; continue it with: python -m somtorch.train resume={run_dir}")
    if som_path is None:
        raise ConfigError(None, "som", None, "a SOM file",
                          "pass som=<path to som.bin> or run_dir=<somtorch.train run folder>")
    som_path = os.path.abspath(os.path.expanduser(str(som_path)))
    if not os.path.exists(som_path):
        raise ConfigError(None, "som", som_path, "an existing PINK SOM file")
    cpath = cfg.get("som_config")
    if cpath is None:
        cand = Path(som_path).with_name("som_config.json")
        cpath = str(cand) if cand.exists() else None
    return som_path, (read_json(cpath) if cpath else None)


def _coord_names(lat) -> list[str]:
    if lat.layout == "hexagonal":
        return ["q", "r"]
    return ["row", "col", "depth"][: len(lat.shape)] if len(lat.shape) > 1 else ["x"]


def run_mapping(cfg, out_dir, *, overrides: list[str] | None = None, existed: bool | None = None) -> dict:
    """Map the configured images onto the configured SOM, writing into ``out_dir``.

    Parameters
    ----------
    cfg : DictConfig
        The composed ``map`` config (schema :class:`somtorch.cli.schema.MapConfig`), checked with
        :func:`~somtorch.cli.schema.validate_map` before any work.
    out_dir : path
        The output folder: refused when it already holds anything, unless ``resume=true``
        (finish an interrupted mapping there) or ``overwrite=true``; removed again when the
        mapping fails before it starts.
    overrides : list of str, optional
        The command-line overrides, saved with the config in ``<out_dir>/.hydra/``.
    existed : bool, optional
        Whether ``out_dir`` existed before the program started (default: now).

    Returns
    -------
    dict
        The summary (also ``<out_dir>/map_summary.json``).
    """
    from somtorch.cli.schema import validate_map

    validate_map(cfg)
    state: dict = {"started": False}
    try:
        return _run_mapping(cfg, out_dir, overrides, existed, state)
    except BaseException:
        folder = state.get("folder")
        if folder is not None and not state["started"]:  # failed before mapping: leave nothing
            _close_log(state)
            folder.discard()
        raise
    finally:
        _close_log(state)


def _close_log(state: dict) -> None:
    h = state.pop("log", None)
    if h is not None:
        logging.getLogger().removeHandler(h)
        h.close()


def _run_mapping(cfg, out_dir, overrides, existed, state: dict) -> dict:
    import numpy as np
    import pandas as pd
    import torch

    from somtorch import distributed as sd
    from somtorch.engine import RotationInvariantSOM
    from somtorch.engine.approx import make_mapper
    from somtorch.engine.memory import estimate_memory, fit_batch_size, memory_budget
    from somtorch.engine.metrics import metrics_from_parts, topographic_flags
    from somtorch.io import Transform, read_images_header, read_mapping

    runtime = cfg.get("runtime")
    rt = to_plain(runtime) or {}
    device = apply_runtime(runtime)
    # under torchrun: join the process group; every rank uses rank 0's run folder
    env = sd.init(device, rt.get("dist_timeout_s"))
    device = sd.device_for(env, device)
    out = Path(sd.broadcast_object(str(Path(out_dir).resolve()), what="run folder"))
    refused = None
    if env.is_main:  # rank 0 claims the folder; the others wait for its answer
        try:
            state["folder"] = claim_run_dir(out, existed=existed, resume=bool(cfg.get("resume", False)),
                                            overwrite=bool(cfg.get("overwrite", False)), what="mapping")
        except Exception as e:
            refused = e
    msg = sd.broadcast_object(None if refused is None else str(refused), what="run folder claim")
    if refused is not None:
        raise refused
    if msg is not None:
        raise ConfigError(f"rank 0 refused the output folder: {msg}")
    if env.is_main:
        state["log"] = log_to_file(out / "map.log")
        if state["folder"].fresh:
            save_run_config(out, cfg, overrides or [])
    som_path, som_cfg = _resolve_som(cfg)

    data = to_plain(cfg.get("data")) or {}
    if data.get("kind") == "trained":
        images = (som_cfg or {}).get("training_data")
        if not images or not os.path.exists(images):
            log.info("training images of the SOM unknown or missing; mapping the built-in sample")
            images = prepare_sample_binary(dict(data, kind="sample"))
    else:
        images = resolve_image_path(data)
    ih = read_images_header(images)
    image_dim, channels = int(ih.img_shape[-1]), int(ih.channels)

    overrides = {"precision": rt.get("precision", "float32"), "arithmetic": rt.get("arithmetic", "gemm"),
                 "device": device}
    if som_cfg is not None:
        som_cfg = dict(som_cfg)
        geo = dict(som_cfg["geometry"])
        if cfg.get("numrot") is not None:
            geo["numrot"] = int(cfg.get("numrot"))
        som_cfg["geometry"] = geo
        if int(geo["image_dim"]) != image_dim or int(geo.get("channels", 1)) != channels:
            raise ConfigError(images, "image shape", (channels, image_dim, image_dim),
                              (int(geo.get("channels", 1)), int(geo["image_dim"]), int(geo["image_dim"])),
                              "the images do not have the size the SOM was trained on")
        som = RotationInvariantSOM.from_config_dict(som_cfg, init=som_path, **overrides)
    else:
        # a SOM file without its run config (e.g. written by PINK): geometry from its neuron side
        som = RotationInvariantSOM.from_pink_file(som_path, image_dim=image_dim, channels=channels,
                                                  numrot=int(cfg.get("numrot") or 360), config=False, **overrides)
    lat = som.lattice
    log.info(f"mapping {ih.n_images} images ({images}) onto {som_path} [{lat.describe()}, "
             f"numrot={som.geometry.numrot}] on {device}; outputs in {out}")
    est = estimate_memory(som, "map")
    budget = memory_budget(device, rt.get("memory_limit"))
    # the largest batch whose estimate fits the budget (ConfigError if the SOM alone does not)
    matching = str(cfg.get("matching", "exact"))
    scales = list(cfg.get("scales")) if cfg.get("scales") is not None else None
    if scales and (env.distributed or bool(cfg.get("resume", False))):
        raise ConfigError(None, "scales", scales, "no scale search under torchrun or with resume=true",
                          "map with scales in one process, from the start")
    # the largest batch whose estimate fits the budget (ConfigError if the SOM alone does not)
    mapper = make_mapper(som, matching, scales, to_plain(cfg.get("approx")) or {},
                         batch_size=cfg.get("batch_size") or rt.get("batch_size")
                         or fit_batch_size(est, budget, max_batch=256),
                         progress=progress_bar_wanted(rt) and env.is_main)
    if env.is_main:
        log.info(f"{est.describe(mapper.auto_batch_size())}; budget {budget / 2**20:.0f} MiB"
                 + (f"; {env.world_size} ranks ({env.backend})" if env.distributed else ""))
    overwrite = bool(cfg.get("overwrite", False))
    mpath, tpath = out / "mapping.bin", out / "transform.bin"
    done = out / "map_summary.json"
    if (bool(cfg.get("resume", False)) and not overwrite and done.exists() and mpath.exists() and tpath.exists()
            and not sd.mapping_in_progress(mpath)):
        log.info(f"nothing to resume: {out} holds a finished mapping ({mpath.name}, {tpath.name}, {done.name}); "
                 "pass overwrite=true to map again")
        return json.loads(done.read_text())
    # each rank writes its shard's rows in place; resume=true maps only rows a crashed run missed
    state["started"] = True  # from here on partial outputs are kept for resume=true
    spath = out / "transform.bin.scale.npy" if scales else None
    if scales:  # one process (checked above): the mapper also writes the zoom-factor sidecar
        info = mapper.map_to_files(images, mpath, tpath, overwrite=overwrite, scale_path=spath)
        info["rows_mapped_total"] = info["n_images"]
    else:
        info = sd.map_to_files_sharded(mapper, images, mpath, tpath, overwrite=overwrite,
                                       resume=bool(cfg.get("resume", False)))
    if not env.is_main:  # rank 0 writes the tables, plots and summary
        return {"mapping": str(mpath), "transform": str(tpath), "rank": env.rank, "shard": info["shard"]}

    # per-image summaries, read back from the memory-mapped files in chunks (bounded memory)
    dist, _ = read_mapping(mpath)
    dist = torch.as_tensor(dist).reshape(int(ih.n_images), -1)
    trec = Transform(tpath).flat
    n_img = dist.shape[0]
    step = max(1, (1 << 24) // max(dist.shape[1], 1))
    parts: dict = {"dmin": [], "bmu": [], "te": [], "flip": [], "angle": []}
    for s in range(0, n_img, step):
        d = dist[s:s + step].to(torch.float32)
        dmin_c, bmu_c = d.min(dim=1)
        rows_c = np.arange(s, s + len(d))
        best = trec[rows_c, bmu_c.numpy()]
        parts["dmin"].append(dmin_c)
        parts["bmu"].append(bmu_c)
        parts["te"].append(topographic_flags(d, lat))
        parts["flip"].append(best["flip"].astype(int))
        parts["angle"].append(best["angle"].astype(np.float32))
    dmin = torch.cat(parts["dmin"]) if n_img else torch.zeros(0)
    bmu_np = torch.cat(parts["bmu"]).numpy() if n_img else np.zeros(0, np.int64)
    rows = np.arange(len(bmu_np))
    coords = lat.coords.numpy()[bmu_np]
    table = {"image": rows, "bmu": bmu_np}
    for j, name in enumerate(_coord_names(lat)):
        table[name] = coords[:, j]
    table.update(distance=dmin.numpy(),
                 flip=np.concatenate(parts["flip"]) if n_img else np.zeros(0, int),
                 angle=np.concatenate(parts["angle"]) if n_img else np.zeros(0, np.float32))
    if spath is not None:  # the best neuron's zoom factor (somtorch.engine.scale)
        from somtorch.engine.scale import read_scales

        sc = read_scales(spath)
        table["scale"] = np.concatenate([np.asarray(sc[s:s + step])[np.arange(len(sc[s:s + step])),
                                                                       bmu_np[s:s + step]]
                                         for s in range(0, n_img, step)]) if n_img else np.zeros(0, np.float32)
    from somtorch.io.atomic import atomic_output

    with atomic_output(out / "bmu.csv", overwrite=overwrite, mode="w") as f:  # never torn, never clobbered
        pd.DataFrame(table).to_csv(f, index=False)
    counts = np.bincount(bmu_np, minlength=lat.num_neurons)
    metrics = metrics_from_parts(dmin, torch.cat(parts["te"])) if n_img else {}
    if cfg.get("plots", True):
        from somtorch.plotting import plot_bmu_counts

        plot_bmu_counts(counts, lat, path=out / "bmu_counts.png", overwrite=overwrite,
                        title=f"best-match counts ({len(bmu_np)} images)")
    summary = {"som": som_path, "images": images, "n_images": int(ih.n_images), "lattice": lat.describe(),
               "numrot": som.geometry.numrot, "mapping": str(mpath), "transform": str(tpath),
               "bmu_csv": str(out / "bmu.csv"),
               "bmu_counts_png": str(out / "bmu_counts.png") if cfg.get("plots", True) else None,
               "counts": counts.tolist(), "metrics": metrics, "world_size": env.world_size,
               "rows_mapped": info["rows_mapped_total"],
               "memory_estimate": est.to_dict(mapper.auto_batch_size()),
               "matching": matching, "scales": scales, "scale": None if spath is None else str(spath)}
    write_json(out / "map_summary.json", summary)
    log.info(f"done: qe={fmt_figure(metrics.get('qe'))} te={fmt_figure(metrics.get('te'))}; "
             f"mapping {mpath}, transform {tpath}")
    return summary


_RESULT: dict = {}


def _rewrite_argv(argv: list[str]) -> list[str]:
    """``som=<path>`` -> ``som_path=<path>`` (``som`` is also a config group name)."""
    return [("som_path=" + a[4:]) if a.startswith("som=") else a for a in argv]


def _hydra_entry():
    import hydra
    from hydra.core.hydra_config import HydraConfig

    @hydra.main(config_path=CONFIG_PATH, config_name="map", version_base="1.3")
    def _task(cfg) -> None:
        hc = HydraConfig.get()
        try:
            _RESULT["summary"] = run_mapping(cfg, hc.runtime.output_dir, overrides=list(hc.overrides.task),
                                             existed=_RESULT.get("existed"))
        except BaseException as e:
            if _RESULT.get("debug") or not is_expected_error(e):
                raise
            _RESULT["error"] = e

    return _task


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``somtorch-map`` / ``python -m somtorch.map``); returns the exit status.

    ``argv`` defaults to ``sys.argv[1:]``. Prints the mapping file's path as the last line of stdout.
    """
    from somtorch.cli.schema import MapConfig, register, validate_map
    from somtorch.distributed import shutdown

    argv = _rewrite_argv(list(sys.argv[1:] if argv is None else argv))
    import torch

    threads = torch.get_num_threads()  # restored on return: the program sets its own
    _RESULT.clear()
    debug = _RESULT["debug"] = debug_requested(argv)
    overrides, flags = split_argv(argv)
    register()
    tune_process()  # process-wide allocator settings belong to the program, not the library
    try:
        try:
            target = resume_target(overrides)
            if (target is not None and not (Path(target) / ".hydra" / "config.yaml").exists()
                    and str(override_value(overrides, "resume")).lower() in ("true", "yes", "1")):
                target = None  # partial files without a saved config: resume with the options given
            if target is not None and not flags:  # finish that mapping with its saved config
                cfg = saved_config_for_resume("map", MapConfig, target, overrides, RESUME_OPTIONS)
                cfg.resume = True
                restore = console_logging()
                try:
                    _RESULT["summary"] = run_mapping(cfg, target)
                finally:
                    restore()
            elif not flags:  # options checked before Hydra creates anything
                validate_map(compose_checked("map", overrides))
                d = override_value(overrides, "hydra.run.dir")
                _RESULT["existed"] = bool(d) and os.path.exists(d)
            if target is None or flags:
                call_hydra(PROG, argv, _hydra_entry(), _RESULT)
            elif "error" in _RESULT:
                raise _RESULT["error"]
        except BaseException as e:
            if debug or not is_expected_error(e):
                raise
            return report_error(PROG, e)
    finally:
        shutdown()
        torch.set_num_threads(threads)
    summary = _RESULT.get("summary")
    if summary is not None:
        print(summary["mapping"])
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    sys.exit(main())
