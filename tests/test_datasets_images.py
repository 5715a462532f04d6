"""The built-in sample as an image binary goes through the same recipe steps as user data."""

from __future__ import annotations

import os

import numpy as np
import pytest
from omegaconf import OmegaConf

import somtorch.data  # noqa: F401 (registers the crop and resize steps)
from somtorch.cli.common import config_dir, prepare_sample_binary
from somtorch.datasets import sample_image_binary
from somtorch.datasets.images import render_sample
from somtorch.errors import ConfigError
from somtorch.io import ImageReader
from somtorch.preprocessing import preprocess_image


def test_sample_is_the_packaged_recipe_applied_to_the_rendered_cutouts(tmp_path):
    """Independent expectation: the recipe file ``cookbook_vlass_32.yaml`` run on each cutout."""
    path = sample_image_binary(n=5, seed=3, cache_dir=tmp_path)  # crop 96, 32x32: that recipe's sizes
    recipe = OmegaConf.to_container(OmegaConf.load(f"{config_dir()}/recipe/cookbook_vlass_32.yaml"))
    cube, records = render_sample(5, 3, 150)
    want = np.stack([preprocess_image(im, recipe["steps"]) for im in cube])
    imgs = ImageReader(path)
    assert imgs.data.shape == (5, 1, 32, 32)
    np.testing.assert_array_equal(imgs.data[:, 0], want)
    assert [r["Component_name"] for r in imgs.records] == [r["Component_name"] for r in records]
    # min-max over the kept pixels: every image spans [0, 1]; dropped pixels are 0
    flat = imgs.data.reshape(5, -1)
    assert np.allclose(flat.max(1), 1.0) and np.allclose(flat.min(1), 0.0)


def test_sample_is_cached_and_settings_change_the_folder(tmp_path):
    a = sample_image_binary(n=3, image_size=16, cache_dir=tmp_path)
    mtime = ImageReader(a).data.shape, os.stat(a).st_mtime_ns
    assert sample_image_binary(n=3, image_size=16, cache_dir=tmp_path) == a
    assert (ImageReader(a).data.shape, os.stat(a).st_mtime_ns) == mtime
    b = sample_image_binary(n=3, image_size=16, crop=None, cache_dir=tmp_path)
    assert b != a and ImageReader(b).data.shape == (3, 1, 16, 16)


def test_cli_data_group_names_the_option(tmp_path):
    cfg = {"kind": "sample", "n": 0, "seed": 0, "cutout_size": 150, "crop": 96, "image_size": 32,
           "snr": 2.0, "log": True, "cache_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match="field 'data.n': found 0"):
        prepare_sample_binary(cfg)
    with pytest.raises(ConfigError, match="field 'data.crop'"):
        prepare_sample_binary(dict(cfg, n=2, crop=200))
