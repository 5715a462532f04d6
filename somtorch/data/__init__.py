"""From sky to image binary: FITS cutouts, catalogues, preprocessing runs, the catalogue join.

* :mod:`~somtorch.data.fits`: :func:`read_fits_image`, :func:`cutout` (Cutout2D at catalogue
  positions), :func:`reproject_bilinear`, :func:`stack_channels` (multi-survey stacks).
* :mod:`~somtorch.data.catalogue`: :func:`read_catalogue`, :func:`mapping_columns`,
  :func:`annotate_catalogue` (cookbook §8.2 left join).
* :mod:`~somtorch.data.run`: :func:`run_preprocessing` (catalogue + recipe -> image binary,
  records, skipped list, summary; parallel, resumable).
* :mod:`~somtorch.data.steps`: the ``crop`` and ``resize`` recipe steps (registered on import).

Command line: ``python -m somtorch.preprocess`` (Hydra, ``somtorch/configs/preprocess.yaml``).
"""

from somtorch.data import steps as _steps  # noqa: F401  (registers crop/resize)
from somtorch.data.catalogue import (
    annotate_catalogue,
    check_id_column,
    mapping_columns,
    read_catalogue,
)
from somtorch.data.fits import (
    Cutout,
    FitsImage,
    MissingFileError,
    NoOverlapError,
    cutout,
    read_fits_image,
    reproject_bilinear,
    same_grid,
    stack_channels,
)
from somtorch.data.run import (
    SKIP_REASONS,
    ChannelSpec,
    EntrySkipped,
    PreprocessConfig,
    output_paths,
    process_entry,
    run_preprocessing,
)
from somtorch.data.steps import crop_step, resize_step

__all__ = [
    "FitsImage", "Cutout", "MissingFileError", "NoOverlapError", "read_fits_image", "cutout",
    "reproject_bilinear", "same_grid", "stack_channels",
    "read_catalogue", "check_id_column", "mapping_columns", "annotate_catalogue",
    "ChannelSpec", "PreprocessConfig", "run_preprocessing", "process_entry", "EntrySkipped",
    "SKIP_REASONS", "output_paths", "crop_step", "resize_step",
]
