"""Named-step recipes: the cookbook recipe, the registry and the Recipe module."""

import numpy as np
import pytest
import torch

from somtorch.errors import ConfigError, ShapeError
from somtorch.preprocessing import (
    COOKBOOK_VLASS_RECIPE,
    PYINK_ISLAND_RECIPE,
    STEPS,
    Recipe,
    circular_mask,
    minmax,
    preprocess_image,
    register_step,
    rms_estimate,
)


def _image(seed=0, n=150):
    rng = np.random.default_rng(seed)
    img = rng.normal(0.0, 1.0, (n, n))
    yy, xx = np.mgrid[:n, :n]
    img += 80 * np.exp(-((yy - 75) ** 2 + (xx - 70) ** 2) / 18.0)
    img += 30 * np.exp(-((yy - 40) ** 2 + (xx - 100) ** 2) / 8.0)
    img[:5] = 0.0  # a blanked strip, as in survey cutouts
    return img


def test_cookbook_recipe_matches_manual_computation():
    img = _image()
    out = preprocess_image(img, COOKBOOK_VLASS_RECIPE)
    # cookbook §8.1 scale_data(log=True, minsnr=2), written out by hand
    noise = rms_estimate(img[img != 0], mode="mad", clip_rounds=2)
    mask = img >= 2 * noise
    expected = np.zeros_like(img)
    expected[mask] = minmax(np.log10(img[mask]))
    assert out.dtype == np.float32 and out.shape == img.shape
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert out.min() == 0.0 and out.max() == pytest.approx(1.0)


def test_recipe_with_circular_mask_and_config_forms():
    img = _image(1)
    steps = [
        {"name": "rms", "mode": "std"},
        ("snr_clip", {"snr": 3.0}),
        ["log"],
        ("circular_mask", {"radius": 40}),
        "minmax",
    ]
    out = preprocess_image(img, steps)
    disc = circular_mask(img, radius=40)
    assert np.all(out[~disc] == 0)
    assert out[disc].max() == pytest.approx(1.0)
    state = preprocess_image(img, steps, return_state=True)
    assert state.rms == pytest.approx(rms_estimate(img, mode="std"))
    assert not state.mask[~disc].any()


def test_snr_clip_zero_mode_keeps_pixels_in_play():
    img = np.array([[0.1, 5.0], [10.0, -3.0]])
    def set_rms(state):
        state.rms = 1.0
        return state

    out = preprocess_image(img, [set_rms, ("snr_clip", {"snr": 1.0, "mode": "zero"})], fill=-1.0)
    np.testing.assert_allclose(out, [[0.0, 5.0], [10.0, 0.0]])  # zeroed, not dropped
    out = preprocess_image(img, [set_rms, ("snr_clip", {"snr": 1.0})], fill=-1.0)
    np.testing.assert_allclose(out, [[-1.0, 5.0], [10.0, -1.0]])  # dropped -> fill
    out = preprocess_image(img, [("threshold", {"value": 1.0})], fill=-1.0)
    np.testing.assert_allclose(out, [[-1.0, 5.0], [10.0, -1.0]])
    with pytest.raises(ConfigError):
        preprocess_image(img, [set_rms, ("snr_clip", {"mode": "drop_all"})])


def test_pyink_island_recipe_normalises_each_island():
    img = _image(2)
    out = preprocess_image(img, PYINK_ISLAND_RECIPE)
    assert out[75, 70] == pytest.approx(1.0) and out[40, 100] == pytest.approx(1.0)
    assert out.min() == 0.0 and np.isfinite(out).all()


def test_register_custom_step_and_unknown_names():
    @register_step("negate_for_test")
    def _neg(state, factor=1.0):
        state.image = -factor * state.image
        return state

    try:
        out = preprocess_image(np.ones((3, 3)), [("negate_for_test", {"factor": 2.0})])
        assert np.all(out == -2.0)
    finally:
        STEPS.pop("negate_for_test")
    with pytest.raises(ConfigError):
        preprocess_image(np.ones((3, 3)), ["no_such_step"])
    with pytest.raises(ConfigError):
        Recipe([42])
    with pytest.raises(ShapeError):
        preprocess_image(np.ones((2, 3, 3)), ["minmax"])


def test_callable_step_and_nan_pixels_dropped():
    img = np.array([[1.0, np.nan], [3.0, 5.0]])
    out = preprocess_image(img, [lambda s: s, "minmax"])
    np.testing.assert_allclose(out, [[0.0, 0.0], [0.5, 1.0]])


def test_recipe_module_on_stacks_equals_per_image():
    imgs = np.stack([_image(3, 64), _image(4, 64)])
    recipe = Recipe(COOKBOOK_VLASS_RECIPE)
    out = recipe(torch.from_numpy(imgs).float().unsqueeze(1))  # (N, 1, H, W)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1, 64, 64)
    for i in range(2):
        ref = preprocess_image(imgs[i].astype(np.float32), COOKBOOK_VLASS_RECIPE)
        np.testing.assert_allclose(out[i, 0].numpy(), ref, atol=1e-6)
    assert isinstance(recipe(imgs), np.ndarray)
