"""PYINK compatibility layer: ``import somtorch.pyink as pu`` runs PYINK scripts unchanged.

Every public name of PYINK (``tjgalvin/pyink``; inventory in ``shared/spec/pyink-features.md``
and :data:`somtorch.pyink._names.PUBLIC`) with PYINK's signatures, defaults and numbers, built on
somtorch's native modules. Submodules mirror PYINK's: ``binwrap``, ``utils``, ``preprocessing``,
``annotator``, ``filteractions``, ``collation``, ``skypath``, ``analysis``, ``SOMSampler``.

Rules of the layer:

* **PYINK's numbers** where somtorch's native defaults differ: ``rms_estimate`` (PYINK's
  estimator), ``island_segmentation`` (reflected borders, islands of *more than* the minimum
  size), ``convex_hull``/``convex_hull_smoothed`` (skimage's edge-midpoint hull, PYINK's
  threshold meaning), ``trim_neuron`` (150 for 213-pixel neurons), cubic
  ``pink_spatial_transform``/``ImageReader.transform``. Each is a named option of the native
  function; ``python -m somtorch.pyink.differences`` measures the size of every difference.
* **Documented PYINK bugs are corrected** (spec §14), and each docstring says so.
* **Nothing is silently discarded**: ``Annotation.filters`` edits persist, ``reweight`` keeps
  every record, partial records are written.
* **PYINK's pickles are read safely by default** through the allow-list reader
  (:mod:`somtorch.io.safe_pickle`): plain values and arrays only; anything else is refused with
  an error naming the file.
"""

from somtorch.pyink import (  # noqa: F401 - PYINK's submodules
    analysis,
    annotator,
    binwrap,
    collation,
    filteractions,
    preprocessing,
    skypath,
    utils,
)
from somtorch.pyink.analysis import plot_image, trim_neuron
from somtorch.pyink.annotator import ANT_SUFFIX, PRIMES, Annotation, Annotator
from somtorch.pyink.binwrap import (
    REC_SUFFIX,
    SOM,
    ImageReader,
    ImageWriter,
    Mapping,
    SOMSet,
    SOMWriter,
    Transform,
    header_offset,
    resolve_data_type,
)
from somtorch.pyink.collation import Action, Grouper, LabelResolve, Sorter, greedy_graph
from somtorch.pyink.filteractions import CoordinateTransformer, Filter, FilterSet
from somtorch.pyink.preprocessing import (
    circular_mask,
    convex_hull,
    convex_hull_smoothed,
    island_segmentation,
    minmax,
    rms_estimate,
    square_mask,
)
from somtorch.pyink.skypath import (
    SkyPath,
    create_separation_set,
    maximum_distance,
    shortest_path_between,
)
from somtorch.pyink.SOMSampler import SOMSampler
from somtorch.pyink.utils import (
    PathHelper,
    area_ratio,
    compute_distances_between_valid_pixels,
    distances_between_valid_pixels,
    pink_spatial_transform,
    valid_region,
)

__all__ = [
    "rms_estimate", "minmax", "square_mask", "circular_mask", "island_segmentation", "convex_hull",
    "convex_hull_smoothed", "pink_spatial_transform", "compute_distances_between_valid_pixels",
    "distances_between_valid_pixels", "PathHelper", "area_ratio", "valid_region", "ImageWriter", "ImageReader",
    "SOM", "SOMWriter", "Mapping", "Transform", "SOMSet", "header_offset", "resolve_data_type", "REC_SUFFIX",
    "Annotation", "Annotator", "ANT_SUFFIX", "PRIMES", "trim_neuron", "plot_image", "CoordinateTransformer",
    "Filter", "FilterSet", "LabelResolve", "Action", "Sorter", "Grouper", "greedy_graph", "SkyPath",
    "create_separation_set", "maximum_distance", "shortest_path_between", "SOMSampler",
]
