"""RotationInvariantSOM.from_pink_file with the path alone, and PYINK's ``weights`` name."""

from __future__ import annotations

import json

import pytest
import torch

from somtorch.engine import RotationInvariantSOM, SOMGeometry
from somtorch.errors import ConfigError
from somtorch.geometry import Lattice


def test_a_trained_som_loads_from_its_path_alone(tmp_path):
    som = RotationInvariantSOM(Lattice("cartesian", (3, 2)), SOMGeometry(20, channels=2, numrot=8,
                               distance_shape="circular"), init="random", seed=3)
    som.save_pink(tmp_path / "som.bin")
    (tmp_path / "som_config.json").write_text(json.dumps(som.config_dict()))
    again = RotationInvariantSOM.from_pink_file(tmp_path / "som.bin")
    g, h = again.geometry, som.geometry
    assert (g.nd, g.ed, g.channels, g.distance_shape, g.convention) == (h.nd, h.ed, 2, "circular", "native")
    assert again.lattice.shape == (3, 2)
    assert torch.equal(again.weights, som.weight)
    imgs = torch.rand(4, 2, 20, 20)
    assert torch.equal(again(imgs)[1], som(imgs)[1])


def test_a_pink_som_needs_the_image_side_and_gets_pinks_geometry(tmp_path):
    geo = SOMGeometry(16, numrot=8, convention="pink")  # nd 23: the other parity than 16
    som = RotationInvariantSOM(Lattice("hexagonal", (3,)), geo, init="random", seed=1)
    som.save_pink(tmp_path / "pink.bin")
    with pytest.raises(ConfigError, match="image_dim"):
        RotationInvariantSOM.from_pink_file(tmp_path / "pink.bin")
    again = RotationInvariantSOM.from_pink_file(tmp_path / "pink.bin", image_dim=16, numrot=8)
    assert again.lattice.layout == "hexagonal" and again.num_neurons == 7
    assert (again.geometry.nd, again.geometry.ed, again.geometry.convention) == (23, 11, "pink")
    # a neuron side of the image's parity keeps the native (exactly invariant) convention
    nat = RotationInvariantSOM(Lattice("cartesian", (2, 2)), SOMGeometry(16, numrot=8), init="random")
    nat.save_pink(tmp_path / "native.bin")
    g = RotationInvariantSOM.from_pink_file(tmp_path / "native.bin", image_dim=16, numrot=8).geometry
    assert (g.nd, g.convention) == (22, "native")
