"""PYINK's ``collation``: ``Action``, ``LabelResolve``, ``Sorter``, ``greedy_graph``, ``Grouper``,
on :mod:`somtorch.collation` (its public API only).

``Action`` and ``LabelResolve`` are the native ones (same names and values, LINK = 1 ...
ISOLATE = 10). ``Sorter`` takes PYINK's ``som_set`` (and, for the annotation-driven modes, the
annotations as first extra argument). ``greedy_graph`` and ``Grouper`` take this layer's
``FilterSet`` and ``Annotator`` (or the native objects) and build the native graph.

**PYINK bugs corrected** (spec §14): ``largest_first`` lists each source once (PYINK twice) and
does not crash on empty filters; sources of un-annotated neurons are kept, at the end, best match
first (PYINK dropped them, so they were never grouped); ``len(sorter)`` is the number of
sources it yields and iteration is re-entrant; in the graph, ISOLATE and UNLINK work (PYINK
raised ``TypeError``), FLAG/RESOLVE and the ATTACH actions act only when a component lies on the
label, NODE_ATTACH does not stop a component from being a subject, DATA_ATTACH collects over
channels, and components of match catalogue ``c > 0`` are nodes ``(c, index)``.
"""

from __future__ import annotations

import numpy as np

from somtorch.collation import Action, LabelResolve
from somtorch.collation import Sorter as _NativeSorter
from somtorch.collation import greedy_graph as _native_greedy_graph

__all__ = ["Action", "LabelResolve", "Sorter", "greedy_graph", "Grouper"]

_MODE_ARGS = {
    "largest_first": ("annotations", "channel", "sort_srcs"),
    "area_ratio": ("annotations", "filter1", "filter2", "filter_includes", "filter_excludes", "sort_srcs"),
    "best_matching_first": (),
}


def _annotation_set(annotations):
    from somtorch.annotation import AnnotationSet

    return annotations if isinstance(annotations, AnnotationSet) else annotations.results


class _Sources:
    """What the native sorter reads: BMU, distance, filters and annotated flags per neuron."""

    def __init__(self, som_set, annotations=None):
        m = som_set.mapping
        self.bmu, d = m._best(np.arange(len(m)), 0)
        self.distance = np.asarray(d, np.float64)
        n = som_set.som.num_neurons
        c, nd = som_set.som.neuron_shape[0], som_set.som.neuron_shape[-1]
        if annotations is None or len(_annotation_set(annotations).results) == 0:
            self.filters = np.zeros((n, c, nd, nd), np.int64)
            self.annotated = np.zeros(n, bool)
        else:
            self.filters, self.annotated = _annotation_set(annotations).filter_stack(n)

    def __len__(self) -> int:
        return len(self.bmu)


class Sorter:
    """Order in which sources act as subjects (PYINK ``Sorter(som_set, *args, mode=...)``).

    Modes: ``best_matching_first`` (smallest BMU distance first, ``bmu_mask`` honoured),
    ``largest_first(annotations, channel=0, sort_srcs=True)`` (annotated neurons by the largest
    separation of their selected filter pixels, descending) and ``area_ratio(annotations,
    filter1=0, filter2=1, filter_includes=None, filter_excludes=None, sort_srcs=True)``. Another
    mode raises ``NotImplementedError`` (as PYINK). ``order`` holds the source indices.
    """

    MODES = ["best_matching_first", "largest_first", "area_ratio"]

    def __init__(self, som_set, *args, mode="best_matching_first", **kwargs):
        if mode not in self.MODES:
            raise NotImplementedError(f"Sorter mode {mode!r} is not one of {self.MODES}")
        names = _MODE_ARGS[mode]
        if len(args) > len(names):
            raise TypeError(f"Sorter mode {mode!r} takes at most {len(names)} extra positional arguments")
        kw = dict(zip(names, args))
        dup = set(kw) & set(kwargs)
        if dup:
            raise TypeError(f"Sorter got multiple values for {sorted(dup)}")
        kw.update(kwargs)
        self.som_set, self.mode = som_set, mode
        annotations = kw.pop("annotations", None)
        if mode != "best_matching_first" and annotations is None:
            raise TypeError(f"Sorter mode {mode!r} needs the annotations (Sorter(som_set, annotator, mode=...))")
        self.order = _NativeSorter(_Sources(som_set, annotations), mode=mode, **kw).order
        self._cursor = 0

    @property
    def som(self):
        return self.som_set.som

    @property
    def mapper(self):
        return self.som_set.mapping

    @property
    def transform(self):
        return self.som_set.transform

    def __iter__(self):
        self._cursor = 0
        return iter(self.order.tolist())

    def __next__(self):
        if self._cursor >= len(self.order):
            raise StopIteration
        self._cursor += 1
        return int(self.order[self._cursor - 1])

    def __getitem__(self, k):
        return self.order[k]

    def __len__(self) -> int:
        return len(self.order)

    def __repr__(self) -> str:
        return f"Sorter(mode={self.mode!r}, {len(self)} sources)"


def greedy_graph(filters, annotations, label_resolve, sorter, src_stats_fn=None, progress=False):
    """Greedy grouping graph (``networkx.MultiGraph``): subjects in ``sorter`` order link the
    components lying on their neuron's labels as ``label_resolve`` says; groups are the connected
    components (``networkx.connected_components``). Edges carry ``count``, ``src_idx`` and
    ``src_stats_fn(src_idx)``'s fields. See the module docstring for the corrected PYINK bugs."""
    native_fs = getattr(filters, "native", filters)
    return _native_greedy_graph(native_fs, _annotation_set(annotations), label_resolve, sorter, src_stats_fn,
                                progress)


class Grouper:
    """Stores its arguments and builds ``graph = greedy_graph(...)`` (PYINK ``Grouper``)."""

    def __init__(self, filters, annotations, label_resolve, sorter, src_stats_fn=None, progress=False):
        self.filters, self.annotations = filters, annotations
        self.label_resolve, self.sorter = label_resolve, sorter
        self.src_stats_fn, self.progress = src_stats_fn, progress
        self.graph = greedy_graph(filters, annotations, label_resolve, sorter, src_stats_fn, progress)
