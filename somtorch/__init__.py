"""somtorch: rotation- and flip-invariant self-organizing maps for astronomical images.

Layers (dependencies point downward only)::

    io            PINK binary files, records sidecars        (somtorch.io)
    geometry      lattices, rotations/flips, distance regions (somtorch.geometry)
    engine        distances, training, mapping                (somtorch.engine)
    preprocessing / datasets / analysis / annotation / plotting
    CLI           somtorch.train, somtorch.map, somtorch.pink, somtorch.demo
"""

__version__ = "0.1.0"

from somtorch.errors import SomtorchError  # noqa: E402

__all__ = ["SomtorchError", "__version__"]
