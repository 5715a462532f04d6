"""somtorch.preprocess: the Hydra entry point (somtorch/configs/preprocess.yaml and the recipe group)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from somtorch.cli.common import config_dir
from somtorch.errors import ConfigError
from somtorch.io import read_images, read_records
from somtorch.preprocess import build_config, run_preprocess, sample_fits_dir


def _cfg(*overrides):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="preprocess", overrides=list(overrides))


def test_default_runs_on_the_cached_synthetic_sample(tmp_path):
    cache = tmp_path / "cache"
    cfg = _cfg("sample.n=8", f"sample.cache_dir={cache}", "progress=false")
    s = run_preprocess(cfg, tmp_path / "run")
    assert s["status"] == "done" and s["written"] == 8 and s["skipped"] == 0
    assert s["image_shape"] == [1, 150, 150]
    out = tmp_path / "run" / "images.bin"
    imgs = read_images(out).numpy()
    assert imgs.shape == (8, 1, 150, 150) and imgs.min() >= 0 and imgs.max() == 1.0
    folder = sample_fits_dir(cfg.sample)
    cat = pd.read_csv(folder / "catalogue.csv")
    assert [r["Component_name"] for r in read_records(out)] == list(cat.Component_name)
    # the sample is generated once: a second run reuses the cached FITS files
    stamp = os.path.getmtime(folder / cat.File_name[0])
    s2 = run_preprocess(_cfg("sample.n=8", f"sample.cache_dir={cache}", "progress=false",
                             f"output={tmp_path / 'again.bin'}"))
    assert os.path.getmtime(folder / cat.File_name[0]) == stamp
    np.testing.assert_array_equal(read_images(s2["outputs"]["binary"]).numpy(), imgs)
    # the cached sample has degenerate FREQ/STOKES axes, as VLASS QL files
    from astropy.io import fits

    with fits.open(folder / cat.File_name[0]) as h:
        assert h[0].data.shape == (1, 1, 150, 150)


def test_recipe_group_and_two_channel_sample(tmp_path):
    cfg = _cfg("sample.n=4", "sample.with_ir=true", f"sample.cache_dir={tmp_path / 'c'}",
               "recipe=radio_ir", "progress=false")
    pc = build_config(cfg, tmp_path)
    assert [c.name for c in pc.channels] == ["radio", "ir"]
    assert pc.channels[0].recipe == pc.recipe and pc.channels[1].recipe[-2:] == ["asinh", "minmax"]
    s = run_preprocess(_cfg("sample.n=4", "sample.with_ir=true", f"sample.cache_dir={tmp_path / 'c'}",
                            "recipe=cookbook_vlass_32", "progress=false", f"output={tmp_path / 'ir.bin'}"))
    assert s["image_shape"] == [2, 32, 32] and s["written"] == 4


def test_config_errors_are_reported(tmp_path):
    base = ("sample.n=3", f"sample.cache_dir={tmp_path / 'c'}", "progress=false")
    with pytest.raises(ConfigError, match="file_column"):
        build_config(_cfg(*base, "channels=[{name: radio}]"), tmp_path)
    with pytest.raises(ConfigError, match="recipe.channels"):
        build_config(_cfg(*base, "+recipe.channels.xray=[log]"), tmp_path)
    with pytest.raises(ConfigError, match="unknown preprocessing step"):
        run_preprocess(_cfg(*base, "recipe.steps=[nosuchstep]"), tmp_path)


@pytest.mark.slow
def test_command_line_prints_the_binary_and_refuses_to_overwrite(tmp_path):
    env = dict(os.environ, SOMTORCH_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "somtorch.preprocess", "sample.n=5", "progress=false",
           f"hydra.run.dir={tmp_path / 'run'}"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(tmp_path / "run" / "images.bin")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode != 0 and "overwrite" in r.stderr


@pytest.mark.parametrize("bad,message", [
    (["workers=0"], "field 'workers': found 0, expected an integer >= 1"),
    (["+colour=red"], "field 'colour': unknown option"),
    (["recipe.stepz=[log]"], "option 'recipe.stepz': Key 'stepz' not in 'RecipeConfig' (did you mean 'steps'?)"),
    (["catalogue=/nonexistent/cat.csv"], "field 'catalogue': found '/nonexistent/cat.csv', expected an existing"),
    (["max_padded_fraction=2"], "field 'max_padded_fraction': found 2.0, expected a fraction in [0, 1]"),
    (["chunk_size=abc"], "option 'chunk_size': Value 'abc' of type 'str' could not be converted to Integer"),
])
def test_bad_options_are_one_line_before_any_work(bad, message, tmp_path, capsys):
    from somtorch.preprocess import main

    run = tmp_path / "run"
    assert main(["sample.n=3", f"sample.cache_dir={tmp_path / 'c'}", f"hydra.run.dir={run}", *bad]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("somtorch.preprocess: error: ") and message in err and len(err.splitlines()) == 1, err
    assert not run.exists() and not (tmp_path / "c").exists()
