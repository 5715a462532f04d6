"""Geometry: SOM lattices, PINK rotations/flips, distance regions."""

from somtorch.geometry.lattice import Lattice, hex_axial_coords, hex_num_neurons
from somtorch.geometry.regions import dihedral_window, region_indices, region_mask
from somtorch.geometry.transforms import (
    CONVENTIONS,
    PinkTransformer,
    check_convention,
    default_euclidean_dim,
    default_neuron_dim,
    flip_angle_to_index,
    index_to_flip_angle,
    pad_or_crop,
    parity_problem,
    pink_transforms,
    rotation_step,
)

__all__ = [
    "Lattice", "hex_axial_coords", "hex_num_neurons", "dihedral_window", "region_indices", "region_mask",
    "PinkTransformer", "CONVENTIONS", "check_convention", "parity_problem", "default_euclidean_dim", "default_neuron_dim", "flip_angle_to_index",
    "index_to_flip_angle", "pad_or_crop", "pink_transforms", "rotation_step",
]
