"""The rotation- and flip-invariant SOM as an ``nn.Module``.

Convention
----------
``weight`` has shape ``(num_neurons, C, nd, nd)`` in PINK neuron-index order (see
:mod:`somtorch.geometry.lattice`); neuron pixels are indexed ``[row][col]``. A neuron ``w`` best
matching image ``x`` with ``(flip, angle)`` satisfies ``w ~ flipud**flip(rotate_cw(x, angle))``
(angle in radians, clockwise with row 0 at the top; see :mod:`somtorch.geometry.transforms`).

Geometry defaults (``convention="native"``, the default) are PINK's sizes made the parity of the
image side: ``nd = trunc(sqrt(2) d + 1)``, one less where ``nd - d`` is odd (``d`` if numrot is 1),
and a centred distance window of side ``trunc(d sqrt(2) / 2)`` made the parity of ``d`` (``d`` for
numrot 1 or a circular region). Image, neuron and window then share one centre, so quarter turns
and flips of an image land on the same neuron with the same distance (to float rounding) whenever
numrot is a multiple of 4. ``convention="pink"`` gives PINK 2.5's sizes (``nd`` 91 for ``d`` 64),
as the drop-in command line does; see :func:`somtorch.geometry.default_neuron_dim`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from somtorch.engine.distance import DistanceEngine, best_match
from somtorch.errors import ConfigError, GeometryWarning, ShapeError
from somtorch.geometry.lattice import Lattice
from somtorch.geometry.regions import region_mask
from somtorch.geometry.transforms import (
    PinkTransformer,
    check_convention,
    check_numrot,
    default_euclidean_dim,
    default_neuron_dim,
    index_to_flip_angle,
    num_transforms,
    parity_problem,
)

__all__ = ["SOMGeometry", "RotationInvariantSOM", "INIT_METHODS"]

INIT_METHODS = ("zero", "random", "random_with_preferred_direction")


@dataclass(frozen=True)
class SOMGeometry:
    """Image/neuron geometry of a rotation-invariant SOM.

    Parameters
    ----------
    image_dim, channels : input images are ``(channels, image_dim, image_dim)``.
    numrot, flip : rotations (1 or a multiple of 4) and whether flipped copies are searched.
    neuron_dim, euclidean_dim : neuron side ``nd`` and distance-window side ``ed``; None takes the
        convention's default (:func:`~somtorch.geometry.default_neuron_dim`,
        :func:`~somtorch.geometry.default_euclidean_dim`).
    distance_shape : ``"quadratic"`` or ``"circular"`` (:func:`~somtorch.geometry.region_mask`).
    interpolation : ``"bilinear"`` or ``"nearest"``.
    convention : ``"native"`` (default) or ``"pink"``.

    Convention
    ----------
    ``"native"``: sizes of the image's parity and a circular region centred on the neuron centre,
    so quarter turns and flips of an input give the same best neuron and distance (to float
    rounding) whenever numrot is a multiple of 4. Setting ``neuron_dim``/``euclidean_dim`` to
    sizes that break this warns (:class:`~somtorch.errors.GeometryWarning`).
    ``"pink"``: PINK 2.5's default sizes and circular mask (spec §2.2, §4.2), for reproduction.

    >>> SOMGeometry(64, numrot=360).nd, SOMGeometry(64, numrot=360, convention="pink").nd
    (90, 91)
    """

    image_dim: int
    channels: int = 1
    numrot: int = 360
    flip: bool = True
    neuron_dim: int | None = None
    euclidean_dim: int | None = None
    distance_shape: str = "quadratic"
    interpolation: str = "bilinear"
    convention: str = "native"
    nd: int = field(init=False)
    ed: int = field(init=False)

    def __post_init__(self):
        check_numrot(self.numrot)
        if self.image_dim < 1:
            raise ConfigError(None, "image_dim", self.image_dim, ">= 1")
        if self.channels < 1:
            raise ConfigError(None, "channels", self.channels, ">= 1")
        shape = str(self.distance_shape).lower()
        if shape not in ("quadratic", "circular"):
            raise ConfigError(None, "distance_shape", self.distance_shape, "'quadratic' or 'circular'")
        object.__setattr__(self, "distance_shape", shape)
        conv = check_convention(self.convention)
        object.__setattr__(self, "convention", conv)
        nd = self.neuron_dim if self.neuron_dim is not None else default_neuron_dim(self.image_dim, self.numrot, conv)
        ed = (self.euclidean_dim if self.euclidean_dim is not None
              else default_euclidean_dim(self.image_dim, self.numrot, shape, conv))
        if ed > nd:
            raise ConfigError(None, "euclidean_dim", ed,
                              f"<= neuron_dim ({nd}) (euclidean distance dimension must be equal or smaller than neuron dimension.)")
        object.__setattr__(self, "nd", int(nd))
        object.__setattr__(self, "ed", int(ed))
        if conv == "native" and (self.neuron_dim is not None or self.euclidean_dim is not None):
            why = parity_problem(self.image_dim, nd, ed)
            if why is not None:
                warnings.warn(f"{why}: quarter turns and flips of an image will not land on the same "
                              f"neuron with the same distance; leave the size unset for the native "
                              f"default, or use convention='pink' to reproduce PINK's geometry",
                              GeometryWarning, stacklevel=3)

    @property
    def exactly_invariant(self) -> bool:
        """Do quarter turns and flips of an input give the same best neuron and distance?"""
        shape_ok = self.distance_shape == "quadratic" or self.convention == "native" or self.nd % 2 == 0
        return self.numrot % 4 == 0 and shape_ok and parity_problem(self.image_dim, self.nd, self.ed) is None

    @property
    def num_transforms(self) -> int:
        return num_transforms(self.numrot, self.flip)

    @property
    def neuron_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.nd, self.nd)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("nd")
        d.pop("ed")
        d["neuron_dim"], d["euclidean_dim"] = self.nd, self.ed
        return d


class RotationInvariantSOM(nn.Module):
    """A rotation/flip-invariant self-organizing map whose weights are neuron images.

    Parameters
    ----------
    lattice : Lattice
    geometry : SOMGeometry
    init : str or Tensor or path
        ``"zero"`` (PINK default), ``"random"`` (uniform [0, 1)), ``"random_with_preferred_direction"``
        (random plus a main diagonal of 1.0 in every channel), a tensor ``(N, C, nd, nd)`` or a PINK
        SOM file.
    seed : int
        Seed of the random initialisation.
    rng : {"torch", "pink"}
        ``"pink"`` reproduces PINK's ``std::mt19937`` fill exactly (spec §5.7).
    arithmetic : {"gemm", "pink"}
        Distance arithmetic (see :mod:`somtorch.engine.distance`).
    tie_break : {"pink", "none"}, optional
        With ``"pink"`` near-ties of the GEMM path are re-evaluated with PINK's exact arithmetic, so
        results match PINK where distances tie (zero initialisation, symmetric sources). It costs
        a few ms per image that has near-ties. Default: ``"pink"`` when ``rng="pink"`` (PINK
        reproduction mode), else ``"none"``.
    precision : {"float32", "tf32", "bf16", "float64"}

    Shape
    -----
    - ``weight``: ``(N, C, nd, nd)``
    - :meth:`forward` input ``(B, C, d, d)``; returns Euclidean distances ``(B, N)`` and best
      transformation indices ``(B, N)``.

    Examples
    --------
    >>> som = RotationInvariantSOM(Lattice("cartesian", (3, 3)), SOMGeometry(16, numrot=4), init="random", seed=1)
    >>> som.weight.shape
    torch.Size([9, 1, 22, 22])
    >>> dist, t = som(torch.rand(2, 1, 16, 16))
    >>> dist.shape, t.shape
    (torch.Size([2, 9]), torch.Size([2, 9]))
    """

    def __init__(self, lattice: Lattice, geometry: SOMGeometry, init="zero", seed: int = 1234,
                 rng: str = "torch", arithmetic: str = "gemm", precision: str = "float32",
                 device: str | torch.device | None = None, tie_break: str | None = None):
        super().__init__()
        if rng not in ("torch", "pink"):
            raise ConfigError(None, "rng", rng, "'torch' or 'pink'")
        self.lattice = lattice
        self.geometry = geometry
        self.rng = rng
        self.seed = int(seed)
        self.arithmetic = arithmetic
        self.precision = precision
        self.tie_break = tie_break if tie_break is not None else ("pink" if rng == "pink" else "none")
        self.comments: list[str] = []
        weight = self._initial_weights(init)
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.register_buffer("update_count", torch.zeros(lattice.num_neurons, dtype=torch.int64))
        self._engine: DistanceEngine | None = None
        self._factor_cache: dict = {}
        if device is not None:
            self.to(device)

    # ------------------------------------------------------------------ construction
    def _initial_weights(self, init) -> torch.Tensor:
        n = self.lattice.num_neurons
        shape = (n,) + self.geometry.neuron_shape
        if isinstance(init, torch.Tensor) or isinstance(init, np.ndarray):
            w = torch.as_tensor(init, dtype=torch.float32).clone()
            if w.ndim == 3 and self.geometry.channels == 1:
                w = w.unsqueeze(1)
            if tuple(w.shape) != shape:
                raise ShapeError(f"initial weights have shape {tuple(w.shape)}, expected {shape}")
            return w.contiguous()
        if isinstance(init, (str, os.PathLike)) and str(init).lower() not in INIT_METHODS:
            from somtorch.io import read_som

            w, header = read_som(init, som_dims=self.lattice.som_dims, neuron_shape=None)
            if w.shape[1:] != torch.Size(shape[1:]):
                from somtorch.errors import GeometryMismatchError

                raise GeometryMismatchError(init, "neuron_shape", tuple(w.shape[1:]), shape[1:])
            self.comments = list(getattr(header, "comments", []) or [])
            return w.clone().float().contiguous()
        method = str(init).lower()
        if method == "zero":
            return torch.zeros(shape)
        if self.rng == "pink":
            from somtorch.engine.rng import pink_random_init

            return pink_random_init(n, self.geometry.neuron_shape, self.seed,
                                    preferred_direction=method == "random_with_preferred_direction").float()
        g = torch.Generator().manual_seed(self.seed)
        w = torch.rand(shape, generator=g)
        if method == "random_with_preferred_direction":
            i = torch.arange(self.geometry.nd)
            w[:, :, i, i] = 1.0
        return w

    @classmethod
    def from_pink_file(cls, path, lattice: Lattice | None = None, geometry: SOMGeometry | None = None, *,
                       image_dim: int | None = None, channels: int | None = None, numrot: int = 360,
                       flip: bool = True, config=None, **kwargs) -> RotationInvariantSOM:
        """Load a PINK SOM file; for a SOM written by ``somtorch.train`` the path is enough.

        Parameters
        ----------
        path : PINK SOM file.
        lattice : Lattice, optional
            Default: from the file's header (cartesian, or hexagonal when the neuron count says so).
        geometry : SOMGeometry, optional
            Default: from ``config``, else from the file's neuron side with ``image_dim``,
            ``channels`` (default: the file's), ``numrot`` and ``flip`` -- the native convention
            where the sizes keep exact invariance, PINK's where the neuron side has the other parity
            than ``image_dim`` (a SOM written by PINK with its default sizes).
        config : dict, path or False, optional
            A :meth:`config_dict` (``somtorch.train`` writes it as ``som_config.json`` beside the
            SOM, which is read by default when neither lattice nor geometry is given); ``False``
            ignores such a file.
        **kwargs : engine options (``device``, ``precision``, ``arithmetic``, ...).

        Examples
        --------
        >>> som = RotationInvariantSOM.from_pink_file("run/stage3/som.bin")  # doctest: +SKIP
        >>> som = RotationInvariantSOM.from_pink_file("pink_som.bin", image_dim=64, numrot=360)  # doctest: +SKIP
        """
        import json
        from pathlib import Path

        from somtorch.io import read_som

        if config is None and lattice is None and geometry is None:
            cand = Path(path).with_name("som_config.json")
            config = cand if cand.exists() else None
        if isinstance(config, (str, os.PathLike)):
            with open(config) as f:
                config = json.load(f)
        if config:
            return cls.from_config_dict(config, init=path, **kwargs)
        w, header = read_som(path)
        if lattice is None:
            lattice = Lattice.from_header(header.som_dims, num_neurons=w.shape[0])
        if geometry is None:
            if image_dim is None:
                raise ConfigError(path, "image_dim", None, "the side of the images the SOM was trained on",
                                  "there is no som_config.json beside the file; pass image_dim= (and numrot=)")
            nd = int(w.shape[-1])
            geometry = SOMGeometry(int(image_dim), int(channels or w.shape[1]), numrot=numrot, flip=flip,
                                   neuron_dim=nd, convention="native" if (nd - int(image_dim)) % 2 == 0 else "pink")
        return cls(lattice, geometry, init=path, **kwargs)

    # ------------------------------------------------------------------ properties
    @property
    def weights(self) -> torch.Tensor:
        """The neuron images ``(N, C, nd, nd)``: PYINK's name (``somtorch.SOM.weights``) for :attr:`weight`."""
        return self.weight

    @property
    def num_neurons(self) -> int:
        return self.lattice.num_neurons

    @property
    def num_transforms(self) -> int:
        return self.geometry.num_transforms

    @property
    def device(self) -> torch.device:
        return self.weight.device

    @property
    def engine(self) -> DistanceEngine:
        if self._engine is None:
            g = self.geometry
            tr = PinkTransformer(g.image_dim, g.nd, g.numrot, g.flip, g.interpolation,
                                 exact=self.arithmetic == "pink")
            mask = region_mask(g.nd, g.ed, g.distance_shape, g.convention)
            self._engine = DistanceEngine(tr, mask, self.arithmetic, self.precision, self.tie_break)
        return self._engine

    def set_precision(self, precision: str) -> None:
        self.precision = precision
        if self._engine is not None:
            self._engine.precision = precision

    def factors(self, neighbourhood) -> torch.Tensor:
        """Update-factor matrix for a :class:`~somtorch.engine.neighbourhood.Neighbourhood` (cached)."""
        key = (neighbourhood, str(self.device))
        f = self._factor_cache.get(key)
        if f is None:
            f = neighbourhood.factors(self.lattice.distances()).to(self.device)
            self._factor_cache[key] = f
        return f

    def extra_repr(self) -> str:
        g = self.geometry
        return (f"lattice={self.lattice.describe()}, image_dim={g.image_dim}, channels={g.channels}, "
                f"neuron_dim={g.nd}, euclidean_dim={g.ed} ({g.distance_shape}), numrot={g.numrot}, "
                f"flip={g.flip}, convention={g.convention!r}, arithmetic={self.arithmetic!r}, precision={self.precision!r}")

    # ------------------------------------------------------------------ inference
    def check_images(self, images) -> torch.Tensor:
        x = torch.as_tensor(images)
        if x.ndim == 3 and self.geometry.channels == 1:
            x = x.unsqueeze(1)
        g = self.geometry
        if x.ndim != 4 or tuple(x.shape[1:]) != (g.channels, g.image_dim, g.image_dim):
            raise ShapeError(f"images have shape {tuple(x.shape)}, expected (B, {g.channels}, {g.image_dim}, {g.image_dim})")
        return x.to(device=self.device, dtype=torch.float32)

    @torch.no_grad()
    def sq_distances(self, images) -> torch.Tensor:
        """Squared region distances ``(B, T, N)`` for a batch of images."""
        return self.engine.distances_for(self.check_images(images), self.weight)

    @torch.no_grad()
    def forward(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        """Map a batch: Euclidean distance to every neuron under its best transformation, and that
        transformation's index. Returns ``(dist (B, N), t (B, N))``."""
        dmin, tbest, _ = best_match(self.sq_distances(images))
        return dmin.double().sqrt().float(), tbest  # correctly rounded, as C's sqrtf

    @torch.no_grad()
    def bmu(self, images) -> torch.Tensor:
        """Best-matching neuron index per image ``(B,)``."""
        return best_match(self.sq_distances(images))[2]

    def flip_angle(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Transformation indices -> ``(flip int8, angle float32 radians)`` as PINK writes them."""
        return index_to_flip_angle(t, self.geometry.numrot)

    # ------------------------------------------------------------------ files
    def save_pink(self, path, overwrite: bool = False, comments: list[str] | None = None) -> None:
        """Write the weights as a PINK version-2 SOM file (atomically)."""
        from somtorch.io import write_som

        com = self.comments if comments is None else comments
        write_som(path, self.weight.detach().cpu(), self.lattice.som_dims, layout=self.lattice.layout,
                  comments=com or None, overwrite=overwrite)

    def config_dict(self) -> dict:
        """JSON-serialisable description (lattice, geometry, engine options)."""
        return {
            "lattice": {"layout": self.lattice.layout, "shape": list(self.lattice.shape),
                        "periodic": self.lattice.periodic},
            "geometry": self.geometry.to_dict(),
            "seed": self.seed, "rng": self.rng, "arithmetic": self.arithmetic, "precision": self.precision,
            "tie_break": self.tie_break,
        }

    @classmethod
    def from_config_dict(cls, cfg: dict, init="zero", **overrides) -> RotationInvariantSOM:
        lat = Lattice(cfg["lattice"]["layout"], tuple(cfg["lattice"]["shape"]), cfg["lattice"].get("periodic", False))
        # configs written before the native convention existed describe PINK's geometry
        geo = SOMGeometry(**{"convention": "pink", **cfg["geometry"]})
        kw = {k: cfg[k] for k in ("seed", "rng", "arithmetic", "precision", "tie_break") if k in cfg}
        kw.update(overrides)
        return cls(lat, geo, init=init, **kw)
