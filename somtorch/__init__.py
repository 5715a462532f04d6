"""somtorch: rotation- and flip-invariant self-organizing maps for astronomical images.

The main names are available from the top level (imported on first use, so ``import somtorch``
stays fast)::

    import somtorch

    som = somtorch.RotationInvariantSOM(somtorch.Lattice("cartesian", (10, 10)),
                                        somtorch.SOMGeometry(image_dim=64, numrot=360), init="random")
    somtorch.Trainer(som, somtorch.Neighbourhood("gaussian", 1.5, 0.1)).fit("images.bin")
    som.save_pink("som.bin")
    somtorch.Mapper(som).map_to_files("images.bin", "mapping.bin", "transform.bin")

    trained = somtorch.SOM("som.bin")          # PYINK-style readers of PINK files
    plt.imshow(trained[0, 0])                   # a neuron as an image
    best = somtorch.Mapping("mapping.bin").bmu()

Naming
------
* **Training and mapping** (PyTorch objects, :mod:`somtorch.engine`): ``RotationInvariantSOM`` is
  an ``nn.Module`` whose weights are its parameter ``.weight``, a tensor ``(N, C, nd, nd)`` in
  PINK's neuron order (torch's singular name, as ``nn.Linear.weight``; ``.weights``, PYINK's
  name, is the same tensor, so one name works on the module and on ``SOM``); ``Trainer``,
  ``BatchTrainer``, ``Mapper``, ``Neighbourhood``, ``SOMGeometry``, ``Lattice``.
* **Files** (PYINK's names and semantics, :mod:`somtorch.io`): ``SOM``, ``ImageReader``,
  ``ImageWriter``, ``SOMWriter``, ``Mapping``, ``Transform``, ``SOMSet``. Their ``.data`` is the
  file's content as numpy in PYINK's layout (``SOM.data``: the ``(C, rows, cols)`` mosaic;
  ``ImageReader.data``: ``(N, C, H, W)``; ``Mapping.data``: ``(N_images, X, Y)``), ``SOM.weights``
  is the same ``(N, C, nd, nd)`` tensor as the module's ``.weight``, and ``som[i, j]`` is one
  neuron as an image (``(H, W)`` for one channel, ``(C, H, W)`` for several).
* **Low-level file functions**: ``read_images``/``write_images``, ``read_som``/``write_som``,
  ``read_mapping``, ``read_transforms``.

Layers (dependencies point downward only)::

    io            PINK binary files, records sidecars        (somtorch.io)
    geometry      lattices, rotations/flips, distance regions (somtorch.geometry)
    engine        distances, training, mapping                (somtorch.engine)
    preprocessing / data / datasets / analysis / annotation / plotting
    CLI           somtorch.train, somtorch.map, somtorch.pink, somtorch.demo
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

from somtorch.errors import ConfigError, SomtorchError  # noqa: E402 (light: no torch)

#: top-level name -> module it lives in (imported on first access)
_LAZY = {
    # engine
    "RotationInvariantSOM": "somtorch.engine", "SOMGeometry": "somtorch.engine",
    "Trainer": "somtorch.engine", "BatchTrainer": "somtorch.engine", "Mapper": "somtorch.engine",
    "MappingResult": "somtorch.engine", "Neighbourhood": "somtorch.engine",
    "TrainingHistory": "somtorch.engine",
    # geometry
    "Lattice": "somtorch.geometry",
    # files
    "SOM": "somtorch.io", "ImageReader": "somtorch.io", "ImageWriter": "somtorch.io",
    "SOMWriter": "somtorch.io", "Mapping": "somtorch.io", "Transform": "somtorch.io",
    "SOMSet": "somtorch.io", "read_images": "somtorch.io", "write_images": "somtorch.io",
    "read_som": "somtorch.io", "write_som": "somtorch.io", "read_mapping": "somtorch.io",
    "read_transforms": "somtorch.io",
    # preprocessing and data
    "preprocess_image": "somtorch.preprocessing", "Recipe": "somtorch.preprocessing",
    "PreprocessConfig": "somtorch.data", "run_preprocessing": "somtorch.data",
    "make_sample": "somtorch.datasets",
    # analysis
    "transfer_labels": "somtorch.analysis", "quality_report": "somtorch.analysis",
    # plotting
    "plot_som_mosaic": "somtorch.plotting", "plot_bmu_counts": "somtorch.plotting",
    "plot_training_curves": "somtorch.plotting",
}

#: subpackages reachable as attributes (``somtorch.io`` after ``import somtorch``)
_SUBMODULES = ("analysis", "annotation", "collation", "data", "datasets", "distributed", "engine",
               "errors", "geometry", "io", "plotting", "preprocessing")

__all__ = ["__version__", "SomtorchError", "ConfigError", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"somtorch.{name}")
    raise AttributeError(f"module 'somtorch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
