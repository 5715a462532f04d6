"""Grouping methods behind one entry point, :func:`group_sources`, and the consensus method.

* ``method="pyink"`` -- PYINK's greedy graph (:func:`~somtorch.collation.graph.greedy_graph`)
  visited in :class:`~somtorch.collation.graph.Sorter` order: the first subject to see an entry
  decides its group; one ISOLATE anywhere removes an entry from every group. Today's method and
  PYINK's numbers.
* ``method="consensus"`` -- :func:`consensus_graph`: *every* base entry's view votes on every
  pair of entries it sees, the votes of all views are summed per pair, and groups are formed by
  a graph step that merges clusters while the summed evidence between them is positive.

Measured (benchmarks/RESULTS.md, "Collation failure study", synthetic sky, five evaluation
seeds, with the 2nd/3rd best neurons as ``extra_views``), sources of >= 2 components grouped
exactly, all views annotating / held-out components; single components in brackets:

* ``"pyink"``: 0.842 / 0.646 (0.979 / 0.981);
* ``"consensus"`` (``fallback="proximity"``, the default): 0.927 / 0.807 (0.962 / 0.965);
* ``"consensus"`` with ``fallback="extended"``: 0.937 / **0.863** (0.943 / 0.953) -- the
  recommendation for grouping multi-component sources, and where the annotations were shaped
  by only part of the catalogue (sparse LINK masks). It meets issue 18's targets on the mean
  over the seeds (>= 0.90, >= 0.85, singles >= 0.94), but single components fall below 0.94
  in two seeds of five and the exact fraction over *all* sources is lower than with
  ``"proximity"`` (0.941 / 0.942 against 0.952 / 0.946): more compact sources are merged with
  neighbours (on a small 400-source sky, seed 3: singles 0.927 against 0.945 with
  ``"proximity"``).

:func:`group_sources` defaults to ``method="consensus"`` with ``consensus_graph``'s default
``fallback="proximity"``: better than PYINK's greedy graph on multi-component sources (0.927 /
0.807 against 0.842 / 0.646), the best exact fraction over all sources (0.952 / 0.946 against
0.941 / 0.942), and the single-component floor of 0.94 in every seed measured. Pass
``fallback="extended"`` where few components shaped the annotations (the held-out target);
``method="pyink"`` keeps PYINK's method and numbers by name, and
:class:`~somtorch.collation.graph.Grouper` and ``greedy_graph`` (the PYINK layer) are unchanged.

Growing LINK masks over the neuron's emission (``link_grow``, :mod:`.linkmask`) is available
but measured no gain on that sky (held-out 0.813-0.823 against 0.818 on the selection seeds):
the partners the sparse masks miss lie outside the circle the SOM trains, where the neuron
has no emission.

Convention (consensus)
----------------------
* A *view* is one base entry ``k`` with its best-matching neuron's filters projected onto it
  (a :class:`~somtorch.collation.filters.Filter`). Only views of annotated neurons vote, and only
  about channel-0 entries that land inside the neuron. An entry is *on* a label when the pixel
  under it carries the label or, with ``tolerance > 0``, a pixel carrying it lies within
  ``tolerance`` neuron pixels (Euclidean distance, pixel centres).
* Pair evidence: for every pair ``(a, b)`` of channel-0 entries inside view ``k`` (``k`` itself
  included), ``+w_k`` when both are on a LINK label, ``-negative_weight * w_k`` when exactly one
  is, nothing when neither is. An entry on an UNLINK label gives ``-w_k`` to each of its pairs in
  that view. ``weighting="uniform"`` uses ``w_k = 1``; ``"distance"`` uses
  ``w_k = median(d) / max(d_k, eps)`` clipped to ``[0.25, 4]``, where ``d_k`` is the view's
  distance to its best-matching neuron (close matches count more).
* Isolation: an entry on an ISOLATE label in views of total weight ``W_iso`` is isolated when
  ``W_iso > W_link`` (the weight of the views that put it on a LINK label): a majority, not a
  single view's veto. Isolated entries join no group (node attribute ``isolated=label``).
* Graph step (networkx graph of the pair evidence): start with singletons; repeatedly merge the
  two clusters with the largest *summed* evidence between them while it is positive (greedy
  correlation clustering). A chain ``a-b-c`` is therefore kept only if the evidence for the
  whole group outweighs the evidence against ``a-c``.
* Fallback (:mod:`somtorch.collation.fallback` for the exact rules), for entries the SOM views
  cannot group (partners beyond the cutout, or off sparse masks): an entry that ends up alone
  and whose neuron has LINK pixels far from the centre (``fallback_far``) "expects a partner"
  in those pixels' directions. ``fallback="proximity"``: two such entries are paired when, in
  each one's neuron frame (through its exact transform), the other lies at least half as far
  out as those pixels and in the direction of one of them -- within ``fallback_angle`` for one
  of the two and within ``fallback_angle_other`` (60) for the other --, within
  ``fallback_radius`` (sky angle; default twice the FilterSet's ``seplimit``), and each is the
  other's best candidate by flux-weighted distance ``sep * (1 + |log10(f_a / f_b)|)``.
  ``fallback="extended"`` adds, with the other side within 40 degrees: directions through the
  ``extra_views`` too (``fallback_views="directions"``); an entry still alone joins a pair the
  fallback made through a member pointing back (``fallback_groups="fallback"``: completes
  triples); *one-sided* pairs, where one entry points within 10 degrees at an entry that
  expects no partner, at a distance within 1.3x of the far LINK pixels' radius and with fluxes
  within 4x (``fallback_one_sided*``).
* Output: the same ``networkx.MultiGraph`` as the greedy method. Each group is a star of edges
  from its *representative* (the member whose own view puts most members on LINK; ties: smallest
  BMU distance) carrying ``count``, ``src_idx`` (the representative), ``neuron`` and the
  representative view's FLAG / RESOLVE / TRUE_ATTACH / FALSE_ATTACH fields; DATA_ATTACH lists
  the entries that the largest weight of member views put on the label (all tied entries).
  Every channel-0 node gets ``uncertainty`` in ``[0, 1]``: the share of its group's evidence
  that disagrees with the grouping (negative evidence inside the group plus positive evidence
  across its boundary, over all evidence touching the group), at least 0.5 for groups the
  fallback made or extended; NaN when no view says anything about the group.
"""

from __future__ import annotations

import heapq
from collections import defaultdict

import numpy as np

from somtorch.collation.fallback import fallback_settings, proximity_fallback
from somtorch.collation.linkmask import grow_link_masks
from somtorch.collation.linkmask import near as _near
from somtorch.errors import ConfigError

__all__ = ["group_sources", "consensus_graph", "METHODS"]

METHODS = ("pyink", "consensus")


def group_sources(filters, annotations, label_resolve, method: str = "consensus", *, sort_mode: str = "largest_first",
                  sorter=None, flux=None, src_stats_fn=None, progress: bool = False, **options):
    """Group catalogue entries into sources; returns the ``networkx.MultiGraph`` that
    :func:`~somtorch.collation.catalogue.collate` turns into a source catalogue.

    Parameters
    ----------
    filters, annotations, label_resolve : as for :func:`~somtorch.collation.graph.greedy_graph`.
    method : ``"consensus"`` (default: :func:`consensus_graph`, module docstring; pass
        ``fallback="extended"`` where few components shaped the annotations) or ``"pyink"``
        (greedy, PYINK's semantics and numbers).
    sort_mode, sorter : visiting order of ``"pyink"`` (a :class:`Sorter` mode, or any iterable).
    flux : per base entry, used by the consensus fallback.
    options : keyword options of :func:`consensus_graph`.
    """
    from somtorch.collation.graph import Sorter, greedy_graph

    if method not in METHODS:
        raise ConfigError(None, "method", method, f"one of {list(METHODS)}")
    if method == "pyink":
        if options:
            raise ConfigError(None, "options", sorted(options), "no extra options for method 'pyink'")
        sorter = Sorter(filters, mode=sort_mode) if sorter is None else sorter
        return greedy_graph(filters, annotations, label_resolve, sorter, src_stats_fn, progress)
    return consensus_graph(filters, annotations, label_resolve, flux=flux, src_stats_fn=src_stats_fn,
                           progress=progress, **options)


# ---------------------------------------------------------------------------- evidence

def _weights(fs, weighting):
    n = len(fs)
    if weighting == "uniform" or fs.distance is None:
        return np.ones(n)
    if weighting == "distance":
        d = np.asarray(fs.distance, np.float64)
        med = np.median(d) if n else 1.0
        return np.clip(med / np.maximum(d, 1e-12), 0.25, 4.0)
    raise ConfigError(None, "weighting", weighting, "'uniform' or 'distance'")


def _clusters(n, evidence, exclude):
    """Greedy correlation clustering: merge clusters while the summed evidence between them is
    positive, largest first. Returns a cluster label per entry."""
    parent = np.arange(n)
    nbr: dict[int, dict[int, float]] = defaultdict(dict)
    for (a, b), s in evidence.items():
        if a in exclude or b in exclude:
            continue
        nbr[a][b] = nbr[a].get(b, 0.0) + s
        nbr[b][a] = nbr[b].get(a, 0.0) + s
    heap = [(-s, a, b) for a in nbr for b, s in nbr[a].items() if a < b and s > 0]
    heapq.heapify(heap)
    alive = set(range(n))
    while heap:
        s, a, b = heapq.heappop(heap)
        if a not in alive or b not in alive or nbr[a].get(b) != -s or -s <= 0:
            continue
        # merge b into a
        alive.discard(b)
        parent[parent == b] = a
        for c, v in nbr.pop(b).items():
            if c == a:
                continue
            nbr[c].pop(b, None)
            nbr[a][c] = nbr[a].get(c, 0.0) + v
            nbr[c][a] = nbr[a][c]
        nbr[a].pop(b, None)
        for c, v in nbr[a].items():
            if v > 0:
                heapq.heappush(heap, (-v, a, c))
    return parent


def consensus_graph(filters, annotations, label_resolve, *, tolerance: float = 1.5, weighting: str = "uniform",
                    negative_weight: float = 0.5, fallback: str | None = "proximity", fallback_radius=None,
                    fallback_far: float = 0.6, fallback_angle: float = 20.0, fallback_angle_other: float | None = None,
                    fallback_groups: bool | str | None = None, fallback_views: str | None = None,
                    fallback_one_sided: float | None = None, fallback_one_sided_ratio: float | None = None,
                    fallback_one_sided_radial: float | None = None, angle_tolerance: float | None = None,
                    radius_ratio: float = 1.3, self_link: bool = False, extra_views=(), extra_weight: float = 0.5,
                    link_grow: float | None = None, link_grow_mode: str = "peak", link_grow_seed: str = "any",
                    link_grow_seed_radius: float = 3.0, flux=None, src_stats_fn=None, progress: bool = False):
    """Group entries by the consensus of every view (module docstring for the exact rules).

    Parameters
    ----------
    filters : :class:`~somtorch.collation.filters.FilterSet` (catalogue 0 must be the base).
    annotations : :class:`~somtorch.annotation.AnnotationSet` (gives the labels).
    label_resolve : :class:`~somtorch.collation.graph.LabelResolve`.
    tolerance : neuron pixels; an entry within this distance of a label's pixel is on it.
    weighting : ``"uniform"`` or ``"distance"`` (views weighted by their BMU distance).
    negative_weight : weight of "exactly one of the pair is on LINK" relative to "both are".
    fallback : ``None``, ``"proximity"`` or ``"extended"`` (:mod:`somtorch.collation.fallback`;
        its ``FALLBACKS`` gives each mode's settings, which the ``fallback_*`` options below
        override when not ``None``). ``"extended"``: recommended where only part of the
        catalogue's components shaped the annotations (module docstring, measured sizes).
    fallback_radius : astropy angle; default twice ``filters.seplimit``.
    fallback_far : an entry expects a partner beyond its view when its neuron has LINK pixels
        farther than ``fallback_far`` times the neuron's half-side from the centre.
    fallback_angle, fallback_angle_other : degrees; one entry of a pair must lie within
        ``fallback_angle`` of the direction of one of the other's far LINK pixels (in that
        neuron frame, through the exact transform), the other within ``fallback_angle_other``
        (mode default: 60 for ``"proximity"``, 40 for ``"extended"``), both at least half the
        pixels' radius away.
    fallback_groups : join entries still alone to groups: ``False``, ``True`` (any group) or
        ``"fallback"`` (groups the fallback paired).
    fallback_views : ``"best"``, ``"directions"`` (pointing also through ``extra_views``) or
        ``"all"`` (the extra views may also decide that an entry expects a partner).
    fallback_one_sided, fallback_one_sided_ratio, fallback_one_sided_radial : one-sided pairs
        (an entry pointing, in degrees, at one that expects no partner; fluxes within a factor
        ``..._ratio``, far LINK pixels within a factor ``..._radial`` of the distance); ``0``: off.
    angle_tolerance, radius_ratio : optional polar tolerance: an entry more than 3 px from the
        centre is also on LINK when a LINK pixel lies within ``angle_tolerance`` degrees of its
        direction and within a factor ``radius_ratio`` of its radius (``None``: off).
    self_link : a view's own entry always counts as on LINK in that view (PYINK: only if the
        mask says so).
    extra_views : further FilterSets over the same base catalogue and annotations, e.g. every
        entry seen through its 2nd and 3rd best-matching neurons (each with that neuron's own
        exact transform); they vote like the main view with weights scaled by
        ``extra_weight``.
    link_grow, link_grow_mode, link_grow_seed, link_grow_seed_radius : grow every neuron's LINK
        mask over the islands of its own channel-0 emission above ``link_grow`` times its peak
        (``"peak"``) or standard deviation (``"sigma"``) that hold a LINK pixel (``"any"``) or
        one farther than ``link_grow_seed_radius`` px from the centre (``"offcentre"``);
        :mod:`somtorch.collation.linkmask`. Pair evidence and the representative use the grown
        masks; isolation and the fallback the painted ones. ``None``: off.
    flux : per base entry (fallback's flux-weighted distance); ``None`` ignores fluxes.
    src_stats_fn : optional ``fn(representative) -> dict`` merged into the group's edge data.
    progress : tqdm progress bar over the views.
    """
    import networkx as nx
    from tqdm.auto import tqdm

    from somtorch.collation.graph import Action

    fs = filters
    if not fs.base_is_match0:
        raise ConfigError(None, "match_catalogues[0]", "a different catalogue",
                          "the base catalogue (nodes of catalogue 0 are base entries)")
    if negative_weight < 0 or tolerance < 0:
        raise ConfigError(None, "negative_weight/tolerance", (negative_weight, tolerance), "values >= 0")
    fb = None if fallback is None else fallback_settings(
        fallback, groups=fallback_groups, views=fallback_views, angle_other=fallback_angle_other,
        one_sided=fallback_one_sided, one_sided_ratio=fallback_one_sided_ratio,
        one_sided_radial=fallback_one_sided_radial)
    labels = list(annotations.labels)
    acts = {lab: label_resolve[lab] for lab in labels}
    prime = {lab: annotations.labels.prime(lab) for lab in labels}

    def primes_of(action):
        return [prime[lab] for lab in labels if acts[lab] is action]

    n = len(fs)
    polar = None if angle_tolerance is None else (np.radians(angle_tolerance), radius_ratio)
    iso_labels = [lab for lab in labels if acts[lab] is Action.ISOLATE]
    evidence: dict[tuple[int, int], float] = defaultdict(float)
    w_link = np.zeros(n)
    w_iso = {lab: np.zeros(n) for lab in iso_labels}
    views = [(fs, 1.0)] + [(v, float(extra_weight)) for v in extra_views]
    link_p, block_p = primes_of(Action.LINK), primes_of(Action.ISOLATE) + primes_of(Action.UNLINK)

    def grown(view):
        if link_grow is None:
            return None
        return grow_link_masks(view, annotations, link_p, block_p, float(link_grow), link_grow_mode,
                               link_grow_seed, link_grow_seed_radius)

    for vi, (view, scale) in enumerate(views):
        if len(view) != n:
            raise ConfigError(None, f"extra_views[{vi - 1}]", f"{len(view)} entries", f"{n} (one per base entry)")
        w = scale * _weights(view, weighting)
        p0 = view._pairs[0]
        st = p0["starts"]
        valid = p0["inside"] & view.annotated[view.bmu[p0["base"]]]
        link0 = _near(view, link_p, 0, tolerance, polar) & valid
        link = link0 if link_grow is None else _near(view, link_p, 0, tolerance, polar, grown(view)) & valid
        unlink = _near(view, primes_of(Action.UNLINK), 0, tolerance) & valid
        w_link += np.bincount(p0["match"][link0], w[p0["base"][link0]], n)
        for lab in iso_labels:
            m = _near(view, [prime[lab]], 0, tolerance) & valid
            w_iso[lab] += np.bincount(p0["match"][m], w[p0["base"][m]], n)
        for k in tqdm(range(n), disable=not progress, desc="views"):
            s, e = st[k], st[k + 1]
            if e - s < 2 or not valid[s:e].any():
                continue
            sel = np.flatnonzero(valid[s:e]) + s
            m, lk, ul = p0["match"][sel], link[sel].copy(), unlink[sel]
            if self_link:
                lk[m == k] = True
            wk = w[k]
            for x in range(len(sel)):
                for y in range(x + 1, len(sel)):
                    a, b = int(m[x]), int(m[y])
                    key = (a, b) if a < b else (b, a)
                    if ul[x] or ul[y]:
                        evidence[key] -= wk
                    elif lk[x] and lk[y]:
                        evidence[key] += wk
                    elif lk[x] or lk[y]:
                        evidence[key] -= negative_weight * wk
    iso_max = np.zeros(n)
    iso_label = {}
    for lab in iso_labels:
        for j in np.flatnonzero(w_iso[lab] > iso_max):
            iso_label[int(j)] = lab
        iso_max = np.maximum(iso_max, w_iso[lab])
    isolated = set(np.flatnonzero((iso_max > w_link) & (iso_max > 0)).tolist())
    w = _weights(fs, weighting)
    p0 = fs._pairs[0]
    st = p0["starts"]
    link = _near(fs, link_p, 0, tolerance, polar, grown(fs)) & p0["inside"] & fs.annotated[fs.bmu[p0["base"]]]
    label = _clusters(n, evidence, isolated)

    # ---- fallback for alone entries that expect a partner
    joined: set = set()
    if fb is not None:
        label, joined = proximity_fallback(fs, label, isolated, link_p, flux, radius=fallback_radius, far=fallback_far,
                                           angle=fallback_angle, extra_views=extra_views, **fb)

    # ---- uncertainty per cluster
    agree, disagree = defaultdict(float), defaultdict(float)
    for (a, b), s in evidence.items():
        if a in isolated or b in isolated:
            continue
        la, lb = label[a], label[b]
        if la == lb:
            (agree if s > 0 else disagree)[la] += abs(s)
        else:
            for c in (la, lb):
                (disagree if s > 0 else agree)[c] += abs(s)

    # ---- graph
    G = nx.MultiGraph()
    G.add_nodes_from(range(n))
    members = defaultdict(list)
    for j in range(n):
        if j not in isolated:
            members[int(label[j])].append(j)
    for j in isolated:
        G.add_node(j, isolated=iso_label.get(j, True))
    # NODE_ATTACH from every view
    for lab in labels:
        if acts[lab] is Action.NODE_ATTACH:
            for c in range(fs.channels):
                on = _near(fs, [prime[lab]], c, 0.0) & fs._pairs[c]["inside"]
                for j in np.unique(fs._pairs[c]["match"][on]):
                    G.add_node(int(j) if c == 0 else (c, int(j)), **{lab: True})
    dist = fs.distance if fs.distance is not None else np.zeros(n)
    groups = sorted(members.values(), key=lambda g: (-len(g), g[0]))
    for count, g in enumerate(groups):
        gs = set(g)
        # representative: most members on LINK in its own view, then best match
        score = []
        for r in g:
            s, e = st[r], st[r + 1]
            on = [int(x) for x in p0["match"][s:e][link[s:e]] if int(x) in gs]
            score.append((-len(on), dist[r], r))
        rep = min(score)[2]
        edge = {"count": count, "src_idx": rep, "neuron": int(fs.bmu[rep])}
        if src_stats_fn is not None:
            edge.update(src_stats_fn(rep))
        edge.update(_edge_actions(fs, rep, labels, acts, prime))
        for lab in labels:
            if acts[lab] is Action.DATA_ATTACH:
                edge[lab] = _data_attach(fs, g, prime[lab], w)
                if not edge[lab]:
                    del edge[lab]
        tot = agree[label[g[0]]] + disagree[label[g[0]]]
        unc = disagree[label[g[0]]] / tot if tot > 0 else float("nan")
        if gs & joined:
            unc = 0.5 if not np.isfinite(unc) else max(unc, 0.5)
        for j in g:
            G.nodes[j]["uncertainty"] = float(unc)
        G.add_edge(rep, rep, **edge)
        for j in g:
            if j != rep:
                G.add_edge(rep, j, **edge)
    return G


def _edge_actions(fs, rep, labels, acts, prime):
    """FLAG / RESOLVE / TRUE_ATTACH / FALSE_ATTACH of the representative's view (any channel)."""
    from somtorch.collation.graph import Action

    out = {}
    for flt in fs[rep]:
        for lab in labels:
            act = acts[lab]
            if act not in (Action.FLAG, Action.RESOLVE, Action.TRUE_ATTACH, Action.FALSE_ATTACH):
                continue
            if not flt.coord_label_contains(prime[lab]).any():
                continue
            if act is Action.FLAG:
                out["Flagged"] = True
            elif act is Action.RESOLVE:
                out["Resolve"] = True
            else:
                out[lab] = act is Action.TRUE_ATTACH
    return out


def _data_attach(fs, group, pr, w):
    """Entries (all channels) that the largest weight of the group's views put on the label."""
    votes: dict = defaultdict(float)
    for c in range(fs.channels):
        p = fs._pairs[c]
        st = p["starts"]
        for r in group:
            s, e = st[r], st[r + 1]
            v = p["value"][s:e]
            hit = (v > 1) & (v % pr == 0) & p["inside"][s:e]
            for j in p["match"][s:e][hit]:
                votes[int(j) if c == 0 else (c, int(j))] += w[r]
    if not votes:
        return []
    top = max(votes.values())
    return [j for j, v in votes.items() if v >= top - 1e-12]
