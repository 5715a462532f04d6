"""Datasets: a built-in synthetic VLASS-QuickLook-like radio sky (:mod:`.synthetic`), as FITS
cutouts with a catalogue (:func:`make_sample`) or as a preprocessed PINK image binary
(:func:`sample_image_binary`, the default data of ``somtorch.train`` and ``somtorch.map``)."""

from somtorch.datasets.images import preprocess_cutouts, sample_image_binary, sample_recipe
from somtorch.datasets.morphologies import MORPH_CLASSES
from somtorch.datasets.sample import SamplePaths, make_sample, write_fits_cutouts
from somtorch.datasets.synthetic import (
    DEFAULT_CLASS_MIX,
    SkyConfig,
    SkyModel,
    generate_sky,
    render_cutout,
    render_cutouts,
)

__all__ = ["MORPH_CLASSES", "DEFAULT_CLASS_MIX", "SamplePaths", "SkyConfig", "SkyModel",
           "generate_sky", "make_sample", "render_cutout", "render_cutouts",
           "write_fits_cutouts", "sample_image_binary", "sample_recipe", "preprocess_cutouts"]
