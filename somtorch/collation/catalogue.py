"""Collation of the grouping graph into a source catalogue (one row per group).

Convention
----------
* A group is a connected component of the graph with at least one catalogue-0 (base) entry;
  catalogue ``c > 0`` nodes ``(c, i)`` in a group (if LINKed) are listed with the hosts.
* ``RA``/``DEC`` (degrees): flux-weighted mean direction of the components' unit vectors (plain
  mean without fluxes); ``Total_flux``: sum of the components' fluxes (NaN without fluxes).
* ``Subject``: the base entry whose visit created the group's first edge (smallest ``count``);
  ``Best_neuron``: that subject's best-matching neuron (its ``neuron`` edge field); groups
  without edges (never visited) use their best-matching component.
* ``Host_candidates``: node ids gathered by DATA_ATTACH under ``host_labels`` on the group's
  edges, written ``"c:i"`` for catalogue ``c > 0`` and ``"i"`` for catalogue 0, joined by ``;``.
* Other edge fields set by TRUE/FALSE_ATTACH, FLAG and RESOLVE become boolean columns (True if
  any edge of the group has True); NODE_ATTACH labels become counts of nodes carrying them;
  ``Isolated``: the group is a single isolated entry.
* ``Uncertainty`` (only when the graph's nodes carry ``uncertainty``, as the ``consensus``
  grouping writes it): the largest of the members' values, NaN when none is known.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd

from somtorch.errors import ConfigError

__all__ = ["collate", "write_source_catalogue"]

_RESERVED = {"count", "src_idx", "neuron"}


def _fmt(n) -> str:
    return str(n) if isinstance(n, (int, np.integer)) else f"{n[0]}:{n[1]}"


def collate(graph, filterset, flux=None, names=None, host_labels=(), keep_isolated: bool = True) -> pd.DataFrame:
    """One row per group: components, position, total flux, number of components, host
    candidates, best neuron (module docstring).

    Parameters
    ----------
    graph : the ``networkx.MultiGraph`` of :func:`~somtorch.collation.graph.greedy_graph`.
    filterset : the :class:`~somtorch.collation.filters.FilterSet` (positions, bmu, distances).
    flux : per base entry, optional (array or Series in base order).
    names : per base entry component names, optional (``Components`` then lists names).
    host_labels : DATA_ATTACH labels whose entries are host candidates.
    keep_isolated : keep groups made of one isolated entry.
    """
    import networkx as nx

    base = filterset.base
    n = len(base)
    if flux is not None:
        flux = np.asarray(flux, dtype=np.float64)
        if len(flux) != n:
            raise ConfigError(None, "flux", len(flux), f"{n} values (one per base entry)")
    names = None if names is None else np.asarray(names, dtype=object)
    G = graph.copy()
    G.add_nodes_from(range(n))  # entries never reached are single-component sources
    xyz = np.column_stack([np.cos(base.dec.rad) * np.cos(base.ra.rad),
                           np.cos(base.dec.rad) * np.sin(base.ra.rad), np.sin(base.dec.rad)])
    edge_keys: set = set()
    node_keys: set = set()
    for _, _, d in G.edges(data=True):
        edge_keys.update(k for k, v in d.items() if k not in _RESERVED and isinstance(v, (bool, np.bool_)))
    for _, d in G.nodes(data=True):
        node_keys.update(k for k, v in d.items() if k != "isolated" and v is True)
    has_unc = any("uncertainty" in d for _, d in G.nodes(data=True))
    rows = []
    for comp in nx.connected_components(G):
        comps = sorted(c for c in comp if isinstance(c, (int, np.integer)))
        if not comps:
            continue
        is_iso = len(comp) == 1 and "isolated" in G.nodes[comps[0]]
        if is_iso and not keep_isolated:
            continue
        edges = list(G.subgraph(comp).edges(data=True))
        w = flux[comps] if flux is not None else np.ones(len(comps))
        w = np.where(np.isfinite(w) & (w > 0), w, 0.0) if flux is not None else w
        v = (xyz[comps] * (w if w.sum() > 0 else np.ones(len(comps)))[:, None]).sum(0)
        ra = np.degrees(np.arctan2(v[1], v[0])) % 360.0
        dec = np.degrees(np.arctan2(v[2], np.hypot(v[0], v[1])))
        if edges:
            first = min(edges, key=lambda e: e[2]["count"])[2]
            subject, neuron = first["src_idx"], first["neuron"]
        else:
            d = filterset.distance
            subject = comps[int(np.argmin(d[comps]))] if d is not None else comps[0]
            neuron = int(filterset.bmu[subject])
        hosts: list = []
        for _, _, d in edges:
            for lab in host_labels:
                hosts.extend(h for h in d.get(lab, []) if h not in hosts)
        hosts.extend(c for c in sorted(comp - set(comps), key=str) if c not in hosts)
        row = {
            "Components": ";".join(str(names[c]) if names is not None else str(c) for c in comps),
            "N_components": len(comps),
            "RA": ra, "DEC": dec,
            "Total_flux": float(flux[comps].sum()) if flux is not None else np.nan,
            "Host_candidates": ";".join(_fmt(h) for h in hosts),
            "N_host_candidates": len(hosts),
            "Best_neuron": int(neuron),
            "Subject": int(subject),
            "Isolated": bool(is_iso),
        }
        for k in sorted(edge_keys, key=str):
            row[str(k)] = any(d.get(k) is True for _, _, d in edges)
        for k in sorted(node_keys, key=str):
            row[f"N_{k}"] = sum(1 for c in comp if G.nodes[c].get(k) is True)
        if has_unc:
            u = [G.nodes[c].get("uncertainty", np.nan) for c in comps]
            row["Uncertainty"] = float(np.nanmax(u)) if np.isfinite(u).any() else np.nan
        rows.append((comps[0], row))
    rows.sort(key=lambda t: t[0])
    df = pd.DataFrame([r for _, r in rows])
    df.insert(0, "Source_id", np.arange(len(df)))
    return df


def write_source_catalogue(df: pd.DataFrame, path, overwrite: bool = False) -> str:
    """Write a source catalogue atomically as CSV (``.csv``) or a FITS table (``.fits``/``.fit``)."""
    from somtorch.io.atomic import atomic_output

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        with atomic_output(path, overwrite=overwrite, mode="w") as fh:
            df.to_csv(fh, index=False)
    elif ext in (".fits", ".fit"):
        from astropy.table import Table

        buf = io.BytesIO()
        Table.from_pandas(df).write(buf, format="fits")
        with atomic_output(path, overwrite=overwrite) as fh:
            fh.write(buf.getvalue())
    else:
        raise ConfigError(None, "path", path, "a .csv or .fits file name")
    return path
