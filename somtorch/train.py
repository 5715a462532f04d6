"""Train a rotation/flip-invariant SOM from the command line (Hydra).

Usage
-----
::

    python -m somtorch.train                                  # demo schedule on the built-in sample
    python -m somtorch.train +stage=demo som=small            # a single stage
    python -m somtorch.train schedule=vlass_table3 data=file data.path=IMG_catalog.bin runtime=cuda
    python -m somtorch.train schedule.stages.stage1.num_iter=1 data.n=500 data.image_size=48
    python -m somtorch.train resume=true hydra.run.dir=outputs/train/2024-05-01/10-00-00
    python -m somtorch.train runtime.mode=batch runtime.step_size=64        # batch training
    torchrun --nproc_per_node=4 -m somtorch.train runtime.mode=batch hydra.run.dir=out   # data-parallel

Config groups are installed with the package (``somtorch/configs/``, add your own with Hydra's
``--config-dir=<folder>``): ``som`` (lattice and geometry), ``data`` (``sample`` or ``file``),
``schedule`` / ``stage`` and ``runtime`` (device, precision, arithmetic, rng, threads).

Outputs (in the Hydra run folder, ``hydra.run.dir``), per stage ``<name>/``: ``som.bin`` (PINK
format), ``som_config.json`` (geometry, for :mod:`somtorch.map`), ``checkpoint.pt``,
``metrics.csv`` / ``metrics.json`` (qe, te, change at each progress point), ``mosaic.png``,
``training_curves.png`` and, with ``inter_store``, ``progress/som_<k>.bin``; plus
``summary.json`` (stages, status, outputs, final metrics) and ``training_curves.png`` for the
whole schedule. Stage ``k > 0`` starts from stage ``k - 1``'s SOM.

``resume=true`` with ``hydra.run.dir=<existing run>`` skips finished stages and continues an
interrupted stage from its checkpoint (Ctrl-C / SIGTERM write one), ending with exactly the SOM
an uninterrupted run gives.

``runtime.mode=batch`` trains with :class:`~somtorch.engine.batch.BatchTrainer` (per-step
averaged updates, ``runtime.step_size`` images per step; see its docstring for how results differ
from the default online PINK updates). Under ``torchrun`` batch training is data-parallel: every
rank handles part of each step and the per-neuron sums are all-reduced; rank 0 writes the run
folder, ranks ``k > 0`` keep their identical state in ``<run>/.rank<k>/`` (for resume).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from somtorch.cli.common import (
    CONFIG_PATH,
    apply_runtime,
    build_som,
    read_json,
    resolve_image_path,
    stage_list,
    to_plain,
    write_json,
)
from somtorch.errors import ConfigError, OutputExistsError

__all__ = ["run_training", "main"]

log = logging.getLogger("somtorch.train")

#: exit status of an interrupted run (as a shell reports SIGINT)
EXIT_INTERRUPTED = 130

_STAGE_FILES = ("som.bin", "som_config.json", "checkpoint.pt", "metrics.csv", "metrics.json",
                "mosaic.png", "training_curves.png")


def _say(msg: str) -> None:
    log.info(msg)


def _check_checkpoint(path: Path, stage: dict, seed: int) -> None:
    """Refuse to resume from a checkpoint written for different stage parameters."""
    import json

    from somtorch.engine import Trainer

    meta = json.loads(Trainer.load_checkpoint(path)["meta_json"])
    nb = meta.get("neighbourhood") or [None] * 4
    want = [stage["dist_func"], float(stage["sigma"]), float(stage["damping"]),
            None if stage["max_update_distance"] is None else float(stage["max_update_distance"])]
    found = [nb[0], nb[1], nb[2], nb[3]]
    if (str(found[0]).lower() != str(want[0]).lower() or found[1:] != want[1:]
            or int(meta.get("num_iter", -1)) != int(stage["num_iter"])
            or int(meta.get("seed", seed)) != seed):
        raise ConfigError(path, "stage", {"neighbourhood": found, "num_iter": meta.get("num_iter")},
                          f"{{'neighbourhood': {want}, 'num_iter': {stage['num_iter']}}}",
                          "the checkpoint was written with other stage parameters; "
                          "resume with the original config or start a new run folder")


def _final_metrics(records: list[dict]) -> dict:
    if not records:
        return {}
    last = records[-1]
    return {k: last.get(k) for k in ("qe", "qe_median", "qe_std", "te", "change", "tick", "epoch")
            if k in last}


def _fit_batch(som, mode: str, rt: dict, device) -> int | None:
    """``runtime.batch_size``, or with ``runtime.memory_limit`` set, the largest batch (<= 64) whose
    memory estimate fits it (ConfigError naming the estimate if the SOM alone does not fit).
    The batch size never changes the result."""
    if rt.get("batch_size") or not rt.get("memory_limit"):
        return rt.get("batch_size")
    from somtorch.engine.memory import estimate_memory, fit_batch_size, memory_budget

    return fit_batch_size(estimate_memory(som, mode), memory_budget(device, rt.get("memory_limit")), max_batch=64)


def _with(cfg, **values):
    """A copy of ``cfg`` with top-level ``values`` replaced (works on DictConfig and dict)."""
    try:
        from omegaconf import OmegaConf

        c = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        for k, v in values.items():
            c[k] = v
        return c
    except (ImportError, ValueError):  # a plain dict
        return dict(cfg, **values)


def run_training(cfg, run_dir) -> dict:
    """Run the stages of ``cfg`` (a composed ``train`` config) into ``run_dir``.

    Returns the summary dict (also written to ``<run_dir>/summary.json``); its ``status`` is
    ``"done"`` or ``"interrupted"``.
    """
    import torch

    from somtorch import distributed as sd
    from somtorch.engine import Neighbourhood, Trainer
    from somtorch.io import read_images_header

    resume = bool(cfg.get("resume", False))
    overwrite = bool(cfg.get("overwrite", False))
    runtime = cfg.get("runtime")
    device = apply_runtime(runtime)
    rt = to_plain(runtime) or {}
    mode = str(rt.get("mode") or "online")
    if mode not in ("online", "batch"):
        raise ConfigError(None, "runtime.mode", mode, "online or batch")
    env = sd.init(device, rt.get("dist_timeout_s"))
    device = sd.device_for(env, device)
    if env.distributed and mode != "batch":
        raise ConfigError(None, "runtime.mode", mode, "batch under torchrun",
                          "online (PINK) training is sequential; pass runtime.mode=batch for data-parallel training")
    # every rank uses rank 0's run folder; ranks > 0 keep their (identical) state in .rank<k>/
    run_dir = Path(sd.broadcast_object(str(Path(run_dir).resolve()), what="run folder"))
    if not env.is_main:
        run_dir = run_dir / f".rank{env.rank}"
        cfg = _with(cfg, plots=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    summary_path = run_dir / "summary.json"
    if (to_plain(cfg.get("data")) or {}).get("kind") == "trained":
        raise ConfigError(None, "data", "trained", "sample or file", "data=trained is for somtorch.map")
    data_path = resolve_image_path(cfg.get("data"))
    header = read_images_header(data_path)
    image_dim, channels = int(header.img_shape[-1]), int(header.channels)
    schedule_name, stages = stage_list(cfg)

    old = read_json(summary_path) if (resume and summary_path.exists()) else {}
    old_stages = {s["name"]: s for s in old.get("stages", [])}
    if not resume:
        for st in stages:
            sd = run_dir / st["name"]
            clash = [f for f in ("som.bin", "checkpoint.pt") if (sd / f).exists()]
            if clash and not overwrite:
                raise OutputExistsError(sd / clash[0], detail="this run folder already has outputs of stage "
                                        f"'{st['name']}'; pass resume=true to continue it or overwrite=true")
            if clash:
                for f in _STAGE_FILES:
                    if (sd / f).exists():
                        (sd / f).unlink()

    som_plain = to_plain(cfg.get("som")) or {}
    summary = {
        "schedule": schedule_name, "run_dir": str(run_dir), "data": data_path,
        "n_images": int(header.n_images), "image_dim": image_dim, "channels": channels,
        "device": str(device), "status": "running", "stages": [],
        "config": {k: to_plain(cfg.get(k)) for k in ("som", "data", "runtime", "schedule", "stage")
                   if cfg.get(k) is not None},
        "final_som": None, "final_metrics": None,
    }
    entries = [dict(old_stages.get(st["name"], {}), name=st["name"], params=st,
                    status=old_stages.get(st["name"], {}).get("status", "pending")) for st in stages]
    summary["stages"] = entries

    def flush():
        write_json(summary_path, summary)

    stop_after = cfg.get("stop_after_images")
    stop_stage = cfg.get("stop_stage")
    seed = int(som_plain.get("seed", 1234))
    prev_som = None
    histories = []
    _say(f"training {len(stages)} stage(s) of '{schedule_name}' on {data_path} "
         f"({header.n_images} images, {channels}x{image_dim}x{image_dim}) on {device}; outputs in {run_dir}")
    stop_armed = stop_after is not None
    for k, st in enumerate(stages):
        name = st["name"]
        sdir = run_dir / name
        entry = entries[k]
        files = {"som": str(sdir / "som.bin"), "som_config": str(sdir / "som_config.json"),
                 "checkpoint": str(sdir / "checkpoint.pt"), "metrics_csv": str(sdir / "metrics.csv"),
                 "metrics_json": str(sdir / "metrics.json"), "mosaic": str(sdir / "mosaic.png"),
                 "training_curves": str(sdir / "training_curves.png")}
        som_path = sdir / "som.bin"
        if resume and entry.get("status") == "done" and som_path.exists():
            _say(f"stage {k + 1}/{len(stages)} '{name}': already finished, skipping ({som_path})")
            prev_som = som_path
            mpath = sdir / "metrics.json"
            if mpath.exists():
                histories.extend(read_json(mpath))
            continue
        sdir.mkdir(parents=True, exist_ok=True)
        init = None if k == 0 else str(prev_som)
        som = build_som(som_plain, runtime, image_dim, channels, stage=st, init=init, device=device)
        nb = Neighbourhood(str(st["dist_func"]).lower(), float(st["sigma"]), float(st["damping"]),
                           None if st["max_update_distance"] is None else float(st["max_update_distance"]))
        if mode == "batch":  # data-parallel over the ranks under torchrun (see somtorch.engine.batch)
            from functools import partial

            from somtorch.distributed.training import make_batch_trainer

            make = partial(make_batch_trainer, step_size=int(rt.get("step_size") or 256))
        else:
            make = Trainer
        trainer = make(
            som, nb, num_iter=int(st["num_iter"]), shuffle=bool(st["shuffle"]),
            batch_size=_fit_batch(som, mode, rt, device),
            progress=bool((to_plain(runtime) or {}).get("progress_bar", False)),
            progress_steps=int(st["progress"]), inter_store=st["inter_store"],
            inter_store_path=str(sdir / "progress" / "som.bin") if st["inter_store"] else None,
            metrics_sample=int(cfg.get("metrics_sample", 256)), checkpoint_path=str(sdir / "checkpoint.pt"),
            checkpoint_every=cfg.get("checkpoint_every"), stage_name=name)
        if st["inter_store"]:
            (sdir / "progress").mkdir(exist_ok=True)
        ckpt = sdir / "checkpoint.pt"
        resuming = resume and ckpt.exists()
        if resuming:
            _check_checkpoint(ckpt, st, seed)
        elif ckpt.exists():
            ckpt.unlink()
        if stop_armed and (stop_stage is None or str(stop_stage) == name):
            trainer.stop_after = int(stop_after)
            stop_armed = False
        entry.update(status="running", init=("checkpoint" if resuming else
                                             (init or str(st.get("init") or som_plain.get("init", "zero")))),
                     files=files, device=str(device))
        summary["status"] = "running"
        flush()
        _say(f"stage {k + 1}/{len(stages)} '{name}': {nb.name} sigma={nb.sigma} damping={nb.damping} "
             f"num_iter={st['num_iter']} numrot={som.geometry.numrot} neurons={som.num_neurons} "
             f"nd={som.geometry.nd} ed={som.geometry.ed}" + (" (resuming from checkpoint)" if resuming else ""))
        from somtorch.engine.memory import estimate_memory

        _say(estimate_memory(som, mode).describe(trainer._auto_batch())
             + (" -- images chunked to fit runtime.memory_limit" if rt.get("memory_limit") else ""))
        t0 = time.perf_counter()
        try:
            history = trainer.fit(data_path, resume=resuming)
        except KeyboardInterrupt as e:
            entry["status"] = "interrupted"
            summary["status"] = "interrupted"
            flush()
            msg = str(e) or "interrupted"
            _say(f"stage '{name}' interrupted ({msg}); continue with: python -m somtorch.train "
                 f"resume=true hydra.run.dir={run_dir} (and the same overrides)")
            return summary
        som.save_pink(som_path, overwrite=True,
                      comments=[f"somtorch stage {name} of {schedule_name}",
                                f"{nb.name} {nb.sigma} {nb.damping} num_iter={st['num_iter']} "
                                f"numrot={som.geometry.numrot}"])
        som_cfg = som.config_dict()
        som_cfg.update(stage=st, stage_index=k, schedule=schedule_name, training_data=data_path,
                       n_images=int(header.n_images))
        write_json(sdir / "som_config.json", som_cfg)
        history.save(sdir / "metrics.csv")
        history.save(sdir / "metrics.json")
        histories.extend(history.records)
        if cfg.get("plots", True):
            from somtorch.plotting import plot_som_mosaic, plot_training_curves

            plot_som_mosaic(som.weight, som.lattice, path=sdir / "mosaic.png",
                            title=f"{name}: {som.lattice.describe()}")
            plot_training_curves(history.to_dataframe(), path=sdir / "training_curves.png", title=name)
        entry.update(status="done", final_metrics=_final_metrics(history.records),
                     seconds=round(time.perf_counter() - t0, 3), som=str(som_path),
                     numrot=som.geometry.numrot, neuron_dim=som.geometry.nd)
        flush()
        _say(f"stage '{name}' done: qe={entry['final_metrics'].get('qe')} te={entry['final_metrics'].get('te')} "
             f"-> {som_path}")
        prev_som = som_path
        del som, trainer
        if device.type == "cuda":
            torch.cuda.empty_cache()

    summary["status"] = "done"
    summary["final_som"] = str(prev_som) if prev_som is not None else None
    summary["final_metrics"] = entries[-1].get("final_metrics")
    if cfg.get("plots", True) and histories and len(stages) > 1:
        from somtorch.plotting import plot_training_curves

        # a summary regenerated from all stages' histories: replaced on every (resumed) run
        plot_training_curves(histories, path=run_dir / "training_curves.png", title=schedule_name, overwrite=True)
    flush()
    _say(f"all stages done; final SOM: {summary['final_som']}; summary: {summary_path}")
    return summary


# ---------------------------------------------------------------------------------------- Hydra
_RESULT: dict = {}


def _hydra_entry():
    import hydra
    from hydra.core.hydra_config import HydraConfig

    @hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
    def _task(cfg) -> None:
        out = HydraConfig.get().runtime.output_dir
        _RESULT["summary"] = run_training(cfg, out)

    return _task


def main() -> int:
    """Console entry point (``somtorch-train`` / ``python -m somtorch.train``)."""
    from somtorch.distributed import shutdown

    _RESULT.clear()
    try:
        _hydra_entry()()
    finally:
        shutdown()
    summary = _RESULT.get("summary")
    if summary is None:  # --help, --cfg, or an error Hydra already reported
        return 0
    if summary.get("status") == "interrupted":
        return EXIT_INTERRUPTED
    print(summary["final_som"])
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    sys.exit(main())
