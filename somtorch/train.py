"""Train a rotation/flip-invariant SOM from the command line (Hydra).

Usage
-----
::

    python -m somtorch.train                                  # demo schedule on the built-in sample
    python -m somtorch.train +stage=demo som=small            # a single stage
    python -m somtorch.train schedule=vlass_table3 data=file data.path=IMG_catalog.bin runtime=cuda
    python -m somtorch.train schedule.stages.stage1.num_iter=1 data.n=500 data.image_size=48
    python -m somtorch.train resume=outputs/train/2024-05-01/10-00-00   # continue that run
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

Each run folder holds one run: a second run into a folder that holds anything is refused
(nothing inside is touched) unless ``overwrite=true``; a run that fails before training starts
removes its folder again. The config a run started with is saved once in
``<run>/.hydra/config.yaml`` (and its overrides in ``overrides.yaml``).

``resume=<run folder>`` continues that run with its saved config: finished stages are skipped
and an interrupted stage continues from its checkpoint (Ctrl-C / SIGTERM write one, and every
``checkpoint_every`` images), ending with exactly the SOM an uninterrupted run gives. Only
options that do not change the result may be given again with other values (``runtime.device``,
``runtime.threads``, ``runtime.progress_bar``, ``runtime.batch_size``, ``runtime.memory_limit``,
``runtime.dist_timeout_s``, ``plots``, ``debug``); repeating the original command with
``resume=<run folder>`` (or the older ``resume=true hydra.run.dir=<run folder>``) also works.

Options are checked before any work against the typed schema (:mod:`somtorch.cli.schema`); an
expected failure (bad option, missing file, existing output, no memory or disk left) ends with one
line on stderr and exit status 1 (``HYDRA_FULL_ERROR=1`` or ``debug=true`` show the traceback).

``runtime.mode=batch`` trains with :class:`~somtorch.engine.batch.BatchTrainer` (per-step
averaged updates, ``runtime.step_size`` images per step; see its docstring for how results differ
from the default online PINK updates). Under ``torchrun`` batch training is data-parallel: every
rank handles part of each step and the per-neuron sums are all-reduced; rank 0 writes the run
folder, ranks ``k > 0`` keep their logs and identical outputs in ``<run>/.rank<k>/``. Rank 0 alone
writes the checkpoint (one file, replaced atomically) and sends it to the other ranks on resume,
so a data-parallel run may be resumed with the same or another number of processes (the run
folder must be on a file system every rank sees); SIGTERM on any rank stops every rank after
the same step.
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
from somtorch.cli.runner import (
    call_hydra,
    claim_run_dir,
    compose_checked,
    console_logging,
    debug_requested,
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
from somtorch.cli.runner import (
    fmt_figure as _fmt,
)
from somtorch.errors import ConfigError

__all__ = ["run_training", "main", "resume_config", "RESUME_OPTIONS"]

log = logging.getLogger("somtorch.train")

PROG = "somtorch.train"
#: exit status of an interrupted run (as a shell reports SIGINT)
EXIT_INTERRUPTED = 130
#: options a resumed run may change: they do not change the result
RESUME_OPTIONS = ("runtime.device", "runtime.threads", "runtime.progress_bar", "runtime.batch_size",
                  "runtime.memory_limit", "runtime.dist_timeout_s", "plots", "debug",
                  "stop_after_images", "stop_stage", "resume", "overwrite")

_STAGE_FILES = ("som.bin", "som_config.json", "checkpoint.pt", "metrics.csv", "metrics.json",
                "mosaic.png", "training_curves.png")
_RUN_FILES = ("summary.json", "training_curves.png", "train.log", ".hydra/config.yaml", ".hydra/overrides.yaml")


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


def _logging_history(stage: str, ticks_total: int):
    """A :class:`~somtorch.engine.training.TrainingHistory` that also logs each progress point."""
    from somtorch.engine.training import TrainingHistory

    class _Logged(TrainingHistory):
        def append(self, rec: dict) -> None:
            super().append(rec)
            tick = int(rec.get("tick") or 0)
            pct = f"{100.0 * tick / ticks_total:.0f}%" if ticks_total else "-"
            _say(f"{stage}: {pct} ({tick}/{ticks_total} images, epoch {_fmt(rec.get('epoch'), 3)}) "
                 f"qe={_fmt(rec.get('qe'))} te={_fmt(rec.get('te'))} change={_fmt(rec.get('change'), 3)} "
                 f"[{_fmt(rec.get('elapsed_s'), 3)} s]")

    return _Logged()


# ---------------------------------------------------------------------------------------- stages
class _Run:
    """The state of one ``somtorch.train`` run: options, device, folder, data, stages, summary."""

    def __init__(self, cfg, run_dir, resume: bool, overrides, existed):
        import somtorch.distributed as sd
        from somtorch.cli.schema import validate_train
        from somtorch.io import read_images_header

        validate_train(cfg)
        self.cfg, self.resume = cfg, bool(resume)
        self.overwrite = bool(cfg.get("overwrite", False)) and not self.resume
        self.runtime = cfg.get("runtime")
        self.rt = to_plain(self.runtime) or {}
        self.mode = str(self.rt.get("mode") or "online")
        device = apply_runtime(self.runtime)
        self.env = sd.init(device, self.rt.get("dist_timeout_s"))
        self.device = sd.device_for(self.env, device)
        if self.env.distributed and self.mode != "batch":
            raise ConfigError(None, "runtime.mode", self.mode, "batch under torchrun",
                              "online (PINK) training is sequential; pass runtime.mode=batch for data-parallel training")
        self.schedule_name, self.stages = stage_list(cfg)
        # every rank uses rank 0's run folder; rank 0 claims it, ranks > 0 keep their (identical)
        # state in .rank<k>/ once it has
        self.root = Path(sd.broadcast_object(str(Path(run_dir).resolve()), what="run folder"))
        self.folder = None
        refused = None
        if self.env.is_main:
            try:
                self.folder = claim_run_dir(self.root, existed=existed, resume=self.resume,
                                            overwrite=self.overwrite, what="training run")
            except Exception as e:  # reported on every rank
                refused = e
        msg = sd.broadcast_object(None if refused is None else str(refused), what="run folder claim")
        if refused is not None:
            raise refused
        if msg is not None:
            raise ConfigError(f"rank 0 refused the run folder: {msg}")
        self.run_dir = self.root if self.env.is_main else self.root / f".rank{self.env.rank}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.plots = bool(cfg.get("plots", True)) and self.env.is_main
        self.log_handler = log_to_file(self.run_dir / "train.log") if self.env.is_main else None
        try:
            if self.resume:
                self._check_resumable()
            elif self.overwrite:
                self._remove_earlier_outputs()
            if self.env.is_main and not self.resume:
                save_run_config(self.run_dir, cfg, overrides or [])
            self.data_path = resolve_image_path(cfg.get("data"))
            self.header = read_images_header(self.data_path)
        except BaseException:
            self.close()
            if self.folder is not None:  # a fresh folder: removed again (nothing had started)
                self.folder.discard()
            raise
        self.image_dim, self.channels = int(self.header.img_shape[-1]), int(self.header.channels)
        self.som_plain = to_plain(cfg.get("som")) or {}
        self.seed = int(self.som_plain.get("seed", 1234))

    def close(self) -> None:
        if self.log_handler is not None:
            logging.getLogger().removeHandler(self.log_handler)
            self.log_handler.close()
            self.log_handler = None

    def _check_resumable(self) -> None:
        if self.env.is_main and not (self.run_dir / "summary.json").exists():
            raise ConfigError(None, "resume", str(self.run_dir), "a run folder with summary.json",
                              "this run never started; start it again without resume")

    def _remove_earlier_outputs(self) -> None:
        """``overwrite=true``: remove the earlier run's outputs (its stages and run files)."""
        import shutil

        old = read_json(self.run_dir / "summary.json") if (self.run_dir / "summary.json").exists() else {}
        names = {st["name"] for st in self.stages} | {s.get("name") for s in old.get("stages", []) if s.get("name")}
        for name in names:
            sdir = self.run_dir / name
            for f in _STAGE_FILES:
                (sdir / f).unlink(missing_ok=True)
            shutil.rmtree(sdir / "progress", ignore_errors=True)
            if sdir.is_dir() and not any(sdir.iterdir()):
                sdir.rmdir()
        for f in _RUN_FILES[:2] + _RUN_FILES[3:]:
            (self.run_dir / f).unlink(missing_ok=True)

    # ------------------------------------------------------------------------------ summary
    def start_summary(self) -> None:
        self.summary_path = self.run_dir / "summary.json"
        old = read_json(self.summary_path) if (self.resume and self.summary_path.exists()) else {}
        if self.env.distributed:  # rank 0's view of the stages (a resume may add ranks that have none)
            import somtorch.distributed as sd

            old = sd.broadcast_object(old if self.env.is_main else None, what="run summary")
        old_stages = {s["name"]: s for s in old.get("stages", [])}
        self.entries = [dict(old_stages.get(st["name"], {}), name=st["name"], params=st,
                             status=old_stages.get(st["name"], {}).get("status", "pending"))
                        for st in self.stages]
        self.summary = {
            "schedule": self.schedule_name, "run_dir": str(self.run_dir), "data": self.data_path,
            "n_images": int(self.header.n_images), "image_dim": self.image_dim, "channels": self.channels,
            "device": str(self.device), "status": "running", "stages": self.entries,
            "config": {k: to_plain(self.cfg.get(k)) for k in ("som", "data", "runtime", "schedule", "stage")
                       if self.cfg.get(k) is not None},
            "final_som": None, "final_metrics": None,
        }

    def flush(self) -> None:
        write_json(self.summary_path, self.summary)

    # ------------------------------------------------------------------------------ one stage
    def make_trainer(self, som, nb, st: dict, sdir: Path):
        if self.mode == "batch":  # data-parallel over the ranks under torchrun (somtorch.engine.batch)
            from functools import partial

            from somtorch.distributed.training import make_batch_trainer

            make = partial(make_batch_trainer, step_size=int(self.rt.get("step_size") or 256))
        else:
            from somtorch.engine import Trainer

            make = Trainer
        progress = progress_bar_wanted(self.rt) and self.env.is_main
        trainer = make(
            som, nb, num_iter=int(st["num_iter"]), shuffle=bool(st["shuffle"]),
            batch_size=_fit_batch(som, self.mode, self.rt, self.device), progress=progress,
            progress_steps=int(st["progress"]), inter_store=st["inter_store"],
            inter_store_path=str(sdir / "progress" / "som.bin") if st["inter_store"] else None,
            metrics_sample=int(self.cfg.get("metrics_sample", 256)), checkpoint_path=str(sdir / "checkpoint.pt"),
            checkpoint_every=self.cfg.get("checkpoint_every"), stage_name=st["name"],
            **({} if self.mode == "batch" else {"compile": str(self.rt.get("compile") or "auto")}))
        if not progress and self.env.is_main:  # no bar: a log line at each progress point
            trainer.history = _logging_history(st["name"], int(st["num_iter"]) * int(self.header.n_images))
        return trainer

    def save_stage(self, k: int, st: dict, som, nb, history, sdir: Path) -> None:
        name = st["name"]
        som.save_pink(sdir / "som.bin", overwrite=True,
                      comments=[f"somtorch stage {name} of {self.schedule_name}",
                                f"{nb.name} {nb.sigma} {nb.damping} num_iter={st['num_iter']} "
                                f"numrot={som.geometry.numrot}"])
        som_cfg = som.config_dict()
        som_cfg.update(stage=st, stage_index=k, schedule=self.schedule_name, training_data=self.data_path,
                       n_images=int(self.header.n_images))
        write_json(sdir / "som_config.json", som_cfg)
        history.save(sdir / "metrics.csv")
        history.save(sdir / "metrics.json")
        if self.plots:
            from somtorch.plotting import plot_som_mosaic, plot_training_curves

            plot_som_mosaic(som.weight, som.lattice, path=sdir / "mosaic.png",
                            title=f"{name}: {som.lattice.describe()}")
            plot_training_curves(history.to_dataframe(), path=sdir / "training_curves.png", title=name)


def _stage_files(sdir: Path) -> dict:
    return {"som": str(sdir / "som.bin"), "som_config": str(sdir / "som_config.json"),
            "checkpoint": str(sdir / "checkpoint.pt"), "metrics_csv": str(sdir / "metrics.csv"),
            "metrics_json": str(sdir / "metrics.json"), "mosaic": str(sdir / "mosaic.png"),
            "training_curves": str(sdir / "training_curves.png")}


def run_training(cfg, run_dir, *, resume: bool = False, overrides: list[str] | None = None,
                 existed: bool | None = None) -> dict:
    """Run the stages of ``cfg`` (a composed ``train`` config) into ``run_dir``.

    Parameters
    ----------
    cfg : DictConfig
        The composed config (schema :class:`somtorch.cli.schema.TrainConfig`); checked with
        :func:`~somtorch.cli.schema.validate_train` before any work.
    run_dir : path
        The run folder. A new run refuses a folder that holds anything (unless ``overwrite=true``),
        and removes the folder again when it fails before training starts.
    resume : bool
        Continue the run in ``run_dir`` (``cfg`` should be its saved config, see
        :func:`resume_config`): finished stages are skipped, an interrupted one continues from its
        checkpoint.
    overrides : list of str, optional
        The command-line overrides, saved with the config in ``<run>/.hydra/overrides.yaml``.
    existed : bool, optional
        Whether ``run_dir`` existed before the program started (default: now).

    Returns
    -------
    dict
        The summary (also ``<run_dir>/summary.json``); its ``status`` is ``"done"`` or
        ``"interrupted"``.
    """
    run = _Run(cfg, run_dir, resume, overrides, existed)
    try:
        run.start_summary()
        return _train_stages(run)
    except BaseException:
        if not _began(run):  # failed before training started: leave nothing behind
            run.close()
            if run.folder is not None:
                run.folder.discard()
        raise
    finally:
        run.close()


def _began(run: _Run) -> bool:
    """Whether training began (a stage left a checkpoint or finished): outputs kept for resume."""
    return any(e.get("status") in ("running", "done", "interrupted") for e in getattr(run, "entries", []))


def _train_stages(run: _Run) -> dict:
    import torch

    from somtorch.engine import Neighbourhood
    from somtorch.engine.memory import estimate_memory

    cfg, stages, summary = run.cfg, run.stages, run.summary
    stop_after, stop_stage = cfg.get("stop_after_images"), cfg.get("stop_stage")
    stop_armed = stop_after is not None
    prev_som, histories = None, []
    _say(f"training {len(stages)} stage(s) of '{run.schedule_name}' on {run.data_path} "
         f"({run.header.n_images} images, {run.channels}x{run.image_dim}x{run.image_dim}) on {run.device}; "
         f"outputs in {run.run_dir}")
    for k, st in enumerate(stages):
        name, sdir, entry = st["name"], run.run_dir / st["name"], run.entries[k]
        som_path = sdir / "som.bin"
        done_som = run.root / name / "som.bin"  # rank 0's: every rank follows rank 0 (shared run folder)
        skip = run.resume and entry.get("status") == "done" and done_som.exists()
        if run.env.distributed:
            from somtorch.distributed import broadcast_object

            skip = bool(broadcast_object(bool(skip), what=f"stage {name} finished"))
        if skip:
            _say(f"stage {k + 1}/{len(stages)} '{name}': already finished, skipping ({done_som})")
            prev_som = done_som
            if (sdir / "metrics.json").exists():
                histories.extend(read_json(sdir / "metrics.json"))
            continue
        sdir.mkdir(parents=True, exist_ok=True)
        init = None if k == 0 else str(prev_som)
        som = build_som(run.som_plain, run.runtime, run.image_dim, run.channels, stage=st, init=init,
                        device=run.device)
        nb = Neighbourhood(str(st["dist_func"]).lower(), float(st["sigma"]), float(st["damping"]),
                           None if st["max_update_distance"] is None else float(st["max_update_distance"]))
        trainer = run.make_trainer(som, nb, st, sdir)
        if st["inter_store"]:
            (sdir / "progress").mkdir(exist_ok=True)
        ckpt = sdir / "checkpoint.pt"
        resuming = run.resume and ckpt.exists()
        if resuming:
            _check_checkpoint(ckpt, st, run.seed)
        elif ckpt.exists():
            ckpt.unlink()
        if stop_armed and (stop_stage is None or str(stop_stage) == name):
            trainer.stop_after = int(stop_after)
            stop_armed = False
        entry.update(status="running", init=("checkpoint" if resuming else
                                             (init or str(st.get("init") or run.som_plain.get("init", "zero")))),
                     files=_stage_files(sdir), device=str(run.device))
        summary["status"] = "running"
        run.flush()
        _say(f"stage {k + 1}/{len(stages)} '{name}': {nb.name} sigma={_fmt(nb.sigma)} damping={_fmt(nb.damping)} "
             f"num_iter={st['num_iter']} numrot={som.geometry.numrot} neurons={som.num_neurons} "
             f"nd={som.geometry.nd} ed={som.geometry.ed}" + (" (resuming from checkpoint)" if resuming else ""))
        _say(estimate_memory(som, run.mode).describe(trainer._auto_batch())
             + (" -- images chunked to fit runtime.memory_limit" if run.rt.get("memory_limit") else ""))
        t0 = time.perf_counter()
        try:
            history = trainer.fit(run.data_path, resume=resuming)
        except KeyboardInterrupt as e:
            entry["status"] = "interrupted"
            summary["status"] = "interrupted"
            run.flush()
            _say(f"stage '{name}' interrupted ({str(e) or 'interrupted'}); continue with: "
                 f"python -m somtorch.train resume={run.root}")
            return summary
        run.save_stage(k, st, som, nb, history, sdir)
        histories.extend(history.records)
        entry.update(status="done", final_metrics=_final_metrics(history.records),
                     seconds=round(time.perf_counter() - t0, 3), som=str(som_path),
                     numrot=som.geometry.numrot, neuron_dim=som.geometry.nd)
        run.flush()
        fm = entry["final_metrics"]
        _say(f"stage '{name}' done in {entry['seconds']:.1f} s: qe={_fmt(fm.get('qe'))} te={_fmt(fm.get('te'))} "
             f"-> {som_path}")
        prev_som = som_path
        del som, trainer
        if run.device.type == "cuda":
            torch.cuda.empty_cache()

    summary["status"] = "done"
    summary["final_som"] = str(prev_som) if prev_som is not None else None
    summary["final_metrics"] = run.entries[-1].get("final_metrics")
    if run.plots and histories and len(stages) > 1:
        from somtorch.plotting import plot_training_curves

        # a summary regenerated from all stages' histories: replaced on every (resumed) run
        plot_training_curves(histories, path=run.run_dir / "training_curves.png", title=run.schedule_name,
                             overwrite=True)
    run.flush()
    _say(f"all stages done; final SOM: {summary['final_som']}; summary: {run.summary_path}")
    return summary


# ---------------------------------------------------------------------------------------- resume
def resume_config(run_dir, overrides: list[str]):
    """The config to continue the run in ``run_dir`` with: its saved config, with ``overrides``.

    Overrides of :data:`RESUME_OPTIONS` take effect; any other override must agree with the saved
    config (repeating the original command is fine), else :class:`ConfigError` names the option.
    ``stop_after_images``/``stop_stage`` of the original run do not carry over.
    """
    from somtorch.cli.schema import TrainConfig

    cfg = saved_config_for_resume("train", TrainConfig, run_dir, overrides, RESUME_OPTIONS,
                                  reset=("stop_after_images", "stop_stage"))
    cfg.resume = str(Path(run_dir).resolve())
    return cfg


# ---------------------------------------------------------------------------------------- entry
_RESULT: dict = {}


def _hydra_entry():
    import hydra
    from hydra.core.hydra_config import HydraConfig

    @hydra.main(config_path=CONFIG_PATH, config_name="train", version_base="1.3")
    def _task(cfg) -> None:
        hc = HydraConfig.get()
        try:
            _RESULT["summary"] = run_training(cfg, hc.runtime.output_dir, overrides=list(hc.overrides.task),
                                              existed=_RESULT.get("existed"))
        except BaseException as e:
            if _RESULT.get("debug") or not is_expected_error(e):
                raise
            _RESULT["error"] = e

    return _task


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``somtorch-train`` / ``python -m somtorch.train``); returns the exit status.

    ``argv`` defaults to ``sys.argv[1:]``. Prints the final SOM's path as the last line of stdout.
    """
    from somtorch.cli.schema import register
    from somtorch.distributed import shutdown

    argv = list(sys.argv[1:] if argv is None else argv)
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
            if target is not None and not flags:
                cfg = resume_config(target, overrides)
                restore = console_logging()
                try:
                    _RESULT["summary"] = run_training(cfg, target, resume=True)
                finally:
                    restore()
            else:
                if not flags:  # options checked before Hydra creates anything
                    from somtorch.cli.schema import validate_train

                    validate_train(compose_checked("train", overrides))
                    d = override_value(overrides, "hydra.run.dir")
                    _RESULT["existed"] = bool(d) and os.path.exists(d)
                call_hydra(PROG, argv, _hydra_entry(), _RESULT)
        except BaseException as e:
            if debug or not is_expected_error(e):
                raise
            return report_error(PROG, e)
    finally:
        shutdown()
        torch.set_num_threads(threads)
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
