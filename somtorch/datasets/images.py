"""The built-in sample as a PINK image binary, preprocessed like user data.

:func:`sample_image_binary` is what ``python -m somtorch.train`` / ``somtorch.map`` train and map
on by default (``data=sample``) and what the notebooks use: the first ``n`` components of the
synthetic VLASS-QuickLook-like sky (:mod:`somtorch.datasets.synthetic`), rendered as radio
cutouts and preprocessed with the same recipe steps as catalogue data
(:func:`somtorch.preprocessing.preprocess_image` with the ``crop`` and ``resize`` steps of
:mod:`somtorch.data`; :func:`sample_recipe` is ``somtorch/configs/recipe/cookbook_vlass_32.yaml``
with these sizes). The binary is generated once and cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from somtorch.errors import ConfigError

__all__ = ["CACHE_DIR_ENV", "SAMPLE_FORMAT_VERSION", "sample_recipe", "preprocess_cutouts",
           "render_sample", "sample_cache_dir", "sample_image_binary"]

#: environment variable naming the cache folder (default ``~/.cache/somtorch``)
CACHE_DIR_ENV = "SOMTORCH_CACHE_DIR"  # also somtorch.cli.common.CACHE_DIR_ENV
#: bumped when the sample's images change, so that stale caches are not reused
#: (2: preprocessed through the recipe steps, as catalogue data)
SAMPLE_FORMAT_VERSION = 2
_KEYS = ("n", "seed", "cutout_size", "crop", "image_size", "snr", "log")


def sample_recipe(snr: float = 2.0, log: bool = True, crop: int | None = 96, image_size: int = 32) -> list:
    """The cookbook recipe of the sample (cookbook §8.1, sized for fast CPU runs).

    Central ``crop`` (pixels, or None), noise rms of the non-zero pixels (MAD, two clipping
    rounds), pixels below ``snr`` rms dropped, ``log10`` (if ``log``), min-max to [0, 1], area
    resampling to ``image_size`` and min-max again; dropped pixels are 0 in the output.
    """
    steps: list = [{"name": "crop", "size": int(crop)}] if crop else []
    steps += [{"name": "rms", "mode": "mad", "clip_rounds": 2, "ignore_zeros": True},
              {"name": "snr_clip", "snr": float(snr), "mode": "drop"}]
    steps += (["log"] if log else []) + ["minmax", {"name": "resize", "size": int(image_size), "mode": "area"},
                                        "minmax"]
    return steps


def preprocess_cutouts(cube, snr: float = 2.0, log: bool = True, crop: int | None = None,
                       image_size: int = 32) -> np.ndarray:
    """Preprocess raw cutouts ``(n, H, W)`` with :func:`sample_recipe`: float32 ``(n, s, s)``."""
    import somtorch.data  # noqa: F401 (registers the crop and resize steps)
    from somtorch.preprocessing import preprocess_image

    cube = np.asarray(cube)
    if cube.ndim != 3:
        raise ConfigError(None, "cube", cube.shape, "(n, H, W) cutouts")
    if crop is not None and not 0 < int(crop) <= cube.shape[-1]:
        raise ConfigError(None, "crop", crop, f"in (0, cutout size {cube.shape[-1]}]")
    steps = sample_recipe(snr, log, crop, image_size)
    out = np.empty((len(cube), int(image_size), int(image_size)), np.float32)
    for i, im in enumerate(cube):
        out[i] = preprocess_image(im, steps)
    return out


def render_sample(n: int = 200, seed: int = 0, cutout_size: int = 150) -> tuple[np.ndarray, list[dict]]:
    """The first ``n`` components of the synthetic sky as raw radio cutouts (Jy/beam, 0.6"/px)
    ``(n, cutout_size, cutout_size)`` and one record per image (name, class, sidelobe flag, fluxes)."""
    from somtorch.datasets.synthetic import generate_sky, render_cutouts

    n_src = max(1, int(np.ceil(n / 1.3)))
    while True:  # the same growth rule as somtorch.datasets.make_sample
        sky = generate_sky(seed=int(seed), n_sources=n_src, image_size=max(int(cutout_size), 8))
        if len(sky.catalogue) >= n:
            break
        n_src = int(np.ceil(n_src * 1.1 * n / max(len(sky.catalogue), 1))) + 1
    cube = render_cutouts(sky, indices=np.arange(n), channels=("radio",), size=int(cutout_size))[:, 0]
    cat = sky.catalogue.iloc[:n]
    cols = [c for c in ("Component_name", "Morph_class", "Is_sidelobe", "Peak_flux", "Total_flux")
            if c in cat.columns]
    records = [{"index": i, **{c: _scalar(cat[c].iat[i]) for c in cols}} for i in range(n)]
    return cube, records


def _scalar(v):
    return v.item() if hasattr(v, "item") else v


def sample_cache_dir(n: int = 200, seed: int = 0, cutout_size: int = 150, crop: int | None = 96,
                     image_size: int = 32, snr: float = 2.0, log: bool = True, cache_dir=None) -> Path:
    """The cache folder of the sample with these settings: ``<cache>/sample-<hash>``.

    ``<cache>`` is ``cache_dir``, else ``$SOMTORCH_CACHE_DIR``, else ``~/.cache/somtorch``.
    """
    params = dict(n=n, seed=seed, cutout_size=cutout_size, crop=crop, image_size=image_size, snr=snr, log=log)
    params.update(version=SAMPLE_FORMAT_VERSION, generator="synthetic-sky")
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    root = cache_dir or os.environ.get(CACHE_DIR_ENV) or os.path.join("~", ".cache", "somtorch")
    return Path(os.path.expanduser(str(root))).resolve() / f"sample-{h}"


def sample_image_binary(n: int = 200, seed: int = 0, cutout_size: int = 150, crop: int | None = 96,
                        image_size: int = 32, snr: float = 2.0, log: bool = True, cache_dir=None) -> str:
    """Path of the built-in sample's PINK image binary (generated once, then cached).

    Parameters
    ----------
    n, seed : int
        Images (the first ``n`` catalogued components of the synthetic sky of this ``seed``).
    cutout_size : int
        Rendered cutout side in pixels (0.6 arcsec each, as VLASS QuickLook).
    crop, image_size, snr, log
        The preprocessing (:func:`sample_recipe`).
    cache_dir : path, optional
        Cache root (default ``$SOMTORCH_CACHE_DIR`` or ``~/.cache/somtorch``).

    Returns
    -------
    str
        ``<cache>/sample-<hash>/sample.bin``, ``(n, 1, image_size, image_size)`` float32, with a
        ``.records.json`` sidecar (one record per image) and ``sample.json`` (the settings).
    """
    from somtorch.io import write_images, write_records
    from somtorch.io.records import records_path

    if int(n) < 1:
        raise ConfigError(None, "n", n, ">= 1")
    if int(image_size) < 2:
        raise ConfigError(None, "image_size", image_size, ">= 2")
    settings = dict(n=int(n), seed=int(seed), cutout_size=int(cutout_size), crop=None if crop is None else int(crop),
                    image_size=int(image_size), snr=float(snr), log=bool(log))
    folder = sample_cache_dir(**settings, cache_dir=cache_dir)
    path = folder / "sample.bin"
    if path.exists() and (folder / "sample.json").exists():
        return str(path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        cube, records = render_sample(settings["n"], settings["seed"], settings["cutout_size"])
        images = preprocess_cutouts(cube, settings["snr"], settings["log"], settings["crop"], settings["image_size"])
        write_images(tmp / "sample.bin", images[:, None], comments=["somtorch built-in sample (synthetic-sky)"],
                     overwrite=True)
        write_records(records_path(tmp / "sample.bin"), records, overwrite=True)
        info = dict(settings, generator="synthetic-sky", version=SAMPLE_FORMAT_VERSION, shape=list(images.shape),
                    recipe=sample_recipe(settings["snr"], settings["log"], settings["crop"], settings["image_size"]))
        (tmp / "sample.json").write_text(json.dumps(info, indent=1) + "\n")
        os.replace(tmp, folder)  # atomic publish; fails if another process won the race
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not path.exists():
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(path)
