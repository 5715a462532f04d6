"""The top-level API: ``import somtorch`` is light and gives the main names."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import somtorch


def test_import_is_light():
    code = "import sys, somtorch; print(sorted(m for m in ('torch', 'numpy', 'hydra', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", sorted(somtorch._LAZY))
def test_main_names_are_the_modules_objects(name):
    obj = getattr(somtorch, name)
    assert obj is getattr(importlib.import_module(somtorch._LAZY[name]), name)
    assert name in somtorch.__all__ and name in dir(somtorch)


def test_expected_names_and_submodules():
    for name in ("SOM", "Trainer", "Mapper", "ImageReader", "ImageWriter", "Mapping", "Transform",
                 "RotationInvariantSOM", "SOMGeometry", "Lattice", "Neighbourhood", "SomtorchError"):
        assert hasattr(somtorch, name), name
    assert somtorch.io.SOM is somtorch.SOM and somtorch.engine.Trainer is somtorch.Trainer
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        somtorch.Nope  # noqa: B018


def test_one_line_workflow(tmp_path):
    """Train, save, read back and map with top-level names only."""
    import numpy as np
    import torch

    imgs = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    somtorch.write_images(tmp_path / "imgs.bin", imgs)
    som = somtorch.RotationInvariantSOM(somtorch.Lattice("cartesian", (2, 2)), somtorch.SOMGeometry(8, numrot=4),
                                        init="random", seed=1)
    somtorch.Trainer(som, somtorch.Neighbourhood("gaussian", 1.0, 0.1), metrics_sample=0).fit(tmp_path / "imgs.bin")
    som.save_pink(tmp_path / "som.bin")
    back = somtorch.SOM(tmp_path / "som.bin")
    assert torch.equal(back.weights, som.weight.detach())
    assert back[0, 1].shape == som.weight.shape[-2:]  # one channel: a 2-D image
    np.testing.assert_array_equal(back[0, 1], som.weight[1, 0].detach().numpy())
    somtorch.Mapper(som).map_to_files(tmp_path / "imgs.bin", tmp_path / "m.bin", tmp_path / "t.bin")
    m = somtorch.Mapping(tmp_path / "m.bin")
    assert len(m) == 6 and repr(m).startswith("Mapping(")
