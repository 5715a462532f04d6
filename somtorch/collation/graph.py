"""Greedy grouping of catalogue entries into sources (PYINK ``collation``, cookbook §6.3.2).

Convention
----------
The graph is a ``networkx.MultiGraph``. Nodes are catalogue entries (module convention of
:mod:`somtorch.collation.filters`: ``int`` for catalogue 0, which must be the base catalogue,
``(c, index)`` for catalogue ``c > 0``); an edge joins two entries of one source; groups are the
connected components. Subjects (base entries) are visited in :class:`Sorter` order; a subject
already *claimed* (linked into a group, or isolated) by an earlier, better subject is skipped.
Every edge created for a subject carries ``count`` (visit position), ``src_idx`` (the subject),
``neuron`` (its best-matching neuron) and the outputs of ``src_stats_fn`` and of the actions.

Per subject, for each channel's :class:`~somtorch.collation.filters.Filter` and each label, the
matched entries lying on a pixel with that label are acted on (cookbook Table 8):

=============  ===================================================================================
LINK           the entries are joined to each other and to other LINKed entries of this subject
               (a clique); the subject always gets a self-loop so it is a node
UNLINK         every edge at those entries is removed (after this subject's links are made)
RESOLVE        edge field ``Resolve = True`` on this subject's edges
FLAG           edge field ``Flagged = True`` on this subject's edges
PASS           nothing
NODE_ATTACH    node attribute ``{label: True}`` on those entries (they are *not* claimed)
DATA_ATTACH    edge field ``label`` = list of those entries' node ids (all channels)
TRUE_ATTACH    edge field ``label = True``
FALSE_ATTACH   edge field ``label = False``
ISOLATE        every edge at those entries is removed, node attribute ``isolated = label``; they
               are excluded from all later links and never act as subjects
=============  ===================================================================================

Differences from PYINK, all fixes of its bugs: UNLINK and ISOLATE work (they raised
``TypeError``); RESOLVE/FLAG/ATTACH act only when some entry lies on the label (RESOLVE/FLAG
fired unconditionally); NODE_ATTACH no longer prevents an entry from being a subject; DATA_ATTACH
accumulates over channels instead of keeping the last; sorters never repeat an entry, do not crash
on empty filters, and keep entries of un-annotated neurons (at the end) unless asked to drop them.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum, auto
from itertools import combinations

import numpy as np

from somtorch.errors import ConfigError

__all__ = ["Action", "LabelResolve", "Sorter", "greedy_graph", "Grouper", "max_separation"]


class Action(Enum):
    """What a label does to the graph (values as PYINK's ``auto()``: LINK = 1 ... ISOLATE = 10)."""

    LINK = auto()
    UNLINK = auto()
    RESOLVE = auto()
    FLAG = auto()
    PASS = auto()
    NODE_ATTACH = auto()
    DATA_ATTACH = auto()
    TRUE_ATTACH = auto()
    FALSE_ATTACH = auto()
    ISOLATE = auto()


class LabelResolve(dict):
    """``label -> Action`` mapping whose ``[]`` falls back to ``default`` (``.get`` does not)."""

    def __init__(self, *args, default: Action = Action.PASS, **kwargs):
        super().__init__(*args, **kwargs)
        for k, v in self.items():
            if not isinstance(v, Action):
                raise ConfigError(None, f"action of {k!r}", v, "an Action")
        self.default = default

    def __missing__(self, key):
        return self.default

    def __repr__(self) -> str:
        return f"LabelResolve({dict.__repr__(self)}, default={self.default})"


def max_separation(mask) -> float:
    """Largest distance (pixels) between two True pixels; 0 for one pixel, -1 for none.

    Uses the convex hull, so large masks cost O(k log k) instead of O(k^2) memory.
    """
    p = np.argwhere(np.asarray(mask, dtype=bool)).astype(np.float64)
    if len(p) == 0:
        return -1.0
    if len(p) > 64:
        from scipy.spatial import ConvexHull, QhullError
        try:
            p = p[ConvexHull(p).vertices]
        except QhullError:  # collinear: the extreme points are the ends of the line
            d = p - p[0]
            t = d @ (d[np.argmax((d ** 2).sum(1))])
            p = p[[np.argmin(t), np.argmax(t)]]
    d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    return float(d.max())


# ---------------------------------------------------------------------------- sorter

class Sorter:
    """Order in which base entries act as subjects (PYINK ``Sorter``), with a mode registry.

    Parameters
    ----------
    filterset : :class:`~somtorch.collation.filters.FilterSet` (gives ``bmu``, ``distance``,
        ``filters`` and ``annotated``).
    mode : a registered mode: ``best_matching_first`` (smallest BMU distance first),
        ``largest_first(channel=0, sort_srcs=True, include_unannotated=True)`` (neurons by the
        largest separation between selected filter pixels of ``channel``, descending; within a
        neuron best match first), ``area_ratio(filter1=0, filter2=1, filter_includes=None,
        filter_excludes=None, sort_srcs=True, include_unannotated=True)`` (neurons by the ratio of
        valid-pixel counts of two channels, descending). Add modes with :meth:`register`.

    ``order`` holds every base index at most once. Iteration is re-entrant; ``len`` is
    ``len(order)``.

    Examples
    --------
    >>> @Sorter.register("reverse_index")
    ... def _rev(fs, **kw):
    ...     return np.arange(len(fs))[::-1]
    >>> "reverse_index" in Sorter.MODES
    True
    """

    MODES: dict[str, Callable] = {}

    @classmethod
    def register(cls, name: str):
        """Decorator registering ``fn(filterset, **kwargs) -> sequence of base indices``."""
        def deco(fn):
            cls.MODES[name] = fn
            return fn
        return deco

    def __init__(self, filterset, *args, mode: str = "best_matching_first", **kwargs):
        if mode not in self.MODES:
            raise ConfigError(None, "mode", mode, f"one of {sorted(self.MODES)}")
        self.filterset, self.mode = filterset, mode
        order = np.asarray(self.MODES[mode](filterset, *args, **kwargs), dtype=np.int64)
        _, first = np.unique(order, return_index=True)
        self.order = order[np.sort(first)]

    def __iter__(self):
        return iter(self.order.tolist())

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k):
        return self.order[k]


def _by_distance(fs, idx):
    if fs.distance is None:
        return np.asarray(idx)
    return np.asarray(idx)[np.argsort(fs.distance[idx], kind="stable")]


def _neuron_order(fs, score, sort_srcs, include_unannotated):
    """Sources grouped by neuron, neurons by descending ``score`` (annotated only)."""
    n_all = np.arange(len(fs.bmu))
    neurons = np.flatnonzero(fs.annotated)
    neurons = neurons[np.argsort(-np.asarray([score(k) for k in neurons]), kind="stable")]
    out = []
    for k in neurons:
        src = n_all[fs.bmu == k]
        out.append(_by_distance(fs, src) if sort_srcs else src)
    if include_unannotated:
        out.append(_by_distance(fs, n_all[~fs.annotated[fs.bmu]]))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


@Sorter.register("best_matching_first")
def _best_matching_first(fs, **_):
    if fs.distance is None:
        raise ConfigError(None, "distance", None, "BMU distances in the FilterSet for best_matching_first")
    return np.argsort(fs.distance, kind="stable")


@Sorter.register("largest_first")
def _largest_first(fs, channel: int = 0, sort_srcs: bool = True, include_unannotated: bool = True):
    return _neuron_order(fs, lambda k: max_separation(fs.filters[k, channel] != 0), sort_srcs, include_unannotated)


@Sorter.register("area_ratio")
def _area_ratio(fs, filter1: int = 0, filter2: int = 1, filter_includes=None, filter_excludes=None,
                sort_srcs: bool = True, include_unannotated: bool = True):
    from somtorch.annotation.encoding import area_ratio

    def score(k):
        return area_ratio(fs.filters[k, filter1], fs.filters[k, filter2], filter_includes, filter_excludes)
    return _neuron_order(fs, score, sort_srcs, include_unannotated)


# ---------------------------------------------------------------------------- graph

def greedy_graph(filters, annotations, label_resolve: LabelResolve, sorter, src_stats_fn=None,
                 progress: bool = False):
    """Build the grouping graph (module docstring for the exact semantics).

    Parameters
    ----------
    filters : :class:`~somtorch.collation.filters.FilterSet`.
    annotations : the :class:`~somtorch.annotation.AnnotationSet` (its labels are iterated in
        creation order).
    label_resolve : :class:`LabelResolve`.
    sorter : iterable of base indices (e.g. a :class:`Sorter`).
    src_stats_fn : optional ``fn(src_idx) -> dict`` merged into the subject's edge data.
    progress : tqdm progress bar.
    """
    import networkx as nx
    from tqdm.auto import tqdm

    if not filters.base_is_match0:
        raise ConfigError(None, "match_catalogues[0]", "a different catalogue",
                          "the base catalogue (nodes of catalogue 0 are base entries)")
    labels = list(annotations.labels)
    actions = {lab: label_resolve[lab] for lab in labels}
    G = nx.MultiGraph()
    claimed: set = set()
    isolated: set = set()
    order = list(sorter)
    for i, src in enumerate(tqdm(order, disable=not progress, desc="grouping", total=len(order))):
        src = int(src)
        if src in claimed:
            continue
        edge_data = {"count": i, "src_idx": src, "neuron": int(filters.bmu[src])}
        if src_stats_fn is not None:
            edge_data.update(src_stats_fn(src))
        link, unlink, to_isolate = [], [], []
        for flt in filters[src]:
            nodes = np.empty(len(flt), dtype=object)
            nodes[:] = flt.nodes
            for lab in labels:
                act = actions[lab]
                if act is Action.PASS:
                    continue
                hit = nodes[flt.coord_label_contains(lab)].tolist()
                if not hit:
                    continue
                if act is Action.LINK:
                    link.extend(hit)
                elif act is Action.UNLINK:
                    unlink.extend(hit)
                elif act is Action.ISOLATE:
                    to_isolate.extend((n, lab) for n in hit)
                elif act is Action.NODE_ATTACH:
                    for n in hit:
                        G.add_node(n, **{lab: True})
                elif act is Action.DATA_ATTACH:
                    edge_data[lab] = list(edge_data.get(lab, [])) + [n for n in hit if n not in edge_data.get(lab, [])]
                elif act is Action.TRUE_ATTACH:
                    edge_data[lab] = True
                elif act is Action.FALSE_ATTACH:
                    edge_data[lab] = False
                elif act is Action.FLAG:
                    edge_data["Flagged"] = True
                elif act is Action.RESOLVE:
                    edge_data["Resolve"] = True
        for n, lab in to_isolate:
            G.add_node(n, isolated=lab)
            G.remove_edges_from(list(G.edges(n, keys=True)))
            isolated.add(n)
            claimed.add(n)
        link_nodes = [n for n in dict.fromkeys(link) if n not in isolated]
        for a, b in combinations(link_nodes, 2):
            G.add_edge(a, b, **edge_data)
        G.add_edge(src, src, **edge_data)
        claimed.add(src)
        if len(link_nodes) > 1:  # a lone LINKed entry gets no edge: it stays free to be a subject
            claimed.update(link_nodes)
        for n in dict.fromkeys(unlink):
            if n in G:
                G.remove_edges_from(list(G.edges(n, keys=True)))
    return G


class Grouper:
    """Stores its arguments and builds :attr:`graph` with :func:`greedy_graph` (PYINK name)."""

    def __init__(self, filters, annotations, label_resolve, sorter, src_stats_fn=None, progress: bool = False):
        self.filters, self.annotations = filters, annotations
        self.label_resolve, self.sorter = label_resolve, sorter
        self.src_stats_fn, self.progress = src_stats_fn, progress
        self.graph = greedy_graph(filters, annotations, label_resolve, sorter, src_stats_fn, progress)

    def groups(self) -> list[set]:
        """Connected components containing at least one catalogue-0 entry, largest first."""
        import networkx as nx

        comps = [c for c in nx.connected_components(self.graph) if any(isinstance(n, int) for n in c)]
        return sorted(comps, key=lambda c: (-len(c), min(n for n in c if isinstance(n, int))))

    def collate(self, **kwargs):
        """Source catalogue (see :func:`somtorch.collation.catalogue.collate`)."""
        from somtorch.collation.catalogue import collate

        return collate(self.graph, self.filters, **kwargs)
