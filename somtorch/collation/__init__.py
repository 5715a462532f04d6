"""Collation: project neuron masks onto catalogues and group components into sources.

* :mod:`.filters` -- :class:`FilterSet` / :class:`Filter` (the "cookie cutter");
* :mod:`.graph` -- :class:`Action`, :class:`LabelResolve`, :class:`Sorter`, :func:`greedy_graph`,
  :class:`Grouper`;
* :mod:`.consensus` -- :func:`group_sources` (default ``"consensus"``: :func:`consensus_graph`,
  every view votes; or ``method="pyink"``, PYINK's greedy graph); :mod:`.fallback` (its proximity fallback,
  ``"proximity"`` / ``"extended"``) and :mod:`.linkmask` (label masks, grown LINK masks);
* :mod:`.catalogue` -- :func:`collate` into a source catalogue, :func:`write_source_catalogue`.
* :mod:`.truth` -- :func:`annotate_from_truth` (programmatic annotation for benchmarks).
"""

from somtorch.collation.catalogue import collate, write_source_catalogue
from somtorch.collation.consensus import consensus_graph, group_sources
from somtorch.collation.filters import Filter, FilterSet
from somtorch.collation.graph import (
    Action,
    Grouper,
    LabelResolve,
    Sorter,
    greedy_graph,
    max_separation,
)
from somtorch.collation.truth import annotate_from_truth

__all__ = ["Action", "Filter", "FilterSet", "Grouper", "LabelResolve", "Sorter", "annotate_from_truth", "collate", "consensus_graph",
           "greedy_graph", "group_sources", "max_separation", "write_source_catalogue"]
