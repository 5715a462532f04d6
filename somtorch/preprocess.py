"""Preprocess a catalogue's FITS images into a PINK image binary from the command line (Hydra).

Usage
-----
::

    python -m somtorch.preprocess                                   # the built-in synthetic sample
    python -m somtorch.preprocess sample.n=2000 sample.with_ir=true recipe=radio_ir
    python -m somtorch.preprocess catalogue=catalog.csv image_dir=cutouts output=IMG_catalog.bin
    python -m somtorch.preprocess catalogue=cat.fits image_dir=mosaics cutout_size=150 \\
        'channels=[{name: radio, file_column: Mosaic}]'
    python -m somtorch.preprocess recipe=cookbook_vlass_32 workers=2

Config: ``somtorch/configs/preprocess.yaml`` and the ``recipe`` group (``somtorch/configs/recipe/*.yaml``: a list
of named steps, see :mod:`somtorch.preprocessing.pipeline` and :mod:`somtorch.data.steps`,
plus per-channel overrides). Outputs (default in the Hydra run folder): ``images.bin``, its
``.records.json`` (image -> catalogue row and id), ``.skipped.csv`` (entries that failed, with
the reason) and ``.summary.json``. Re-running with the same ``output`` resumes an unfinished run.

Without ``catalogue`` the built-in sample is used: synthetic VLASS-QL-like FITS cutouts and
their catalogue (:func:`somtorch.datasets.make_sample`), generated once into
``<cache>/fits-sample-<hash>/`` (``<cache>`` = ``sample.cache_dir``, ``$SOMTORCH_CACHE_DIR`` or
``~/.cache/somtorch``, as for the train/map sample binary).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path

from somtorch.cli.common import CACHE_DIR_ENV, CONFIG_PATH, to_plain
from somtorch.cli.runner import (
    call_hydra,
    compose_checked,
    debug_requested,
    is_expected_error,
    report_error,
    split_argv,
)
from somtorch.errors import ConfigError

__all__ = ["SAMPLE_FITS_VERSION", "sample_fits_dir", "prepare_sample_fits", "build_config",
           "run_preprocess", "main"]

log = logging.getLogger("somtorch.preprocess")

#: Bump when the FITS sample layout changes, so stale caches are not reused.
SAMPLE_FITS_VERSION = 1
_SAMPLE_KEYS = ("n", "seed", "with_ir", "four_axis")


def sample_fits_dir(sample_cfg) -> Path:
    """Cache folder of the FITS sample for these settings: ``<cache>/fits-sample-<hash>``."""
    d = to_plain(sample_cfg) or {}
    params = {k: d.get(k) for k in _SAMPLE_KEYS}
    params["version"] = SAMPLE_FITS_VERSION
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    root = d.get("cache_dir") or os.environ.get(CACHE_DIR_ENV) or os.path.join("~", ".cache", "somtorch")
    return Path(os.path.expanduser(str(root))).resolve() / f"fits-sample-{h}"


def prepare_sample_fits(sample_cfg) -> Path:
    """Write (once; cached) the built-in FITS sample and return its folder (``catalogue.csv`` inside).

    Generated in a temporary folder and renamed into place, like
    :func:`somtorch.cli.common.prepare_sample_binary`, so a crash leaves no half sample.
    """
    from somtorch.datasets import make_sample

    d = to_plain(sample_cfg) or {}
    n = int(d.get("n", 200))
    if n < 1:
        raise ConfigError(None, "sample.n", n, ">= 1")
    folder = sample_fits_dir(d)
    if (folder / "catalogue.csv").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    make_sample(tmp, n=n, seed=int(d.get("seed", 0)), with_ir=bool(d.get("with_ir", False)),
                four_axis=bool(d.get("four_axis", True)))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process published it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "catalogue.csv").exists():
            raise
    return folder


def build_config(cfg, run_dir=None):
    """A :class:`somtorch.data.PreprocessConfig` from a composed ``preprocess`` config."""
    from somtorch.cli.schema import validate_preprocess
    from somtorch.data import ChannelSpec, PreprocessConfig

    if not isinstance(cfg, dict):
        validate_preprocess(cfg)
    c = to_plain(cfg)
    c.pop("debug", None)
    recipe = c.get("recipe") or {}
    steps = list(recipe.get("steps") or [])
    per_channel = dict(recipe.get("channels") or {})
    catalogue, image_dir = c.get("catalogue"), c.get("image_dir")
    with_ir = False
    if catalogue is None:
        folder = prepare_sample_fits(c.get("sample") or {})
        catalogue = str(folder / "catalogue.csv")
        image_dir = image_dir or str(folder)
        with_ir = bool((c.get("sample") or {}).get("with_ir", False))
    catalogue = os.path.abspath(os.path.expanduser(str(catalogue)))
    if image_dir is None:
        image_dir = os.path.dirname(catalogue)
    chans = c.get("channels")
    if not chans:
        chans = [{"name": "radio", "file_column": "File_name"}]
        if with_ir:
            chans.append({"name": "ir", "file_column": "IR_file_name"})
    specs = []
    for k, ch in enumerate(chans):
        if not isinstance(ch, dict) or "file_column" not in ch:
            raise ConfigError(None, f"channels[{k}]", ch, "{name, file_column, recipe?, hdu?}")
        unknown = set(ch) - {"name", "file_column", "recipe", "hdu"}
        if unknown:
            raise ConfigError(None, f"channels[{k}]", sorted(unknown), "keys name, file_column, recipe, hdu")
        name = str(ch.get("name") or f"ch{k}")
        rec = ch.get("recipe")
        if rec is None:
            rec = per_channel.get(name, steps)
        specs.append(ChannelSpec(name, str(ch["file_column"]), list(rec), ch.get("hdu")))
    unknown_ch = set(per_channel) - {s.name for s in specs}
    if unknown_ch:
        raise ConfigError(None, "recipe.channels", sorted(unknown_ch),
                          f"channel names among {[s.name for s in specs]}")
    if not any(s.recipe for s in specs):
        log.warning("the recipe has no steps: raw pixel values are written")
    output = c.get("output") or os.path.join(str(run_dir or "."), "images.bin")
    shape = c.get("image_shape")
    return PreprocessConfig(
        catalogue=catalogue, output=os.path.abspath(os.path.expanduser(str(output))),
        image_dir=image_dir, id_column=str(c.get("id_column", "Component_name")), channels=specs,
        recipe=steps, ra_column=str(c.get("ra_column", "RA")), dec_column=str(c.get("dec_column", "DEC")),
        cutout_size=c.get("cutout_size"), image_shape=None if shape is None else tuple(shape),
        resample=bool(c.get("resample", True)),
        max_padded_fraction=float(c.get("max_padded_fraction", 0.5)),
        record_columns=list(c.get("record_columns") or []), workers=int(c.get("workers", 1)),
        chunk_size=int(c.get("chunk_size", 64)), overwrite=bool(c.get("overwrite", False)),
        resume=bool(c.get("resume", True)), progress=bool(c.get("progress", True)),
        comment=f"somtorch.preprocess recipe={recipe.get('name', 'custom')}")


def run_preprocess(cfg, run_dir=None) -> dict:
    """Run the preprocessing described by a composed ``preprocess`` config; returns the summary."""
    import torch

    from somtorch.data import run_preprocessing

    threads = cfg.get("threads") if hasattr(cfg, "get") else None
    if threads:
        torch.set_num_threads(int(threads))
    pc = build_config(cfg, run_dir)
    summary = run_preprocessing(pc)
    if summary["status"] == "done":
        reasons = ", ".join(f"{k}: {v}" for k, v in summary["skipped_by_reason"].items()) or "none"
        msg = (f"{summary['written']} of {summary['n_rows']} entries written to "
               f"{summary['outputs']['binary']} (images {tuple(summary['image_shape'])}); "
               f"{summary['skipped']} skipped ({reasons}), listed in {summary['outputs']['skipped']}")
    elif summary["status"] == "empty":
        msg = (f"all {summary['n_rows']} entries were skipped ({summary['skipped_by_reason']}); "
               f"no image binary written; see {summary['outputs']['skipped']}")
    else:
        msg = f"interrupted after {summary['done_rows']} of {summary['n_rows']} rows; run again to resume"
    log.info(msg)
    return summary


_RESULT: dict = {}

PROG = "somtorch.preprocess"


def _hydra_entry():
    import hydra
    from hydra.core.hydra_config import HydraConfig

    @hydra.main(config_path=CONFIG_PATH, config_name="preprocess", version_base="1.3")
    def _task(cfg) -> None:
        try:
            _RESULT["summary"] = run_preprocess(cfg, HydraConfig.get().runtime.output_dir)
        except BaseException as e:
            if _RESULT.get("debug") or not is_expected_error(e):
                raise
            _RESULT["error"] = e

    return _task


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``python -m somtorch.preprocess``); prints the image binary path.

    Options are checked against the schema before any work; an expected failure ends with one
    line on stderr and exit status 1 (``HYDRA_FULL_ERROR=1`` or ``debug=true``: the traceback).
    """
    from somtorch.cli.schema import register, validate_preprocess

    argv = list(sys.argv[1:] if argv is None else argv)
    _RESULT.clear()
    debug = _RESULT["debug"] = debug_requested(argv)
    overrides, flags = split_argv(argv)
    register()
    try:
        if not flags:
            validate_preprocess(compose_checked("preprocess", overrides))
        call_hydra(PROG, argv, _hydra_entry(), _RESULT)
    except BaseException as e:
        if debug or not is_expected_error(e):
            raise
        return report_error(PROG, e)
    summary = _RESULT.get("summary")
    if summary is None:  # --help, --cfg
        return 0
    if summary.get("status") == "interrupted":
        return 130
    if summary.get("status") != "done":  # every entry skipped: nothing to train on
        return 1
    print(summary["outputs"]["binary"])
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    sys.exit(main())
