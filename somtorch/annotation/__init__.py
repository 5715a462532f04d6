"""Image-based annotation of neurons: prime-encoded label masks, the annotator GUI, storage.

* :mod:`.encoding` -- PYINK-compatible prime label encoding (:class:`LabelSet`, ``PRIMES``,
  :func:`valid_region`, :func:`area_ratio`);
* :mod:`.core` -- :class:`Annotation` (undoable click / lasso / mask regions per channel);
* :mod:`.store` -- :class:`AnnotationSet` (atomic, versioned ``.npz`` + JSON storage, PYINK
  ``.results.pkl`` import on explicit opt-in);
* :mod:`.gui` -- :class:`Annotator` (matplotlib; matplotlib is imported only when a figure opens).
"""

from somtorch.annotation.core import Annotation, Region, lasso_mask, seed_fill
from somtorch.annotation.encoding import (
    MAX_LABELS,
    PRIMES,
    LabelSet,
    area_ratio,
    decode_value,
    label_mask,
    region_value,
    valid_region,
)
from somtorch.annotation.gui import Annotator
from somtorch.annotation.store import ANT_SUFFIX, AnnotationSet, import_pyink_results

__all__ = ["ANT_SUFFIX", "Annotation", "AnnotationSet", "Annotator", "LabelSet", "MAX_LABELS", "PRIMES",
           "Region", "area_ratio", "decode_value", "import_pyink_results", "label_mask", "lasso_mask",
           "region_value", "seed_fill", "valid_region"]
